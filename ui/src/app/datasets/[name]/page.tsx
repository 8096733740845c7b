"use client";
// One dataset: upload images and captions, edit captions, delete images or the dataset; reference
// images for edit LoRAs (the dataset's control/ folder, paired with the targets by file name).
import { useParams, useRouter } from "next/navigation";
import { useState, type DragEvent } from "react";
import { ErrorBox } from "@/components/ui";
import { api, useApi } from "@/lib/client/api";
import { formatBytes } from "@/lib/format";
import type { DatasetDetail, DatasetImage } from "@/lib/types";

const ACCEPT = ".jpg,.jpeg,.png,.webp,.txt";
const ACCEPT_REFERENCES = ".jpg,.jpeg,.png,.webp";
type Kind = "image" | "reference";

async function deleteReference(dataset: string, file: string): Promise<void> {
  await api(`/api/datasets/${encodeURIComponent(dataset)}/image?kind=reference&file=${encodeURIComponent(file)}`, { method: "DELETE" });
}
const BATCH = 10; // files per upload request

function CaptionEditor({
  dataset,
  image,
  showReference,
  onDeleted,
}: {
  dataset: string;
  image: DatasetImage;
  showReference: boolean;
  onDeleted: () => void;
}) {
  const [text, setText] = useState(image.caption ?? "");
  const [saved, setSaved] = useState(image.caption ?? "");
  const [error, setError] = useState<string | null>(null);
  const dirty = text !== saved;
  async function save() {
    setError(null);
    try {
      await api(`/api/datasets/${encodeURIComponent(dataset)}/caption`, { method: "PUT", json: { image: image.file, caption: text } });
      setSaved(text);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  }
  return (
    <div className="thumb" data-testid="dataset-image" data-file={image.file}>
      {showReference ? (
        <div className="pair">
          <figure>
            <a href={image.url} target="_blank" rel="noreferrer">
              <img src={image.url} alt={image.file} loading="lazy" />
            </a>
            <figcaption>target</figcaption>
          </figure>
          <figure data-testid="reference" data-reference={image.reference?.file ?? ""}>
            {image.reference ? (
              <>
                <a href={image.reference.url} target="_blank" rel="noreferrer">
                  <img src={image.reference.url} alt={`reference ${image.reference.file}`} loading="lazy" />
                </a>
                <figcaption className="row">
                  <span>reference {image.reference.file}</span>
                  <span className="spacer" />
                  <button
                    className="link-button"
                    title={`delete the reference control/${image.reference.file}`}
                    onClick={async () => {
                      if (!image.reference || !confirm(`Delete the reference image ${image.reference.file}?`)) return;
                      try {
                        await deleteReference(dataset, image.reference.file);
                        onDeleted();
                      } catch (err) {
                        setError(err instanceof Error ? err.message : String(err));
                      }
                    }}
                  >
                    delete
                  </button>
                </figcaption>
              </>
            ) : (
              <>
                <div className="no-reference">no reference</div>
                <figcaption>skipped by edit presets</figcaption>
              </>
            )}
          </figure>
        </div>
      ) : (
        <a href={image.url} target="_blank" rel="noreferrer">
          <img src={image.url} alt={image.file} loading="lazy" />
        </a>
      )}
      <div className="row small">
        <code>{image.file}</code>
        <span className="spacer" />
        <span className="muted">{formatBytes(image.size)}</span>
      </div>
      <textarea
        aria-label={`caption of ${image.file}`}
        placeholder="no caption (the dataset's default caption applies)"
        value={text}
        onChange={(e) => setText(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) save();
        }}
      />
      <ErrorBox error={error} />
      <div className="row">
        <button onClick={save} disabled={!dirty} data-testid="save-caption">
          {dirty ? "Save caption" : "Saved"}
        </button>
        <span className="spacer" />
        <button
          className="danger"
          onClick={async () => {
            if (!confirm(`Delete ${image.file} and its caption?`)) return;
            try {
              await api(`/api/datasets/${encodeURIComponent(dataset)}/image?file=${encodeURIComponent(image.file)}`, { method: "DELETE" });
              onDeleted();
            } catch (err) {
              setError(err instanceof Error ? err.message : String(err));
            }
          }}
        >
          Delete
        </button>
      </div>
    </div>
  );
}

export default function DatasetPage() {
  const { name } = useParams<{ name: string }>();
  const dataset = decodeURIComponent(name);
  const router = useRouter();
  const { data, error, reload } = useApi<DatasetDetail>(`/api/datasets/${encodeURIComponent(dataset)}`);
  const [status, setStatus] = useState<string | null>(null);
  const [rejected, setRejected] = useState<{ file: string; reason: string }[]>([]);
  const [busy, setBusy] = useState(false);
  const [over, setOver] = useState<Kind | null>(null);
  const [refError, setRefError] = useState<string | null>(null);

  async function upload(files: File[], kind: Kind = "image") {
    if (files.length === 0) return;
    setBusy(true);
    setRejected([]);
    let saved = 0;
    const refused: { file: string; reason: string }[] = [];
    try {
      for (let i = 0; i < files.length; i += BATCH) {
        const form = new FormData();
        for (const f of files.slice(i, i + BATCH)) form.append("files", f);
        setStatus(`Uploading ${Math.min(i + BATCH, files.length)} / ${files.length}…`);
        const query = kind === "reference" ? "?kind=reference" : "";
        const res = await fetch(`/api/datasets/${encodeURIComponent(dataset)}/upload${query}`, {
          method: "POST",
          body: form,
          credentials: "same-origin",
        });
        const result = await res.json().catch(() => ({}));
        saved += result.saved?.length ?? 0;
        refused.push(...(result.rejected ?? []));
        if (!res.ok && !result.rejected) refused.push({ file: `batch ${i / BATCH + 1}`, reason: result.error ?? `HTTP ${res.status}` });
      }
      setStatus(kind === "reference" ? `Uploaded ${saved} reference image${saved === 1 ? "" : "s"}.` : `Uploaded ${saved} file${saved === 1 ? "" : "s"}.`);
      setRejected(refused);
    } finally {
      setBusy(false);
      await reload();
    }
  }

  const images = data?.images ?? [];
  const references = data?.references ?? [];
  const orphans = references.filter((r) => r.target === null);
  const paired = images.filter((i) => i.reference !== null).length;
  const dropProps = (kind: Kind) => ({
    onDragOver: (e: DragEvent) => {
      e.preventDefault();
      setOver(kind);
    },
    onDragLeave: () => setOver(null),
    onDrop: (e: DragEvent) => {
      e.preventDefault();
      setOver(null);
      upload([...e.dataTransfer.files], kind);
    },
  });
  return (
    <div>
      <div className="row">
        <h1>Dataset {dataset}</h1>
        <span className="spacer" />
        <button
          className="danger"
          onClick={async () => {
            if (!confirm(`Delete dataset ${dataset} and all its images?`)) return;
            await api(`/api/datasets/${encodeURIComponent(dataset)}`, { method: "DELETE" });
            router.push("/datasets");
          }}
        >
          Delete dataset
        </button>
      </div>
      <ErrorBox error={error} />
      <div className={`dropzone panel ${over === "image" ? "over" : ""}`} {...dropProps("image")}>
        <p>Drop images (jpg, png, webp) and same-named .txt captions here, or</p>
        <input
          type="file"
          multiple
          accept={ACCEPT}
          disabled={busy}
          data-testid="upload-input"
          onChange={(e) => {
            const files = [...(e.target.files ?? [])];
            e.target.value = "";
            upload(files);
          }}
        />
      </div>
      <div className={`dropzone panel ${over === "reference" ? "over" : ""}`} data-testid="reference-dropzone" {...dropProps("reference")}>
        <p>
          <strong>Reference images (edit LoRAs)</strong>: for edit presets: one reference per target, same file name (any of
          jpg/png/webp). Drop them here, or
        </p>
        <input
          type="file"
          multiple
          accept={ACCEPT_REFERENCES}
          disabled={busy}
          data-testid="reference-upload-input"
          aria-label="reference images"
          onChange={(e) => {
            const files = [...(e.target.files ?? [])];
            e.target.value = "";
            upload(files, "reference");
          }}
        />
        <p className="small">
          Saved in the dataset&apos;s <code>control/</code> folder; a job from an edit preset uses it as <code>control_path</code>.
        </p>
      </div>
      {status ? (
        <div className="notice" data-testid="upload-status">
          {status}
        </div>
      ) : null}
      {rejected.length ? (
        <div className="problems">
          <strong>Not uploaded:</strong>
          <ul>
            {rejected.map((r, i) => (
              <li key={i}>
                <code>{r.file}</code>: {r.reason}
              </li>
            ))}
          </ul>
        </div>
      ) : null}
      {data?.reference_problems.length ? (
        <div className="problems" data-testid="reference-problems">
          <strong>Reference images:</strong>
          <ul>
            {data.reference_problems.map((p, i) => (
              <li key={i}>{p}</li>
            ))}
          </ul>
        </div>
      ) : null}
      <ErrorBox error={refError} />
      {orphans.length ? (
        <div className="panel small" data-testid="orphan-references">
          <strong>Reference images without a target</strong> (no image with the same file name; edit presets ignore them):
          <ul>
            {orphans.map((r) => (
              <li key={r.file}>
                <a href={r.url} target="_blank" rel="noreferrer">
                  <code>{r.file}</code>
                </a>{" "}
                <button
                  className="link-button"
                  onClick={async () => {
                    if (!confirm(`Delete the reference image ${r.file}?`)) return;
                    setRefError(null);
                    try {
                      await deleteReference(dataset, r.file);
                      await reload();
                    } catch (err) {
                      setRefError(err instanceof Error ? err.message : String(err));
                    }
                  }}
                >
                  delete
                </button>
              </li>
            ))}
          </ul>
        </div>
      ) : null}
      <p className="muted" data-testid="dataset-counts">
        {images.length} images · {images.filter((i) => i.caption !== null).length} captioned
        {references.length ? ` · ${paired} with a reference image` : ""}. Use <code>[trigger]</code> in captions for the job&apos;s
        trigger word.
      </p>
      <div className="grid">
        {images.map((img) => (
          <CaptionEditor
            key={`${img.file}:${img.caption}`}
            dataset={dataset}
            image={img}
            showReference={references.length > 0}
            onDeleted={reload}
          />
        ))}
      </div>
    </div>
  );
}
