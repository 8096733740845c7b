// Small display helpers shared by the pages.

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return "–";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${sec}s`;
  return `${sec}s`;
}

export function formatTime(epochSeconds: number | null | undefined): string {
  if (!epochSeconds) return "–";
  return new Date(epochSeconds * 1000).toLocaleString();
}

export function formatLoss(loss: number | null | undefined): string {
  if (loss === null || loss === undefined) return "–";
  return loss < 0.001 ? loss.toExponential(2) : loss.toFixed(4);
}

/** Seconds left at the last measured speed. */
export function eta(step: number, total: number, sPerIt: number | null): number | null {
  if (!sPerIt || total <= 0 || step >= total) return null;
  return (total - step) * sPerIt;
}

/** A sample's prompt flags on one small line: `seed 42 · 512×256 · cfg 2.5 · 20 steps · neg: blurry`. */
export function flagLine(flags: Record<string, string | number>): string {
  const parts: string[] = [];
  if (flags.seed !== undefined) parts.push(`seed ${flags.seed}`);
  if (flags.width !== undefined || flags.height !== undefined) parts.push(`${flags.width ?? "?"}×${flags.height ?? "?"}`);
  if (flags.guidance_scale !== undefined) parts.push(`cfg ${flags.guidance_scale}`);
  if (flags.sample_steps !== undefined) parts.push(`${flags.sample_steps} steps`);
  if (flags.network_multiplier !== undefined) parts.push(`LoRA ×${flags.network_multiplier}`);
  if (flags.neg !== undefined) parts.push(`neg: ${flags.neg}`);
  return parts.join(" · ");
}
