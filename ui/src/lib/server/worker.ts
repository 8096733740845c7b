// The queue and the worker. Every tick (WORKER_POLL_MS): follow each running job's
// progress.jsonl, notice processes that ended, then start queued jobs while a slot is free
// (MAX_CONCURRENT_JOBS in all, one job at a time per device).
//
// A job runs as `PYTHON run.py --no-env <job file>` (no ${ENV} expansion for a UI job) in its own process group (detached, output appended to
// its log file), so it outlives the UI. The pid is stored: after a restart the worker carries on
// following jobs whose process is still alive (asked of the trainer's Python, which checks the pid
// runs this job file), and a job whose process is gone without an `end` event is marked failed
// with the last lines of its log.
import { spawn } from "node:child_process";
import fs from "node:fs";
import type { JobState } from "../types";
import { getDb } from "./db";
import { getJob, jobPaths, now, updateJob, type JobRow } from "./jobs";
import { readEventsFrom, terminalLines } from "./progress";
import { trainerAlive } from "./python";
import { settings } from "./settings";

/** How long a process may linger after writing its `end` event before the slot is freed anyway. */
const END_GRACE_S = 120;

interface WorkerState {
  timer: NodeJS.Timeout | null;
  /** Processes this server started: their exit code once Node has reaped them (absent for re-attached ones). */
  children: Map<number, { exited: boolean; code: number | null }>;
  /** Trainers a previous server started: Python's last answer about each pid. */
  reattached: Map<number, { alive: boolean | undefined; checkedAt: number; pending: boolean }>;
}

const KEY = Symbol.for("aitk.worker");

function state(): WorkerState {
  const g = globalThis as unknown as Record<symbol, WorkerState | undefined>;
  return (g[KEY] ??= { timer: null, children: new Map(), reattached: new Map() });
}

/** How often a re-attached trainer's liveness is asked of Python (`toolkit.ui.jobs alive`). */
const REATTACHED_CHECK_S = 2;

/**
 * Whether the trainer of `job` still runs: for a process this server started, until Node reports
 * its exit; for one a previous server started, what `python -m toolkit.ui.jobs alive` last said
 * (asked in the background, at most every REATTACHED_CHECK_S; undefined until the first answer).
 */
function trainerRunning(job: JobRow, configPath: string): boolean | undefined {
  if (job.pid === null) return false;
  const s = state();
  const own = s.children.get(job.pid);
  if (own) return !own.exited;
  const known = s.reattached.get(job.pid);
  if (!known?.pending && (!known || now() - known.checkedAt > REATTACHED_CHECK_S)) {
    const entry = { alive: known?.alive, checkedAt: known?.checkedAt ?? 0, pending: true };
    s.reattached.set(job.pid, entry);
    trainerAlive(job.pid, configPath)
      .then((alive) => Object.assign(entry, { alive, checkedAt: now(), pending: false }))
      .catch((err) => {
        console.error("[worker] liveness check:", err);
        Object.assign(entry, { checkedAt: now(), pending: false });
      });
  }
  return known?.alive;
}

function deviceKey(device: string): string {
  const d = device.trim().toLowerCase();
  if (d === "cuda") return "cuda:0";
  return d || "default";
}

/** Reads the new progress events of a running job into its row. */
function syncProgress(job: JobRow): JobRow {
  const paths = jobPaths(job.name);
  const { events, offset } = readEventsFrom(paths.progress, job.progress_offset);
  if (events.length === 0 && offset === job.progress_offset) return job;
  const update: Partial<JobRow> = { progress_offset: offset };
  for (const e of events) {
    if (typeof e.step === "number") update.step = e.step;
    if (typeof e.total_steps === "number") update.total_steps = e.total_steps;
    if (e.event === "step") {
      if (typeof e.loss === "number") update.loss = e.loss;
      if (typeof e.s_per_it === "number") update.s_per_it = e.s_per_it;
    }
    if (e.event === "start") {
      update.end_state = null;
    }
    if (e.event === "end") {
      update.end_state = e.state ?? "error";
      update.error = e.error ?? null;
    }
  }
  updateJob(job.id, update);
  return { ...job, ...update };
}

function finalState(endState: string | null): JobState {
  if (endState === "finished") return "finished";
  if (endState === "stopped") return "stopped";
  return "failed";
}

/** The marker the worker writes before each run's output (see `launch`). */
const RUN_MARKER = "\n===== run ";

/** The last lines of the latest run's output (never a previous run's, e.g. its "interrupted"). */
export function lastRunLines(text: string, n = 20): string {
  const at = text.lastIndexOf(RUN_MARKER);
  const run = at < 0 ? text : text.slice(text.indexOf("\n", at + 1) + 1);
  const lines = terminalLines(run);
  return lines.length ? lines.slice(-n).join("\n") : "(the run wrote no output)";
}

function lastLogLines(job: JobRow, n = 20): string {
  try {
    return lastRunLines(fs.readFileSync(jobPaths(job.name).log, "utf8"), n);
  } catch {
    return "(no log)";
  }
}

function finishJob(job: JobRow, exitCode: number | null): void {
  const fields: Partial<JobRow> = { pid: null, finished_at: now(), exit_code: exitCode };
  if (job.end_state) {
    fields.state = finalState(job.end_state);
    if (fields.state === "failed" && !job.error) fields.error = `the trainer reported an error; last log lines:\n${lastLogLines(job)}`;
    if (fields.state !== "failed") fields.error = null;
  } else if (job.state === "stopping") {
    // Stopped before the trainer installed its handler (still loading): nothing was trained to save.
    fields.state = "stopped";
    fields.error = null;
  } else {
    fields.state = "failed";
    const code = exitCode === null ? "" : ` with code ${exitCode}`;
    fields.error = `the training process exited${code} without an end event; last log lines:\n${lastLogLines(job)}`;
  }
  updateJob(job.id, fields);
}

function followRunning(): void {
  const s = state();
  const active = getDb().prepare("SELECT * FROM jobs WHERE state IN ('running', 'stopping')").all() as JobRow[];
  for (let job of active) {
    job = syncProgress(job);
    const configPath = jobPaths(job.name).config;
    const alive = trainerRunning(job, configPath);
    if (alive === undefined) continue; // a re-attached trainer: Python has not answered yet
    if (alive) {
      if (job.end_state) {
        // the end event is written; give the process a moment to exit before freeing its slot
        if (job.end_seen_at === null) updateJob(job.id, { end_seen_at: now() });
        else if (now() - job.end_seen_at > END_GRACE_S) finishJob(job, null);
      }
      continue;
    }
    const child = job.pid !== null ? s.children.get(job.pid) : undefined;
    job = syncProgress(job); // lines written just before the exit
    const exitCode = child ? child.code : null;
    if (job.pid !== null) {
      s.children.delete(job.pid);
      s.reattached.delete(job.pid);
    }
    finishJob(job, exitCode);
  }
}

function launch(job: JobRow): void {
  const s = settings();
  const paths = jobPaths(job.name);
  if (!fs.existsSync(paths.config)) {
    updateJob(job.id, { state: "failed", error: `the job file ${paths.config} is missing`, finished_at: now() });
    return;
  }
  let offset = 0;
  try {
    offset = fs.statSync(paths.progress).size;
  } catch {
    offset = 0;
  }
  fs.mkdirSync(paths.dir, { recursive: true });
  const out = fs.openSync(paths.log, "a");
  const run = job.run_count + 1;
  fs.writeSync(out, `${RUN_MARKER}${run} at ${new Date().toISOString()}: ${s.python} run.py --no-env ${paths.config}\n`);
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONUNBUFFERED: "1" };
  delete env.AI_TOOLKIT_AUTH; // the trainer has no use for the UI's secret
  let child;
  try {
    child = spawn(s.python, ["run.py", "--no-env", paths.config], {
      cwd: s.repoRoot,
      detached: true,
      stdio: ["ignore", out, out],
      env,
    });
  } finally {
    fs.closeSync(out);
  }
  const pid = child.pid;
  child.on("error", (err) => {
    fs.appendFileSync(paths.log, `cannot start ${s.python}: ${err.message} (set PYTHON)\n`);
  });
  if (pid === undefined) {
    updateJob(job.id, {
      state: "failed",
      error: `cannot start ${s.python} run.py (set PYTHON to the trainer's interpreter)`,
      finished_at: now(),
      run_count: run,
    });
    return;
  }
  const record = { exited: false, code: null as number | null };
  state().children.set(pid, record);
  child.on("exit", (code, signal) => {
    record.exited = true;
    record.code = code ?? (signal ? 128 + (signalNumber(signal) ?? 0) : null);
  });
  child.unref();
  updateJob(job.id, {
    state: "running",
    pid,
    started_at: now(),
    finished_at: null,
    run_count: run,
    progress_offset: offset,
    end_state: null,
    error: null,
    exit_code: null,
    stop_requested_at: null,
    end_seen_at: null,
  });
}

function signalNumber(signal: NodeJS.Signals): number | undefined {
  const table: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };
  return table[signal];
}

function startQueued(): void {
  const s = settings();
  const db = getDb();
  const active = db.prepare("SELECT device FROM jobs WHERE state IN ('running', 'stopping')").all() as { device: string }[];
  let slots = s.maxConcurrentJobs - active.length;
  const busy = new Set(active.map((j) => deviceKey(j.device)));
  if (slots <= 0) return;
  const queued = db.prepare("SELECT * FROM jobs WHERE state = 'queued' ORDER BY queued_at, id").all() as JobRow[];
  for (const job of queued) {
    if (slots <= 0) break;
    const key = deviceKey(job.device);
    if (busy.has(key)) continue;
    // Claim and start in one write transaction: a second server on the same DATA_ROOT cannot start it too.
    const started = db.transaction(() => {
      const current = getJob(job.id);
      if (current?.state !== "queued") return false;
      launch(current);
      return true;
    }).immediate();
    if (started && getJob(job.id)?.state === "running") {
      slots -= 1;
      busy.add(key);
    }
  }
}

/** One pass of the worker (exported for tests). */
export function tick(): void {
  followRunning();
  startQueued();
}

export function startWorker(): void {
  const s = state();
  if (s.timer) return;
  const loop = () => {
    try {
      tick();
    } catch (err) {
      console.error("[worker]", err);
    }
  };
  loop();
  s.timer = setInterval(loop, settings().workerPollMs);
  s.timer.unref();
}

export function stopWorker(): void {
  const s = state();
  if (s.timer) clearInterval(s.timer);
  s.timer = null;
}

export function workerRunning(): boolean {
  return state().timer !== null;
}
