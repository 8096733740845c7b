// End to end, in a real browser (Debian's chromium through playwright-core) against the built
// server (`npm run build` first): log in, create a dataset, upload the demo images, edit a
// caption, add reference images to an edit dataset and see the edit preset's job point at them,
// see a validation error by key path, queue a tiny FLUX.2 job, watch it finish, see its samples
// and loss curve, download the LoRA.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import YAML from "yaml";

const UI_DIR = path.resolve(__dirname, "../..");
const DEMO = path.resolve(UI_DIR, "../config/examples/demo_dataset");
const EDIT_DEMO = path.resolve(UI_DIR, "../config/examples/demo_edit_dataset");
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const TOKEN = "e2e-secret-token-0123456789";
const SHOTS = path.join(UI_DIR, "test-results");

let tmp = "";
let server: ChildProcess | undefined;
let serverLog = "";
let base = "";
let context: BrowserContext;
let page: Page;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

async function waitForServer(url: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (server?.exitCode !== null && server?.exitCode !== undefined) throw new Error(`server exited:\n${serverLog}`);
    try {
      const res = await fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } });
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`server did not start:\n${serverLog}`);
}

async function shot(name: string): Promise<void> {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

beforeAll(async () => {
  if (!fs.existsSync(path.join(UI_DIR, ".next", "BUILD_ID"))) throw new Error("run `npm run build` before the e2e test");
  if (!fs.existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "aitk-e2e-"));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(process.execPath, ["scripts/start.mjs"], {
    cwd: UI_DIR,
    env: {
      ...process.env,
      DATA_ROOT: path.join(tmp, "data"),
      PORT: String(port),
      HOST: "127.0.0.1",
      AI_TOOLKIT_AUTH: TOKEN,
      PYTHON: process.env.PYTHON || "python3", // the trainer's interpreter
      WORKER_POLL_MS: "500",
      MAX_CONCURRENT_JOBS: "1",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  server.stdout!.on("data", (d) => (serverLog += d));
  server.stderr!.on("data", (d) => (serverLog += d));
  await waitForServer(`${base}/api/health`, 60_000);
  context = await chromium.launchPersistentContext(path.join(tmp, "chromium-profile"), {
    executablePath: CHROMIUM,
    headless: true,
    acceptDownloads: true,
    viewport: { width: 1400, height: 1000 },
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(30_000);
});

afterAll(async () => {
  await context?.close().catch(() => undefined);
  if (server && server.exitCode === null) {
    server.kill("SIGTERM");
    await new Promise((r) => server!.once("exit", r));
  }
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe("the job UI in a browser", () => {
  it("asks for the token, then logs in", async () => {
    await page.goto(`${base}/datasets`);
    await page.waitForURL(/\/login/);
    await page.locator("input[name=token]").waitFor();
    expect(await page.locator("nav").count()).toBe(0); // no menu before logging in
    const unauth = await fetch(`${base}/api/jobs`);
    expect(unauth.status).toBe(401);
    await page.fill("input[name=token]", "wrong-token-wrong");
    await page.click("button[type=submit]");
    await page.getByText("wrong token").waitFor();
    await page.fill("input[name=token]", TOKEN);
    await page.click("button[type=submit]");
    await page.waitForURL(`${base}/datasets`);
    await page.locator("nav").getByText("Log out", { exact: true }).waitFor();
    const cookies = await context.cookies(base);
    expect(cookies.map((c) => c.name)).toContain("aitk_session");
    expect(JSON.stringify(cookies)).not.toContain(TOKEN); // the cookie holds a session id, not the token
  });

  it("creates a dataset, uploads the demo images and captions, edits a caption", async () => {
    await page.fill("input[name=dataset-name]", "robots");
    await page.getByRole("button", { name: "Create dataset" }).click();
    await page.waitForURL(`${base}/datasets/robots`);
    const files = fs.readdirSync(DEMO).filter((f) => /\.(png|txt)$/.test(f)).map((f) => path.join(DEMO, f));
    expect(files.length).toBe(16);
    await page.setInputFiles("[data-testid=upload-input]", files);
    await page.getByTestId("upload-status").getByText("Uploaded 16 files.").waitFor();
    await expect.poll(() => page.getByTestId("dataset-image").count()).toBe(8);

    const card = page.locator("[data-testid=dataset-image][data-file='robot_00.png']");
    const caption = card.locator("textarea");
    expect(await caption.inputValue()).toBe(fs.readFileSync(path.join(DEMO, "robot_00.txt"), "utf8"));
    await caption.fill("a photo of [trigger], edited in the browser");
    await card.getByTestId("save-caption").click();
    await card.getByRole("button", { name: "Saved" }).waitFor();
    const listing = await (await context.request.get(`${base}/api/datasets/robots`)).json();
    expect(listing.images.find((i: { file: string }) => i.file === "robot_00.png").caption).toBe("a photo of [trigger], edited in the browser");
    // the thumbnails load through the guarded file route
    const loaded = await card.locator("img").evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 0);
    expect(loaded).toBe(true);
    await shot("dataset");
  });

  it("holds reference images for edit presets; the edit job points at them", async () => {
    await page.goto(`${base}/datasets`);
    await page.fill("input[name=dataset-name]", "edits");
    await page.getByRole("button", { name: "Create dataset" }).click();
    await page.waitForURL(`${base}/datasets/edits`);
    const targets = fs.readdirSync(EDIT_DEMO).filter((f) => /\.(png|txt)$/.test(f)).map((f) => path.join(EDIT_DEMO, f));
    expect(targets.length).toBe(12);
    await page.setInputFiles("[data-testid=upload-input]", targets);
    await page.getByTestId("upload-status").getByText("Uploaded 12 files.").waitFor();
    const refs = fs.readdirSync(path.join(EDIT_DEMO, "control")).map((f) => path.join(EDIT_DEMO, "control", f));
    await page.setInputFiles("[data-testid=reference-upload-input]", refs);
    await page.getByTestId("upload-status").getByText(`Uploaded ${refs.length} reference images.`).waitFor();
    const ref = page.locator("[data-testid=dataset-image][data-file='edit_00.png'] [data-testid=reference][data-reference='edit_00.png'] img");
    await ref.waitFor();
    await expect.poll(() => ref.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 0)).toBe(true);
    await shot("edit-dataset");

    await page.goto(`${base}/jobs/new?preset=flux2_edit_24gb`);
    await page.locator("[data-preset=flux2_edit_24gb].selected").waitFor();
    // a dataset without references: named in an inline error, nothing can be queued
    await page.check("input[name=dataset-robots]");
    expect(await page.getByTestId("missing-references").textContent()).toContain("robots");
    expect(await page.getByTestId("queue").isDisabled()).toBe(true);
    await page.uncheck("input[name=dataset-robots]");
    await page.check("input[name=dataset-edits]");
    await expect.poll(() => page.getByTestId("missing-references").count()).toBe(0);
    await expect.poll(() => page.getByTestId("queue").isEnabled(), { timeout: 30_000 }).toBe(true); // once the form is built
    await page.getByTestId("yaml-editor").locator("summary").click();
    await page.locator("textarea[name=yaml][data-built=current]").waitFor(); // built by the trainer's preset builder
    const proc = YAML.parse(await page.locator("textarea[name=yaml]").inputValue()).config.process[0];
    const folder = path.join(tmp, "data", "datasets", "edits");
    expect(proc.datasets.map((d: { folder_path: string; control_path: string }) => [d.folder_path, d.control_path])).toEqual([
      [folder, `${folder}/control`],
    ]);
    expect(proc.sample.ctrl_img).toBe(`${folder}/control/edit_00.png`);
    expect(fs.existsSync(proc.sample.ctrl_img)).toBe(true);
    await shot("new-edit-job");
  });

  it("shows the trainer's validation errors by key path", async () => {
    await page.goto(`${base}/jobs/new?preset=flux2_tiny_demo`);
    await page.locator("[data-preset=flux2_tiny_demo].selected").waitFor();
    await page.fill("input[name=name]", "e2e_tiny");
    await page.fill("input[name='train.lr']", "-1");
    await page.getByTestId("check").click();
    const problems = page.getByTestId("problems");
    await problems.waitFor();
    expect(await problems.textContent()).toContain("config.process[0].train.lr");
    await shot("new-job-invalid");
  });

  it("queues a tiny FLUX.2 job, watches it finish, shows samples and loss, downloads the LoRA", async () => {
    await page.fill("input[name='train.lr']", "0.002");
    await page.check("input[name=dataset-robots]");
    await page.fill("input[name=resolutions]", "64");
    await page.fill("input[name='train.steps']", "6");
    await page.fill("input[name='sample.sample_every']", "3");
    await page.fill("input[name='sample.sample_steps']", "2");
    await page.fill("input[name='save.save_every']", "3");
    await page.fill("textarea[name=prompts]", "a photo of [trigger] on a blue background --seed 5");
    await page.getByTestId("check").click();
    await page.getByText("The trainer accepts this job.").waitFor();
    // the YAML that is queued: the preset with the user's fields
    await page.getByTestId("yaml-editor").locator("summary").click();
    const yaml = await page.locator("textarea[name=yaml][data-built=current]").inputValue();
    expect(yaml).toContain("name_or_path: tiny:flux2");
    expect(yaml).toMatch(/steps: 6\n/);
    expect(yaml).toContain("/datasets/robots");
    await page.getByTestId("queue").click();
    await page.waitForURL(/\/jobs\/\d+$/);
    expect(await page.getByTestId("job-name").textContent()).toBe("e2e_tiny");

    await expect
      .poll(async () => (await page.getByTestId("job-state").textContent()) ?? "", { timeout: 12 * 60_000, interval: 1000 })
      .toMatch(/finished|failed|stopped/);
    const state = await page.getByTestId("job-state").textContent();
    if (state !== "finished") {
      throw new Error(`job ${state}: ${await page.getByTestId("log").textContent()}\n${serverLog}`);
    }
    await page.locator("[data-testid=samples] img").first().waitFor();
    await expect.poll(() => page.locator("[data-testid=samples] img").count()).toBe(3); // steps 0, 3, 6
    await expect
      .poll(() => page.locator("[data-testid=samples] img").evaluateAll((imgs) => imgs.every((i) => (i as HTMLImageElement).naturalWidth === 64)))
      .toBe(true);
    expect(await page.getByTestId("samples").textContent()).toContain("Step 6");
    await page.getByTestId("loss-chart").waitFor();
    expect(await page.getByTestId("job-loss").textContent()).toMatch(/\d\.\d{4}/);
    // the loss chart has ticks on both axes and names them
    expect(await page.locator("[data-testid=loss-x-ticks] text").count()).toBeGreaterThanOrEqual(3);
    expect(await page.locator("[data-testid=loss-y-ticks] text").count()).toBeGreaterThanOrEqual(3);
    expect(await page.getByTestId("loss-chart").textContent()).toMatch(/step.*loss/);
    // captions as the trainer used the prompt: trigger word in, flags on their own small line
    const caption = page.getByTestId("sample-caption").first();
    expect(await caption.evaluate((el) => el.firstChild?.textContent)).toBe("a photo of r0b0t on a blue background");
    expect(await caption.locator(".sample-flags").textContent()).toBe("seed 5");
    // progress bars on lines of their own
    const logLines = ((await page.getByTestId("log").textContent()) ?? "").split("\n");
    expect(logLines.filter((l) => /%\|.*\]\s*\S/.test(l))).toEqual([]);
    await shot("job-finished");

    const row = page.getByTestId("loras").locator("tr", { hasText: "e2e_tiny.safetensors" }).first();
    expect(await row.textContent()).toContain("final");
    const [download] = await Promise.all([page.waitForEvent("download"), row.getByText("Download").click()]);
    expect(download.suggestedFilename()).toBe("e2e_tiny.safetensors");
    const saved = path.join(tmp, "downloaded.safetensors");
    await download.saveAs(saved);
    const bytes = fs.readFileSync(saved);
    const headerLength = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8"));
    const keys = Object.keys(header).filter((k) => k !== "__metadata__");
    expect(keys.length).toBeGreaterThan(0);
    expect(keys.every((k) => k.startsWith("diffusion_model."))).toBe(true);
    expect(header.__metadata__.arch).toBe("flux2");
  });

  it("lists the finished job on the dashboard", async () => {
    await page.goto(base);
    await page.getByRole("link", { name: "e2e_tiny" }).first().waitFor();
    await shot("dashboard");
  });

  it("deletes jobs in bulk", async () => {
    await page.goto(`${base}/jobs`);
    await page.getByTestId("select-e2e_tiny").check();
    page.once("dialog", (dialog) => dialog.accept());
    await page.getByTestId("delete-selected").click();
    await page.getByText("No jobs yet.").waitFor();
    expect((await (await context.request.get(`${base}/api/jobs`)).json()).jobs).toEqual([]);
    expect(fs.existsSync(path.join(tmp, "data", "output", "e2e_tiny"))).toBe(false);
  });

  it("imports an ai-toolkit job: links its folder to a dataset, queues it", async () => {
    // ai-toolkit's UI-written klein 4B job, from the Python tests' transcription (tests/jobs/test_aitk_jobs.py)
    const script = "import json,sys; sys.path.insert(0,'tests'); from jobs.test_aitk_jobs import UI_JOBS; print(json.dumps(UI_JOBS['ui-klein-4b']()))";
    const text = execFileSync(process.env.PYTHON || "python3", ["-c", script], { cwd: path.resolve(UI_DIR, ".."), encoding: "utf-8" });
    await page.goto(`${base}/jobs/new`);
    await page.locator("[data-preset].selected").waitFor();
    await page.getByTestId("aitk-import").locator("summary").click();
    // uploaded as ai-toolkit's UI writes it, then pasted (the box is what is imported)
    const file = path.join(tmp, ".job_config.json");
    fs.writeFileSync(file, text);
    await page.setInputFiles("[data-testid=aitk-file]", file);
    await page.getByText("Read .job_config.json.").waitFor();
    expect(await page.locator("textarea[name=aitk-text]").inputValue()).toBe(text);
    await page.fill("textarea[name=aitk-text]", "");
    await page.fill("textarea[name=aitk-text]", text);
    await page.fill("input[name=aitk-name]", "e2e_imported");
    await page.getByTestId("aitk-import-button").click();
    // no dataset named "folder" here: missing, by key path
    const folder = page.locator("[data-testid=aitk-folder][data-path='/path/to/images/folder']");
    await folder.and(page.locator("[data-how=missing]")).waitFor();
    expect(await page.getByTestId("aitk-import").getByTestId("problems").textContent()).toContain("config.process[0].datasets[0].folder_path");
    expect(await page.getByTestId("aitk-ignored").textContent()).toContain("sqlite_db_path");
    // "Create dataset folder" makes an empty dataset and chooses it; the person picks robots instead
    await folder.getByTestId("aitk-create").click();
    await folder.getByText("Created: upload its images").waitFor();
    expect((await (await context.request.get(`${base}/api/datasets`)).json()).datasets.map((d: { name: string }) => d.name)).toContain("folder");
    expect(await folder.getByTestId("aitk-link").inputValue()).toBe("folder");
    await folder.getByTestId("aitk-link").selectOption("robots");
    await page.getByTestId("aitk-recheck").click();
    await page.locator("[data-testid=aitk-folder][data-how=linked]").getByText("robots").waitFor();
    await page.getByTestId("aitk-ok").waitFor();
    const yaml = await page.locator("textarea[name=yaml]").inputValue();
    expect(YAML.parse(yaml).config.process[0].datasets[0].folder_path).toBe(path.join(tmp, "data", "datasets", "robots"));
    await page.getByText("The YAML below is the imported ai-toolkit job e2e_imported").waitFor();
    expect(await page.locator("input[name=name]").isVisible()).toBe(false); // the preset's form is hidden
    await shot("new-job-imported");
    await page.getByTestId("queue").click();
    await page.waitForURL(/\/jobs\/\d+$/);
    expect(await page.getByTestId("job-name").textContent()).toBe("e2e_imported");
    // the real klein 4B cannot be loaded here: stop it
    const id = page.url().split("/").pop();
    expect([200, 409]).toContain((await context.request.post(`${base}/api/jobs/${id}/stop`)).status()); // 409: it already failed
    await expect
      .poll(async () => (await (await context.request.get(`${base}/api/jobs/${id}`)).json()).job.state, { timeout: 120_000 })
      .toMatch(/stopped|failed/);
  });

  it("logging out ends the session", async () => {
    await page.locator("nav").getByText("Log out", { exact: true }).click();
    await page.waitForURL(/\/login/);
    expect((await context.request.get(`${base}/api/jobs`)).status()).toBe(401);
  });
});
