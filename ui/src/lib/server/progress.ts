// Reading `<training_folder>/<name>/progress.jsonl` (the trainer's contract, toolkit/progress.py):
// one JSON object per line, appended as events happen; a torn last line is left for later.
import fs from "node:fs";

export interface ProgressEvent {
  time?: number;
  event: "start" | "step" | "sample" | "save" | "end" | string;
  state?: "running" | "finished" | "stopped" | "error" | string;
  step?: number;
  total_steps?: number;
  loss?: number;
  lr?: number;
  s_per_it?: number;
  paths?: string[];
  path?: string;
  error?: string;
  name?: string;
}

function parseLines(text: string): ProgressEvent[] {
  const events: ProgressEvent[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      const value = JSON.parse(line);
      if (value && typeof value === "object" && typeof value.event === "string") events.push(value);
    } catch {
      // a corrupt line (never written by the trainer, which appends whole lines) is skipped
    }
  }
  return events;
}

/** Complete lines from byte `offset` on; returns the events and the offset after the last newline. */
export function readEventsFrom(file: string, offset: number): { events: ProgressEvent[]; offset: number } {
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch {
    return { events: [], offset };
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size < offset) offset = 0; // the file was replaced: read it again from the start
    if (size === offset) return { events: [], offset };
    const buffer = Buffer.alloc(size - offset);
    fs.readSync(fd, buffer, 0, buffer.length, offset);
    const lastNewline = buffer.lastIndexOf(0x0a);
    if (lastNewline < 0) return { events: [], offset };
    const text = buffer.subarray(0, lastNewline + 1).toString("utf8");
    return { events: parseLines(text), offset: offset + lastNewline + 1 };
  } finally {
    fs.closeSync(fd);
  }
}

export function readAllEvents(file: string): ProgressEvent[] {
  return readEventsFrom(file, 0).events;
}

/**
 * The loss curve, one point per step (a resumed run re-logs steps after its checkpoint: the
 * latest value wins), thinned to at most `max` points by averaging buckets of steps.
 */
export function lossPoints(events: ProgressEvent[], max = 1500): [number, number][] {
  const byStep = new Map<number, number>();
  for (const e of events) {
    if (e.event === "step" && typeof e.step === "number" && typeof e.loss === "number" && Number.isFinite(e.loss)) {
      byStep.set(e.step, e.loss);
    }
  }
  const points = [...byStep.entries()].sort((a, b) => a[0] - b[0]);
  if (points.length <= max) return points;
  const size = Math.ceil(points.length / max);
  const out: [number, number][] = [];
  for (let i = 0; i < points.length; i += size) {
    const chunk = points.slice(i, i + size);
    const mean = chunk.reduce((acc, p) => acc + p[1], 0) / chunk.length;
    out.push([chunk[chunk.length - 1][0], mean]);
  }
  return out;
}

/** The last `lines` lines of a (possibly huge) log file, as a terminal would show them. */
export function tailLines(file: string, lines = 200, maxBytes = 256 * 1024): string[] {
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch {
    return [];
  }
  try {
    const size = fs.fstatSync(fd).size;
    const start = Math.max(0, size - maxBytes);
    const buffer = Buffer.alloc(size - start);
    fs.readSync(fd, buffer, 0, buffer.length, start);
    let text = buffer.toString("utf8");
    if (start > 0) text = text.slice(text.indexOf("\n") + 1);
    const all = terminalLines(text);
    return all.slice(-lines);
  } finally {
    fs.closeSync(fd);
  }
}

// The end of a tqdm bar: its rate bracket, whatever the unit (`it`, the trainer's `step` and `img`):
// `[00:01<00:02, 1.20it/s, loss=0.3]`, `[00:09<00:09,  3.02s/step, lr=2e-3]`, `[00:00<?, ?img/s]`.
const BAR_END = /\[[0-9:?<>, .-]*(?:\d(?:\.\d+)?\s*(?:[A-Za-z]+\/s|s\/[A-Za-z]+)|\?[A-Za-z]+\/s)[^\]]*\]/g;
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;

/**
 * Log text as lines a reader wants: ANSI codes removed; of a line redrawn with carriage returns
 * (tqdm), only what a terminal shows last; and a progress bar that the next log line was written
 * straight after (no newline between: `... 3/10 [00:01<00:02, 2.9it/s]saving step 3`) split from it,
 * so the bar and the log line each get their own line.
 */
export function terminalLines(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.replace(ANSI, "").split("\n")) {
    const parts = raw.split("\r").filter((p) => p.trim().length > 0);
    if (parts.length === 0) continue;
    let line = parts[parts.length - 1].trimEnd();
    // a bar followed by other text on the same line: the bar, then the rest
    for (;;) {
      BAR_END.lastIndex = 0;
      const match = BAR_END.exec(line);
      if (!match) break;
      const end = match.index + match[0].length;
      const rest = line.slice(end);
      if (!rest.trim()) break;
      out.push(line.slice(0, end).trimEnd());
      line = rest.trimStart();
    }
    out.push(line);
  }
  return out;
}
