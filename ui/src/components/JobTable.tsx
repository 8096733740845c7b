"use client";
import Link from "next/link";
import { formatLoss, formatTime } from "@/lib/format";
import type { JobSummary } from "@/lib/types";
import { ProgressBar, StateBadge } from "./ui";

export type JobListItem = JobSummary & { queue_position: number | null };

export function JobTable({ jobs, empty }: { jobs: JobListItem[]; empty: string }) {
  if (jobs.length === 0) return <p className="muted">{empty}</p>;
  return (
    <table data-testid="job-table">
      <thead>
        <tr>
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
