// Jobs: a row in SQLite, a job file `DATA_ROOT/jobs/<name>/config.yaml` with its log beside it,
// and the trainer's job folder `DATA_ROOT/output/<name>/` (the contract in README "The job folder").
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { enforceUiFields, getIn, parseYaml, processOf, toYaml } from "../jobconfig";
import { fieldSpec } from "../schema";
import type { JobDetail, JobState, JobSummary, LoraFile, Problem, SampleCaption, SampleImage } from "../types";
import { getDb } from "./db";
import { HttpError } from "./http";
import { checkName } from "./paths";
import { lossPoints, readAllEvents, tailLines } from "./progress";
import { guardJobFile, loadUiSchema, sampleCaptions, validateJobFile } from "./python";
import { ensureDataDirs, settings } from "./settings";

export interface JobRow extends JobSummary {
  end_state: string | null;
  progress_offset: number;
  stop_requested_at: number | null;
  end_seen_at: number | null;
}

export function jobPaths(name: string) {
  const s = settings();
  const dir = path.join(s.jobsDir, name);
  const folder = path.join(s.outputDir, name);
  return {
    dir,
    config: path.join(dir, "config.yaml"),
    /** Sample captions as the trainer uses them (toolkit.ui.samples), written when the job is queued. */
    samples: path.join(dir, "samples.json"),
    log: path.join(dir, "log.txt"),
    folder,
    progress: path.join(folder, "progress.jsonl"),
  };
}

export function now(): number {
  return Date.now() / 1000;
}

export function listJobs(): JobRow[] {
  return getDb().prepare("SELECT * FROM jobs ORDER BY id DESC").all() as JobRow[];
}

export function getJob(id: number): JobRow | undefined {
  return getDb().prepare("SELECT * FROM jobs WHERE id = ?").get(id) as JobRow | undefined;
}

export function requireJob(idText: string): JobRow {
  // decimal digits only: "0x1", "1e0" or " 1" name no job
  const job = /^[0-9]{1,15}$/.test(idText) ? getJob(Number(idText)) : undefined;
  if (!job) throw new HttpError(404, `no job ${JSON.stringify(idText)}`);
  return job;
}

export function updateJob(id: number, fields: Partial<JobRow>): void {
  const keys = Object.keys(fields);
  if (keys.length === 0) return;
  const sql = `UPDATE jobs SET ${keys.map((k) => `${k} = @${k}`).join(", ")} WHERE id = @id`;
  getDb().prepare(sql).run({ ...fields, id });
}

export interface PreparedJob {
  ok: boolean;
  problems: Problem[];
  yaml: string;
  name: string;
  arch: string | null;
  device: string;
}

/**
 * Checks a job the user wants to queue: its name, the YAML, the fields the UI owns, the UI's path
 * guard (`python -m toolkit.ui.guard check`) and the trainer's own validator
 * (`python -m toolkit.ui.schema validate`). Nothing is stored; the file queued is the text checked
 * (never an expanded copy: it holds no `${...}`), and it is what the job page shows.
 * `keepFile` receives the validated file when it passes.
 */
export async function prepareJob(nameInput: unknown, yamlText: unknown, keepFile?: string): Promise<PreparedJob> {
  const s = settings();
  ensureDataDirs(s);
  const name = checkName("job", nameInput);
  if (typeof yamlText !== "string" || yamlText.trim() === "") throw new HttpError(400, "yaml is required");
  const fail = (problems: Problem[], yaml = yamlText as string): PreparedJob => ({
    ok: false, problems, yaml, name, arch: null, device: "",
  });
  const parsed = parseYaml(yamlText);
  if (parsed.problems.length) return fail(parsed.problems);
  const { config, problems } = enforceUiFields(parsed.value, name, s.outputDir);
  const yaml = toYaml(config);
  if (problems.length) return fail(problems, yaml);
  if (getDb().prepare("SELECT 1 FROM jobs WHERE name = ?").get(name)) {
    return fail([{ path: "config.name", message: `a job named ${name} exists: choose another name` }], yaml);
  }
  if (fs.existsSync(path.join(s.outputDir, name))) {
    return fail([{ path: "config.name", message: `the output folder ${name} exists: choose another name` }], yaml);
  }
  const checkDir = path.join(s.jobsDir, ".check");
  fs.mkdirSync(checkDir, { recursive: true });
  const file = path.join(checkDir, `${name}-${crypto.randomBytes(6).toString("hex")}.yaml`);
  fs.writeFileSync(file, yaml);
  try {
    // the UI's rules (paths inside DATA_ROOT, no ${...}) and the trainer's own validator, together
    const [guard, result] = await Promise.all([guardJobFile(file), validateJobFile(file)]);
    const problems = [...guard.problems, ...result.problems];
    if (problems.length) return fail(problems, yaml);
    const proc = processOf(config);
    const schema = (await loadUiSchema()).schema;
    const device = String(proc.device ?? fieldSpec(schema, "device")?.default ?? "");
    const arch = (getIn(proc, "model.arch") as string | undefined) ?? null;
    if (keepFile) {
      fs.mkdirSync(path.dirname(keepFile), { recursive: true });
      fs.renameSync(file, keepFile);
    }
    return { ok: true, problems: [], yaml, name, arch, device };
  } finally {
    fs.rmSync(file, { force: true });
  }
}

/** Validates, then queues: the row, the job file. */
export async function createJob(nameInput: unknown, yamlText: unknown, preset: string | null): Promise<{ job?: JobRow; prepared: PreparedJob }> {
  const name = checkName("job", nameInput);
  const paths = jobPaths(name);
  const staged = path.join(settings().jobsDir, ".check", `${name}-${crypto.randomBytes(6).toString("hex")}.staged.yaml`);
  const prepared = await prepareJob(name, yamlText, staged);
  if (!prepared.ok) return { prepared };
  const captions = await sampleCaptions(staged);
  try {
    const t = now();
    const info = getDb()
      .prepare(
        `INSERT INTO jobs (name, preset, arch, device, state, created_at, queued_at)
         VALUES (?, ?, ?, ?, 'queued', ?, ?)`,
      )
      .run(name, preset, prepared.arch, prepared.device, t, t);
    fs.rmSync(paths.dir, { recursive: true, force: true });
    fs.mkdirSync(paths.dir, { recursive: true });
    fs.renameSync(staged, paths.config);
    if (captions) fs.writeFileSync(paths.samples, JSON.stringify(captions));
    return { job: getJob(Number(info.lastInsertRowid)), prepared };
  } catch (err) {
    if (String(err).includes("UNIQUE")) {
      return { prepared: { ...prepared, ok: false, problems: [{ path: "config.name", message: `a job named ${name} exists` }] } };
    }
    throw err;
  } finally {
    fs.rmSync(staged, { force: true });
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal); // the trainer is a process-group leader (spawned detached)
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone: the worker notices on its next tick
    }
  }
}

/** Stop: a queued job leaves the queue; a running one gets SIGTERM (it saves, then ends "stopped"); again = SIGKILL. */
export function stopJob(job: JobRow): JobRow {
  if (job.state === "queued") {
    updateJob(job.id, { state: "stopped", finished_at: now() });
  } else if (job.state === "running" && job.pid) {
    updateJob(job.id, { state: "stopping", stop_requested_at: now() });
    signalGroup(job.pid, "SIGTERM");
  } else if (job.state === "stopping" && job.pid) {
    signalGroup(job.pid, "SIGKILL");
  } else {
    throw new HttpError(409, `job is ${job.state}: nothing to stop`);
  }
  return getJob(job.id)!;
}

/** Resume = run the same job file again (the trainer resumes from its last checkpoint). */
export function resumeJob(job: JobRow): JobRow {
  if (job.state !== "stopped" && job.state !== "failed") {
    throw new HttpError(409, `job is ${job.state}: only stopped or failed jobs resume`);
  }
  updateJob(job.id, { state: "queued", queued_at: now(), error: null, exit_code: null, finished_at: null });
  return getJob(job.id)!;
}

function removeTree(target: string): void {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(target);
  } catch {
    return;
  }
  // A symlink is removed itself, never followed.
  if (stat.isSymbolicLink() || !stat.isDirectory()) fs.rmSync(target, { force: true });
  else fs.rmSync(target, { recursive: true, force: true });
}

export function deleteJob(job: JobRow): void {
  if (job.state === "running" || job.state === "stopping") {
    throw new HttpError(409, `job is ${job.state}: stop it first`);
  }
  const paths = jobPaths(job.name);
  getDb().prepare("DELETE FROM jobs WHERE id = ?").run(job.id);
  removeTree(paths.dir);
  removeTree(paths.folder);
}

/** Bulk delete: each job that is not running goes (as `deleteJob`); the others are named with why. */
export function deleteJobs(ids: unknown): { deleted: number[]; refused: { id: number; reason: string }[] } {
  if (!Array.isArray(ids) || ids.length === 0 || ids.length > 1000 || !ids.every((id) => Number.isInteger(id))) {
    throw new HttpError(400, "ids must be a list of job ids");
  }
  const deleted: number[] = [];
  const refused: { id: number; reason: string }[] = [];
  for (const id of new Set(ids as number[])) {
    const job = getJob(id);
    if (!job) {
      refused.push({ id, reason: "no such job" });
      continue;
    }
    try {
      deleteJob(job);
      deleted.push(id);
    } catch (err) {
      refused.push({ id, reason: err instanceof Error ? err.message : String(err) });
    }
  }
  return { deleted, refused };
}

export function summary(job: JobRow): JobSummary {
  const { end_state: _e, progress_offset: _p, stop_requested_at: _s, end_seen_at: _n, ...rest } = job;
  return rest;
}

function fileUrl(rel: string[]): string {
  return `/api/files/output/${rel.map(encodeURIComponent).join("/")}`;
}

function listSamples(name: string, folder: string, prompts: string[], captions: SampleCaption[] | null): SampleImage[] {
  let files: string[] = [];
  try {
    files = fs.readdirSync(path.join(folder, "samples"));
  } catch {
    return [];
  }
  const out: SampleImage[] = [];
  for (const file of files) {
    const match = file.match(/^(\d+)_(\d+)\.(jpg|jpeg|png|webp)$/i);
    if (!match) continue;
    const index = Number(match[2]);
    const caption = captions?.[index];
    out.push({
      file,
      url: fileUrl([name, "samples", file]),
      step: Number(match[1]),
      index,
      prompt: caption?.prompt ?? prompts[index] ?? null,
      caption: caption?.caption ?? null,
      flags: caption?.flags ?? {},
    });
  }
  return out.sort((a, b) => b.step - a.step || a.index - b.index);
}

function listLoras(name: string, folder: string): LoraFile[] {
  let entries: fs.Dirent[] = [];
  try {
    entries = fs.readdirSync(folder, { withFileTypes: true });
  } catch {
    return [];
  }
  const out: LoraFile[] = [];
  for (const entry of entries) {
    if (!entry.isFile() || !entry.name.endsWith(".safetensors")) continue;
    const stat = fs.statSync(path.join(folder, entry.name));
    const match = entry.name.match(/_(\d{9})\.safetensors$/);
    out.push({
      file: entry.name,
      url: fileUrl([name, entry.name]),
      step: match ? Number(match[1]) : null,
      size: stat.size,
      mtime: stat.mtimeMs / 1000,
    });
  }
  // the final LoRA first, then checkpoints newest first
  return out.sort((a, b) => (a.step === null ? -1 : b.step === null ? 1 : b.step - a.step));
}

export function queuePosition(job: JobRow): number | null {
  if (job.state !== "queued") return null;
  const row = getDb()
    .prepare("SELECT COUNT(*) AS n FROM jobs WHERE state = 'queued' AND (queued_at < ? OR (queued_at = ? AND id < ?))")
    .get(job.queued_at, job.queued_at, job.id) as { n: number };
  return row.n + 1;
}

export function jobDetail(job: JobRow): JobDetail {
  const paths = jobPaths(job.name);
  let configYaml = "";
  let prompts: string[] = [];
  try {
    configYaml = fs.readFileSync(/*turbopackIgnore: true*/ paths.config, "utf8");
    const parsed = parseYaml(configYaml).value as Record<string, unknown>;
    const list = getIn(processOf(parsed), "sample.prompts");
    if (Array.isArray(list)) prompts = list.map(String);
  } catch {
    // a job whose file is gone still shows its state
  }
  let captions: SampleCaption[] | null = null;
  try {
    captions = JSON.parse(fs.readFileSync(/*turbopackIgnore: true*/ paths.samples, "utf8")) as SampleCaption[];
  } catch {
    // queued before captions were recorded: the gallery shows the raw prompts
  }
  return {
    ...summary(job),
    state: job.state as JobState,
    config_yaml: configYaml,
    log_tail: tailLines(paths.log, 200),
    loss_curve: lossPoints(readAllEvents(paths.progress)),
    samples: listSamples(job.name, paths.folder, prompts, captions),
    loras: listLoras(job.name, paths.folder),
    queue_position: queuePosition(job),
  };
}
