// Importing an ai-toolkit job (its web UI's JSON, its Advanced view's YAML, an example config):
// the conversion, the folder plan and every problem come from `python -m toolkit.ui.aitk plan`,
// the one implementation the Gradio app uses too. This side only checks the request, turns the
// dataset names a person chose into this UI's dataset folders, and passes the text on stdin: it
// never expands `${...}` and never reads a path the text names.
import fs from "node:fs";
import path from "node:path";
import type { Problem } from "../types";
import { HttpError } from "./http";
import { checkName } from "./paths";
import { runPython } from "./python";
import { ensureDataDirs, jobRoots, settings } from "./settings";

export interface ImportFolder {
  /** The path as the ai-toolkit job wrote it. */
  path: string;
  /** dataset, control, mask, reference_image, validation_image. */
  kind: string;
  /** Every key path that names it. */
  keys: string[];
  how: "kept" | "linked" | "upload" | "missing";
  /** The path the imported job names instead; null when missing. */
  target: string | null;
  /** The UI dataset the target is in (null when it is not in one). */
  dataset: string | null;
}

export interface ImportPlan {
  ok: boolean;
  name: string | null;
  yaml: string | null;
  folders: ImportFolder[];
  ignored: Problem[];
  problems: Problem[];
}

export interface ImportRequest {
  text: string;
  filename?: string;
  name?: string;
  /** {path as the job wrote it: name of a dataset of this UI}. */
  links?: Record<string, string>;
}

/** At most this many links in one request (a job names a handful of folders). */
const MAX_LINKS = 256;

function optionalString(body: Record<string, unknown>, key: string): string | undefined {
  const value = body[key];
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value !== "string") throw new HttpError(400, `${key} must be a string`);
  return value;
}

/** The request body checked: 400 for anything malformed (a link must name an existing dataset). */
export function parseImportRequest(body: Record<string, unknown>): ImportRequest {
  if (typeof body.text !== "string" || body.text.trim() === "") {
    throw new HttpError(400, "text is required: the ai-toolkit job file's content (YAML or JSON)");
  }
  const filename = optionalString(body, "filename");
  if (filename !== undefined && (filename.length > 255 || /[\0\n\r]/.test(filename))) {
    throw new HttpError(400, "filename must be a file name (it only tells JSON from YAML; nothing is read)");
  }
  const name = optionalString(body, "name");
  if (name !== undefined) checkName("job", name);
  const links: Record<string, string> = {};
  if (body.links !== undefined && body.links !== null) {
    if (typeof body.links !== "object" || Array.isArray(body.links)) {
      throw new HttpError(400, "links must be an object {path as written in the job: dataset name}");
    }
    const entries = Object.entries(body.links as Record<string, unknown>);
    if (entries.length > MAX_LINKS) throw new HttpError(400, `at most ${MAX_LINKS} links`);
    const s = settings();
    for (const [written, dataset] of entries) {
      if (written === "" || /[\0\n\r]/.test(written)) throw new HttpError(400, "a link's key must be a path as the job writes it");
      const checked = checkName("dataset", dataset);
      const dir = path.join(s.datasetsDir, checked);
      const stat = fs.lstatSync(dir, { throwIfNoEntry: false });
      if (!stat?.isDirectory()) throw new HttpError(400, `no dataset named ${checked}: create it under Datasets first`);
      links[written] = checked;
    }
  }
  return { text: body.text, filename, name, links };
}

function datasetOf(target: string | null, datasetsDir: string): string | null {
  if (!target) return null;
  const rel = path.relative(datasetsDir, target);
  if (!rel || rel.startsWith("..") || path.isAbsolute(rel)) return null;
  return rel.split(path.sep)[0];
}

/** `python -m toolkit.ui.aitk plan` for this UI's folders; the job text on stdin. */
export async function planImport(req: ImportRequest): Promise<ImportPlan> {
  const s = settings();
  ensureDataDirs(s);
  // `--key=value`: a value starting with '-' stays a value
  const args = ["-m", "toolkit.ui.aitk", "plan"];
  for (const root of jobRoots(s)) args.push(`--root=${root}`);
  args.push(`--data-root=${s.datasetsDir}`, `--training-folder=${s.outputDir}`, `--base=${s.repoRoot}`);
  if (req.name) args.push(`--name=${req.name}`);
  if (req.filename) args.push(`--filename=${req.filename}`);
  for (const [written, dataset] of Object.entries(req.links ?? {})) {
    args.push(`--link=${written}=${path.join(s.datasetsDir, dataset)}`);
  }
  const result = await runPython(args, 120_000, req.text);
  let plan: (Omit<ImportPlan, "folders"> & { folders: Omit<ImportFolder, "dataset">[] }) | null = null;
  try {
    plan = JSON.parse(result.stdout);
  } catch {
    // the importer itself failed: below
  }
  const valid = plan && typeof plan.ok === "boolean" && Array.isArray(plan.problems) && Array.isArray(plan.folders);
  if ((result.code !== 0 && result.code !== 1) || !plan || !valid) {
    const tail = (result.stderr || result.stdout).trimEnd().split("\n").slice(-5).join("\n");
    throw new Error(`python -m toolkit.ui.aitk plan failed (exit ${result.code}): ${tail}`);
  }
  return {
    ...plan,
    folders: plan.folders.map((f) => ({ ...f, dataset: f.how === "linked" || f.how === "kept" ? datasetOf(f.target, s.datasetsDir) : null })),
  };
}
