import { setCaption } from "@/lib/server/datasets";
import { json, param, readJson, withApi } from "@/lib/server/http";

export const dynamic = "force-dynamic";

export const PUT = withApi(async (req, params) => {
  const body = await readJson<{ image?: unknown; caption?: unknown }>(req);
  setCaption(param(params, "name"), body.image, body.caption);
  return json({ ok: true });
});
