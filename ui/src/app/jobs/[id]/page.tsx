"use client";
// One job: state and progress, stop / resume / delete, loss curve, samples, LoRA files, log.
import Link from "next/link";
import { useParams, useRouter } from "next/navigation";
import { useEffect, useRef, useState } from "react";
import { LossChart } from "@/components/LossChart";
import { ErrorBox, ProgressBar, StateBadge } from "@/components/ui";
import { api, useApi } from "@/lib/client/api";
import { eta, flagLine, formatBytes, formatDuration, formatLoss, formatTime } from "@/lib/format";
import type { JobDetail, SampleImage } from "@/lib/types";

const ACTIVE = ["queued", "running", "stopping"];

function Gallery({ samples }: { samples: SampleImage[] }) {
  if (samples.length === 0) return <p className="muted">No samples yet.</p>;
  const steps = [...new Set(samples.map((s) => s.step))];
  return (
    <div data-testid="samples">
      {steps.map((step) => (
        <div className="gallery-step" key={step}>
          <h3>Step {step}</h3>
          <div className="gallery">
            {samples
              .filter((s) => s.step === step)
              .map((s) => (
                <figure key={s.file}>
                  <a href={s.url} target="_blank" rel="noreferrer">
                    <img src={s.url} alt={s.caption ?? s.prompt ?? s.file} loading="lazy" />
                  </a>
                  {/* the prompt as the trainer used it: trigger word in, flags on their own small line */}
                  <figcaption title={s.prompt ?? undefined} data-testid="sample-caption">
                    {s.caption ?? s.prompt ?? s.file}
                    {flagLine(s.flags) ? <small className="sample-flags">{flagLine(s.flags)}</small> : null}
                  </figcaption>
                </figure>
              ))}
          </div>
        </div>
      ))}
    </div>
  );
}

export default function JobPage() {
  const { id } = useParams<{ id: string }>();
  const router = useRouter();
  const { data, error, reload } = useApi<{ job: JobDetail }>(`/api/jobs/${id}`, (d) =>
    d && !ACTIVE.includes(d.job.state) ? 10000 : 1500,
  );
  const [actionError, setActionError] = useState<string | null>(null);
  const logRef = useRef<HTMLPreElement>(null);
  const job = data?.job;

  useEffect(() => {
    const el = logRef.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [job?.log_tail.length, job?.log_tail[job.log_tail.length - 1]]);

  async function act(action: "stop" | "resume" | "delete") {
    setActionError(null);
    try {
      if (action === "delete") {
        if (!confirm(`Delete ${job?.name} with its LoRA files and samples?`)) return;
        await api(`/api/jobs/${id}`, { method: "DELETE" });
        router.push("/jobs");
        return;
      }
      await api(`/api/jobs/${id}/${action}`, { method: "POST" });
      await reload();
    } catch (err) {
      setActionError(err instanceof Error ? err.message : String(err));
    }
  }

  if (!job) {
    return (
      <div>
        <ErrorBox error={error} />
        {!error ? <p className="muted">Loading…</p> : null}
      </div>
    );
  }
  const running = job.state === "running" || job.state === "stopping";
  return (
    <div>
      <div className="row">
        <h1 data-testid="job-name">{job.name}</h1>
        <StateBadge state={job.state} />
        <span className="spacer" />
        {job.state === "queued" || job.state === "running" ? (
          <button onClick={() => act("stop")} data-testid="stop">
            Stop
          </button>
        ) : null}
        {job.state === "stopping" ? (
          <button className="danger" onClick={() => act("stop")} title="SIGKILL: the trainer does not save">
            Force stop
          </button>
        ) : null}
        {job.state === "stopped" || job.state === "failed" ? (
          <button className="primary" onClick={() => act("resume")} data-testid="resume">
            Resume
          </button>
        ) : null}
        {!running ? (
          <button className="danger" onClick={() => act("delete")} data-testid="delete">
            Delete
          </button>
        ) : null}
      </div>
      <ErrorBox error={actionError || error} />

      <div className="panel">
        <ProgressBar step={job.step} total={job.total_steps} />
        <dl className="kv" style={{ marginTop: 12 }}>
          <dt>Model</dt>
          <dd>
            {job.arch ?? "–"} {job.preset ? <span className="muted">(preset {job.preset})</span> : null}
          </dd>
          <dt>Device</dt>
          <dd>{job.device}</dd>
          <dt>Loss</dt>
          <dd data-testid="job-loss">{formatLoss(job.loss)}</dd>
          <dt>Speed</dt>
          <dd>
            {job.s_per_it ? `${job.s_per_it.toFixed(2)} s/it` : "–"}
            {running ? ` · ETA ${formatDuration(eta(job.step, job.total_steps, job.s_per_it))}` : ""}
          </dd>
          {job.queue_position ? (
            <>
              <dt>Queue</dt>
              <dd>position {job.queue_position}</dd>
            </>
          ) : null}
          <dt>Runs</dt>
          <dd>
            {job.run_count}
            {job.pid ? <span className="muted"> · pid {job.pid}</span> : null}
            {job.exit_code !== null ? <span className="muted"> · exit code {job.exit_code}</span> : null}
          </dd>
          <dt>Started</dt>
          <dd>{formatTime(job.started_at)}</dd>
          <dt>Ended</dt>
          <dd>{formatTime(job.finished_at)}</dd>
        </dl>
        {job.error ? (
          <div className="error-box" data-testid="job-error">
            {job.error}
          </div>
        ) : null}
      </div>

      <h2>Loss</h2>
      <div className="panel">
        <LossChart points={job.loss_curve} />
      </div>

      <h2>Samples</h2>
      <div className="panel">
        <Gallery samples={job.samples} />
      </div>

      <h2>LoRA files</h2>
      <div className="panel">
        {job.loras.length === 0 ? (
          <p className="muted">No LoRA saved yet.</p>
        ) : (
          <table data-testid="loras">
            <thead>
              <tr>
                <th>File</th>
                <th>Step</th>
                <th>Size</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {job.loras.map((l) => (
                <tr key={l.file}>
                  <td>
                    <code>{l.file}</code>
                  </td>
                  <td>{l.step ?? "final"}</td>
                  <td>{formatBytes(l.size)}</td>
                  <td>
                    <a className="button" href={`${l.url}?download=1`} download={l.file}>
                      Download
                    </a>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>

      <h2>Log</h2>
      <pre className="log" ref={logRef} data-testid="log">
        {job.log_tail.length ? job.log_tail.join("\n") : "(no output yet)"}
      </pre>

      <details className="panel" style={{ marginTop: 16 }}>
        <summary>Job file (YAML)</summary>
        <pre className="log">{job.config_yaml}</pre>
      </details>
      <p>
        <Link href="/jobs">← all jobs</Link>
      </p>
    </div>
  );
}
