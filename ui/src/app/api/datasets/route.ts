import { createDataset, listDatasets } from "@/lib/server/datasets";
import { json, readJson, withApi } from "@/lib/server/http";

export const dynamic = "force-dynamic";

export const GET = withApi(() => json({ datasets: listDatasets() }));

export const POST = withApi(async (req) => {
  const body = await readJson<{ name?: unknown }>(req);
  return json({ dataset: createDataset(body.name) }, 201);
});
