"use client";
// "Import an ai-toolkit job": the job file ai-toolkit wrote (its web UI's JSON, its Advanced
// view's YAML, an example config), pasted or uploaded, goes to POST /api/jobs/import (the trainer's
// `python -m toolkit.ui.aitk plan`, the Gradio app's importer too). The answer says how each folder
// the job names is provided: kept (already in this UI's data folders), linked (to a dataset of this
// UI: the one named like the folder, or the one chosen here) or missing (create the dataset, upload
// its images, check again). The converted YAML goes to the page's job editor; the page queues it.
import Link from "next/link";
import { useState } from "react";
import { ErrorBox, ProblemList } from "@/components/ui";
import { api } from "@/lib/client/api";
import type { DatasetSummary, Problem } from "@/lib/types";

interface ImportFolder {
  path: string;
  kind: string;
  keys: string[];
  how: "kept" | "linked" | "upload" | "missing";
  target: string | null;
  dataset: string | null;
}

export interface ImportPlan {
  ok: boolean;
  name: string | null;
  yaml: string | null;
  folders: ImportFolder[];
  ignored: Problem[];
  problems: Problem[];
}

/** Folder kinds a dataset of this UI can stand in for (an image is linked through its folder). */
const FOLDER_KINDS = new Set(["dataset", "control", "mask"]);
const KIND_LABELS: Record<string, string> = {
  dataset: "dataset folder",
  control: "reference folder",
  mask: "mask folder",
  reference_image: "sample reference image",
  validation_image: "validation image",
};

/** The folder's last name as written (Windows or POSIX separators): the dataset name to create. */
function lastName(written: string): string {
  return written.replace(/\\/g, "/").replace(/\/+$/, "").split("/").pop() ?? "";
}

export function AitkImport({
  datasets,
  reloadDatasets,
  onImported,
}: {
  datasets: DatasetSummary[] | undefined;
  reloadDatasets: () => void;
  onImported: (plan: ImportPlan & { yaml: string; name: string }) => void;
}) {
  const [text, setText] = useState("");
  const [filename, setFilename] = useState<string | null>(null);
  const [jobName, setJobName] = useState("");
  const [links, setLinks] = useState<Record<string, string>>({});
  const [plan, setPlan] = useState<ImportPlan | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [created, setCreated] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);

  async function runImport(chosen: Record<string, string>) {
    setBusy(true);
    setError(null);
    try {
      const res = await api<ImportPlan>("/api/jobs/import", {
        method: "POST",
        json: { text, filename: filename ?? undefined, name: jobName.trim() || undefined, links: chosen },
      });
      setPlan(res);
      if (res.yaml && res.name) onImported({ ...res, yaml: res.yaml, name: res.name });
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  async function readFile(file: File | undefined) {
    if (!file) return;
    setText(await file.text());
    setFilename(file.name);
    setPlan(null);
    setLinks({});
  }

  async function createDataset(folder: ImportFolder) {
    const name = lastName(folder.path);
    setError(null);
    try {
      await api("/api/datasets", { method: "POST", json: { name } });
      setCreated((c) => [...c, name]);
      setLinks((l) => ({ ...l, [folder.path]: name }));
      reloadDatasets();
    } catch (err) {
      setError(`Cannot create dataset ${name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  const missingFolders = plan?.folders.filter((f) => f.how === "missing" && FOLDER_KINDS.has(f.kind)) ?? [];

  return (
    <details className="panel" data-testid="aitk-import">
      <summary>Import an ai-toolkit job</summary>
      <p className="muted small">
        The job file ai-toolkit wrote (its UI&apos;s <code>.job_config.json</code>, the YAML of its Advanced view, or an
        example config). Its folders must be datasets of this UI: a folder is linked to the dataset with the same name
        (e.g. <code>/path/to/images/folder</code> to dataset <code>folder</code>) or to the one you choose; paths outside
        this UI&apos;s data folders are never read.
      </p>
      <div className="fields">
        <label className="field">
          <span className="label">Job file</span>
          <input
            type="file"
            accept=".json,.jsonc,.yaml,.yml"
            data-testid="aitk-file"
            onChange={(e) => readFile(e.target.files?.[0])}
          />
          <span className="help">{filename ? `Read ${filename}.` : "JSON or YAML."}</span>
        </label>
        <label className="field">
          <span className="label">Job name (optional)</span>
          <input name="aitk-name" value={jobName} onChange={(e) => setJobName(e.target.value)} />
          <span className="help">Replaces the file&apos;s config.name.</span>
        </label>
      </div>
      <label className="field">
        <span className="label">Or paste it</span>
        <textarea
          className="code"
          name="aitk-text"
          rows={8}
          spellCheck={false}
          value={text}
          onChange={(e) => {
            setText(e.target.value);
            setFilename(null);
          }}
        />
      </label>
      <div className="row">
        <button
          type="button"
          disabled={busy || !text.trim()}
          data-testid="aitk-import-button"
          onClick={() => {
            setLinks({});
            runImport({});
          }}
        >
          Import
        </button>
        {plan ? (
          <button type="button" disabled={busy} data-testid="aitk-recheck" onClick={() => runImport(links)}>
            Check again
          </button>
        ) : null}
        {busy ? <span className="muted">Converting with the trainer…</span> : null}
      </div>
      <ErrorBox error={error} />

      {plan ? (
        <div data-testid="aitk-plan">
          {plan.folders.length ? (
            <>
              <h3>Folders and images the job names</h3>
              <ul data-testid="aitk-folders">
                {plan.folders.map((f) => (
                  <li key={f.path} data-testid="aitk-folder" data-path={f.path} data-how={f.how}>
                    <code>{f.path}</code> <span className="muted small">({KIND_LABELS[f.kind] ?? f.kind}, {f.keys[0]}
                    {f.keys.length > 1 ? ` and ${f.keys.length - 1} more` : ""})</span>:{" "}
                    {f.how === "kept" ? (
                      <span>kept{f.dataset ? <> (dataset <Link href={`/datasets/${encodeURIComponent(f.dataset)}`}>{f.dataset}</Link>)</> : null}</span>
                    ) : f.how === "linked" ? (
                      f.dataset ? (
                        <span>
                          linked to dataset <Link href={`/datasets/${encodeURIComponent(f.dataset)}`}>{f.dataset}</Link>
                        </span>
                      ) : (
                        <span>linked to <code>{f.target}</code></span>
                      )
                    ) : (
                      <strong className="field-error">missing</strong>
                    )}
                    {f.how === "missing" && FOLDER_KINDS.has(f.kind) ? (
                      <div className="row small">
                        <label>
                          Link to dataset{" "}
                          <select
                            name={`aitk-link-${f.path}`}
                            data-testid="aitk-link"
                            value={links[f.path] ?? ""}
                            onChange={(e) => setLinks((l) => ({ ...l, [f.path]: e.target.value }))}
                          >
                            <option value="">(choose)</option>
                            {datasets?.map((d) => (
                              <option key={d.name} value={d.name}>
                                {d.name} ({d.images} images)
                              </option>
                            ))}
                          </select>
                        </label>
                        {created.includes(lastName(f.path)) ? (
                          <span>
                            Created: upload its images on the{" "}
                            <Link href={`/datasets/${encodeURIComponent(lastName(f.path))}`} target="_blank">
                              dataset&apos;s page
                            </Link>
                            , then check again.
                          </span>
                        ) : datasets?.some((d) => d.name === lastName(f.path)) ? null : (
                          <button type="button" data-testid="aitk-create" onClick={() => createDataset(f)}>
                            Create dataset {lastName(f.path)}
                          </button>
                        )}
                      </div>
                    ) : null}
                  </li>
                ))}
              </ul>
              {missingFolders.length ? (
                <p className="muted small">
                  Choose a dataset for each missing folder (or create it and upload its images), then Check again.
                </p>
              ) : null}
            </>
          ) : null}
          {plan.ignored.length ? (
            <details data-testid="aitk-ignored">
              <summary>
                {plan.ignored.length} ai-toolkit key{plan.ignored.length === 1 ? "" : "s"} accepted that change nothing here
              </summary>
              <ul className="small">
                {plan.ignored.map((p) => (
                  <li key={p.path}>
                    <code>{p.path}</code>: {p.message}
                  </li>
                ))}
              </ul>
            </details>
          ) : null}
          <ProblemList problems={plan.problems} />
          {plan.ok ? (
            <div className="notice" data-testid="aitk-ok">
              Imported as job <strong>{plan.name}</strong>: its YAML is in the editor below; queue it with Queue job.
            </div>
          ) : plan.yaml ? (
            <p className="muted small">The converted YAML is in the editor below; fix the problems above, then Check again.</p>
          ) : null}
        </div>
      ) : null}
    </details>
  );
}
