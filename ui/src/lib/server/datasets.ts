// Datasets are folders under DATA_ROOT/datasets: images (jpg, jpeg, png, webp) with same-named
// .txt captions, exactly what the trainer reads (toolkit/data/dataset.py).
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { DatasetImage, DatasetSummary } from "../types";
import { HttpError } from "./http";
import { checkName, resolveExisting, resolveForWrite } from "./paths";
import { ensureDataDirs, settings } from "./settings";

export const IMAGE_EXTS = [".jpg", ".jpeg", ".png", ".webp"];
export const CAPTION_EXT = ".txt";
const MAX_CAPTION_BYTES = 64 * 1024;

function isImage(file: string): boolean {
  return IMAGE_EXTS.includes(path.extname(file).toLowerCase());
}

function datasetDir(name: string): string {
  checkName("dataset", name);
  const dir = resolveExisting(settings().datasetsDir, [name]);
  if (!fs.statSync(dir).isDirectory()) throw new HttpError(404, `no dataset ${name}`);
  return dir;
}

function url(name: string, file: string): string {
  return `/api/files/datasets/${encodeURIComponent(name)}/${encodeURIComponent(file)}`;
}

export function listDatasets(): DatasetSummary[] {
  const s = settings();
  ensureDataDirs(s);
  const out: DatasetSummary[] = [];
  for (const entry of fs.readdirSync(s.datasetsDir, { withFileTypes: true })) {
    // only real folders: a symlink could lead outside DATA_ROOT
    if (!entry.isDirectory() || entry.name.startsWith(".")) continue;
    const files = fs.readdirSync(path.join(s.datasetsDir, entry.name)).filter((f) => !f.startsWith("."));
    const images = files.filter(isImage).sort();
    const captions = new Set(files.filter((f) => f.toLowerCase().endsWith(CAPTION_EXT)).map((f) => f.slice(0, -4)));
    out.push({
      name: entry.name,
      images: images.length,
      captions: images.filter((f) => captions.has(f.slice(0, -path.extname(f).length))).length,
      cover: images[0] ? url(entry.name, images[0]) : null,
    });
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
  return { name, images: 0, captions: 0, cover: null };
}

export function datasetImages(name: string): DatasetImage[] {
  const dir = datasetDir(name);
  const out: DatasetImage[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isFile() || entry.name.startsWith(".") || !isImage(entry.name)) continue;
    const stem = entry.name.slice(0, -path.extname(entry.name).length);
    let caption: string | null = null;
    try {
      const captionFile = path.join(dir, stem + CAPTION_EXT);
      if (!fs.lstatSync(captionFile).isSymbolicLink()) caption = fs.readFileSync(captionFile, "utf8");
    } catch {
      caption = null;
    }
    out.push({ file: entry.name, url: url(name, entry.name), size: fs.statSync(path.join(dir, entry.name)).size, caption });
  }
  return out.sort((a, b) => a.file.localeCompare(b.file));
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

function sniffImage(bytes: Uint8Array, ext: string): boolean {
  const startsWith = (sig: number[], at = 0) => sig.every((b, i) => bytes[at + i] === b);
  if (ext === ".png") return startsWith([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (ext === ".jpg" || ext === ".jpeg") return startsWith([0xff, 0xd8, 0xff]);
  if (ext === ".webp") return startsWith([0x52, 0x49, 0x46, 0x46]) && startsWith([0x57, 0x45, 0x42, 0x50], 8);
  return false;
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
}

/** Saves uploaded images (checked by content, not only by name) and .txt captions. */
export async function saveUploads(name: string, files: File[]): Promise<UploadResult> {
  const s = settings();
  datasetDir(name);
  const result: UploadResult = { saved: [], rejected: [] };
  for (const file of files) {
    let fileName: string;
    try {
      fileName = cleanFileName(file.name);
    } catch (err) {
      result.rejected.push({ file: file.name, reason: (err as Error).message });
      continue;
    }
    const ext = path.extname(fileName).toLowerCase();
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
    } else if (!sniffImage(bytes, ext)) {
      result.rejected.push({ file: file.name, reason: `not a ${ext.slice(1)} image` });
      continue;
    }
    writeAtomic(resolveForWrite(s.datasetsDir, [name, fileName]), bytes);
    result.saved.push(fileName);
  }
  return result;
}

function imageFile(name: string, image: unknown): { dir: string; image: string; stem: string } {
  const dir = datasetDir(name);
  if (typeof image !== "string" || !isImage(image)) throw new HttpError(400, "image must be an image file name");
  const real = resolveExisting(settings().datasetsDir, [name, image]);
  if (path.dirname(real) !== dir) throw new HttpError(403, "path is outside the dataset");
  return { dir, image, stem: image.slice(0, -path.extname(image).length) };
}

export function setCaption(name: string, image: unknown, caption: unknown): void {
  if (typeof caption !== "string") throw new HttpError(400, "caption must be a string");
  if (Buffer.byteLength(caption) > MAX_CAPTION_BYTES) throw new HttpError(413, "caption too long");
  const { stem } = imageFile(name, image);
  writeAtomic(resolveForWrite(settings().datasetsDir, [name, stem + CAPTION_EXT]), caption);
}

export function deleteImage(name: string, image: unknown): void {
  const { stem } = imageFile(name, image);
  const s = settings();
  for (const file of [image as string, stem + CAPTION_EXT]) {
    const target = resolveForWrite(s.datasetsDir, [name, file]);
    fs.rmSync(target, { force: true });
  }
}
