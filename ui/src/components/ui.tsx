"use client";
// Small shared pieces of the pages.
import type { JobState, Problem } from "@/lib/types";

export function StateBadge({ state }: { state: JobState | string }) {
  return (
    <span className={`badge badge-${state}`} data-testid="job-state">
      {state}
    </span>
  );
}

export function ProgressBar({ step, total }: { step: number; total: number }) {
  const pct = total > 0 ? Math.min(100, (step / total) * 100) : 0;
  return (
    <div className="progress" title={`${step} / ${total}`}>
      <div className="progress-fill" style={{ width: `${pct}%` }} />
      <span className="progress-text">
        {step} / {total || "?"}
      </span>
    </div>
  );
}

export function ProblemList({ problems }: { problems: Problem[] }) {
  if (problems.length === 0) return null;
  return (
    <div className="problems" role="alert" data-testid="problems">
      <strong>
        {problems.length} problem{problems.length === 1 ? "" : "s"}:
      </strong>
      <ul>
        {problems.map((p, i) => (
          <li key={i}>
            {p.path ? <code>{p.path}</code> : null} {p.message}
          </li>
        ))}
      </ul>
    </div>
  );
}

export function ErrorBox({ error }: { error: string | null | undefined }) {
  if (!error) return null;
  return (
    <div className="error-box" role="alert">
      {error}
    </div>
  );
}
