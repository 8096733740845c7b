"use client";
import Link from "next/link";
import { JobTable, type JobListItem } from "@/components/JobTable";
import { ErrorBox } from "@/components/ui";
import { useApi } from "@/lib/client/api";

export default function JobsPage() {
  const jobs = useApi<{ jobs: JobListItem[] }>("/api/jobs", 3000);
  return (
    <div>
      <div className="row">
        <h1>Jobs</h1>
        <span className="spacer" />
        <Link className="button primary" href="/jobs/new">
          New job
        </Link>
      </div>
      <ErrorBox error={jobs.error} />
      {jobs.data ? <JobTable jobs={jobs.data.jobs} empty="No jobs yet." /> : <p className="muted">Loading…</p>}
    </div>
  );
}
