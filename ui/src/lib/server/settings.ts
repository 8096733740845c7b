// Everything the server reads from the environment, read on each call so tests (and a restart
// with other settings) see the current values. Paths are absolute.
import fs from "node:fs";
import path from "node:path";

export interface Settings {
  /** ui/ itself (the server's working directory). */
  uiDir: string;
  /** The trainer's repository: where `python run.py` and `python -m toolkit.ui.schema` run. */
  repoRoot: string;
  python: string;
  /** Root of everything the UI writes: database, datasets, job files, training outputs. */
  dataRoot: string;
  datasetsDir: string;
  outputDir: string;
  /** Local model weights a job may name (`model.name_or_path`, `vae_path`...); hub ids need no folder. */
  modelsDir: string;
  jobsDir: string;
  dbPath: string;
  authToken: string;
  maxConcurrentJobs: number;
  /** Per uploaded file. */
  maxUploadBytes: number;
  workerPollMs: number;
  workerEnabled: boolean;
  /** How long a browser login lasts (SESSION_HOURS). */
  sessionTtlS: number;
}

function intEnv(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) {
    throw new Error(`${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

export function settings(): Settings {
  // Relative to the working directory (ui/, where npm runs). turbopackIgnore: run-time data
  // paths, not files for the bundler to trace.
  const uiDir = path.resolve(/*turbopackIgnore: true*/ process.env.UI_DIR || ".");
  const repoRoot = path.resolve(/*turbopackIgnore: true*/ process.env.REPO_ROOT || path.join(uiDir, ".."));
  const dataRoot = path.resolve(/*turbopackIgnore: true*/ process.env.DATA_ROOT || path.join(uiDir, "data"));
  return {
    uiDir,
    repoRoot,
    python: process.env.PYTHON || "python3",
    dataRoot,
    datasetsDir: path.join(dataRoot, "datasets"),
    outputDir: path.join(dataRoot, "output"),
    modelsDir: path.join(dataRoot, "models"),
    jobsDir: path.join(dataRoot, "jobs"),
    dbPath: path.join(dataRoot, "ui.sqlite"),
    authToken: process.env.AI_TOOLKIT_AUTH || "",
    maxConcurrentJobs: intEnv("MAX_CONCURRENT_JOBS", 1, 1),
    maxUploadBytes: intEnv("MAX_UPLOAD_MB", 50, 1) * 1024 * 1024,
    workerPollMs: intEnv("WORKER_POLL_MS", 1000, 50),
    workerEnabled: process.env.AITK_WORKER !== "off",
    sessionTtlS: intEnv("SESSION_HOURS", 7 * 24, 1) * 3600,
  };
}

/**
 * The folders every path a UI-submitted job names must stay inside (toolkit.ui.guard): the UI's
 * datasets, outputs and models, and the trainer's bundled examples (the tiny demo preset trains on
 * `config/examples/demo_dataset` when no dataset is ticked), as the Gradio app allows.
 */
export function jobRoots(s: Settings = settings()): string[] {
  return [s.datasetsDir, s.outputDir, s.modelsDir, path.join(s.repoRoot, "config", "examples")];
}

/** Creates the data folders (once per root). */
export function ensureDataDirs(s: Settings = settings()): void {
  for (const dir of [s.dataRoot, s.datasetsDir, s.outputDir, s.modelsDir, s.jobsDir]) {
    fs.mkdirSync(dir, { recursive: true });
  }
}
