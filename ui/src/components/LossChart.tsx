"use client";
// The loss curve from progress.jsonl: raw values and an exponential moving average, as SVG, with
// round ticks and grid lines on both axes and the axes named.
import { niceTicks, stepTicks, tickLabel } from "@/lib/chart";

export function LossChart({ points }: { points: [number, number][] }) {
  if (points.length < 2) return <p className="muted">The loss curve appears after a few steps.</p>;
  const width = 640;
  const height = 240;
  const pad = { left: 60, right: 14, top: 12, bottom: 42 };
  const steps = points.map((p) => p[0]);
  const values = points.map((p) => p[1]);
  const smooth: number[] = [];
  let ema = values[0];
  for (const v of values) {
    ema = 0.9 * ema + 0.1 * v;
    smooth.push(ema);
  }
  const x0 = steps[0];
  const x1 = Math.max(steps[steps.length - 1], x0 + 1);
  const yTicks = niceTicks(Math.min(...values), Math.max(...values), 5);
  const lo = yTicks[0];
  const hi = yTicks[yTicks.length - 1];
  const xTicks = stepTicks(x0, x1, 6);
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const x = (s: number) => pad.left + ((s - x0) / (x1 - x0)) * plotW;
  const y = (v: number) => pad.top + plotH - ((v - lo) / (hi - lo || 1)) * plotH;
  const line = (vals: number[]) => vals.map((v, i) => `${i ? "L" : "M"}${x(steps[i]).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  return (
    <svg className="loss-chart" viewBox={`0 0 ${width} ${height}`} role="img" aria-label="loss curve" data-testid="loss-chart">
      <rect x={pad.left} y={pad.top} width={plotW} height={plotH} className="chart-frame" />
      <g data-testid="loss-y-ticks">
        {yTicks.map((t) => (
          <g key={`y${t}`}>
            <line x1={pad.left} x2={pad.left + plotW} y1={y(t)} y2={y(t)} className="chart-grid" />
            <text x={pad.left - 6} y={y(t) + 4} textAnchor="end" className="chart-label">
              {tickLabel(t)}
            </text>
          </g>
        ))}
      </g>
      <g data-testid="loss-x-ticks">
        {xTicks.map((t) => (
          <g key={`x${t}`}>
            <line x1={x(t)} x2={x(t)} y1={pad.top} y2={pad.top + plotH} className="chart-grid" />
            <text x={x(t)} y={pad.top + plotH + 16} textAnchor="middle" className="chart-label">
              {t}
            </text>
          </g>
        ))}
      </g>
      <path d={line(values)} className="chart-raw" />
      <path d={line(smooth)} className="chart-smooth" />
      <text x={pad.left + plotW / 2} y={height - 6} textAnchor="middle" className="chart-axis">
        step
      </text>
      <text x={14} y={pad.top + plotH / 2} textAnchor="middle" className="chart-axis" transform={`rotate(-90 14 ${pad.top + plotH / 2})`}>
        loss
      </text>
    </svg>
  );
}
