import { json, param, withApi } from "@/lib/server/http";
import { requireJob, stopJob, summary } from "@/lib/server/jobs";

export const dynamic = "force-dynamic";

/** SIGTERM to the job's process group (the trainer saves, then ends "stopped"); a second stop kills. */
export const POST = withApi((_req, params) => json({ job: summary(stopJob(requireJob(param(params, "id")))) }));
