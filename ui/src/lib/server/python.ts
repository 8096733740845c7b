// The Python side is the source of truth for the config: the schema, presets and architectures
// (`python -m toolkit.ui.schema`, cached in memory from server start), validation
// (`python -m toolkit.ui.schema validate FILE`, which never imports torch), the job a form builds
// from a preset (`python -m toolkit.ui.presets build`, the Gradio app's builder too) and whether a
// trainer a previous server started still runs (`python -m toolkit.ui.jobs alive PID FILE`).
import { execFile } from "node:child_process";
import type { SampleCaption, UiSchema, ValidationResult } from "../types";
import { jobRoots, settings } from "./settings";

interface PyResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runPython(args: string[], timeoutMs = 120_000, input?: string): Promise<PyResult> {
  const s = settings();
  return new Promise((resolve, reject) => {
    const child = execFile(
      s.python,
      args,
      {
        cwd: s.repoRoot,
        timeout: timeoutMs,
        maxBuffer: 64 * 1024 * 1024,
        env: { ...process.env, PYTHONUNBUFFERED: "1", PYTHONDONTWRITEBYTECODE: "1" },
      },
      (err, stdout, stderr) => {
        if (err && typeof (err as NodeJS.ErrnoException).code === "string") {
          reject(new Error(`cannot run ${s.python} (set PYTHON to your interpreter): ${err.message}`));
          return;
        }
        const code = err ? ((err as { code?: number }).code ?? 1) : 0;
        resolve({ code: typeof code === "number" ? code : 1, stdout, stderr });
      },
    );
    child.stdin?.on("error", () => {}); // a child that exits before reading its input: its exit code tells
    child.stdin?.end(input ?? "");
  });
}

function tail(text: string, lines = 15): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

const KEY = Symbol.for("aitk.uiSchema");
type Cache = { key: string; promise: Promise<UiSchema> };

async function fetchSchema(): Promise<UiSchema> {
  const result = await runPython(["-m", "toolkit.ui.schema"]);
  if (result.code !== 0) {
    throw new Error(`python -m toolkit.ui.schema failed (exit ${result.code}):\n${tail(result.stderr)}`);
  }
  try {
    return JSON.parse(result.stdout) as UiSchema;
  } catch {
    throw new Error(`python -m toolkit.ui.schema printed no JSON:\n${tail(result.stdout + result.stderr)}`);
  }
}

/** Schema, presets and archs, computed once per interpreter and repo (a failure is retried). */
export function loadUiSchema(refresh = false): Promise<UiSchema> {
  const s = settings();
  const key = `${s.python}\0${s.repoRoot}`;
  const g = globalThis as unknown as Record<symbol, Cache | undefined>;
  const cached = g[KEY];
  if (!refresh && cached && cached.key === key) return cached.promise;
  const promise = fetchSchema();
  g[KEY] = { key, promise };
  promise.catch(() => {
    if (g[KEY]?.promise === promise) g[KEY] = undefined;
  });
  return promise;
}

/** Runs the trainer's own validator on a job file; problems by key path. */
export async function validateJobFile(file: string): Promise<ValidationResult> {
  const result = await runPython(["-m", "toolkit.ui.schema", "validate", file], 60_000);
  try {
    const parsed = JSON.parse(result.stdout) as ValidationResult;
    if (typeof parsed.ok === "boolean" && Array.isArray(parsed.problems)) return parsed;
  } catch {
    // fall through: the validator itself failed (e.g. unreadable YAML)
  }
  return {
    ok: false,
    problems: [{ path: "", message: tail(result.stderr || result.stdout) || `validator exited ${result.code}` }],
  };
}

/** What the new-job form sends to the one preset builder (`toolkit.ui.presets.FormFields`). */
export interface BuildForm {
  preset: string;
  name: string;
  /** Settings inside `config.process[0]` by dotted path; null removes the key (the trainer's default). */
  values: Record<string, unknown>;
  /** Dataset folders (absolute); null keeps the preset's datasets. */
  datasets: string[] | null;
  resolutions: number[] | null;
  prompts: string[] | null;
  /** Edit presets: the image the samples edit (absolute). */
  sample_reference: string | null;
}

/** The preset's config with the form applied, by `python -m toolkit.ui.presets build`; `edit`: the preset trains on reference images. */
export async function buildJobConfig(form: BuildForm): Promise<{ config: Record<string, unknown>; edit: boolean }> {
  const result = await runPython(["-m", "toolkit.ui.presets", "build"], 60_000, JSON.stringify(form));
  let parsed: { config?: Record<string, unknown>; edit?: boolean; error?: string } = {};
  try {
    parsed = JSON.parse(result.stdout);
  } catch {
    throw new Error(`python -m toolkit.ui.presets build failed (exit ${result.code}):\n${tail(result.stderr || result.stdout)}`);
  }
  if (result.code !== 0 || !parsed.config) throw new BuildError(parsed.error ?? `the builder exited ${result.code}`);
  return { config: parsed.config, edit: parsed.edit === true };
}

/** The builder refused the form (unknown preset, a malformed field): the message says which. */
export class BuildError extends Error {}

/** Whether `pid` still runs the job file `configPath` (`python -m toolkit.ui.jobs alive` prints `{"alive": bool}`). */
export async function trainerAlive(pid: number, configPath: string): Promise<boolean> {
  const result = await runPython(["-m", "toolkit.ui.jobs", "alive", String(pid), configPath], 60_000);
  try {
    const parsed = JSON.parse(result.stdout) as { alive?: unknown };
    if (result.code === 0 && typeof parsed.alive === "boolean") return parsed.alive;
  } catch {
    // fall through
  }
  throw new Error(`python -m toolkit.ui.jobs alive failed (exit ${result.code}):\n${tail(result.stderr || result.stdout)}`);
}

/** `python -m toolkit.image_check FILE...`: per file (in order), why it is not a readable image, or null. */
export async function checkImages(files: string[]): Promise<{ file: string; error: string | null }[]> {
  const result = await runPython(["-m", "toolkit.image_check", ...files], 120_000);
  try {
    const parsed = JSON.parse(result.stdout) as { file: string; error: string | null }[];
    if (result.code === 0 && Array.isArray(parsed) && parsed.length === files.length) return parsed;
  } catch {
    // fall through
  }
  throw new Error(`python -m toolkit.image_check failed (exit ${result.code}):\n${tail(result.stderr || result.stdout)}`);
}

/**
 * The UI's own rules for a job file (`python -m toolkit.ui.guard check FILE --root DIR... --base
 * REPO`, shared with the Gradio app): every path it names resolves, symlinks followed, inside
 * DATA_ROOT's datasets/, output/ or models/ (or is a hub repo id / `tiny:` id for model keys), no
 * `${...}` anywhere (UI jobs are never expanded), `config.name` a plain file name. Problems by key
 * path; a guard that cannot run refuses the job (never passes it unchecked).
 */
export async function guardJobFile(file: string): Promise<ValidationResult> {
  const s = settings();
  const roots = jobRoots(s).flatMap((root) => ["--root", root]);
  const result = await runPython(["-m", "toolkit.ui.guard", "check", file, ...roots, "--base", s.repoRoot], 60_000);
  try {
    const parsed = JSON.parse(result.stdout) as ValidationResult;
    if (typeof parsed.ok === "boolean" && Array.isArray(parsed.problems) && (parsed.ok || parsed.problems.length > 0)) return parsed;
  } catch {
    // fall through: the guard itself failed
  }
  return {
    ok: false,
    problems: [{ path: "", message: `the path guard (python -m toolkit.ui.guard) failed: ${tail(result.stderr || result.stdout) || `exit ${result.code}`}` }],
  };
}

/** Each sample's caption as the trainer uses it (`python -m toolkit.ui.samples FILE`); null when it cannot tell. */
export async function sampleCaptions(file: string): Promise<SampleCaption[] | null> {
  const result = await runPython(["-m", "toolkit.ui.samples", file], 60_000);
  try {
    const parsed = JSON.parse(result.stdout);
    if (result.code === 0 && Array.isArray(parsed)) return parsed as SampleCaption[];
  } catch {
    // fall through
  }
  console.error(`[jobs] python -m toolkit.ui.samples ${file} failed (exit ${result.code}): ${tail(result.stderr || result.stdout, 3)}`);
  return null;
}
