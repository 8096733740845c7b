import { datasetImages, deleteDataset } from "@/lib/server/datasets";
import { json, param, withApi } from "@/lib/server/http";

export const dynamic = "force-dynamic";

export const GET = withApi((_req, params) => {
  const name = param(params, "name");
  return json({ name, images: datasetImages(name) });
});

export const DELETE = withApi((_req, params) => {
  deleteDataset(param(params, "name"));
  return json({ ok: true });
});
