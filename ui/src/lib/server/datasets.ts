// Datasets are folders under DATA_ROOT/datasets: images (jpg, jpeg, png, webp) with same-named
// .txt captions, exactly what the trainer reads (toolkit/data/dataset.py). Edit LoRAs also need
// reference images: `<dataset>/control/<stem>.<ext>`, paired with the target of the same file stem
// (toolkit/data/references.py); a job sets `control_path` to that folder. The trainer's
// `_latent_cache` folders (in the dataset and in control/) are never listed or served.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { DatasetDetail, DatasetImage, DatasetReference, DatasetSummary } from "../types";
import { HttpError } from "./http";
import { checkName, resolveExisting, resolveForWrite } from "./paths";
import { checkImages } from "./python";
import { ensureDataDirs, settings } from "./settings";

export const IMAGE_EXTS = [".jpg", ".jpeg", ".png", ".webp"];
export const CAPTION_EXT = ".txt";
/** The sub-folder of a dataset that holds its reference images (edit LoRAs). */
export const CONTROL_DIR = "control";
const MAX_CAPTION_BYTES = 64 * 1024;

export type UploadKind = "image" | "reference";

function isImage(file: string): boolean {
  return IMAGE_EXTS.includes(path.extname(file).toLowerCase());
}

function stemOf(file: string): string {
  return file.slice(0, -path.extname(file).length);
}

/** `kind` of an upload or delete: "image" (targets, the default) or "reference". */
export function parseKind(value: unknown): UploadKind {
  if (value === null || value === undefined || value === "" || value === "image" || value === "target") return "image";
  if (value === "reference") return "reference";
  throw new HttpError(400, "kind must be image or reference");
}

function datasetDir(name: string): string {
  checkName("dataset", name);
  const dir = resolveExisting(settings().datasetsDir, [name]);
  if (!fs.statSync(dir).isDirectory()) throw new HttpError(404, `no dataset ${name}`);
  return dir;
}

function url(name: string, ...parts: string[]): string {
  return `/api/files/datasets/${[name, ...parts].map(encodeURIComponent).join("/")}`;
}

/** The image files of a folder: plain files only (no symlinks, no folders), not hidden, sorted. */
function imageFiles(dir: string): string[] {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries
    .filter((e) => e.isFile() && !e.name.startsWith(".") && isImage(e.name))
    .map((e) => e.name)
    .sort();
}

/**
 * `<dir>/control` when it is a real folder (a symlink is never followed: it could lead outside
 * DATA_ROOT); null when missing. With `create`, a missing one is made.
 */
function controlDir(dir: string, create = false): string | null {
  const control = path.join(dir, CONTROL_DIR);
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(control);
  } catch {
    if (!create) return null;
    fs.mkdirSync(control);
    return control;
  }
  if (stat.isSymbolicLink()) throw new HttpError(403, `${CONTROL_DIR}/ is a symlink: reference images must be in a real folder`);
  if (!stat.isDirectory()) throw new HttpError(409, `${CONTROL_DIR} is not a folder`);
  return control;
}

interface Pairing {
  targets: string[];
  references: string[];
  /** stem -> reference files with that stem (more than one is an error for the trainer). */
  byStem: Map<string, string[]>;
  problems: string[];
}

/** Targets and references of a dataset folder, paired by file stem as the trainer pairs them. */
function pairing(dir: string): Pairing {
  const targets = imageFiles(dir);
  const problems: string[] = [];
  let references: string[] = [];
  try {
    const control = controlDir(dir);
    if (control) references = imageFiles(control);
  } catch (err) {
    problems.push((err as Error).message);
  }
  const byStem = new Map<string, string[]>();
  for (const file of references) {
    const stem = stemOf(file);
    byStem.set(stem, [...(byStem.get(stem) ?? []), file]);
  }
  for (const files of byStem.values()) {
    if (files.length > 1) problems.push(`several reference images share a name (${files.join(" / ")}): keep one per target image`);
  }
  return { targets, references, byStem, problems };
}

function summary(name: string, dir: string): DatasetSummary {
  const { targets, references, byStem } = pairing(dir);
  let captionNames: Set<string>;
  try {
    captionNames = new Set(fs.readdirSync(dir).filter((f) => f.toLowerCase().endsWith(CAPTION_EXT)).map((f) => f.slice(0, -4)));
  } catch {
    captionNames = new Set();
  }
  const paired = targets.filter((t) => byStem.has(stemOf(t)));
  return {
    name,
    images: targets.length,
    captions: targets.filter((f) => captionNames.has(stemOf(f))).length,
    cover: targets[0] ? url(name, targets[0]) : null,
    references: references.length,
    paired: paired.length,
    first_reference: paired[0] ? byStem.get(stemOf(paired[0]))![0] : null,
  };
}

/** One dataset's summary (404 when it does not exist). */
export function datasetSummary(name: string): DatasetSummary {
  return summary(name, datasetDir(name));
}

export function listDatasets(): DatasetSummary[] {
  const s = settings();
  ensureDataDirs(s);
  const out: DatasetSummary[] = [];
  for (const entry of fs.readdirSync(s.datasetsDir, { withFileTypes: true })) {
    // only real folders: a symlink could lead outside DATA_ROOT
    if (!entry.isDirectory() || entry.name.startsWith(".")) continue;
    out.push(summary(entry.name, path.join(s.datasetsDir, entry.name)));
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

export function createDataset(nameInput: unknown): DatasetSummary {
  const s = settings();
  ensureDataDirs(s);
  const name = checkName("dataset", nameInput);
  const target = path.join(s.datasetsDir, name);
  try {
    fs.mkdirSync(target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") throw new HttpError(409, `dataset ${name} exists`);
    throw err;
  }
  return { name, images: 0, captions: 0, cover: null, references: 0, paired: 0, first_reference: null };
}

/** A dataset's targets (with captions and their reference) and its reference images. */
export function datasetDetail(name: string): DatasetDetail {
  const dir = datasetDir(name);
  const { targets, references, byStem, problems } = pairing(dir);
  const control = path.join(dir, CONTROL_DIR);
  const refInfo = (file: string) => ({ file, url: url(name, CONTROL_DIR, file), size: fs.statSync(path.join(control, file)).size });
  const images: DatasetImage[] = [];
  for (const file of targets) {
    const stem = stemOf(file);
    let caption: string | null = null;
    try {
      const captionFile = path.join(dir, stem + CAPTION_EXT);
      if (!fs.lstatSync(captionFile).isSymbolicLink()) caption = fs.readFileSync(captionFile, "utf8");
    } catch {
      caption = null;
    }
    const ref = byStem.get(stem)?.[0];
    images.push({ file, url: url(name, file), size: fs.statSync(path.join(dir, file)).size, caption, reference: ref ? refInfo(ref) : null });
  }
  const targetByStem = new Map(targets.map((t) => [stemOf(t), t]));
  const refs: DatasetReference[] = references.map((file) => ({ ...refInfo(file), target: targetByStem.get(stemOf(file)) ?? null }));
  return { name, images, references: refs, reference_problems: problems };
}

export function deleteDataset(name: string): void {
  checkName("dataset", name);
  const target = path.join(settings().datasetsDir, name);
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(target);
  } catch {
    throw new HttpError(404, `no dataset ${name}`);
  }
  if (stat.isSymbolicLink() || !stat.isDirectory()) fs.rmSync(target, { force: true });
  else fs.rmSync(target, { recursive: true, force: true });
}

/** A safe file name from an uploaded one: its last segment, odd characters replaced. */
export function cleanFileName(raw: string): string {
  const base = raw.split(/[\\/]/).pop() ?? "";
  const cleaned = base.replace(/[^A-Za-z0-9._() -]/g, "_").replace(/^[.\s]+/, "").trim().slice(-128);
  if (!cleaned || cleaned === "." || cleaned === "..") throw new HttpError(400, `bad file name ${JSON.stringify(raw)}`);
  return cleaned;
}

/** Writes a file atomically (temporary name in the same folder, then rename). */
function writeAtomic(target: string, data: Uint8Array | string): void {
  const tmp = path.join(path.dirname(target), `.${path.basename(target)}.${crypto.randomBytes(6).toString("hex")}.part`);
  fs.writeFileSync(tmp, data, { flag: "wx" });
  try {
    fs.renameSync(tmp, target);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

export interface UploadResult {
  saved: string[];
  rejected: { file: string; reason: string }[];
  /** Reference uploads: older references of the same stem (another extension) that were removed. */
  replaced?: string[];
}

/**
 * Saves uploaded images (checked by content, not only by name) and .txt captions. With
 * kind "reference": images only, into the dataset's control/ folder (made when missing), under
 * their own file names; a reference replaces the one of the same stem with another extension
 * (the trainer takes exactly one per target).
 */
export async function saveUploads(name: string, files: File[], kind: UploadKind = "image"): Promise<UploadResult> {
  const s = settings();
  const dir = datasetDir(name);
  const reference = kind === "reference";
  const result: UploadResult = reference ? { saved: [], rejected: [], replaced: [] } : { saved: [], rejected: [] };
  const accepted: { file: File; fileName: string; bytes: Uint8Array; image: boolean }[] = [];
  for (const file of files) {
    let fileName: string;
    try {
      fileName = cleanFileName(file.name);
    } catch (err) {
      result.rejected.push({ file: file.name, reason: (err as Error).message });
      continue;
    }
    const ext = path.extname(fileName).toLowerCase();
    if (reference && !IMAGE_EXTS.includes(ext)) {
      result.rejected.push({
        file: file.name,
        reason: ext === CAPTION_EXT ? "reference images take no caption (the target's caption is used)" : "only .jpg, .jpeg, .png, .webp reference images are accepted",
      });
      continue;
    }
    if (!IMAGE_EXTS.includes(ext) && ext !== CAPTION_EXT) {
      result.rejected.push({ file: file.name, reason: "only .jpg, .jpeg, .png, .webp images and .txt captions are accepted" });
      continue;
    }
    const limit = ext === CAPTION_EXT ? MAX_CAPTION_BYTES : s.maxUploadBytes;
    if (file.size > limit) {
      result.rejected.push({ file: file.name, reason: `larger than ${Math.round(limit / 1024)} KiB` });
      continue;
    }
    const bytes = new Uint8Array(await file.arrayBuffer());
    if (ext === CAPTION_EXT) {
      try {
        new TextDecoder("utf-8", { fatal: true }).decode(bytes);
      } catch {
        result.rejected.push({ file: file.name, reason: "captions must be UTF-8 text" });
        continue;
      }
    }
    accepted.push({ file, fileName, bytes, image: ext !== CAPTION_EXT });
  }
  const problems = await decodeProblems(accepted.filter((a) => a.image).map((a) => a.bytes), accepted.filter((a) => a.image).map((a) => a.fileName));
  for (const { file, fileName, bytes, image } of accepted) {
    const problem = image ? problems.shift() : null;
    if (problem) {
      result.rejected.push({ file: file.name, reason: problem });
      continue;
    }
    if (!reference) {
      writeAtomic(resolveForWrite(s.datasetsDir, [name, fileName]), bytes);
      result.saved.push(fileName);
      continue;
    }
    const control = controlDir(dir, true)!;
    writeAtomic(resolveForWrite(s.datasetsDir, [name, CONTROL_DIR, fileName]), bytes);
    result.saved.push(fileName);
    for (const other of imageFiles(control)) {
      if (other !== fileName && stemOf(other) === stemOf(fileName)) {
        fs.rmSync(resolveForWrite(s.datasetsDir, [name, CONTROL_DIR, other]), { force: true });
        result.replaced!.push(other);
      }
    }
  }
  return result;
}

/**
 * Why each uploaded image is not one the trainer can read (null when it is), in order: decoded by
 * the trainer's Python (`python -m toolkit.image_check`: PIL verify + load), never judged by its
 * first bytes. The files wait in a private staging folder meanwhile, outside every dataset.
 */
async function decodeProblems(images: Uint8Array[], names: string[]): Promise<(string | null)[]> {
  if (images.length === 0) return [];
  const staging = path.join(settings().dataRoot, ".staging", crypto.randomBytes(8).toString("hex"));
  fs.mkdirSync(staging, { recursive: true, mode: 0o700 });
  try {
    const files = images.map((bytes, i) => {
      const file = path.join(staging, `${i}${path.extname(names[i]).toLowerCase()}`);
      fs.writeFileSync(file, bytes, { flag: "wx" });
      return file;
    });
    const answers = await checkImages(files);
    return answers.map((a, i) => (a.error ? `not a ${path.extname(names[i]).slice(1)} image: ${a.error}` : null));
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}

function imageFile(name: string, image: unknown): { dir: string; image: string; stem: string } {
  const dir = datasetDir(name);
  if (typeof image !== "string" || !isImage(image)) throw new HttpError(400, "image must be an image file name");
  const real = resolveExisting(settings().datasetsDir, [name, image]);
  if (path.dirname(real) !== dir) throw new HttpError(403, "path is outside the dataset");
  return { dir, image, stem: stemOf(image) };
}

export function setCaption(name: string, image: unknown, caption: unknown): void {
  if (typeof caption !== "string") throw new HttpError(400, "caption must be a string");
  if (Buffer.byteLength(caption) > MAX_CAPTION_BYTES) throw new HttpError(413, "caption too long");
  const { stem } = imageFile(name, image);
  writeAtomic(resolveForWrite(settings().datasetsDir, [name, stem + CAPTION_EXT]), caption);
}

/** Deletes a target image and its caption, or (kind "reference") a reference image in control/. */
export function deleteImage(name: string, image: unknown, kind: UploadKind = "image"): void {
  const s = settings();
  if (kind === "reference") {
    const dir = datasetDir(name);
    if (typeof image !== "string" || !isImage(image)) throw new HttpError(400, "file must be an image file name");
    const control = controlDir(dir);
    if (!control) throw new HttpError(404, "no reference images");
    const real = resolveExisting(s.datasetsDir, [name, CONTROL_DIR, image]);
    if (path.dirname(real) !== control) throw new HttpError(403, "path is outside the dataset's control folder");
    fs.rmSync(resolveForWrite(s.datasetsDir, [name, CONTROL_DIR, image]), { force: true });
    return;
  }
  const { stem } = imageFile(name, image);
  for (const file of [image as string, stem + CAPTION_EXT]) {
    const target = resolveForWrite(s.datasetsDir, [name, file]);
    fs.rmSync(target, { force: true });
  }
}
