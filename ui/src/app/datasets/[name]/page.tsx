"use client";
// One dataset: upload images and captions, edit captions, delete images or the dataset.
import { useParams, useRouter } from "next/navigation";
import { useState } from "react";
import { ErrorBox } from "@/components/ui";
import { api, useApi } from "@/lib/client/api";
import { formatBytes } from "@/lib/format";
import type { DatasetImage } from "@/lib/types";

const ACCEPT = ".jpg,.jpeg,.png,.webp,.txt";
const BATCH = 10; // files per upload request

function CaptionEditor({ dataset, image, onDeleted }: { dataset: string; image: DatasetImage; onDeleted: () => void }) {
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
      <a href={image.url} target="_blank" rel="noreferrer">
        <img src={image.url} alt={image.file} loading="lazy" />
      </a>
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
  const { data, error, reload } = useApi<{ images: DatasetImage[] }>(`/api/datasets/${encodeURIComponent(dataset)}`);
  const [status, setStatus] = useState<string | null>(null);
  const [rejected, setRejected] = useState<{ file: string; reason: string }[]>([]);
  const [busy, setBusy] = useState(false);
  const [over, setOver] = useState(false);

  async function upload(files: File[]) {
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
        const res = await fetch(`/api/datasets/${encodeURIComponent(dataset)}/upload`, { method: "POST", body: form, credentials: "same-origin" });
        const result = await res.json().catch(() => ({}));
        saved += result.saved?.length ?? 0;
        refused.push(...(result.rejected ?? []));
        if (!res.ok && !result.rejected) refused.push({ file: `batch ${i / BATCH + 1}`, reason: result.error ?? `HTTP ${res.status}` });
      }
      setStatus(`Uploaded ${saved} file${saved === 1 ? "" : "s"}.`);
      setRejected(refused);
    } finally {
      setBusy(false);
      await reload();
    }
  }

  const images = data?.images ?? [];
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
      <div
        className={`dropzone panel ${over ? "over" : ""}`}
        onDragOver={(e) => {
          e.preventDefault();
          setOver(true);
        }}
        onDragLeave={() => setOver(false)}
        onDrop={(e) => {
          e.preventDefault();
          setOver(false);
          upload([...e.dataTransfer.files]);
        }}
      >
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
      <p className="muted">
        {images.length} images · {images.filter((i) => i.caption !== null).length} captioned. Use <code>[trigger]</code> in captions
        for the job&apos;s trigger word.
      </p>
      <div className="grid">
        {images.map((img) => (
          <CaptionEditor key={`${img.file}:${img.caption}`} dataset={dataset} image={img} onDeleted={reload} />
        ))}
      </div>
    </div>
  );
}
