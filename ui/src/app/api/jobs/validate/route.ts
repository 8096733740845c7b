// POST {name, yaml}: the same checks as queueing, nothing stored: {ok, problems, yaml}.
import { json, readJson, withApi } from "@/lib/server/http";
import { prepareJob } from "@/lib/server/jobs";

export const dynamic = "force-dynamic";

export const POST = withApi(async (req) => {
  const body = await readJson<{ name?: unknown; yaml?: unknown }>(req);
  const prepared = await prepareJob(body.name, body.yaml);
  return json({ ok: prepared.ok, problems: prepared.problems, yaml: prepared.yaml });
});
