"use client";
// The loss curve from progress.jsonl: raw values and an exponential moving average, as SVG.

export function LossChart({ points }: { points: [number, number][] }) {
  if (points.length < 2) return <p className="muted">The loss curve appears after a few steps.</p>;
  const width = 640;
  const height = 220;
  const pad = { left: 52, right: 12, top: 12, bottom: 28 };
  const steps = points.map((p) => p[0]);
  const values = points.map((p) => p[1]);
  const smooth: number[] = [];
  let ema = values[0];
  for (const v of values) {
    ema = 0.9 * ema + 0.1 * v;
    smooth.push(ema);
  }
  const x0 = steps[0];
  const x1 = steps[steps.length - 1];
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const span = hi - lo || 1;
  const x = (s: number) => pad.left + ((s - x0) / Math.max(1, x1 - x0)) * (width - pad.left - pad.right);
  const y = (v: number) => height - pad.bottom - ((v - lo) / span) * (height - pad.top - pad.bottom);
  const line = (vals: number[]) => vals.map((v, i) => `${i ? "L" : "M"}${x(steps[i]).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  return (
    <svg className="loss-chart" viewBox={`0 0 ${width} ${height}`} role="img" aria-label="loss curve" data-testid="loss-chart">
      <rect x={pad.left} y={pad.top} width={width - pad.left - pad.right} height={height - pad.top - pad.bottom} className="chart-frame" />
      <path d={line(values)} className="chart-raw" />
      <path d={line(smooth)} className="chart-smooth" />
      <text x={pad.left - 6} y={pad.top + 10} textAnchor="end" className="chart-label">
        {hi.toPrecision(3)}
      </text>
      <text x={pad.left - 6} y={height - pad.bottom} textAnchor="end" className="chart-label">
        {lo.toPrecision(3)}
      </text>
      <text x={pad.left} y={height - 8} className="chart-label">
        step {x0}
      </text>
      <text x={width - pad.right} y={height - 8} textAnchor="end" className="chart-label">
        step {x1}
      </text>
    </svg>
  );
}
