// What `python -m toolkit.ui.schema` printed (cached from server start), plus where the UI keeps
// datasets and outputs. `?refresh=1` runs Python again (after adding an architecture).
import { json, withApi } from "@/lib/server/http";
import { loadUiSchema } from "@/lib/server/python";
import { settings } from "@/lib/server/settings";

export const dynamic = "force-dynamic";

export const GET = withApi(async (req) => {
  const refresh = new URL(req.url).searchParams.get("refresh") === "1";
  const data = await loadUiSchema(refresh);
  const s = settings();
  return json({
    ...data,
    datasets_dir: s.datasetsDir,
    output_dir: s.outputDir,
    max_concurrent_jobs: s.maxConcurrentJobs,
    max_upload_bytes: s.maxUploadBytes,
  });
});
