import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll } from "vitest";
import { closeDb } from "@/lib/server/db";

export const UI_DIR = path.resolve(__dirname, "../..");
export const REPO_ROOT = path.resolve(UI_DIR, "..");
export const DEMO_DATASET = path.join(REPO_ROOT, "config/examples/demo_dataset");
export const ORIGIN = "http://127.0.0.1:8675";

/** A fresh DATA_ROOT (and database) for one test file; the worker stays off unless a test starts it. */
export function useTempDataRoot(): { root: () => string } {
  let root = "";
  const saved = { ...process.env };
  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "aitk-ui-test-"));
    process.env.DATA_ROOT = root;
    process.env.REPO_ROOT = REPO_ROOT;
    process.env.UI_DIR = UI_DIR;
    process.env.AITK_WORKER = "off";
    process.env.PYTHON = process.env.PYTHON || "python3"; // the trainer's interpreter
    delete process.env.AI_TOOLKIT_AUTH;
    delete process.env.HOST;
  });
  afterAll(() => {
    closeDb();
    for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
    Object.assign(process.env, saved);
    fs.rmSync(root, { recursive: true, force: true });
  });
  return { root: () => root };
}

export function request(urlPath: string, init: RequestInit & { json?: unknown } = {}): Request {
  const headers = new Headers(init.headers);
  if (!headers.has("host")) headers.set("host", "127.0.0.1:8675");
  let body = init.body;
  if (init.json !== undefined) {
    body = JSON.stringify(init.json);
    headers.set("content-type", "application/json");
  }
  return new Request(ORIGIN + urlPath, { ...init, headers, body });
}

export function ctx(params: Record<string, string | string[]> = {}) {
  return { params: Promise.resolve(params) };
}

export async function body(res: Response): Promise<any> {
  return JSON.parse(await res.text());
}

export const PNG_BYTES = fs.readFileSync(path.join(DEMO_DATASET, "robot_00.png"));
/** Real 8x8 images (uploads are checked by decoding them). */
export const JPG_BYTES = new Uint8Array(Buffer.from("/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1RV19iZ2hnPk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2P/wAARCAAIAAgDASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDHooorhPqD/9k=", "base64"));
export const WEBP_BYTES = new Uint8Array(Buffer.from("UklGRjgAAABXRUJQVlA4ICwAAACQAQCdASoIAAgAAUAmJaACdLoAA5gA/vk2z/97Bf+4z/+4z/63fXeLSUgAAA==", "base64"));

export function uploadForm(files: { name: string; data: Uint8Array | string }[]): FormData {
  const form = new FormData();
  for (const f of files) form.append("files", new File([f.data as BlobPart], f.name));
  return form;
}

/** A preset as the new-job form builds it: POST /api/jobs/build (the trainer's preset builder) -> YAML. */
export async function buildYaml(preset: string, name: string, form: Record<string, unknown> = {}): Promise<string> {
  const { POST } = await import("@/app/api/jobs/build/route");
  const res = await POST(request("/api/jobs/build", { method: "POST", json: { preset, name, ...form } }), ctx());
  const data = await body(res);
  if (res.status !== 200) throw new Error(`build ${preset}: ${JSON.stringify(data)}`);
  return data.yaml as string;
}

/** The demo images as a UI dataset `name` under DATA_ROOT/datasets (UI jobs may only read there). */
export function demoDataset(name = "demo"): string {
  const dir = path.join(process.env.DATA_ROOT!, "datasets", name);
  fs.mkdirSync(dir, { recursive: true });
  for (const file of fs.readdirSync(DEMO_DATASET)) {
    if (/\.(png|txt)$/.test(file)) fs.copyFileSync(path.join(DEMO_DATASET, file), path.join(dir, file));
  }
  return name;
}
