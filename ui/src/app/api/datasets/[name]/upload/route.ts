// multipart/form-data with one or more `files`: images (jpg, jpeg, png, webp; checked by
// content) and .txt captions, each at most MAX_UPLOAD_MB (captions 64 KiB). `kind=reference`
// (query parameter or form field): reference images for edit LoRAs, saved to <dataset>/control/.
import { parseKind, saveUploads } from "@/lib/server/datasets";
import { HttpError, json, param, readLimited, withApi } from "@/lib/server/http";
import { settings } from "@/lib/server/settings";

export const dynamic = "force-dynamic";

const MAX_FILES = 100;
/** Full-size files per request: the dataset page uploads in batches of 10. */
const MAX_FULL_FILES = 10;

export const POST = withApi(async (req, params) => {
  const name = param(params, "name");
  const queryKind = new URL(req.url).searchParams.get("kind");
  const limit = settings().maxUploadBytes;
  // Counted as it arrives (also without Content-Length): the multipart body is parsed in memory.
  const bytes = await readLimited(req, limit * MAX_FULL_FILES + 1024 * 1024, "upload (upload fewer files at a time)");
  let form: FormData;
  try {
    form = await new Response(bytes as BodyInit, { headers: { "content-type": req.headers.get("content-type") ?? "" } }).formData();
  } catch {
    throw new HttpError(400, "expected multipart/form-data with `files`");
  }
  const files = form.getAll("files").filter((f): f is File => typeof f !== "string");
  if (files.length === 0) throw new HttpError(400, "no files in the upload");
  if (files.length > MAX_FILES) throw new HttpError(413, `at most ${MAX_FILES} files per upload`);
  const formKind = form.get("kind");
  const kind = parseKind(queryKind ?? (typeof formKind === "string" ? formKind : null));
  const result = await saveUploads(name, files, kind);
  return json(result, result.saved.length === 0 ? 400 : 200);
});
