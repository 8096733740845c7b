import { json, param, withApi } from "@/lib/server/http";
import { requireJob, resumeJob, summary } from "@/lib/server/jobs";

export const dynamic = "force-dynamic";

/** Queues the same job file again: the trainer resumes from its last checkpoint. */
export const POST = withApi((_req, params) => json({ job: summary(resumeJob(requireJob(param(params, "id")))) }));
