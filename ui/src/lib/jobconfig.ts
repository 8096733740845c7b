// A new job = a preset's whole config with only the user's fields changed. Pure functions,
// used by the new-job page (to show the YAML) and by the server (which re-applies the fields
// the UI owns: the job name and where outputs go).
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
 * Sets `a.b` (creating objects on the way); `null` removes the key so the trainer's default
 * applies; through a list (`datasets.x`) it sets `x` on every entry.
 */
export function setIn(target: Obj, path: string, value: unknown): void {
  const keys = path.split(".");
  const apply = (node: Obj, index: number): void => {
    const key = keys[index];
    if (index === keys.length - 1) {
      if (value === null) delete node[key];
      else node[key] = clone(value);
      return;
    }
    let child = node[key];
    if (Array.isArray(child)) {
      for (const entry of child) if (isObj(entry)) apply(entry, index + 1);
      return;
    }
    if (!isObj(child)) {
      if (value === null) return;
      child = node[key] = {};
    }
    apply(child as Obj, index + 1);
  };
  apply(target, 0);
}

export interface JobFields {
  name: string;
  /** Settings inside `config.process[0]` by path (see lib/schema.ts); null = the trainer's default. */
  values: Record<string, unknown>;
  /** UI dataset names; empty = keep the preset's datasets. */
  datasets: string[];
  /** Bucket resolutions for every dataset; null = keep. */
  resolutions: number[] | null;
  /** Sample prompts; null = keep the preset's. */
  prompts: string[] | null;
  /**
   * Edit presets: UI dataset name -> the reference file (in its `control/` folder) of its first
   * target that has one, null when none. Sets `sample.ctrl_img` when the preset has one.
   */
  references?: Record<string, string | null>;
}

/** The folder of a UI dataset's reference images (edit LoRAs). */
export const CONTROL_DIR = "control";

/** Whether a preset trains an edit LoRA: its dataset template has `control_path`. */
export function presetNeedsReferences(preset: JobConfig): boolean {
  const datasets = processOf(clone(preset)).datasets;
  const template = Array.isArray(datasets) ? datasets[0] : undefined;
  return isObj(template) && template.control_path !== undefined && template.control_path !== null;
}

export function joinPath(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

/** The preset's config with the user's fields applied. */
export function buildJobConfig(preset: JobConfig, fields: JobFields, datasetsDir: string): JobConfig {
  const config = clone(preset);
  const section = (isObj(config.config) ? config.config : (config.config = {})) as Obj;
  section.name = fields.name;
  const proc = processOf(config);
  if (fields.datasets.length > 0) {
    const existing = Array.isArray(proc.datasets) ? (proc.datasets as unknown[]) : [];
    const template = isObj(existing[0]) ? existing[0] : {};
    const edit = template.control_path !== undefined && template.control_path !== null;
    proc.datasets = fields.datasets.map((name) => {
      const folder = joinPath(datasetsDir, name);
      // edit presets: each dataset's references are in its control/ folder
      return { ...clone(template), folder_path: folder, ...(edit ? { control_path: joinPath(folder, CONTROL_DIR) } : {}) };
    });
    // the samples edit a reference of the chosen datasets (the first target's that has one)
    if (isObj(proc.sample) && proc.sample.ctrl_img !== undefined && proc.sample.ctrl_img !== null) {
      const withRef = fields.datasets.find((name) => fields.references?.[name]);
      if (withRef) proc.sample.ctrl_img = joinPath(joinPath(joinPath(datasetsDir, withRef), CONTROL_DIR), fields.references![withRef]!);
    }
  }
  for (const [path, value] of Object.entries(fields.values)) {
    if (value !== undefined) setIn(proc, path, value);
  }
  if (fields.resolutions && fields.resolutions.length > 0 && Array.isArray(proc.datasets)) {
    for (const dataset of proc.datasets) if (isObj(dataset)) dataset.resolution = [...fields.resolutions];
  }
  if (fields.prompts) {
    const sample = (isObj(proc.sample) ? proc.sample : (proc.sample = {})) as Obj;
    sample.prompts = fields.prompts;
    delete sample.samples; // `samples:` would take precedence over the prompts the user typed
  }
  return config;
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

/** Parses YAML; a syntax error becomes a problem with its line. */
export function parseYaml(text: string): { value: unknown; problems: Problem[] } {
  const doc = YAML.parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    return {
      value: undefined,
      problems: doc.errors.map((e) => ({ path: "yaml", message: e.message.split("\n")[0] })),
    };
  }
  return { value: doc.toJS(), problems: [] };
}
