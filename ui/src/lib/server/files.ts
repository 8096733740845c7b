// Serving files from the datasets and output folders, through the path guard.
import fs from "node:fs";
import path from "node:path";
import { Readable } from "node:stream";
import { HttpError } from "./http";
import { resolveExisting } from "./paths";
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

export function serveFile(root: string, segments: string[], download: boolean): Response {
  const real = resolveExisting(rootFor(root), segments);
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
