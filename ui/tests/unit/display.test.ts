// What the job page shows: log lines as a terminal would (a progress bar never runs into the next
// log line), the latest run's lines only in a failure message, round axis ticks for the loss
// chart, and a sample's flags on their own small line.
import { describe, expect, it } from "vitest";
import { niceTicks, stepTicks, tickLabel } from "@/lib/chart";
import { flagLine } from "@/lib/format";
import { terminalLines } from "@/lib/server/progress";
import { lastRunLines } from "@/lib/server/worker";

describe("terminalLines", () => {
  it("keeps the last redraw of a carriage-return progress bar", () => {
    const text = "loading\n 10%|#         | 1/10 [00:01<00:09, 1.00it/s]\r 20%|##        | 2/10 [00:02<00:08, 1.00it/s]\n";
    expect(terminalLines(text)).toEqual(["loading", " 20%|##        | 2/10 [00:02<00:08, 1.00it/s]"]);
  });

  it("splits a bar from the log line written straight after it", () => {
    const text =
      "\r 30%|###       | 3/10 [00:03<00:07, 1.02it/s, loss=0.412]INFO saving step 3 to output/x_000000003.safetensors\n" +
      "\r 40%|####      | 4/10 [00:04<00:06, 2.5s/it]\r 50%|#####     | 5/10 [00:05<00:05, 2.5s/it]WARNING slow disk\n";
    expect(terminalLines(text)).toEqual([
      " 30%|###       | 3/10 [00:03<00:07, 1.02it/s, loss=0.412]",
      "INFO saving step 3 to output/x_000000003.safetensors",
      " 50%|#####     | 5/10 [00:05<00:05, 2.5s/it]",
      "WARNING slow disk",
    ]);
  });

  it("knows the trainer's own units (s/step, img/s)", () => {
    const text =
      "e2e_tiny:  50%|#####     | 3/6 [00:09<00:09,  3.02s/step, loss=1.7832, lr=2.00e-03]2026-12-03 17:57:54,147 INFO saved e2e_tiny_000000003.safetensors\n" +
      "sampling:   0%|          | 0/1 [00:00<?, ?img/s]INFO sampling\n";
    expect(terminalLines(text)).toEqual([
      "e2e_tiny:  50%|#####     | 3/6 [00:09<00:09,  3.02s/step, loss=1.7832, lr=2.00e-03]",
      "2026-12-03 17:57:54,147 INFO saved e2e_tiny_000000003.safetensors",
      "sampling:   0%|          | 0/1 [00:00<?, ?img/s]",
      "INFO sampling",
    ]);
  });

  it("leaves brackets that are not a bar's rate alone, and drops ANSI codes", () => {
    expect(terminalLines("\x1b[32m[info] step [3/10] done\x1b[0m\n")).toEqual(["[info] step [3/10] done"]);
    expect(terminalLines("12it [00:03, 3.90it/s]next line\n")).toEqual(["12it [00:03, 3.90it/s]", "next line"]);
  });
});

describe("lastRunLines", () => {
  it("a failed run's message holds its own lines, not the previous run's", () => {
    const log =
      "\n===== run 1 at 2026-01-01T00:00:00Z: python run.py job.yaml\nstep 5\nKeyboardInterrupt: interrupted, saved step 5\n" +
      "\n===== run 2 at 2026-01-01T00:10:00Z: python run.py job.yaml\nloading model\nRuntimeError: CUDA out of memory\n";
    const lines = lastRunLines(log);
    expect(lines).toBe("loading model\nRuntimeError: CUDA out of memory");
    expect(lines).not.toContain("interrupted");
    expect(lastRunLines("\n===== run 1 at t: python run.py j\n")).toBe("(the run wrote no output)");
    expect(lastRunLines("no marker\nlast")).toBe("no marker\nlast");
  });
});

describe("loss chart ticks", () => {
  it("round values covering the range", () => {
    expect(niceTicks(0.123, 0.487, 5)).toEqual([0.1, 0.2, 0.3, 0.4, 0.5]);
    expect(niceTicks(0.0412, 0.0433, 5)).toEqual([0.041, 0.042, 0.043, 0.044]);
    const flat = niceTicks(2, 2, 5);
    expect(flat[0]).toBeLessThan(2);
    expect(flat[flat.length - 1]).toBeGreaterThan(2);
  });

  it("integer step ticks inside the steps run", () => {
    expect(stepTicks(1, 6, 6)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(stepTicks(1, 2000, 6)).toEqual([500, 1000, 1500, 2000]);
    expect(stepTicks(1, 3, 6).every(Number.isInteger)).toBe(true);
  });

  it("short labels", () => {
    expect(tickLabel(0.30000000000000004)).toBe("0.3");
    expect(tickLabel(0)).toBe("0");
    expect(tickLabel(0.00012)).toBe("1.2e-4");
    expect(tickLabel(1500)).toBe("1500");
  });
});

describe("flagLine", () => {
  it("puts a sample's prompt flags on one line", () => {
    expect(flagLine({ seed: 42, width: 512, height: 256, guidance_scale: 2.5, sample_steps: 20, neg: "blurry" })).toBe(
      "seed 42 · 512×256 · cfg 2.5 · 20 steps · neg: blurry",
    );
    expect(flagLine({})).toBe("");
  });
});
