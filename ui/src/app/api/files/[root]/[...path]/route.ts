// GET /api/files/datasets/<dataset>/<image> and /api/files/output/<job>/<file>; `?download=1`
// makes it an attachment (LoRA files always are).
import { serveFile } from "@/lib/server/files";
import { HttpError, param, withApi } from "@/lib/server/http";

export const dynamic = "force-dynamic";

export const GET = withApi((req, params) => {
  const segments = params.path;
  if (!Array.isArray(segments)) throw new HttpError(400, "missing path");
  const download = new URL(req.url).searchParams.get("download") === "1";
  return serveFile(param(params, "root"), segments, download);
});
