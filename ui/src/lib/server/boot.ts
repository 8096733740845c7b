// Server start (from src/instrumentation.ts, and lazily from the first API request): check the
// bind rule, open and migrate the database, start the worker, cache the Python schema.
import { bindSettings } from "../../../scripts/bind.mjs";
import { getDb } from "./db";
import { loadUiSchema } from "./python";
import { ensureDataDirs, settings } from "./settings";
import { startWorker } from "./worker";

const KEY = Symbol.for("aitk.booted");

export function boot(): void {
  const g = globalThis as unknown as Record<symbol, boolean | undefined>;
  getDb(); // per DATA_ROOT: cheap when open
  if (g[KEY]) return;
  g[KEY] = true;
  bindSettings(process.env); // throws on a non-loopback HOST without AI_TOOLKIT_AUTH
  const s = settings();
  ensureDataDirs(s);
  if (s.workerEnabled) {
    startWorker();
    console.log(`[worker] started: up to ${s.maxConcurrentJobs} job(s) at a time, data in ${s.dataRoot}`);
  }
  loadUiSchema().catch((err) => console.error("[schema]", err instanceof Error ? err.message : err));
}
