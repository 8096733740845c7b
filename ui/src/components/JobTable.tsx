"use client";
import Link from "next/link";
import { formatLoss, formatTime } from "@/lib/format";
import type { JobSummary } from "@/lib/types";
import { ProgressBar, StateBadge } from "./ui";

export type JobListItem = JobSummary & { queue_position: number | null };

/** A job that can be deleted (not while its trainer runs). */
export function deletable(job: JobSummary): boolean {
  return job.state !== "running" && job.state !== "stopping";
}

/**
 * The jobs; with `selected`/`onSelect`, a checkbox per deletable job and one in the header for all
 * of them (bulk delete on the jobs page).
 */
export function JobTable({
  jobs,
  empty,
  selected,
  onSelect,
}: {
  jobs: JobListItem[];
  empty: string;
  selected?: Set<number>;
  onSelect?: (ids: Set<number>) => void;
}) {
  if (jobs.length === 0) return <p className="muted">{empty}</p>;
  const selectable = selected && onSelect ? jobs.filter(deletable) : [];
  const allSelected = selectable.length > 0 && selectable.every((j) => selected!.has(j.id));
  const toggle = (id: number, on: boolean) => {
    const next = new Set(selected);
    if (on) next.add(id);
    else next.delete(id);
    onSelect!(next);
  };
  return (
    <table data-testid="job-table">
      <thead>
        <tr>
          {onSelect ? (
            <th>
              <input
                type="checkbox"
                aria-label="select all finished, stopped or failed jobs"
                data-testid="select-all"
                checked={allSelected}
                disabled={selectable.length === 0}
                onChange={(e) => onSelect(e.target.checked ? new Set(selectable.map((j) => j.id)) : new Set())}
              />
            </th>
          ) : null}
          <th>Name</th>
          <th>State</th>
          <th>Progress</th>
          <th>Loss</th>
          <th>Model</th>
          <th>Device</th>
          <th>Created</th>
        </tr>
      </thead>
      <tbody>
        {jobs.map((job) => (
          <tr key={job.id}>
            {onSelect ? (
              <td>
                <input
                  type="checkbox"
                  aria-label={`select ${job.name}`}
                  data-testid={`select-${job.name}`}
                  checked={selected!.has(job.id)}
                  disabled={!deletable(job)}
                  title={deletable(job) ? undefined : "stop it first"}
                  onChange={(e) => toggle(job.id, e.target.checked)}
                />
              </td>
            ) : null}
            <td>
              <Link href={`/jobs/${job.id}`}>{job.name}</Link>
            </td>
            <td>
              <StateBadge state={job.state} />
              {job.queue_position ? <span className="muted small"> #{job.queue_position}</span> : null}
            </td>
            <td>
              <ProgressBar step={job.step} total={job.total_steps} />
            </td>
            <td>{formatLoss(job.loss)}</td>
            <td>{job.arch ?? "–"}</td>
            <td>{job.device}</td>
            <td className="muted small">{formatTime(job.created_at)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
