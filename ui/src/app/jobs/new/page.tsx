"use client";
// New job: pick a preset (the trainer's shipped example configs), change a few fields, check
// with the trainer's validator, queue. Every field's type, choices and default come from the
// Python schema; the job is the preset's config with only the fields the user touched changed.
import Link from "next/link";
import { useRouter, useSearchParams } from "next/navigation";
import { Suspense, useEffect, useMemo, useRef, useState } from "react";
import YAML from "yaml";
import { AitkImport } from "@/components/AitkImport";
import { SchemaField } from "@/components/SchemaField";
import { ErrorBox, ProblemList } from "@/components/ui";
import { api, ApiError, useApi } from "@/lib/client/api";
import { getIn, processOf } from "@/lib/jobconfig";
import { fieldSpec, parseFieldText, sectionFields, settingSections, type FieldSpec } from "@/lib/schema";
import type { DatasetSummary, JobConfig, Problem, UiSchema } from "@/lib/types";

type SchemaResponse = UiSchema & { datasets_dir: string; output_dir: string };
type Built = { config: JobConfig; yaml: string; edit: boolean };
/** The form is built into a job by the trainer's Python (POST /api/jobs/build) this long after the last change. */
const BUILD_DEBOUNCE_MS = 300;

/** Which settings the form shows up front (the rest are under "All settings"); labels only. */
const GROUPS: { title: string; fields: [string, string?][] }[] = [
  { title: "Job", fields: [["trigger_word", "Trigger word"], ["device", "Device"]] },
  {
    title: "Training",
    fields: [
      ["train.steps", "Steps"],
      ["train.lr", "Learning rate"],
      ["network.linear", "LoRA rank"],
      ["network.linear_alpha", "LoRA alpha"],
      ["train.batch_size", "Batch size"],
      ["train.optimizer", "Optimizer"],
    ],
  },
  {
    title: "Sampling",
    fields: [
      ["sample.sample_every", "Sample every N steps"],
      ["sample.sample_steps", "Sampling steps"],
      ["sample.width", "Sample width"],
      ["sample.height", "Sample height"],
      ["sample.guidance_scale", "Guidance scale"],
    ],
  },
  { title: "Saving", fields: [["save.save_every", "Save every N steps"], ["save.max_step_saves_to_keep", "Checkpoints to keep"]] },
  {
    title: "Memory: quantization and offloading",
    fields: [
      ["model.quantize", "Quantize the transformer"],
      ["model.qtype", "Transformer quantization"],
      ["model.quantize_te", "Quantize the text encoder"],
      ["model.qtype_te", "Text encoder quantization"],
      ["model.low_vram", "Low VRAM (text encoder on the CPU)"],
      ["model.layer_offloading", "Layer offloading"],
      ["train.cache_text_embeddings", "Cache text embeddings"],
      ["train.unload_text_encoder", "Unload the text encoder"],
      ["train.gradient_checkpointing", "Gradient checkpointing"],
      ["datasets.cache_latents_to_disk", "Cache latents to disk"],
    ],
  },
];
const SHOWN = new Set(GROUPS.flatMap((g) => g.fields.map(([p]) => p)));
/** Edited through their own inputs (datasets, resolutions, prompts) or owned by the UI. */
const SPECIAL = new Set([
  "training_folder",
  "type",
  "datasets.folder_path",
  "datasets.control_path",
  "datasets.resolution",
  "sample.prompts",
  "sample.ctrl_img",
]);

/** `config.process[0].datasets[1].resolution` -> `datasets.resolution` (the form's field path). */
function formPath(problemPath: string): string {
  return problemPath.replace(/^config\.process\[0\]\.?/, "").replace(/\[\d+\]/g, "");
}

function resolutionText(value: unknown): string {
  if (Array.isArray(value)) return value.join(", ");
  return value === undefined || value === null ? "" : String(value);
}

function NewJobForm() {
  const router = useRouter();
  const search = useSearchParams();
  const schemaQ = useApi<SchemaResponse>("/api/schema");
  const datasetsQ = useApi<{ datasets: DatasetSummary[] }>("/api/datasets");
  const ui = schemaQ.data;

  const [presetId, setPresetId] = useState<string | null>(null);
  const [name, setName] = useState("");
  const [values, setValues] = useState<Record<string, unknown>>({});
  const [drafts, setDrafts] = useState<Record<string, string>>({});
  const [datasets, setDatasets] = useState<string[]>([]);
  const [resolutions, setResolutions] = useState<string | null>(null);
  const [prompts, setPrompts] = useState<string | null>(null);
  const [yamlText, setYamlText] = useState<string | null>(null);
  const [problems, setProblems] = useState<Problem[]>([]);
  const [notice, setNotice] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  /** The YAML in the editor came from an ai-toolkit job (no preset made it). */
  const [imported, setImported] = useState(false);
  const yamlEditor = useRef<HTMLDetailsElement>(null);

  const preset = ui?.presets.find((p) => p.id === presetId) ?? null;
  const presetProc = useMemo(() => (preset ? processOf(structuredClone(preset.config)) : {}), [preset]);

  function choosePreset(id: string) {
    const p = ui?.presets.find((x) => x.id === id);
    if (!p) return;
    setPresetId(id);
    const section = p.config.config as Record<string, unknown> | undefined;
    setName(String(section?.name ?? id));
    setValues({});
    setDrafts({});
    setResolutions(null);
    setPrompts(null);
    setYamlText(null);
    setImported(false);
    setBuilt(null);
    setProblems([]);
    setNotice(null);
  }

  useEffect(() => {
    if (ui && presetId === null && ui.presets.length) {
      const wanted = search.get("preset");
      choosePreset(ui.presets.some((p) => p.id === wanted) ? wanted! : ui.presets[0].id);
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [ui]);

  const parsedResolutions = resolutions === null ? null : resolutions.split(/[\s,]+/).filter(Boolean).map(Number);
  const parsedPrompts = prompts === null ? null : prompts.split("\n").map((l) => l.trim()).filter(Boolean);
  const datasetList = datasetsQ.data?.datasets;
  // The job the form makes, from the trainer's one preset builder (the Gradio app's too): the
  // server resolves dataset names and the samples' reference image, and sets the UI's own fields.
  const [built, setBuilt] = useState<(Built & { key: string }) | null>(null);
  const [buildError, setBuildError] = useState<string | null>(null);
  const formKey = JSON.stringify({ presetId, name, values, datasets, parsedResolutions, parsedPrompts });
  useEffect(() => {
    if (!presetId) return;
    let current = true;
    const timer = setTimeout(() => {
      api<Built>("/api/jobs/build", {
        method: "POST",
        json: { preset: presetId, name, values, datasets, resolutions: parsedResolutions, prompts: parsedPrompts },
      })
        .then((res) => {
          if (!current) return;
          setBuilt({ ...res, key: formKey });
          setBuildError(null);
        })
        .catch((err) => current && setBuildError(err instanceof Error ? err.message : String(err)));
    }, BUILD_DEBOUNCE_MS);
    return () => {
      current = false;
      clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [formKey, datasetList]);
  const generated = built?.yaml ?? "";
  // while the form changes, the last build is not what would be queued (hand-edited YAML is)
  const stale = yamlText === null && built?.key !== formKey;
  const yaml = yamlText ?? generated;
  const needsReferences = built?.edit ?? false;

  const fieldErrors = useMemo(() => {
    const out: Record<string, string> = {};
    for (const p of problems) out[formPath(p.path)] ??= p.message;
    return out;
  }, [problems]);

  function setField(spec: FieldSpec, text: string) {
    setDrafts((d) => ({ ...d, [spec.path]: text }));
    setValues((v) => ({ ...v, [spec.path]: parseFieldText(spec, text, (t) => YAML.parse(t)) }));
  }

  function renderField(path: string, label?: string, effective?: unknown) {
    if (!ui) return null;
    const spec = fieldSpec(ui.schema, path);
    if (!spec) return null; // the trainer no longer has this setting
    const value = path in values ? values[path] : effective !== undefined ? effective : getIn(presetProc, path);
    return (
      <SchemaField
        key={path}
        spec={spec}
        label={label}
        value={value}
        draft={drafts[path]}
        error={fieldErrors[path]}
        onChange={(text) => setField(spec, text)}
      />
    );
  }

  async function submit(queue: boolean) {
    setBusy(true);
    setProblems([]);
    setNotice(null);
    setError(null);
    try {
      if (queue) {
        const res = await api<{ job: { id: number } }>("/api/jobs", { method: "POST", json: { name, yaml, preset: imported ? null : presetId } });
        router.push(`/jobs/${res.job.id}`);
        return;
      }
      const res = await api<{ ok: boolean; problems: Problem[] }>("/api/jobs/validate", { method: "POST", json: { name, yaml } });
      setProblems(res.problems);
      if (res.ok) setNotice("The trainer accepts this job.");
    } catch (err) {
      if (err instanceof ApiError && Array.isArray(err.data.problems)) setProblems(err.data.problems as Problem[]);
      else setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  if (!ui) {
    return (
      <div>
        <h1>New job</h1>
        <ErrorBox error={schemaQ.error} />
        {!schemaQ.error ? <p className="muted">Reading the trainer&apos;s presets (python -m toolkit.ui.schema)…</p> : null}
      </div>
    );
  }
  const arch = preset ? ui.archs[preset.arch] : undefined;
  const presetDatasets = Array.isArray(presetProc.datasets) ? (presetProc.datasets as { folder_path?: string }[]) : [];
  const extraSections = ["", ...settingSections(ui.schema)];
  const formLocked = yamlText !== null;
  // edit presets: every chosen dataset needs references paired with its targets (the form's job only)
  const missingReferences =
    needsReferences && !formLocked
      ? datasets.filter((n) => (datasetList?.find((d) => d.name === n)?.paired ?? 0) === 0)
      : [];
  const presetCtrlImg = getIn(presetProc, "sample.ctrl_img");
  const builtCtrlImg = built ? getIn(built.config, "config.process.sample.ctrl_img") : undefined;

  return (
    <div>
      <h1>New job</h1>
      <div className="panel">
        <h3>Model preset</h3>
        <div className="preset-list" data-testid="presets">
          {ui.presets.map((p) => (
            <button
              key={p.id}
              type="button"
              className={`preset ${p.id === presetId ? "selected" : ""}`}
              data-preset={p.id}
              onClick={() => choosePreset(p.id)}
            >
              <strong>{p.label}</strong>
              <span className="muted">{p.name_or_path}</span>
              <span className="muted">arch {p.arch}</span>
            </button>
          ))}
        </div>
        {arch ? (
          <p className="muted small">
            arch <code>{preset?.arch}</code> ({arch.class}, official weights {arch.official_repo}):{" "}
            {arch.capabilities.guidance_distilled ? "guidance-distilled" : "real CFG at sampling"}, default{" "}
            {String(arch.sampling.sample_steps)} sampling steps, guidance {String(arch.sampling.guidance_scale)}.
          </p>
        ) : null}
      </div>

      <AitkImport
        datasets={datasetList}
        reloadDatasets={datasetsQ.reload}
        onImported={(plan) => {
          setYamlText(plan.yaml);
          setName(plan.name);
          setImported(true);
          setProblems([]);
          setNotice(null);
          if (yamlEditor.current) yamlEditor.current.open = true;
        }}
      />

      {imported ? (
        <div className="notice">
          The YAML below is the imported ai-toolkit job <strong>{name}</strong>: it is what will be queued (the preset form is
          hidden). Discard it to use the form.
        </div>
      ) : null}
      {/* an imported job is not the preset's: its form would show other values */}
      <fieldset disabled={formLocked} hidden={imported} style={{ border: "none", padding: 0, margin: 0 }}>
        {formLocked ? <div className="notice">The YAML was edited by hand: it is what will be queued. Discard the edits to use the form.</div> : null}
        <div className="panel">
          <h3>Job</h3>
          <div className="fields">
            <label className="field">
              <span className="label">Name</span>
              <input name="name" value={name} onChange={(e) => setName(e.target.value)} />
              <span className="help">Output folder and LoRA file name.</span>
              {fieldErrors["config.name"] || fieldErrors["name"] ? <span className="field-error">{fieldErrors["config.name"]}</span> : null}
            </label>
            {GROUPS[0].fields.map(([p, l]) => renderField(p, l))}
          </div>
        </div>

        <div className="panel">
          <h3>Data</h3>
          <div className="row" data-testid="dataset-picker">
            {datasetsQ.data?.datasets.map((d) => (
              <label key={d.name} className="check">
                <input
                  type="checkbox"
                  name={`dataset-${d.name}`}
                  checked={datasets.includes(d.name)}
                  onChange={(e) => setDatasets((cur) => (e.target.checked ? [...cur, d.name] : cur.filter((x) => x !== d.name)))}
                />
                {d.name}{" "}
                <span className="muted small">
                  ({d.images} images{needsReferences ? `, ${d.paired} with a reference` : ""})
                </span>
              </label>
            ))}
          </div>
          {needsReferences ? (
            <p className="muted small" data-testid="edit-preset-note">
              This preset trains an edit LoRA: each target image needs a reference image with the same file name in the
              dataset&apos;s <code>control/</code> folder (upload them on the dataset&apos;s page); the job sets{" "}
              <code>control_path</code> to it.
            </p>
          ) : null}
          {missingReferences.length ? (
            <div className="problems" role="alert" data-testid="missing-references">
              <ul>
                {missingReferences.map((n) => (
                  <li key={n}>
                    Dataset <strong>{n}</strong> has no reference images for its targets: add reference images on the{" "}
                    <Link href={`/datasets/${encodeURIComponent(n)}`}>dataset&apos;s page</Link> (same file name as the
                    target, any of jpg/png/webp), or untick it.
                  </li>
                ))}
              </ul>
            </div>
          ) : null}
          {datasets.length === 0 ? (
            <p className="muted small">
              No dataset chosen: the preset&apos;s {presetDatasets.map((d) => d.folder_path).join(", ") || "(none)"} is used
              {needsReferences ? " (with its control_path)" : ""}.
              {datasetsQ.data?.datasets.length === 0 ? " Create one under Datasets." : ""}
            </p>
          ) : null}
          <div className="fields">
            <label className="field">
              <span className="label">Resolutions</span>
              <input
                name="resolutions"
                value={resolutions ?? resolutionText(getIn(presetProc, "datasets.resolution"))}
                onChange={(e) => setResolutions(e.target.value)}
              />
              <span className="help">Bucket sizes in pixels, comma separated (e.g. 512, 768, 1024).</span>
              {fieldErrors["datasets.resolution"] ? <span className="field-error">{fieldErrors["datasets.resolution"]}</span> : null}
            </label>
          </div>
        </div>

        {GROUPS.slice(1).map((group) => (
          <div className="panel" key={group.title}>
            <h3>{group.title}</h3>
            {group.title === "Sampling" ? (
              <label className="field">
                <span className="label">Sample prompts</span>
                <textarea
                  name="prompts"
                  rows={4}
                  value={prompts ?? ((getIn(presetProc, "sample.prompts") as string[] | undefined) ?? []).join("\n")}
                  onChange={(e) => setPrompts(e.target.value)}
                />
                <span className="help">
                  One per line; [trigger] is replaced by the trigger word; flags --w --h --seed --cfg --steps --n.
                </span>
                {fieldErrors["sample.prompts"] ? <span className="field-error">{fieldErrors["sample.prompts"]}</span> : null}
              </label>
            ) : null}
            <div className="fields">
              {group.fields.map(([p, l]) => renderField(p, l))}
              {group.title === "Sampling" && presetCtrlImg !== undefined && presetCtrlImg !== null
                ? renderField("sample.ctrl_img", "Reference image the samples edit", builtCtrlImg)
                : null}
            </div>
          </div>
        ))}

        <details className="panel">
          <summary>All settings</summary>
          <p className="muted small">Every other setting of the trainer, from its schema. Empty = the trainer&apos;s default.</p>
          {extraSections.map((section) => {
            const fields = sectionFields(ui.schema, section).filter((f) => !SHOWN.has(f.path) && !SPECIAL.has(f.path));
            if (fields.length === 0) return null;
            return (
              <div key={section || "process"}>
                <h3>{section || "process"}</h3>
                <div className="fields">{fields.map((f) => renderField(f.path))}</div>
              </div>
            );
          })}
        </details>
      </fieldset>

      <details className="panel" data-testid="yaml-editor" ref={yamlEditor}>
        <summary>Advanced: edit the YAML</summary>
        <p className="muted small">
          The job file that will be queued (the preset with your changes). Editing it here takes over from the form; the UI still sets{" "}
          <code>config.name</code> and <code>training_folder</code>.
        </p>
        <textarea
          className="code"
          name="yaml"
          spellCheck={false}
          value={yaml}
          data-built={stale ? "stale" : "current"}
          onChange={(e) => setYamlText(e.target.value)}
        />
        {buildError ? <div className="problems" role="alert">The form cannot be built: {buildError}</div> : null}
        {formLocked ? (
          <button
            type="button"
            onClick={() => {
              setYamlText(null);
              setImported(false);
            }}
          >
            Discard YAML edits
          </button>
        ) : null}
      </details>

      <ProblemList problems={problems} />
      {notice ? <div className="notice">{notice}</div> : null}
      <ErrorBox error={error} />
      <div className="row">
        <button type="button" onClick={() => submit(false)} disabled={busy || stale || !preset || missingReferences.length > 0} data-testid="check">
          Check
        </button>
        <button
          type="button"
          className="primary"
          onClick={() => submit(true)}
          disabled={busy || stale || !preset || missingReferences.length > 0}
          data-testid="queue"
        >
          Queue job
        </button>
        {busy ? <span className="muted">Validating with the trainer…</span> : null}
      </div>
    </div>
  );
}

export default function NewJobPage() {
  return (
    <Suspense>
      <NewJobForm />
    </Suspense>
  );
}
