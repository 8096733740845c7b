// Serving files from the datasets and output folders, through the path guard.
import fs from "node:fs";
import path from "node:path";
import { Readable } from "node:stream";
import { HttpError } from "./http";
import { checkRelative, resolveExisting } from "./paths";
import { settings } from "./settings";

const TYPES: Record<string, string> = {
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".png": "image/png",
  ".webp": "image/webp",
  ".txt": "text/plain; charset=utf-8",
  ".csv": "text/csv; charset=utf-8",
  ".yaml": "text/plain; charset=utf-8",
  ".json": "application/json",
  ".jsonl": "text/plain; charset=utf-8",
  ".safetensors": "application/octet-stream",
};

/** The folder a URL's first segment names. */
export function rootFor(root: string): string {
  const s = settings();
  if (root === "datasets") return s.datasetsDir;
  if (root === "output") return s.outputDir;
  throw new HttpError(404, "not found");
}

const IMAGE_TYPES = new Set([".jpg", ".jpeg", ".png", ".webp"]);

/**
 * What may be served from a dataset: `<dataset>/<image or caption>` and `<dataset>/control/<image>`
 * (its reference images), nothing deeper (the trainer's `_latent_cache` folders stay hidden).
 */
function datasetFileAllowed(segments: string[]): boolean {
  const ext = path.extname(segments[segments.length - 1]).toLowerCase();
  if (segments.length === 2) return IMAGE_TYPES.has(ext) || ext === ".txt";
  return segments.length === 3 && segments[1] === "control" && IMAGE_TYPES.has(ext);
}

export function serveFile(root: string, segments: string[], download: boolean): Response {
  const folder = rootFor(root);
  checkRelative(segments);
  if (root === "datasets" && !datasetFileAllowed(segments)) throw new HttpError(404, "not found");
  const real = resolveExisting(folder, segments);
  const stat = fs.statSync(real);
  if (!stat.isFile()) throw new HttpError(404, "not a file");
  const ext = path.extname(real).toLowerCase();
  const type = TYPES[ext];
  if (!type) throw new HttpError(403, `files of type ${ext || "(none)"} are not served`);
  const attachment = download || ext === ".safetensors";
  const name = path.basename(real).replace(/["\\\r\n]/g, "_");
  const stream = Readable.toWeb(fs.createReadStream(real)) as ReadableStream<Uint8Array>;
  return new Response(stream, {
    headers: {
      "content-type": type,
      "content-length": String(stat.size),
      "cache-control": "no-cache",
      "x-content-type-options": "nosniff",
      "content-security-policy": "sandbox; default-src 'none'",
      ...(attachment ? { "content-disposition": `attachment; filename="${name}"` } : {}),
    },
  });
}
