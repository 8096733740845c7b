import { withApi, json } from "@/lib/server/http";
import { SCHEMA_VERSION } from "@/lib/server/db";
import { settings } from "@/lib/server/settings";
import { workerRunning } from "@/lib/server/worker";

export const dynamic = "force-dynamic";

export const GET = withApi(() => {
  const s = settings();
  return json({ ok: true, db_schema: SCHEMA_VERSION, worker: workerRunning(), max_concurrent_jobs: s.maxConcurrentJobs });
});
