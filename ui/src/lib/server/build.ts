// The new-job form -> a job config, by the trainer's one preset builder (`python -m
// toolkit.ui.presets build`, which the Gradio app uses too). The server turns the form's UI names
// into folders under DATA_ROOT (dataset names, the first reference of the chosen datasets) and
// applies the fields the UI owns; the config and its YAML go back to the page, which shows them.
import path from "node:path";
import { enforceUiFields, toYaml } from "../jobconfig";
import type { JobConfig } from "../types";
import { datasetSummary, CONTROL_DIR } from "./datasets";
import { HttpError } from "./http";
import { checkName } from "./paths";
import { BuildError, buildJobConfig } from "./python";
import { settings } from "./settings";

export interface BuiltJob {
  config: JobConfig;
  yaml: string;
  /** The preset trains an edit LoRA: each dataset needs reference images in its control/ folder. */
  edit: boolean;
}

function list<T>(value: unknown, key: string, ok: (item: unknown) => boolean): T[] | null {
  if (value === undefined || value === null) return null;
  if (!Array.isArray(value) || !value.every(ok)) throw new HttpError(400, `${key} must be a list`);
  return value as T[];
}

/** POST /api/jobs/build: `{preset, name, values, datasets: [UI dataset names], resolutions, prompts}`. */
export async function buildFromForm(body: Record<string, unknown>): Promise<BuiltJob> {
  const s = settings();
  if (typeof body.preset !== "string" || body.preset === "") throw new HttpError(400, "preset is required");
  const name = typeof body.name === "string" && body.name.trim() ? body.name.trim() : "job";
  const values = body.values ?? {};
  if (typeof values !== "object" || values === null || Array.isArray(values)) throw new HttpError(400, "values must be an object");
  const names = list<string>(body.datasets, "datasets", (d) => typeof d === "string") ?? [];
  for (const d of names) checkName("dataset", d);
  // the samples edit the first reference of the chosen datasets (its first target that has one)
  let reference: string | null = null;
  for (const d of names) {
    const first = datasetSummary(d).first_reference;
    if (first) {
      reference = path.join(s.datasetsDir, d, CONTROL_DIR, first);
      break;
    }
  }
  try {
    const built = await buildJobConfig({
      preset: body.preset,
      name,
      values: values as Record<string, unknown>,
      datasets: names.length ? names.map((d) => path.join(s.datasetsDir, d)) : null,
      resolutions: list<number>(body.resolutions, "resolutions", (r) => Number.isInteger(r)),
      prompts: list<string>(body.prompts, "prompts", (p) => typeof p === "string"),
      sample_reference: reference,
    });
    const config = enforceUiFields(built.config, name, s.outputDir).config;
    return { config, yaml: toYaml(config), edit: built.edit };
  } catch (err) {
    if (err instanceof BuildError) throw new HttpError(422, err.message, { problems: [{ path: "form", message: err.message }] });
    throw err;
  }
}
