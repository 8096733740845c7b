import { deleteImage } from "@/lib/server/datasets";
import { json, param, withApi } from "@/lib/server/http";

export const dynamic = "force-dynamic";

/** DELETE ?file=<image>: the image and its caption. */
export const DELETE = withApi((req, params) => {
  deleteImage(param(params, "name"), new URL(req.url).searchParams.get("file"));
  return json({ ok: true });
});
