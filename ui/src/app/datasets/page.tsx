"use client";
import Link from "next/link";
import { useState } from "react";
import { ErrorBox } from "@/components/ui";
import { api, useApi } from "@/lib/client/api";
import type { DatasetSummary } from "@/lib/types";

export default function DatasetsPage() {
  const { data, error, reload } = useApi<{ datasets: DatasetSummary[] }>("/api/datasets");
  const [name, setName] = useState("");
  const [createError, setCreateError] = useState<string | null>(null);
  return (
    <div>
      <h1>Datasets</h1>
      <form
        className="panel row"
        onSubmit={async (e) => {
          e.preventDefault();
          setCreateError(null);
          try {
            await api("/api/datasets", { method: "POST", json: { name } });
            window.location.href = `/datasets/${encodeURIComponent(name)}`;
          } catch (err) {
            setCreateError(err instanceof Error ? err.message : String(err));
          }
        }}
      >
        <input
          name="dataset-name"
          placeholder="new dataset name (letters, digits, . _ -)"
          value={name}
          onChange={(e) => setName(e.target.value)}
          style={{ maxWidth: 360 }}
        />
        <button className="primary" type="submit" disabled={!name}>
          Create dataset
        </button>
      </form>
      <ErrorBox error={createError || error} />
      {data && data.datasets.length === 0 ? <p className="muted">No datasets yet: create one, then upload images.</p> : null}
      <div className="grid" data-testid="dataset-list">
        {data?.datasets.map((d) => (
          <Link key={d.name} href={`/datasets/${encodeURIComponent(d.name)}`} className="thumb">
            {d.cover ? <img src={d.cover} alt="" /> : <div className="dropzone">empty</div>}
            <strong>{d.name}</strong>
            <span className="muted small">
              {d.images} images · {d.captions} captioned
              {d.references ? ` · ${d.paired} with a reference` : ""}
            </span>
          </Link>
        ))}
      </div>
      <p className="muted small">
        <button className="link-button" onClick={reload}>
          refresh
        </button>
      </p>
    </div>
  );
}
