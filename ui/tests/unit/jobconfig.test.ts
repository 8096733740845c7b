// A new job is the preset's config with only the user's fields changed.
import { describe, expect, it } from "vitest";
import { buildJobConfig, enforceUiFields, getIn, parseYaml, presetNeedsReferences, setIn, toYaml } from "@/lib/jobconfig";

const preset = {
  job: "extension",
  config: {
    name: "preset_name",
    process: [
      {
        type: "sd_trainer",
        training_folder: "output",
        device: "cuda:0",
        trigger_word: "p3r5on",
        network: { type: "lora", linear: 16, linear_alpha: 16 },
        datasets: [{ folder_path: "/path/to/images", caption_ext: "txt", cache_latents_to_disk: true, resolution: [512, 768, 1024] }],
        train: { steps: 2000, lr: 1e-4, optimizer: "adamw8bit" },
        model: { name_or_path: "black-forest-labs/FLUX.2-dev", arch: "flux2", quantize: true, qtype: "qint4" },
        sample: { sample_every: 250, prompts: ["[trigger] holding a sign"], samples: undefined as unknown },
      },
    ],
  },
  meta: { name: "[name]", version: "1.0" },
};

describe("buildJobConfig", () => {
  it("with no user fields, only the name changes", () => {
    const out = buildJobConfig(preset, { name: "mine", values: {}, datasets: [], resolutions: null, prompts: null }, "/data/datasets");
    const expected = structuredClone(preset) as typeof preset;
    expected.config.name = "mine";
    expect(JSON.parse(JSON.stringify(out))).toEqual(JSON.parse(JSON.stringify(expected)));
  });

  it("applies the user's fields and keeps everything else", () => {
    const out = buildJobConfig(
      preset,
      {
        name: "mine",
        values: { "train.steps": 50, "model.qtype": "qfloat8", "datasets.cache_latents_to_disk": false, trigger_word: null },
        datasets: ["robots", "cats"],
        resolutions: [64],
        prompts: ["a [trigger]"],
      },
      "/data/datasets",
    );
    const proc = (out.config as { process: Record<string, unknown>[] }).process[0];
    expect(proc.train).toEqual({ steps: 50, lr: 1e-4, optimizer: "adamw8bit" });
    expect(proc.model).toEqual({ name_or_path: "black-forest-labs/FLUX.2-dev", arch: "flux2", quantize: true, qtype: "qfloat8" });
    expect(proc.datasets).toEqual([
      { folder_path: "/data/datasets/robots", caption_ext: "txt", cache_latents_to_disk: false, resolution: [64] },
      { folder_path: "/data/datasets/cats", caption_ext: "txt", cache_latents_to_disk: false, resolution: [64] },
    ]);
    expect("trigger_word" in proc).toBe(false); // null = back to the trainer's default
    expect(getIn(proc, "sample.prompts")).toEqual(["a [trigger]"]);
    expect(getIn(proc, "sample.sample_every")).toBe(250);
    expect(preset.config.process[0].train.steps).toBe(2000); // the preset is not modified
  });

  it("round-trips through YAML", () => {
    const out = buildJobConfig(preset, { name: "mine", values: {}, datasets: [], resolutions: null, prompts: null }, "/d");
    const { value, problems } = parseYaml(toYaml(out));
    expect(problems).toEqual([]);
    expect(value).toEqual(JSON.parse(JSON.stringify(out)));
  });
});

/** An edit preset: its dataset template has control_path, its samples a ctrl_img (placeholders). */
const editPreset = {
  ...preset,
  config: {
    name: "preset_name",
    process: [
      {
        ...preset.config.process[0],
        datasets: [
          { folder_path: "/path/to/edit/targets", control_path: "/path/to/edit/targets/control", match_target_res: false, caption_ext: "txt", resolution: [512] },
        ],
        sample: { sample_every: 250, ctrl_img: "/path/to/a/reference.jpg", prompts: ["make it red"] },
      },
    ],
  },
};
const editFields = { name: "mine", values: {}, resolutions: null, prompts: null };

describe("buildJobConfig for edit presets", () => {
  it("knows which presets need reference images", () => {
    expect(presetNeedsReferences(editPreset)).toBe(true);
    expect(presetNeedsReferences(preset)).toBe(false);
    expect(presetNeedsReferences({})).toBe(false);
    expect(editPreset.config.process[0].datasets[0].control_path).toBe("/path/to/edit/targets/control"); // not modified
  });

  it("sets control_path per chosen dataset and ctrl_img to the first dataset's first reference", () => {
    const out = buildJobConfig(
      editPreset,
      { ...editFields, datasets: ["edits", "more"], references: { edits: "e_00.jpg", more: "m_03.png", unused: "u.png" } },
      "/data/datasets",
    );
    const proc = (out.config as { process: Record<string, unknown>[] }).process[0];
    expect(proc.datasets).toEqual([
      { folder_path: "/data/datasets/edits", control_path: "/data/datasets/edits/control", match_target_res: false, caption_ext: "txt", resolution: [512] },
      { folder_path: "/data/datasets/more", control_path: "/data/datasets/more/control", match_target_res: false, caption_ext: "txt", resolution: [512] },
    ]);
    expect(getIn(proc, "sample.ctrl_img")).toBe("/data/datasets/edits/control/e_00.jpg");
    expect(getIn(proc, "sample.prompts")).toEqual(["make it red"]);
    // a first dataset without references: the next chosen one's
    const next = buildJobConfig(editPreset, { ...editFields, datasets: ["empty", "more"], references: { empty: null, more: "m_03.png" } }, "/d/");
    expect(getIn((next.config as { process: Record<string, unknown>[] }).process[0], "sample.ctrl_img")).toBe("/d/more/control/m_03.png");
  });

  it("keeps a ctrl_img the user set, and the preset's paths with no dataset chosen", () => {
    const edited = buildJobConfig(
      editPreset,
      { ...editFields, values: { "sample.ctrl_img": "/mine/ref.png" }, datasets: ["edits"], references: { edits: "e_00.jpg" } },
      "/data/datasets",
    );
    const proc = (edited.config as { process: Record<string, unknown>[] }).process[0];
    expect(getIn(proc, "sample.ctrl_img")).toBe("/mine/ref.png");
    expect(getIn(proc, "datasets.control_path")).toBe("/data/datasets/edits/control");

    const none = buildJobConfig(editPreset, { ...editFields, datasets: [], references: { edits: "e_00.jpg" } }, "/data/datasets");
    const expected = structuredClone(editPreset);
    expected.config.name = "mine";
    expect(JSON.parse(JSON.stringify(none))).toEqual(JSON.parse(JSON.stringify(expected)));

    // no reference anywhere: the placeholder stays (the page refuses to queue such a job)
    const noRefs = buildJobConfig(editPreset, { ...editFields, datasets: ["edits"], references: { edits: null } }, "/data/datasets");
    expect(getIn((noRefs.config as { process: Record<string, unknown>[] }).process[0], "sample.ctrl_img")).toBe("/path/to/a/reference.jpg");
  });

  it("leaves non-edit presets as they were: no control_path, no ctrl_img", () => {
    const fields = { name: "mine", values: {}, datasets: ["robots"], resolutions: null, prompts: null };
    const without = buildJobConfig(preset, fields, "/data/datasets");
    const withRefs = buildJobConfig(preset, { ...fields, references: { robots: "robot_00.png" } }, "/data/datasets");
    expect(withRefs).toEqual(without);
    const proc = (withRefs.config as { process: Record<string, unknown>[] }).process[0];
    expect(proc.datasets).toEqual([{ folder_path: "/data/datasets/robots", caption_ext: "txt", cache_latents_to_disk: true, resolution: [512, 768, 1024] }]);
    expect(getIn(proc, "sample.ctrl_img")).toBeUndefined();
  });
});

describe("enforceUiFields", () => {
  it("sets the name and the output folder, whatever the YAML says", () => {
    const { config, problems } = enforceUiFields(preset, "mine", "/data/output");
    expect(problems).toEqual([]);
    expect(getIn(config as Record<string, unknown>, "config.name")).toBe("mine");
    expect((config.config as { process: Record<string, unknown>[] }).process[0].training_folder).toBe("/data/output");
  });
  it("refuses what the UI cannot run", () => {
    expect(enforceUiFields([1, 2], "x", "/o").problems[0].path).toBe("");
    const two = structuredClone(preset);
    two.config.process.push(structuredClone(two.config.process[0]));
    expect(enforceUiFields(two, "x", "/o").problems.map((p) => p.path)).toEqual(["config.process"]);
  });
});

describe("setIn", () => {
  it("creates missing sections and deletes on null", () => {
    const target: Record<string, unknown> = {};
    setIn(target, "model.quantize_te", true);
    expect(target).toEqual({ model: { quantize_te: true } });
    setIn(target, "model.quantize_te", null);
    expect(target).toEqual({ model: {} });
    setIn(target, "sample.neg", null);
    expect(target).toEqual({ model: {} });
  });
});
