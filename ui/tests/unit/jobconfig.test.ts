// A new job is the preset's config with only the form's fields changed, built by the trainer's one
// preset builder (`python -m toolkit.ui.presets build`, which the Gradio app uses too) through
// POST /api/jobs/build; the server adds the UI's own fields. YAML in: bounded, never a 500.
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import * as build from "@/app/api/jobs/build/route";
import * as schemaRoute from "@/app/api/schema/route";
import { enforceUiFields, getIn, MAX_YAML_BYTES, parseYaml, processOf, toYaml } from "@/lib/jobconfig";
import type { Preset, UiSchema } from "@/lib/types";
import { body, ctx, PNG_BYTES, request, useTempDataRoot } from "./helpers";

useTempDataRoot();
let ui: UiSchema & { datasets_dir: string; output_dir: string };
let tiny: Preset;
let edit: Preset;

type Obj = Record<string, unknown>;

async function built(form: Obj): Promise<{ status: number; data: any }> {
  const res = await build.POST(request("/api/jobs/build", { method: "POST", json: form }), ctx());
  return { status: res.status, data: await body(res) };
}

async function proc(form: Obj): Promise<Obj> {
  const { status, data } = await built(form);
  expect(status, JSON.stringify(data)).toBe(200);
  expect(YAML.parse(data.yaml)).toEqual(data.config); // the YAML shown is the config built
  return processOf(data.config);
}

function dataset(name: string, targets: string[], references: string[] = []): void {
  const dir = path.join(ui.datasets_dir, name);
  fs.mkdirSync(path.join(dir, "control"), { recursive: true });
  for (const t of targets) fs.writeFileSync(path.join(dir, t), PNG_BYTES);
  for (const r of references) fs.writeFileSync(path.join(dir, "control", r), PNG_BYTES);
}

beforeAll(async () => {
  ui = await body(await schemaRoute.GET(request("/api/schema"), ctx()));
  tiny = ui.presets.find((p) => p.id === "flux2_tiny_demo")!;
  edit = ui.presets.find((p) => p.id === "flux2_edit_24gb")!;
  dataset("robots", ["r_00.png"]);
  dataset("edits", ["e_00.png", "e_01.png"], ["e_01.jpg"]);
  dataset("more", ["m_03.png"], ["m_03.png"]);
  dataset("empty", ["x.png"]);
}, 120_000);

describe("POST /api/jobs/build (the trainer's preset builder)", () => {
  it("with no fields, only the UI's fields change", async () => {
    const { data } = await built({ preset: tiny.id, name: "mine" });
    const expected = structuredClone(tiny.config) as Obj;
    (expected.config as Obj).name = "mine";
    (processOf(expected) as Obj).training_folder = ui.output_dir;
    expect(data.config).toEqual(expected);
    expect(data.edit).toBe(false);
  });

  it("applies the form's fields and keeps everything else", async () => {
    const p = await proc({
      preset: tiny.id,
      name: "mine",
      values: { "train.steps": 50, "model.quantize": true, "datasets.cache_latents_to_disk": false, trigger_word: null },
      datasets: ["robots", "edits"],
      resolutions: [64],
      prompts: ["a [trigger]"],
    });
    const original = processOf(structuredClone(tiny.config));
    expect(getIn(p, "train.steps")).toBe(50);
    expect(getIn(p, "train.lr")).toBe(getIn(original, "train.lr"));
    expect(getIn(p, "model.quantize")).toBe(true);
    expect(getIn(p, "model.name_or_path")).toBe("tiny:flux2");
    expect("trigger_word" in p).toBe(false); // null = back to the trainer's default
    const datasets = p.datasets as Obj[];
    expect(datasets.map((d) => d.folder_path)).toEqual([path.join(ui.datasets_dir, "robots"), path.join(ui.datasets_dir, "edits")]);
    expect(datasets.every((d) => d.cache_latents_to_disk === false && JSON.stringify(d.resolution) === "[64]")).toBe(true);
    expect(datasets.every((d) => !("control_path" in d))).toBe(true);
    expect(getIn(p, "sample.prompts")).toEqual(["a [trigger]"]);
  });

  it("edit presets: control_path per dataset, ctrl_img = the first chosen dataset's first paired reference", async () => {
    expect((await built({ preset: edit.id, name: "e" })).data.edit).toBe(true);
    const p = await proc({ preset: edit.id, name: "e", datasets: ["empty", "edits", "more"] });
    expect((p.datasets as Obj[]).map((d) => d.control_path)).toEqual(
      ["empty", "edits", "more"].map((d) => path.join(ui.datasets_dir, d, "control")),
    );
    expect(getIn(p, "sample.ctrl_img")).toBe(path.join(ui.datasets_dir, "edits", "control", "e_01.jpg"));
    // a value the user typed wins
    const mine = await proc({ preset: edit.id, name: "e", datasets: ["edits"], values: { "sample.ctrl_img": "/mine/ref.png" } });
    expect(getIn(mine, "sample.ctrl_img")).toBe("/mine/ref.png");
  });

  it("a preset whose control_path is empty ('' or [], as ai-toolkit's UI writes it) is not an edit preset", async () => {
    // the builder reads the preset from the trainer; an empty control_path typed in the form means no references
    const p = await proc({ preset: tiny.id, name: "t", datasets: ["more"], values: { "datasets.control_path": "" } });
    expect(getIn(p, "datasets.control_path")).toBe("");
    expect(getIn(p, "sample.ctrl_img")).toBeUndefined();
  });

  it("refuses an unknown preset, a bad dataset name, a malformed field", async () => {
    const unknown = await built({ preset: "nope", name: "x" });
    expect(unknown.status).toBe(422);
    expect(unknown.data.problems[0].message).toMatch(/unknown preset 'nope'/);
    expect((await built({ preset: tiny.id, name: "x", datasets: ["../etc"] })).status).toBe(400);
    expect((await built({ preset: tiny.id, name: "x", datasets: ["missing"] })).status).toBe(404);
    expect((await built({ preset: tiny.id, name: "x", resolutions: ["64"] })).status).toBe(400);
    expect((await built({ name: "x" })).status).toBe(400);
  });
});

describe("enforceUiFields", () => {
  it("sets the name and the output folder, whatever the YAML says", () => {
    const { config, problems } = enforceUiFields(tiny.config, "mine", "/data/output");
    expect(problems).toEqual([]);
    expect(getIn(config as Obj, "config.name")).toBe("mine");
    expect(processOf(config).training_folder).toBe("/data/output");
  });
  it("refuses what the UI cannot run", () => {
    expect(enforceUiFields([1, 2], "x", "/o").problems[0].path).toBe("");
    const two = structuredClone(tiny.config) as { config: { process: unknown[] } };
    two.config.process.push(structuredClone(two.config.process[0]));
    expect(enforceUiFields(two, "x", "/o").problems.map((p) => p.path)).toEqual(["config.process"]);
  });
});

describe("parseYaml", () => {
  it("round-trips a job config", () => {
    const { value, problems } = parseYaml(toYaml(tiny.config));
    expect(problems).toEqual([]);
    expect(value).toEqual(tiny.config);
  });

  it("a billion-laughs document is a problem, not an exception or a memory blow-up", () => {
    const lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"];
    for (let i = 1; i < 9; i++) lines.push(`${"abcdefghij"[i]}: &${"abcdefghij"[i]} [${Array(10).fill(`*${"abcdefghij"[i - 1]}`).join(", ")}]`);
    const { value, problems } = parseYaml(lines.join("\n"));
    expect(value).toBeUndefined();
    expect(problems[0].path).toBe("yaml");
    expect(problems[0].message).toMatch(/aliases/);
  });

  it("refuses a file over the size limit and a syntax error, by line", () => {
    const big = parseYaml(`x: "${"a".repeat(MAX_YAML_BYTES)}"`);
    expect(big.problems[0].message).toMatch(/at most 1048576 are read/);
    expect(parseYaml("job: [unclosed").problems[0].path).toBe("yaml");
    expect(parseYaml("a: 1\na: 2").problems[0].message).toMatch(/unique/i);
  });
});
