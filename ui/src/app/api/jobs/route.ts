// GET: every job (newest first). POST {name, yaml, preset?}: validate (the UI's fields, the path
// guard, the trainer's validator), then queue. Invalid: 422 {problems: [{path, message}]}.
// DELETE {ids}: bulk delete -> {deleted, refused: [{id, reason}]} (running jobs are refused).
import { HttpError, json, readJson, withApi } from "@/lib/server/http";
import { createJob, deleteJobs, listJobs, queuePosition, summary } from "@/lib/server/jobs";

export const dynamic = "force-dynamic";

export const GET = withApi(() => {
  const jobs = listJobs().map((job) => ({ ...summary(job), queue_position: queuePosition(job) }));
  return json({ jobs });
});

export const POST = withApi(async (req) => {
  const body = await readJson<{ name?: unknown; yaml?: unknown; preset?: unknown }>(req);
  if (body.preset !== undefined && body.preset !== null && typeof body.preset !== "string") {
    throw new HttpError(400, "preset must be a string");
  }
  const { job, prepared } = await createJob(body.name, body.yaml, (body.preset as string | undefined) ?? null);
  if (!job) return json({ ok: false, problems: prepared.problems, yaml: prepared.yaml }, 422);
  return json({ ok: true, job: summary(job) }, 201);
});

export const DELETE = withApi(async (req) => {
  const body = await readJson<{ ids?: unknown }>(req);
  return json(deleteJobs(body.ids));
});
