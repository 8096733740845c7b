// Shapes shared by the API routes and the pages.

/** A job file as YAML holds it: `{job, config: {name, process: [...]}, meta}`. */
export type JobConfig = Record<string, unknown>;

export interface Preset {
  id: string;
  label: string;
  arch: string;
  name_or_path: string;
  file: string;
  config: JobConfig;
}

export interface ArchInfo {
  label: string;
  class: string;
  official_repo: string;
  capabilities: Record<string, unknown>;
  /** Sampling defaults of the architecture's default release (its declaration in the Python registry). */
  sampling: { guidance_scale: number; sample_steps: number };
}

/** What `python -m toolkit.ui.schema` prints. */
export interface UiSchema {
  schema: JsonSchema;
  archs_known: string[];
  presets: Preset[];
  archs: Record<string, ArchInfo>;
}

export interface JsonSchema {
  $ref?: string;
  $defs?: Record<string, JsonSchema>;
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  anyOf?: JsonSchema[];
  items?: JsonSchema;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  default?: unknown;
  title?: string;
  description?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  additionalProperties?: boolean | JsonSchema;
  [key: string]: unknown;
}

export interface Problem {
  path: string;
  message: string;
}

export interface ValidationResult {
  ok: boolean;
  problems: Problem[];
}

export type JobState = "queued" | "running" | "stopping" | "finished" | "stopped" | "failed";
export const ACTIVE_STATES: JobState[] = ["running", "stopping"];

export interface JobSummary {
  id: number;
  name: string;
  preset: string | null;
  arch: string | null;
  device: string;
  state: JobState;
  pid: number | null;
  step: number;
  total_steps: number;
  loss: number | null;
  s_per_it: number | null;
  error: string | null;
  exit_code: number | null;
  run_count: number;
  created_at: number;
  queued_at: number | null;
  started_at: number | null;
  finished_at: number | null;
}

export interface SampleImage {
  file: string;
  url: string;
  step: number;
  index: number;
  /** The prompt as written in the job file. */
  prompt: string | null;
  /** As the trainer uses it: `[trigger]` replaced, flags taken out (toolkit.ui.samples). */
  caption: string | null;
  /** The prompt's flags (`--seed 42` -> `{seed: 42}`), shown on a small line. */
  flags: Record<string, string | number>;
}

/** One entry of `python -m toolkit.ui.samples FILE`. */
export interface SampleCaption {
  prompt: string;
  caption: string;
  flags: Record<string, string | number>;
}

export interface LoraFile {
  file: string;
  url: string;
  step: number | null;
  size: number;
  mtime: number;
}

export interface JobDetail extends JobSummary {
  config_yaml: string;
  log_tail: string[];
  loss_curve: [number, number][];
  samples: SampleImage[];
  loras: LoraFile[];
  queue_position: number | null;
}

export interface DatasetSummary {
  name: string;
  images: number;
  captions: number;
  cover: string | null;
  /** Reference images (edit LoRAs) in the dataset's `control/` folder. */
  references: number;
  /** Target images that have a reference with the same file stem. */
  paired: number;
  /** The reference file (in `control/`) of the first target, by file name, that has one. */
  first_reference: string | null;
}

/** A reference image (edit LoRAs): `<dataset>/control/<file>`, paired with the target of the same stem. */
export interface DatasetReference {
  file: string;
  url: string;
  size: number;
  /** The target image it pairs with; null when no target has its stem. */
  target: string | null;
}

export interface DatasetImage {
  file: string;
  url: string;
  size: number;
  caption: string | null;
  /** Its reference image in `control/` (same stem), or null. */
  reference: { file: string; url: string; size: number } | null;
}

/** `GET /api/datasets/<name>`. */
export interface DatasetDetail {
  name: string;
  images: DatasetImage[];
  references: DatasetReference[];
  /** What would stop the trainer from pairing the references (several files for one stem...). */
  reference_problems: string[];
}
