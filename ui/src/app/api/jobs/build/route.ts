// POST {preset, name, values, datasets, resolutions, prompts}: the job config the form makes
// (the trainer's preset builder) -> {config, yaml, edit}. Nothing stored.
import { buildFromForm } from "@/lib/server/build";
import { json, readJson, withApi } from "@/lib/server/http";

export const dynamic = "force-dynamic";

export const POST = withApi(async (req) => json(await buildFromForm(await readJson(req))));
