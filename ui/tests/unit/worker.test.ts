// The queue and worker against a fake trainer (tests/fixtures/fake_repo/run.py): one job at a
// time per device, state from progress.jsonl, stop = SIGTERM, resume, a process that dies without
// an `end` event, and re-attaching to a trainer that a previous server started.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import * as jobOne from "@/app/api/jobs/[id]/route";
import * as resume from "@/app/api/jobs/[id]/resume/route";
import * as stop from "@/app/api/jobs/[id]/stop/route";
import * as jobs from "@/app/api/jobs/route";
import * as schemaRoute from "@/app/api/schema/route";
import { getDb } from "@/lib/server/db";
import { getJob, jobPaths } from "@/lib/server/jobs";
import { tick } from "@/lib/server/worker";
import type { JobDetail, Preset } from "@/lib/types";
import { body, buildYaml, ctx, demoDataset, REPO_ROOT, request, UI_DIR, useTempDataRoot } from "./helpers";

useTempDataRoot();
const FAKE_REPO = path.join(UI_DIR, "tests/fixtures/fake_repo");
let tiny: Preset;

beforeAll(async () => {
  const ui = await body(await schemaRoute.GET(request("/api/schema"), ctx()));
  tiny = ui.presets.find((p: Preset) => p.name_or_path === "tiny:flux2");
});

afterEach(() => {
  delete process.env.MAX_CONCURRENT_JOBS;
});

/** Queues a job (validated by the real trainer's validator), then points the worker at the fake trainer. */
async function queue(name: string, mode: string, steps = 20, device = "cpu"): Promise<number> {
  process.env.REPO_ROOT = REPO_ROOT;
  const yaml = await buildYaml(tiny.id, name, { datasets: [demoDataset()], values: { trigger_word: mode, "train.steps": steps, device } });
  const res = await jobs.POST(request("/api/jobs", { method: "POST", json: { name, yaml } }), ctx());
  const data = await body(res);
  expect(res.status, JSON.stringify(data)).toBe(201);
  process.env.REPO_ROOT = FAKE_REPO;
  return data.job.id;
}

async function detail(id: number): Promise<JobDetail> {
  return (await body(await jobOne.GET(request(`/api/jobs/${id}`), ctx({ id: String(id) })))).job;
}

async function waitFor(id: number, states: string[], timeoutMs = 20_000): Promise<JobDetail> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    tick();
    const job = getJob(id)!;
    if (states.includes(job.state)) return detail(id);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`job ${id} still ${getJob(id)?.state}, wanted ${states}`);
}

describe("worker", () => {
  it("runs a job to the end and reads its progress, samples and LoRA", async () => {
    const id = await queue("finishes", "finish", 20);
    tick();
    expect(getJob(id)!.state).toBe("running");
    expect(getJob(id)!.pid).toBeGreaterThan(0);
    const job = await waitFor(id, ["finished", "failed"]);
    expect(job.state).toBe("finished");
    expect(job).toMatchObject({ step: 20, total_steps: 20, loss: 0.05, pid: null, exit_code: 0, run_count: 1, error: null });
    expect(job.loss_curve).toHaveLength(20);
    expect(job.samples.map((s) => s.file)).toEqual(["000000020_0.jpg"]);
    expect(job.loras.map((l) => l.file)).toEqual(["finishes.safetensors"]);
    expect(job.log_tail.join("\n")).toContain("fake trainer finishes");
  });

  it("runs one job at a time per device, and MAX_CONCURRENT_JOBS in all", async () => {
    process.env.MAX_CONCURRENT_JOBS = "2";
    const a = await queue("cpu_a", "finish", 30, "cpu");
    const b = await queue("cpu_b", "finish", 30, "cpu");
    const c = await queue("gpu1_c", "finish", 30, "cuda:1");
    tick();
    expect([getJob(a)!.state, getJob(b)!.state, getJob(c)!.state]).toEqual(["running", "queued", "running"]);
    const da = await waitFor(a, ["finished", "failed"]);
    expect(da.error).toBeNull();
    await waitFor(b, ["finished"]);
    const dc = await waitFor(c, ["finished", "failed"]);
    expect(dc.error).toBeNull();
    process.env.MAX_CONCURRENT_JOBS = "1";
    const d = await queue("gpu0_d", "finish", 30, "cuda:0");
    const e = await queue("gpu1_e", "finish", 30, "cuda:1");
    tick();
    expect([getJob(d)!.state, getJob(e)!.state]).toEqual(["running", "queued"]);
    await waitFor(e, ["finished"]);
  });

  it("stops with SIGTERM (the trainer saves, state stopped) and resumes from there", async () => {
    const id = await queue("stops", "slow", 400);
    tick();
    const deadline = Date.now() + 10_000;
    while (getJob(id)!.step < 3 && Date.now() < deadline) {
      tick();
      await new Promise((r) => setTimeout(r, 50));
    }
    const res = await stop.POST(request(`/api/jobs/${id}/stop`, { method: "POST" }), ctx({ id: String(id) }));
    expect((await body(res)).job.state).toBe("stopping");
    const stopped = await waitFor(id, ["stopped", "failed", "finished"]);
    expect(stopped.state).toBe("stopped");
    expect(stopped.exit_code).toBe(130);
    const savedAt = stopped.step;
    expect(savedAt).toBeGreaterThan(0);
    expect(savedAt).toBeLessThan(400);

    const again = await resume.POST(request(`/api/jobs/${id}/resume`, { method: "POST" }), ctx({ id: String(id) }));
    expect((await body(again)).job.state).toBe("queued");
    const done = await waitFor(id, ["finished", "failed"]);
    expect(done.state).toBe("finished");
    expect(done.run_count).toBe(2);
    expect(done.step).toBe(400);
    expect(done.log_tail.join("\n")).toContain(`from step ${savedAt}`);
    expect(done.loss_curve).toHaveLength(400);
  });

  it("a job stopped while the trainer is still loading ends stopped, not failed", async () => {
    const id = await queue("stopped_loading", "loading");
    tick();
    expect(getJob(id)!.state).toBe("running");
    await stop.POST(request(`/api/jobs/${id}/stop`, { method: "POST" }), ctx({ id: String(id) }));
    const job = await waitFor(id, ["stopped", "failed"]);
    expect(job.state).toBe("stopped");
    expect(job.error).toBeNull();
  });

  it("marks a process that died without an end event as failed, with the last log lines", async () => {
    const id = await queue("crashes", "crash");
    const job = await waitFor(id, ["failed", "finished"]);
    expect(job.state).toBe("failed");
    expect(job.exit_code).toBe(3);
    expect(job.error).toMatch(/exited with code 3 without an end event/);
    expect(job.error).toContain("RuntimeError: boom, out of memory");
  });

  it("marks a trainer-reported error as failed with its message", async () => {
    const id = await queue("errors", "error");
    const job = await waitFor(id, ["failed", "finished"]);
    expect(job.state).toBe("failed");
    expect(job.error).toBe("ValueError: bad things");
  });

  it("refuses to delete a running job", async () => {
    const id = await queue("busy", "slow", 400);
    tick();
    expect(getJob(id)!.state).toBe("running");
    expect((await jobOne.DELETE(request(`/api/jobs/${id}`, { method: "DELETE" }), ctx({ id: String(id) }))).status).toBe(409);
    await stop.POST(request(`/api/jobs/${id}/stop`, { method: "POST" }), ctx({ id: String(id) }));
    await waitFor(id, ["stopped"]);
    expect((await jobOne.DELETE(request(`/api/jobs/${id}`, { method: "DELETE" }), ctx({ id: String(id) }))).status).toBe(200);
  });

  it("after a restart, re-attaches to a live trainer and fails one whose process is gone", async () => {
    // Two jobs a previous server left "running": one trainer still alive, one whose process died.
    const alive = await queue("left_running", "slow", 60);
    const dead = await queue("left_dead", "crash");
    const db = getDb();
    db.prepare("UPDATE jobs SET state = 'stopped' WHERE id IN (?, ?)").run(alive, dead);
    const pAlive = jobPaths("left_running");
    const out = fs.openSync(pAlive.log, "a");
    const child = spawn(process.env.PYTHON || "python3", ["run.py", pAlive.config], { cwd: FAKE_REPO, detached: true, stdio: ["ignore", out, out] });
    fs.closeSync(out);
    const gone = spawn("true");
    await new Promise((r) => gone.on("exit", r));
    fs.writeFileSync(jobPaths("left_dead").log, "loading model\nKilled\n");
    db.prepare("UPDATE jobs SET state = 'running', pid = ?, run_count = 1 WHERE id = ?").run(child.pid, alive);
    db.prepare("UPDATE jobs SET state = 'running', pid = ?, run_count = 1 WHERE id = ?").run(gone.pid, dead);

    // liveness of trainers a previous server started comes from Python (toolkit.ui.jobs alive), asked in the background
    const deadJob = await waitFor(dead, ["failed", "finished"]);
    expect(deadJob.state).toBe("failed");
    expect(deadJob.error).toMatch(/without an end event/);
    expect(deadJob.error).toContain("Killed");
    expect(["running", "finished"]).toContain(getJob(alive)!.state); // followed, never taken for dead (it may be done already)
    const done = await waitFor(alive, ["finished", "failed"]);
    expect(done.state).toBe("finished");
    expect(done.step).toBe(60);
  });

  it("does not mistake a reused pid (another program) for the trainer", async () => {
    const id = await queue("reused_pid", "finish");
    const other = spawn("sleep", ["5"]);
    getDb().prepare("UPDATE jobs SET state = 'running', pid = ? WHERE id = ?").run(other.pid, id);
    tick();
    expect(getJob(id)!.state).toBe("running"); // until Python answers
    expect((await waitFor(id, ["failed", "finished"])).state).toBe("failed");
    other.kill();
  });
});
