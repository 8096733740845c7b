// Job configs on the TypeScript side: reading them, the fields the UI owns (the job name and where
// outputs go), YAML in and out. A new job is built from a preset by the trainer's Python
// (`python -m toolkit.ui.presets build`, POST /api/jobs/build): the one builder both UIs use.
import YAML from "yaml";
import type { JobConfig, Problem } from "./types";

type Obj = Record<string, unknown>;

function isObj(value: unknown): value is Obj {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

export function clone<T>(value: T): T {
  return value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}

/** `config.process[0]` of a job config (created when missing). */
export function processOf(config: JobConfig): Obj {
  const section = isObj(config.config) ? config.config : ((config.config = {}) as Obj);
  if (!Array.isArray(section.process)) section.process = [{}];
  const list = section.process as unknown[];
  if (!isObj(list[0])) list[0] = {};
  return list[0] as Obj;
}

/** Reads `a.b` inside an object; `datasets.x` reads the first dataset's `x`. */
export function getIn(target: Obj, path: string): unknown {
  let current: unknown = target;
  for (const key of path.split(".")) {
    if (Array.isArray(current)) current = current[0];
    if (!isObj(current)) return undefined;
    current = current[key];
  }
  return current;
}

/**
 * What the UI owns in every job it runs: `config.name` is the job's name and outputs go to the
 * UI's output folder (the job page, downloads and the worker read them there). Returns the
 * fixed config and the problems that make it impossible to run from the UI.
 */
export function enforceUiFields(config: unknown, name: string, outputDir: string): { config: JobConfig; problems: Problem[] } {
  const problems: Problem[] = [];
  if (!isObj(config)) {
    return { config: {}, problems: [{ path: "", message: "the job file must be a mapping (job:, config:, meta:)" }] };
  }
  const out = clone(config);
  if (out.job !== "extension") {
    problems.push({ path: "job", message: "the UI runs training jobs: set `job: extension`" });
  }
  const section = (isObj(out.config) ? out.config : (out.config = {})) as Obj;
  section.name = name;
  const list = section.process;
  if (!Array.isArray(list) || list.length !== 1 || !isObj(list[0])) {
    problems.push({ path: "config.process", message: "the UI runs exactly one `type: sd_trainer` process per job" });
  } else {
    const proc = list[0] as Obj;
    if (proc.type !== "sd_trainer") {
      problems.push({ path: "config.process[0].type", message: "the UI runs training processes: set `type: sd_trainer`" });
    }
    proc.training_folder = outputDir;
  }
  return { config: out, problems };
}

export function toYaml(config: JobConfig): string {
  return YAML.stringify(config, { lineWidth: 0 });
}

/** The largest job file the UI reads (a real one is a few KiB). */
export const MAX_YAML_BYTES = 1024 * 1024;
/** Aliases a job file may use (ai-toolkit's files use none; a "billion laughs" file needs thousands). */
export const MAX_YAML_ALIASES = 100;

/**
 * Parses YAML; a syntax error, a file over MAX_YAML_BYTES or one whose aliases would expand
 * beyond MAX_YAML_ALIASES becomes a problem (never an exception, never unbounded memory).
 */
export function parseYaml(text: string): { value: unknown; problems: Problem[] } {
  const size = new TextEncoder().encode(text).length;
  if (size > MAX_YAML_BYTES) {
    return { value: undefined, problems: [{ path: "yaml", message: `the job file is ${size} bytes; at most ${MAX_YAML_BYTES} are read` }] };
  }
  const doc = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return {
      value: undefined,
      problems: doc.errors.map((e) => ({ path: "yaml", message: e.message.split("\n")[0] })),
    };
  }
  try {
    return { value: doc.toJS({ maxAliasCount: MAX_YAML_ALIASES }), problems: [] };
  } catch (err) {
    // yaml's alias-expansion guard ("Excessive alias count indicates a resource exhaustion attack")
    const reason = err instanceof Error ? err.message.split("\n")[0] : String(err);
    return {
      value: undefined,
      problems: [{ path: "yaml", message: `the YAML expands too far through its aliases (&/*): ${reason}; write the values out` }],
    };
  }
}
