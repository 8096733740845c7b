// POST {text, filename?, name?, links?: {path as written: dataset name}}: an ai-toolkit job file
// -> {ok, name, yaml, folders, ignored, problems} (python -m toolkit.ui.aitk plan). 200 with ok
// false when the job has problems; 400 for a malformed request. Nothing stored: the YAML is
// queued with POST /api/jobs, which checks it again.
import { planImport, parseImportRequest } from "@/lib/server/aitk";
import { json, readJson, withApi } from "@/lib/server/http";

export const dynamic = "force-dynamic";

export const POST = withApi(async (req) => json(await planImport(parseImportRequest(await readJson(req)))));
