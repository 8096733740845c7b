import { datasetDetail, deleteDataset } from "@/lib/server/datasets";
import { json, param, withApi } from "@/lib/server/http";

export const dynamic = "force-dynamic";

export const GET = withApi((_req, params) => {
  // {name, images (each with its caption and reference), references, reference_problems}
  return json(datasetDetail(param(params, "name")));
});

export const DELETE = withApi((_req, params) => {
  deleteDataset(param(params, "name"));
  return json({ ok: true });
});
