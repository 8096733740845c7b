"use client";
// Every job; tick jobs (or all of them) and delete them together with their outputs.
import Link from "next/link";
import { useState } from "react";
import { JobTable, type JobListItem } from "@/components/JobTable";
import { ErrorBox } from "@/components/ui";
import { api, useApi } from "@/lib/client/api";

export default function JobsPage() {
  const jobs = useApi<{ jobs: JobListItem[] }>("/api/jobs", 3000);
  const [selected, setSelected] = useState<Set<number>>(new Set());
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const present = new Set(jobs.data?.jobs.map((j) => j.id));
  const chosen = [...selected].filter((id) => present.has(id));

  async function deleteSelected() {
    const names = jobs.data?.jobs.filter((j) => chosen.includes(j.id)).map((j) => j.name) ?? [];
    if (!confirm(`Delete ${names.length} job(s) with their LoRA files and samples?\n${names.join(", ")}`)) return;
    setBusy(true);
    setError(null);
    try {
      const res = await api<{ deleted: number[]; refused: { id: number; reason: string }[] }>("/api/jobs", {
        method: "DELETE",
        json: { ids: chosen },
      });
      if (res.refused.length) setError(`not deleted: ${res.refused.map((r) => `job ${r.id} (${r.reason})`).join(", ")}`);
      setSelected(new Set());
      await jobs.reload();
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div>
      <div className="row">
        <h1>Jobs</h1>
        <span className="spacer" />
        <button className="danger" disabled={busy || chosen.length === 0} onClick={deleteSelected} data-testid="delete-selected">
          Delete selected{chosen.length ? ` (${chosen.length})` : ""}
        </button>
        <Link className="button primary" href="/jobs/new">
          New job
        </Link>
      </div>
      <ErrorBox error={jobs.error || error} />
      {jobs.data ? (
        <JobTable jobs={jobs.data.jobs} empty="No jobs yet." selected={selected} onSelect={setSelected} />
      ) : (
        <p className="muted">Loading…</p>
      )}
    </div>
  );
}
