// The Python side is the source of truth for the config: the schema, presets and architectures
// (`python -m toolkit.ui_schema`, cached in memory from server start) and validation
// (`python -m toolkit.ui_schema validate FILE`, which never imports torch).
import { execFile } from "node:child_process";
import type { UiSchema, ValidationResult } from "../types";
import { settings } from "./settings";

interface PyResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runPython(args: string[], timeoutMs = 120_000): Promise<PyResult> {
  const s = settings();
  return new Promise((resolve, reject) => {
    execFile(
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
  });
}

function tail(text: string, lines = 15): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

const KEY = Symbol.for("aitk.uiSchema");
type Cache = { key: string; promise: Promise<UiSchema> };

async function fetchSchema(): Promise<UiSchema> {
  const result = await runPython(["-m", "toolkit.ui_schema"]);
  if (result.code !== 0) {
    throw new Error(`python -m toolkit.ui_schema failed (exit ${result.code}):\n${tail(result.stderr)}`);
  }
  try {
    return JSON.parse(result.stdout) as UiSchema;
  } catch {
    throw new Error(`python -m toolkit.ui_schema printed no JSON:\n${tail(result.stdout + result.stderr)}`);
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
  const result = await runPython(["-m", "toolkit.ui_schema", "validate", file], 60_000);
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
