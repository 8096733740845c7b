// The attempts a page on another site, a wrong or missing token, or a hostile job file would make,
// against every route of the Next.js UI on 127.0.0.1, and the refusal each gets: foreign Host,
// missing / wrong token, traversal in every path field of a job and in every route, symlinks,
// oversized and chunked uploads, disguised files, YAML bombs, ${ENV} expansion, concurrent
// submissions. (auth.test.ts covers sessions and the bind rule; paths.test.ts the path guard itself.)
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import YAML from "yaml";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import * as datasetOne from "@/app/api/datasets/[name]/route";
import * as caption from "@/app/api/datasets/[name]/caption/route";
import * as image from "@/app/api/datasets/[name]/image/route";
import * as upload from "@/app/api/datasets/[name]/upload/route";
import * as datasets from "@/app/api/datasets/route";
import * as files from "@/app/api/files/[root]/[...path]/route";
import * as jobOne from "@/app/api/jobs/[id]/route";
import * as jobs from "@/app/api/jobs/route";
import * as validate from "@/app/api/jobs/validate/route";
import * as schemaRoute from "@/app/api/schema/route";
import { body, buildYaml, ctx, demoDataset, ORIGIN, PNG_BYTES, request, UI_DIR, uploadForm, useTempDataRoot } from "./helpers";

const data = useTempDataRoot();
const TOKEN = "correct-horse-battery-staple";
let tinyId = "";
let base: Record<string, any>;
let outside = "";

function routeFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    return e.isDirectory() ? routeFiles(full) : e.name === "route.ts" ? [full] : [];
  });
}
const API_DIR = path.join(UI_DIR, "src/app/api");
const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"] as const;

beforeAll(async () => {
  const ui = await body(await schemaRoute.GET(request("/api/schema"), ctx()));
  tinyId = ui.presets.find((p: { name_or_path: string }) => p.name_or_path === "tiny:flux2").id;
  base = YAML.parse(await buildYaml(tinyId, "base", { datasets: [demoDataset()], resolutions: [64] }));
  outside = fs.mkdtempSync(path.join(os.tmpdir(), "aitk-outside-"));
  fs.writeFileSync(path.join(outside, "secret.png"), PNG_BYTES);
  fs.writeFileSync(path.join(outside, "secret.txt"), "secret");
}, 120_000);

afterEach(() => {
  delete process.env.AI_TOOLKIT_AUTH;
  delete process.env.MAX_UPLOAD_MB;
});

/** The tiny job with `edit(process)` applied, as YAML. */
function jobYaml(name: string, edit: (proc: Record<string, any>, config: Record<string, any>) => void = () => {}): string {
  const config = structuredClone(base);
  config.config.name = name;
  edit(config.config.process[0], config);
  return YAML.stringify(config);
}

async function check(name: string, yaml: string): Promise<{ status: number; problems: { path: string; message: string }[] }> {
  const res = await validate.POST(request("/api/jobs/validate", { method: "POST", json: { name, yaml } }), ctx());
  const data = await body(res);
  return { status: res.status, problems: data.problems ?? [] };
}

describe("who may ask", () => {
  it("every route refuses a foreign Host (DNS rebinding) and, with a token, a missing or wrong one", async () => {
    let checked = 0;
    for (const file of routeFiles(API_DIR)) {
      const mod = await import(file);
      const url = "/api/" + path.relative(API_DIR, path.dirname(file)).replace(/\[\.\.\.(\w+)\]/g, "x/y").replace(/\[(\w+)\]/g, "1");
      const params = ctx({ id: "1", name: "x", root: "output", path: ["x", "y"] });
      for (const method of METHODS) {
        if (!mod[method]) continue;
        const foreign = await mod[method](request(url, { method, headers: { host: "attacker.example:8675" } }), params);
        expect(foreign.status, `${method} ${url} foreign host`).toBe(403);
        if (!url.startsWith("/api/auth")) {
          process.env.AI_TOOLKIT_AUTH = TOKEN;
          expect((await mod[method](request(url, { method }), params)).status, `${method} ${url} no token`).toBe(401);
          const wrong = await mod[method](request(url, { method, headers: { authorization: "Bearer wrong-token-123" } }), params);
          expect(wrong.status, `${method} ${url} wrong token`).toBe(401);
          const cookie = await mod[method](request(url, { method, headers: { cookie: `aitk_session=${"A".repeat(43)}` } }), params);
          expect(cookie.status, `${method} ${url} forged session`).toBe(401);
          delete process.env.AI_TOOLKIT_AUTH;
        }
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(18);
  });

  it("state changes from another origin are refused, even with the token", async () => {
    process.env.AI_TOOLKIT_AUTH = TOKEN;
    const res = await jobs.DELETE(
      request("/api/jobs", { method: "DELETE", json: { ids: [1] }, headers: { origin: "http://attacker.example", authorization: `Bearer ${TOKEN}` } }),
      ctx(),
    );
    expect(res.status).toBe(403);
  });
});

describe("every path a job names stays inside DATA_ROOT (422 naming the key)", () => {
  const cases: [string, (p: Record<string, any>) => void, string][] = [
    ["datasets[0].folder_path", (p) => (p.datasets[0].folder_path = "/etc"), "config.process[0].datasets[0].folder_path"],
    ["relative traversal", (p) => (p.datasets[0].folder_path = "../../../../../../etc"), "config.process[0].datasets[0].folder_path"],
    ["home", (p) => (p.datasets[0].folder_path = "~/.ssh"), "config.process[0].datasets[0].folder_path"],
    ["control_path", (p) => (p.datasets[0].control_path = "/tmp"), "config.process[0].datasets[0].control_path"],
    ["sample.ctrl_img", (p) => (p.sample.ctrl_img = "/etc/passwd"), "config.process[0].sample.ctrl_img"],
    ["model.vae_path", (p) => (p.model.vae_path = "/root/vae.safetensors"), "config.process[0].model.vae_path"],
    ["model.lora_path", (p) => (p.model.lora_path = "/root/x.safetensors"), "config.process[0].model.lora_path"],
    ["model.name_or_path", (p) => (p.model.name_or_path = "/"), "config.process[0].model.name_or_path"],
  ];
  for (const [label, edit, key] of cases) {
    it(label, async () => {
      const { status, problems } = await check("trav", jobYaml("trav", edit));
      expect(status).toBe(200);
      const problem = problems.find((p) => p.path === key);
      expect(problem, JSON.stringify(problems)).toBeDefined();
      expect(problem!.message).toMatch(/outside/);
      const queued = await jobs.POST(request("/api/jobs", { method: "POST", json: { name: "trav", yaml: jobYaml("trav", edit) } }), ctx());
      expect(queued.status).toBe(422);
    });
  }

  it("a dataset folder that is a symlink to outside is refused; the real folder passes", async () => {
    fs.symlinkSync(outside, path.join(data.root(), "datasets", "linked"));
    const linked = await check("sym", jobYaml("sym", (p) => (p.datasets[0].folder_path = path.join(data.root(), "datasets", "linked"))));
    expect(linked.problems.map((p) => p.path)).toContain("config.process[0].datasets[0].folder_path");
    const ok = await check("sym", jobYaml("sym"));
    expect(ok.problems).toEqual([]);
  });

  it("the bundled demo dataset is allowed (the tiny preset without a ticked dataset), its parent is not", async () => {
    const demo = await check("demo", jobYaml("demo", (p) => (p.datasets[0].folder_path = "config/examples/demo_dataset")));
    expect(demo.problems).toEqual([]);
    const up = await check("demo", jobYaml("demo", (p) => (p.datasets[0].folder_path = "config/examples/..")));
    expect(up.problems.map((p) => p.path)).toContain("config.process[0].datasets[0].folder_path");
  });

  it("hub repo ids and tiny: ids are allowed for the model", async () => {
    const hub = await check("hub", jobYaml("hub", (p) => (p.model.name_or_path = "black-forest-labs/FLUX.2-dev")));
    expect(hub.problems.filter((p) => p.path === "config.process[0].model.name_or_path")).toEqual([]);
  });

  it("the UI forces training_folder and config.name, whatever the YAML says", async () => {
    const yaml = jobYaml("forced", (p, c) => {
      p.training_folder = "/tmp/elsewhere";
      c.config.name = "../../escape";
    });
    const res = await validate.POST(request("/api/jobs/validate", { method: "POST", json: { name: "forced", yaml } }), ctx());
    const result = await body(res);
    expect(result.ok).toBe(true);
    const config = YAML.parse(result.yaml);
    expect(config.config.name).toBe("forced");
    expect(config.config.process[0].training_folder).toBe(path.join(data.root(), "output"));
  });
});

describe("no environment expansion", () => {
  it("${...} anywhere is refused by key path; nothing is stored", async () => {
    process.env.AITK_SECRET_FOR_TEST = "hunter2";
    for (const [edit, key] of [
      [(p: Record<string, any>) => (p.trigger_word = "${AITK_SECRET_FOR_TEST}"), "config.process[0].trigger_word"],
      [(p: Record<string, any>) => (p.sample.prompts = ["a ${HOME} photo"]), "config.process[0].sample.prompts[0]"],
    ] as const) {
      const res = await jobs.POST(request("/api/jobs", { method: "POST", json: { name: "envjob", yaml: jobYaml("envjob", edit) } }), ctx());
      expect(res.status).toBe(422);
      const result = await body(res);
      expect(result.problems.map((p: { path: string }) => p.path)).toContain(key);
      expect(JSON.stringify(result)).not.toContain("hunter2");
    }
    expect(fs.existsSync(path.join(data.root(), "jobs", "envjob"))).toBe(false);
    delete process.env.AITK_SECRET_FOR_TEST;
  });

  it("the job page serves the submitted file, never an expanded copy", async () => {
    const yaml = jobYaml("served", (p) => (p.sample.prompts = ["a [trigger] at $HOME, literally"]));
    const res = await jobs.POST(request("/api/jobs", { method: "POST", json: { name: "served", yaml } }), ctx());
    expect(res.status).toBe(201);
    const id = String((await body(res)).job.id);
    const { job } = await body(await jobOne.GET(request(`/api/jobs/${id}`), ctx({ id })));
    expect(job.config_yaml).toContain("a [trigger] at $HOME, literally");
    expect(job.config_yaml).not.toContain(os.homedir() + ", literally");
  });
});

describe("hostile job files", () => {
  it("a billion-laughs YAML is a 422 naming the YAML, fast", async () => {
    const lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"];
    const names = "abcdefghi";
    for (let i = 1; i < names.length; i++) lines.push(`${names[i]}: &${names[i]} [${Array(9).fill(`*${names[i - 1]}`).join(", ")}]`);
    const started = Date.now();
    const res = await jobs.POST(request("/api/jobs", { method: "POST", json: { name: "bomb", yaml: lines.join("\n") } }), ctx());
    expect(res.status).toBe(422);
    expect((await body(res)).problems[0]).toMatchObject({ path: "yaml" });
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("a job file over the size limit is refused, so is a JSON body over the limit (413)", async () => {
    const big = await jobs.POST(request("/api/jobs", { method: "POST", json: { name: "huge", yaml: `x: "${"a".repeat(1024 * 1024 + 10)}"` } }), ctx());
    expect(big.status).toBe(422);
    expect((await body(big)).problems[0].message).toMatch(/at most/);
    const tooBig = await jobs.POST(request("/api/jobs", { method: "POST", json: { name: "huge", yaml: "a".repeat(3 * 1024 * 1024) } }), ctx());
    expect(tooBig.status).toBe(413);
  });

  it("concurrent submissions of one name: exactly one is queued", async () => {
    const yaml = jobYaml("race");
    const results = await Promise.all(
      Array.from({ length: 4 }, () => jobs.POST(request("/api/jobs", { method: "POST", json: { name: "race", yaml } }), ctx())),
    );
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).toEqual([201, 422, 422, 422]);
    expect(fs.readdirSync(path.join(data.root(), "jobs")).filter((f) => f.startsWith("race"))).toEqual(["race"]);
  });
});

describe("uploads", () => {
  async function post(form: FormData | ReadableStream<Uint8Array>, headers: Record<string, string> = {}) {
    const init: RequestInit & { duplex?: string } = { method: "POST", body: form as BodyInit, headers };
    if (form instanceof ReadableStream) init.duplex = "half";
    return upload.POST(new Request(`${ORIGIN}/api/datasets/up/upload`, { ...init, headers: { host: "127.0.0.1:8675", ...headers } }), ctx({ name: "up" }));
  }

  beforeAll(async () => {
    await datasets.POST(request("/api/datasets", { method: "POST", json: { name: "up" } }), ctx());
  });

  it("a chunked upload without Content-Length is cut off at the limit (413), not read to the end", async () => {
    process.env.MAX_UPLOAD_MB = "1"; // 10 files of 1 MiB + 1 MiB of form overhead per request
    let sent = 0;
    const chunk = new Uint8Array(256 * 1024);
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 200 * 1024 * 1024) return controller.close();
        sent += chunk.byteLength;
        controller.enqueue(chunk);
      },
    });
    const res = await post(stream, { "content-type": "multipart/form-data; boundary=x" });
    expect(res.status).toBe(413);
    expect(sent).toBeLessThan(13 * 1024 * 1024);
    expect(fs.readdirSync(path.join(data.root(), "datasets", "up"))).toEqual([]);
  });

  it("a declared oversize body is refused before it is read", async () => {
    const res = await post(uploadForm([{ name: "a.png", data: PNG_BYTES }]), { "content-length": String(10 * 1024 * 1024 * 1024) });
    expect(res.status).toBe(413);
  });

  it("files disguised as images (right signature, anything after) are refused; real ones kept", async () => {
    const html = new TextEncoder().encode("<html><script>fetch('/api/jobs')</script></html>");
    const withSig = (sig: number[]) => new Uint8Array([...sig, ...html]);
    const res = await post(
      uploadForm([
        { name: "real.png", data: PNG_BYTES },
        { name: "page.png", data: withSig([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]) },
        { name: "page.jpg", data: withSig([0xff, 0xd8, 0xff, 0xe0]) },
        { name: "page.webp", data: withSig([0x52, 0x49, 0x46, 0x46, 0, 0, 0, 0, 0x57, 0x45, 0x42, 0x50]) },
        { name: "cut.png", data: PNG_BYTES.subarray(0, PNG_BYTES.length - 64) },
        { name: "page.html", data: html },
      ]),
    );
    const result = await body(res);
    expect(result.saved).toEqual(["real.png"]);
    expect(result.rejected.map((r: { file: string }) => r.file).sort()).toEqual(["cut.png", "page.html", "page.jpg", "page.png", "page.webp"]);
    expect(result.rejected.find((r: { file: string }) => r.file === "page.png").reason).toMatch(/not a png image/);
    expect(fs.readdirSync(path.join(data.root(), "datasets", "up")).sort()).toEqual(["real.png"]);
    expect(fs.existsSync(path.join(data.root(), ".staging")) ? fs.readdirSync(path.join(data.root(), ".staging")) : []).toEqual([]);
  });
});

describe("traversal in every route", () => {
  const dsParams = ["..", "../x", "a/b", "/etc", ".hidden", "%2e%2e", "x\u0000y"];
  it("dataset names", async () => {
    for (const name of dsParams) {
      const p = ctx({ name });
      const statuses = [
        (await datasetOne.GET(request("/api/datasets/x"), p)).status,
        (await datasetOne.DELETE(request("/api/datasets/x", { method: "DELETE" }), p)).status,
        (await upload.POST(request("/api/datasets/x/upload", { method: "POST", body: uploadForm([{ name: "a.png", data: PNG_BYTES }]) }), p)).status,
        (await caption.PUT(request("/api/datasets/x/caption", { method: "PUT", json: { image: "a.png", caption: "x" } }), p)).status,
        (await image.DELETE(request("/api/datasets/x/image?file=a.png", { method: "DELETE" }), p)).status,
      ];
      for (const s of statuses) expect([400, 403, 404], `${name}: ${statuses}`).toContain(s);
    }
  });

  it("file names inside a dataset", async () => {
    for (const file of ["../../secret.png", "/etc/passwd", "control/../../x.png", "..%2Fx.png"]) {
      const del = await image.DELETE(request(`/api/datasets/up/image?file=${encodeURIComponent(file)}`, { method: "DELETE" }), ctx({ name: "up" }));
      expect([400, 403, 404], file).toContain(del.status);
      const cap = await caption.PUT(request("/api/datasets/up/caption", { method: "PUT", json: { image: file, caption: "x" } }), ctx({ name: "up" }));
      expect([400, 403, 404], file).toContain(cap.status);
    }
  });

  it("served files", async () => {
    fs.symlinkSync(path.join(outside, "secret.png"), path.join(data.root(), "datasets", "up", "leak.png"));
    for (const [root, segments] of [
      ["datasets", ["..", "ui.sqlite"]],
      ["datasets", ["up", "..", "..", "ui.sqlite"]],
      ["output", ["..", "jobs", "race", "config.yaml"]],
      ["jobs", ["race", "config.yaml"]],
      ["datasets", ["up", "leak.png"]],
      ["datasets", ["/etc", "passwd"]],
      ["datasets", ["up%2F..", "x.png"]],
    ] as [string, string[]][]) {
      const res = await files.GET(request(`/api/files/${root}/${segments.join("/")}`), ctx({ root, path: segments }));
      expect([400, 403, 404], `${root}/${segments.join("/")}`).toContain(res.status);
    }
  });

  it("job ids", async () => {
    for (const id of ["../1", "1/../2", "-1", "1e3", "0x1"]) {
      expect([400, 404], id).toContain((await jobOne.GET(request("/api/jobs/x"), ctx({ id }))).status);
    }
  });
});
