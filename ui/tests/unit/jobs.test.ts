// Job routes: presets from Python, validation by key path, queueing, stop / resume / delete.
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { getDb } from "@/lib/server/db";
import { beforeAll, describe, expect, it } from "vitest";
import * as jobOne from "@/app/api/jobs/[id]/route";
import * as resume from "@/app/api/jobs/[id]/resume/route";
import * as stop from "@/app/api/jobs/[id]/stop/route";
import * as jobs from "@/app/api/jobs/route";
import * as validate from "@/app/api/jobs/validate/route";
import * as schemaRoute from "@/app/api/schema/route";
import * as files from "@/app/api/files/[root]/[...path]/route";
import { fieldSpec, parseFieldText, sectionFields } from "@/lib/schema";
import type { Preset, UiSchema } from "@/lib/types";
import { body, buildYaml, ctx, demoDataset, request, useTempDataRoot } from "./helpers";

const data = useTempDataRoot();
let ui: UiSchema & { datasets_dir: string; output_dir: string };
let tiny: Preset;

/** The tiny preset as the new-job form builds it (the trainer's preset builder). */
let tinyYaml: (name: string) => string;

beforeAll(async () => {
  const res = await schemaRoute.GET(request("/api/schema"), ctx());
  expect(res.status).toBe(200);
  ui = await body(res);
  tiny = ui.presets.find((p) => p.name_or_path === "tiny:flux2")!;
  const base = YAML.parse(await buildYaml(tiny.id, "base", { datasets: [demoDataset()], resolutions: [64], prompts: ["a [trigger] --seed 7 --w 64"] }));
  tinyYaml = (name) => YAML.stringify({ ...base, config: { ...base.config, name } });
});

describe("schema from Python", () => {
  it("lists the shipped presets with their whole configs and the architectures", () => {
    const archs = ui.presets.map((p) => p.arch).sort();
    expect(archs).toEqual(expect.arrayContaining(["flux", "flux2", "flux2_klein_4b", "flux2_klein_9b"]));
    expect(ui.presets.map((p) => p.name_or_path)).toEqual(
      expect.arrayContaining(["black-forest-labs/FLUX.2-dev", "black-forest-labs/FLUX.1-schnell", "tiny:flux2"]),
    );
    expect(tiny.config).toHaveProperty("config.process.0.model.arch", "flux2");
    expect(Object.keys(ui.archs)).toEqual(expect.arrayContaining(["flux2", "flux2_klein_4b"]));
    expect(ui.datasets_dir).toBe(path.join(data.root(), "datasets"));
  });

  it("turns the JSON schema into form fields (choices and defaults from Python)", () => {
    const qtype = fieldSpec(ui.schema, "model.qtype")!;
    expect(qtype.kind).toBe("enum");
    expect(qtype.options).toEqual(expect.arrayContaining(["qfloat8", "qint4"]));
    expect(fieldSpec(ui.schema, "train.steps")!.kind).toBe("integer");
    expect(fieldSpec(ui.schema, "device")!.default).toBe("cuda:0");
    expect(fieldSpec(ui.schema, "trigger_word")!.nullable).toBe(true);
    expect(fieldSpec(ui.schema, "datasets.cache_latents_to_disk")!.kind).toBe("boolean");
    const offload = fieldSpec(ui.schema, "model.layer_offloading")!;
    expect(offload).toMatchObject({ kind: "enum", options: ["false", "true", "auto"], booleanChoices: true });
    expect(parseFieldText(offload, "true", YAML.parse)).toBe(true);
    expect(parseFieldText(offload, "auto", YAML.parse)).toBe("auto");
    expect(parseFieldText(fieldSpec(ui.schema, "train.lr")!, "2e-3", YAML.parse)).toBe(0.002);
    expect(parseFieldText(fieldSpec(ui.schema, "trigger_word")!, "", YAML.parse)).toBeNull();
    expect(sectionFields(ui.schema, "train").map((f) => f.key)).toEqual(expect.arrayContaining(["lr", "optimizer", "steps"]));
  });
});

describe("validation before queueing", () => {
  it("passes a preset with the user's fields", async () => {
    const res = await validate.POST(request("/api/jobs/validate", { method: "POST", json: { name: "ok_job", yaml: tinyYaml("ok_job") } }), ctx());
    const result = await body(res);
    expect(result.problems).toEqual([]);
    expect(result.ok).toBe(true);
    // the UI owns the name and where outputs go
    const config = YAML.parse(result.yaml);
    expect(config.config.name).toBe("ok_job");
    expect(config.config.process[0].training_folder).toBe(path.join(data.root(), "output"));
  });

  it("reports the trainer's problems by key path", async () => {
    const config = YAML.parse(tinyYaml("bad_job"));
    config.config.process[0].model.quantise = true;
    config.config.process[0].train.steps = 0;
    const res = await jobs.POST(request("/api/jobs", { method: "POST", json: { name: "bad_job", yaml: YAML.stringify(config) } }), ctx());
    expect(res.status).toBe(422);
    const { problems } = await body(res);
    const paths = problems.map((p: { path: string }) => p.path);
    expect(paths).toContain("config.process[0].model.quantise");
    expect(paths).toContain("config.process[0].train.steps");
    expect(problems.find((p: { path: string }) => p.path.endsWith("quantise")).message).toMatch(/quantize/);
    expect((await body(await jobs.GET(request("/api/jobs"), ctx()))).jobs).toEqual([]);
  });

  it("reports YAML syntax errors, non-training jobs and bad names", async () => {
    const syntax = await body(await validate.POST(request("/api/jobs/validate", { method: "POST", json: { name: "x", yaml: "job: [unclosed" } }), ctx()));
    expect(syntax.ok).toBe(false);
    expect(syntax.problems[0].path).toBe("yaml");
    const gen = await body(await validate.POST(request("/api/jobs/validate", { method: "POST", json: { name: "x", yaml: "job: generate\nconfig: {name: x, process: []}" } }), ctx()));
    expect(gen.problems.map((p: { path: string }) => p.path)).toEqual(["job", "config.process"]);
    const badName = await validate.POST(request("/api/jobs/validate", { method: "POST", json: { name: "../x", yaml: tinyYaml("x") } }), ctx());
    expect(badName.status).toBe(400);
  });
});

describe("queue, stop, resume, delete", () => {
  let id = 0;

  it("queues a valid job and stores its file", async () => {
    const res = await jobs.POST(request("/api/jobs", { method: "POST", json: { name: "demo", yaml: tinyYaml("demo"), preset: tiny.id } }), ctx());
    expect(res.status).toBe(201);
    const { job } = await body(res);
    id = job.id;
    expect(job).toMatchObject({ name: "demo", state: "queued", arch: "flux2", device: "cpu", preset: tiny.id });
    expect(fs.existsSync(path.join(data.root(), "jobs", "demo", "config.yaml"))).toBe(true);
    const list = await body(await jobs.GET(request("/api/jobs"), ctx()));
    expect(list.jobs).toHaveLength(1);
    expect(list.jobs[0].queue_position).toBe(1);
  });

  it("refuses a second job with the same name", async () => {
    const res = await jobs.POST(request("/api/jobs", { method: "POST", json: { name: "demo", yaml: tinyYaml("demo") } }), ctx());
    expect(res.status).toBe(422);
    expect((await body(res)).problems[0].path).toBe("config.name");
  });

  it("shows a job's detail", async () => {
    const res = await jobOne.GET(request(`/api/jobs/${id}`), ctx({ id: String(id) }));
    const { job } = await body(res);
    expect(job.config_yaml).toContain("tiny:flux2");
    expect(job).toMatchObject({ samples: [], loras: [], loss_curve: [], log_tail: [], queue_position: 1 });
    expect((await jobOne.GET(request("/api/jobs/999"), ctx({ id: "999" }))).status).toBe(404);
    expect((await jobOne.GET(request("/api/jobs/abc"), ctx({ id: "abc" }))).status).toBe(404);
  });

  it("stops a queued job, resumes it, and refuses what makes no sense", async () => {
    const stopped = await body(await stop.POST(request(`/api/jobs/${id}/stop`, { method: "POST" }), ctx({ id: String(id) })));
    expect(stopped.job.state).toBe("stopped");
    expect((await stop.POST(request(`/api/jobs/${id}/stop`, { method: "POST" }), ctx({ id: String(id) }))).status).toBe(409);
    const resumed = await body(await resume.POST(request(`/api/jobs/${id}/resume`, { method: "POST" }), ctx({ id: String(id) })));
    expect(resumed.job.state).toBe("queued");
    expect((await resume.POST(request(`/api/jobs/${id}/resume`, { method: "POST" }), ctx({ id: String(id) }))).status).toBe(409);
  });

  it("serves a job's outputs, LoRA files as attachments", async () => {
    const folder = path.join(data.root(), "output", "demo");
    fs.mkdirSync(path.join(folder, "samples"), { recursive: true });
    fs.writeFileSync(path.join(folder, "demo.safetensors"), "lora");
    fs.writeFileSync(path.join(folder, "demo_000000005.safetensors"), "lora5");
    fs.writeFileSync(path.join(folder, "samples", "000000005_0.jpg"), Buffer.from([0xff, 0xd8, 0xff, 0xe0]));
    fs.writeFileSync(path.join(folder, "demo_000000005.state.pt"), "optimizer");
    const lora = await files.GET(request("/api/files/output/demo/demo.safetensors"), ctx({ root: "output", path: ["demo", "demo.safetensors"] }));
    expect(lora.status).toBe(200);
    expect(lora.headers.get("content-disposition")).toBe('attachment; filename="demo.safetensors"');
    expect(await lora.text()).toBe("lora");
    const state = await files.GET(request("/api/files/output/demo/x"), ctx({ root: "output", path: ["demo", "demo_000000005.state.pt"] }));
    expect(state.status).toBe(403);
    const { job } = await body(await jobOne.GET(request(`/api/jobs/${id}`), ctx({ id: String(id) })));
    expect(job.loras.map((l: { file: string }) => l.file)).toEqual(["demo.safetensors", "demo_000000005.safetensors"]);
    // the caption as the trainer uses the prompt (toolkit.ui.samples, recorded at queue time): trigger in, flags apart
    expect(job.samples).toEqual([
      {
        file: "000000005_0.jpg",
        url: "/api/files/output/demo/samples/000000005_0.jpg",
        step: 5,
        index: 0,
        prompt: "a [trigger] --seed 7 --w 64",
        caption: "a r0b0t",
        flags: { seed: 7, width: 64 },
      },
    ]);
  });

  it("deletes a job with its files (and refuses while it runs)", async () => {
    const res = await jobOne.DELETE(request(`/api/jobs/${id}`, { method: "DELETE" }), ctx({ id: String(id) }));
    expect(res.status).toBe(200);
    expect(fs.existsSync(path.join(data.root(), "output", "demo"))).toBe(false);
    expect(fs.existsSync(path.join(data.root(), "jobs", "demo"))).toBe(false);
    expect((await body(await jobs.GET(request("/api/jobs"), ctx()))).jobs).toEqual([]);
  });

  it("bulk-deletes the jobs asked for, refusing running ones and unknown ids", async () => {
    const ids: number[] = [];
    for (const name of ["bulk_a", "bulk_b", "bulk_c"]) {
      const res = await jobs.POST(request("/api/jobs", { method: "POST", json: { name, yaml: tinyYaml(name) } }), ctx());
      expect(res.status).toBe(201);
      ids.push((await body(res)).job.id);
    }
    getDb().prepare("UPDATE jobs SET state = 'running' WHERE id = ?").run(ids[2]);
    const res = await jobs.DELETE(request("/api/jobs", { method: "DELETE", json: { ids: [ids[0], ids[1], ids[2], 9999] } }), ctx());
    expect(res.status).toBe(200);
    const result = await body(res);
    expect(result.deleted).toEqual([ids[0], ids[1]]);
    expect(result.refused.map((r: { id: number }) => r.id)).toEqual([ids[2], 9999]);
    expect(result.refused[0].reason).toMatch(/running: stop it first/);
    expect(fs.existsSync(path.join(data.root(), "jobs", "bulk_a"))).toBe(false);
    expect((await body(await jobs.GET(request("/api/jobs"), ctx()))).jobs.map((j: { name: string }) => j.name)).toEqual(["bulk_c"]);
    for (const bad of [[], "1", [1.5], null]) {
      expect((await jobs.DELETE(request("/api/jobs", { method: "DELETE", json: { ids: bad } }), ctx())).status).toBe(400);
    }
    getDb().prepare("UPDATE jobs SET state = 'stopped' WHERE id = ?").run(ids[2]);
  });
});
