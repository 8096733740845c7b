// Axis ticks for the charts: round values (1, 2, 2.5 or 5 times a power of ten) that cover a range.

/** About `count` round tick values from `lo` to `hi` (both inside the returned span). */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi < lo) [lo, hi] = [hi, lo];
  if (hi === lo) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const rough = (hi - lo) / Math.max(1, count - 1);
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= rough) ?? 10 * power;
  const first = Math.floor(lo / step) * step;
  const ticks: number[] = [];
  for (let v = first; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks[ticks.length - 1] < hi) ticks.push(Number((ticks[ticks.length - 1] + step).toPrecision(12)));
  return ticks;
}

/** Integer ticks (steps): never fractional. */
export function stepTicks(lo: number, hi: number, count = 6): number[] {
  const ticks = niceTicks(lo, hi, count).map((t) => Math.round(t));
  return [...new Set(ticks)].filter((t) => t >= Math.floor(lo) && t <= Math.ceil(hi));
}

/** A tick label: short and without float noise (0.1 + 0.2). */
export function tickLabel(value: number): string {
  if (value === 0) return "0";
  const abs = Math.abs(value);
  if (abs >= 1e5 || abs < 1e-3) return value.toExponential(1);
  return String(Number(value.toPrecision(4)));
}
