import { deleteImage, parseKind } from "@/lib/server/datasets";
import { json, param, withApi } from "@/lib/server/http";

export const dynamic = "force-dynamic";

/** DELETE ?file=<image>: the image and its caption; with `&kind=reference`, the reference image control/<file>. */
export const DELETE = withApi((req, params) => {
  const query = new URL(req.url).searchParams;
  deleteImage(param(params, "name"), query.get("file"), parseKind(query.get("kind")));
  return json({ ok: true });
});
