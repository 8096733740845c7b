import { json, param, withApi } from "@/lib/server/http";
import { deleteJob, jobDetail, requireJob } from "@/lib/server/jobs";

export const dynamic = "force-dynamic";

export const GET = withApi((_req, params) => json({ job: jobDetail(requireJob(param(params, "id"))) }));

/** Deletes the job, its job file and log, and its output folder (LoRA files, samples). */
export const DELETE = withApi((_req, params) => {
  deleteJob(requireJob(param(params, "id")));
  return json({ ok: true });
});
