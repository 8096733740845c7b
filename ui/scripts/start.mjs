#!/usr/bin/env node
// `npm start`: serve the built UI (run `npm run build` first, or `npm run build_and_start`).
//   HOST (default 127.0.0.1), PORT (default 8675), AI_TOOLKIT_AUTH (required off loopback),
//   DATA_ROOT, PYTHON, MAX_CONCURRENT_JOBS: see ui/README.md.
// One process: Next.js serves pages and API routes, and the job worker runs inside it
// (started by src/instrumentation.ts). Training processes are detached and outlive it.
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import next from "next";
import { bindSettings } from "./bind.mjs";

const uiDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
process.chdir(uiDir);

let bind;
try {
  bind = bindSettings(process.env);
} catch (err) {
  console.error(`error: ${err.message}`);
  process.exit(1);
}
// The server side reads these (boot.ts re-checks them with the same rule).
process.env.HOST = bind.host;
process.env.PORT = String(bind.port);

const app = next({ dev: false, dir: uiDir, hostname: bind.host, port: bind.port });
const handle = app.getRequestHandler();
await app.prepare();

const server = http.createServer((req, res) => handle(req, res));
server.on("error", (err) => {
  console.error(`error: cannot listen on ${bind.host}:${bind.port}: ${err.message}`);
  process.exit(1);
});
server.listen(bind.port, bind.host, () => {
  const addr = server.address();
  const shown = bind.host.includes(":") ? `[${bind.host}]` : bind.host;
  console.log(`FLUX LoRA UI ready on http://${shown}:${addr.port}`);
});

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    // Training jobs are separate process groups: they keep running and are re-attached on restart.
    server.close();
    process.exit(0);
  });
}
