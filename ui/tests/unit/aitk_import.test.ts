// POST /api/jobs/import: ai-toolkit's UI-written FLUX.2 jobs (produced by the Python tests'
// transcription, tests/jobs/test_aitk_jobs.py) through the real `python -m toolkit.ui.aitk plan`:
// datasets linked by name from this UI's datasets folder, missing ones by key path, links chosen
// by dataset name, refused links, `${...}` refused, and the YAML queued with POST /api/jobs.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import YAML from "yaml";
import * as importRoute from "@/app/api/jobs/import/route";
import * as jobs from "@/app/api/jobs/route";
import { body, ctx, DEMO_DATASET, REPO_ROOT, request, useTempDataRoot } from "./helpers";

const data = useTempDataRoot();
/** ai-toolkit's UI jobs by id: ui-flux2-dev, ui-flux2-dev-edit, ui-klein-4b, ui-klein-9b, ui-klein-4b-lokr. */
let UI_JOBS: Record<string, { config: { name: string; process: Record<string, unknown>[] } }> = {};

function dataset(name: string, images = 2): string {
  const dir = path.join(data.root(), "datasets", name);
  fs.mkdirSync(dir, { recursive: true });
  for (let i = 0; i < images; i++) {
    for (const ext of [".png", ".txt"]) fs.copyFileSync(path.join(DEMO_DATASET, `robot_0${i}${ext}`), path.join(dir, `robot_0${i}${ext}`));
  }
  return dir;
}

async function post(json: unknown): Promise<{ status: number; data: any; text: string }> {
  const res = await importRoute.POST(request("/api/jobs/import", { method: "POST", json }), ctx());
  const text = await res.text();
  return { status: res.status, data: JSON.parse(text), text };
}

beforeAll(() => {
  const python = process.env.PYTHON!;
  const script =
    "import json,sys; sys.path.insert(0,'tests'); from jobs.test_aitk_jobs import UI_JOBS; print(json.dumps({k: f() for k, f in UI_JOBS.items()}))";
  UI_JOBS = JSON.parse(execFileSync(python, ["-c", script], { cwd: REPO_ROOT, encoding: "utf-8" }));
  expect(Object.keys(UI_JOBS)).toHaveLength(5);
  dataset("folder"); // ai-toolkit's UI default folder_path is /path/to/images/folder
});

describe("importing ai-toolkit's UI-written FLUX.2 jobs", () => {
  it("links the dataset named like the job's folder and converts every job", async () => {
    const datasetsDir = path.join(data.root(), "datasets");
    for (const [id, job] of Object.entries(UI_JOBS)) {
      const { status, data: plan } = await post({ text: JSON.stringify(job), filename: ".job_config.json" });
      expect(status, id).toBe(200);
      const folder = plan.folders.find((f: any) => f.path === "/path/to/images/folder");
      expect(folder, id).toMatchObject({
        kind: "dataset",
        how: "linked",
        target: path.join(datasetsDir, "folder"),
        dataset: "folder",
        keys: ["config.process[0].datasets[0].folder_path"],
      });
      expect(plan.yaml, id).toContain(`folder_path: ${path.join(datasetsDir, "folder")}`);
      expect(plan.yaml, id).not.toContain("/path/to/images/folder");
      expect(plan.yaml, id).toContain(`training_folder: ${path.join(data.root(), "output")}`);
      // ai-toolkit's UI bookkeeping is accepted as a no-op, with why
      expect(plan.ignored.map((p: any) => p.path), id).toContain("config.process[0].sqlite_db_path");
      if (id === "ui-flux2-dev-edit") continue;
      expect(plan.problems, id).toEqual([]);
      expect(plan.ok, id).toBe(true);
      expect(plan.name, id).toBe(job.config.name);
    }
  });

  it("reads the job as YAML too (ai-toolkit's Advanced view), whatever the file name says", async () => {
    const text = YAML.stringify(UI_JOBS["ui-klein-9b"]);
    for (const filename of ["job.yaml", "-x.yml", undefined]) {
      const { status, data: plan } = await post({ text, filename });
      expect(status, filename).toBe(200);
      expect(plan.ok, JSON.stringify(plan.problems)).toBe(true);
      expect(plan.folders.map((f: any) => [f.how, f.dataset]), filename).toEqual([["linked", "folder"]]);
    }
    // a name that is not a job name is refused before Python runs; a good one replaces config.name
    expect((await post({ text, name: "a/b" })).status).toBe(400);
    expect((await post({ text, name: "klein9" })).data.yaml).toContain("name: klein9\n");
  });

  it("reports a folder not in the datasets folder as missing, by key path", async () => {
    const { status, data: plan } = await post({ text: JSON.stringify(UI_JOBS["ui-flux2-dev-edit"]) });
    expect(status).toBe(200);
    expect(plan.ok).toBe(false);
    const control = plan.folders.find((f: any) => f.path === "/path/to/control_1");
    expect(control).toMatchObject({ kind: "control", how: "missing", target: null, dataset: null });
    const problem = plan.problems.find((p: any) => p.path === control.keys[0]);
    expect(problem.path).toBe("config.process[0].datasets[0].control_path[0]");
    expect(problem.message).toContain(path.join(data.root(), "datasets", "control_1"));
  });

  it("links a folder to the dataset the person chose, by name", async () => {
    dataset("refs_a");
    dataset("refs_b");
    const links = { "/path/to/control_1": "refs_a", "/path/to/control_2": "refs_b" };
    const { status, data: plan } = await post({ text: JSON.stringify(UI_JOBS["ui-flux2-dev-edit"]), links });
    expect(status).toBe(200);
    for (const [written, name] of Object.entries(links)) {
      const f = plan.folders.find((x: any) => x.path === written);
      expect(f).toMatchObject({ how: "linked", dataset: name, target: path.join(data.root(), "datasets", name) });
    }
    expect(plan.problems.filter((p: any) => p.path.includes("control_path"))).toEqual([]);
    expect(plan.yaml).toContain(path.join(data.root(), "datasets", "refs_a"));
    // the sample reference images are still missing: each named by its key path
    expect(plan.problems.map((p: any) => p.path)).toContain("config.process[0].sample.samples[0].ctrl_img[0]");
  });

  it("refuses a link that is not a dataset name (400) and a malformed request", async () => {
    const text = JSON.stringify(UI_JOBS["ui-flux2-dev-edit"]);
    for (const bad of ["../x", "/etc", path.join(data.root(), "datasets", "folder"), "..", "no_such_dataset"]) {
      const { status, data: res } = await post({ text, links: { "/path/to/control_1": bad } });
      expect(status, bad).toBe(400);
      expect(res.error, bad).toMatch(/dataset/);
    }
    expect((await post({ text: "" })).status).toBe(400);
    expect((await post({ yaml: text })).status).toBe(400);
    expect((await post({ text, links: ["/path/to/control_1"] })).status).toBe(400);
    expect((await post({ text, name: "../escape" })).status).toBe(400);
    expect((await post({ text, filename: 7 })).status).toBe(400);
  });

  it("refuses ${...} by key path and never answers with the server's environment", async () => {
    process.env.AITK_IMPORT_SECRET = "s3cret-import-value-91f2";
    try {
      const job = structuredClone(UI_JOBS["ui-klein-4b"]);
      const ds = (job.config.process[0].datasets as Record<string, unknown>[])[0];
      ds.folder_path = "${HOME}/images/folder";
      ds.default_caption = "${AITK_IMPORT_SECRET}";
      const { status, data: plan, text } = await post({ text: JSON.stringify(job) });
      expect(status).toBe(200);
      expect(plan.ok).toBe(false);
      const paths = plan.problems.map((p: any) => p.path);
      expect(paths).toContain("config.process[0].datasets[0].folder_path");
      expect(paths).toContain("config.process[0].datasets[0].default_caption");
      expect(text).not.toContain("s3cret-import-value-91f2");
      if (process.env.HOME && process.env.HOME.length > 1) expect(text).not.toContain(`"${process.env.HOME}/images`);
    } finally {
      delete process.env.AITK_IMPORT_SECRET;
    }
  });

  it("queues the imported YAML with POST /api/jobs (201)", async () => {
    const { data: plan } = await post({ text: JSON.stringify(UI_JOBS["ui-klein-4b-lokr"]), name: "imported_lokr" });
    expect(plan.ok).toBe(true);
    expect(plan.name).toBe("imported_lokr");
    const res = await jobs.POST(request("/api/jobs", { method: "POST", json: { name: plan.name, yaml: plan.yaml } }), ctx());
    expect(res.status, JSON.stringify(await res.clone().json())).toBe(201);
    const { job } = await body(res);
    expect(job).toMatchObject({ name: "imported_lokr", state: "queued" });
    const saved = fs.readFileSync(path.join(data.root(), "jobs", "imported_lokr", "config.yaml"), "utf-8");
    expect(saved).toContain(path.join(data.root(), "datasets", "folder"));
  });
});
