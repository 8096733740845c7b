"use client";
// Dashboard: what runs now, what waits, what ended last.
import Link from "next/link";
import { JobTable, type JobListItem } from "@/components/JobTable";
import { ErrorBox, ProgressBar, StateBadge } from "@/components/ui";
import { useApi } from "@/lib/client/api";
import { eta, formatDuration, formatLoss } from "@/lib/format";

export default function Dashboard() {
  const jobs = useApi<{ jobs: JobListItem[] }>("/api/jobs", 2000);
  const health = useApi<{ worker: boolean; max_concurrent_jobs: number }>("/api/health", 10000);
  const all = jobs.data?.jobs ?? [];
  const running = all.filter((j) => j.state === "running" || j.state === "stopping");
  const queued = all.filter((j) => j.state === "queued").sort((a, b) => (a.queue_position ?? 0) - (b.queue_position ?? 0));
  const recent = all.filter((j) => !["running", "stopping", "queued"].includes(j.state)).slice(0, 5);
  return (
    <div>
      <div className="row">
        <h1>Dashboard</h1>
        <span className="spacer" />
        <Link className="button primary" href="/jobs/new">
          New job
        </Link>
      </div>
      <ErrorBox error={jobs.error} />
      <p className="muted">
        {health.data
          ? `Worker ${health.data.worker ? "running" : "off"}: up to ${health.data.max_concurrent_jobs} job(s) at a time, one per device.`
          : " "}
      </p>
      <h2>Running ({running.length})</h2>
      {running.length === 0 ? <p className="muted">Nothing is training.</p> : null}
      <div className="cards" data-testid="running-jobs">
        {running.map((job) => (
          <div className="panel" key={job.id}>
            <div className="row">
              <Link href={`/jobs/${job.id}`}>
                <strong>{job.name}</strong>
              </Link>
              <span className="spacer" />
              <StateBadge state={job.state} />
            </div>
            <p className="muted small">
              {job.arch} on {job.device}
            </p>
            <ProgressBar step={job.step} total={job.total_steps} />
            <p className="muted small">
              loss {formatLoss(job.loss)} · {job.s_per_it ? `${job.s_per_it.toFixed(2)} s/it` : "–"} · ETA{" "}
              {formatDuration(eta(job.step, job.total_steps, job.s_per_it))}
            </p>
          </div>
        ))}
      </div>
      <h2>Queued ({queued.length})</h2>
      <JobTable jobs={queued} empty="The queue is empty." />
      <h2>Recent</h2>
      <JobTable jobs={recent} empty="No finished jobs yet." />
    </div>
  );
}
