/**
 * A made-up but plausible GRPO run folder for report tests: metrics.jsonl written through MetricsLog
 * (score rising, entropy falling, validation on its own lines every 10 steps, one skipped step), a few
 * ReCall-style rollout dumps, and a config.yaml in verl's key tree.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { MetricsLog } from "../src/train/metrics.ts";
import { rng } from "./harness.ts";

export interface SyntheticRunOptions {
  steps?: number;
  /** Steps with rollout dumps (train_{s}.jsonl; val_{s}.jsonl too when s is a validation step). */
  dumpSteps?: number[];
  rowsPerDump?: number;
  /** Extra rows appended to train dump of the last dump step (e.g. a hostile one). */
  extraRows?: Record<string, unknown>[];
  config?: boolean;
  seed?: number;
}

const SYSTEM = "In this environment you have access to a set of tools you can use to assist with the user query.\n<tools>\n[{\"type\": \"function\", \"function\": {\"name\": \"wikipedia_search\"}}]\n</tools>";

/** A ReCall transcript: system, question, `turns` tool rounds, then an answer in \boxed{}. */
export function transcript(question: string, turns: number, answer: string, end: "answer" | "truncated" = "answer"): string {
  let s = `<|im_start|>system\n${SYSTEM}<|im_end|>\n<|im_start|>user\n${question}<|im_end|>\n<|im_start|>assistant\n<think>`;
  for (let t = 0; t < turns; t++) {
    const call = JSON.stringify({ name: "wikipedia_search", arguments: { query: `${question} part ${t + 1}` } });
    s += ` I should search for part ${t + 1}.</think>\n<tool_call>\n${call}\n</tool_call><|im_end|>`;
    s += `\n<|im_start|>user\n<tool_response>${call}\n{"result": "Passage ${t + 1}: some retrieved text about the question."}\n</tool_response>\n<|im_end|>\n<|im_start|>assistant\n<think>`;
  }
  if (end === "truncated") return s + " Let me think more about this and keep going without an end";
  return s + ` I have what I need.</think>\nThe answer is \\boxed{${answer}}.<|im_end|>`;
}

export function writeSyntheticRun(dir: string, opts: SyntheticRunOptions = {}): void {
  const steps = opts.steps ?? 40;
  const r = rng(opts.seed ?? 7);
  const noise = (scale: number) => (r() - 0.5) * 2 * scale;
  mkdirSync(join(dir, "rollout"), { recursive: true });
  const log = new MetricsLog(join(dir, "metrics.jsonl"));
  const t0 = Date.parse("2025-06-01T09:00:00Z");
  let t = t0;
  const validate = (step: number) => {
    const p = step / steps;
    log.append(step, {
      "val/test_score/musique_re_call": 0.18 + 0.22 * p + noise(0.02),
      "val/test_score/syntool_re_call": 0.31 + 0.3 * p + noise(0.02),
      "timing_s/testing": 55 + noise(5),
    }, { epoch: 0, time: new Date(t) });
  };
  validate(0);
  for (let step = 1; step <= steps; step++) {
    const p = step / steps;
    const gen = 38 + 10 * p + noise(3), reward = 2.5 + noise(0.4), old = 6 + noise(0.5), ref = 5.8 + noise(0.5), upd = 19 + noise(1.5);
    const total = gen + reward + old + ref + upd + 1.2;
    t += total * 1000;
    const skipped = step === Math.round(steps * 0.6);
    const mean = 0.12 + 0.45 * (1 - Math.exp(-3 * p)) + noise(0.04);
    log.append(step, {
      "critic/score/mean": mean,
      "critic/score/max": 1,
      "critic/score/min": 0,
      "critic/rewards/mean": mean,
      "critic/advantages/mean": noise(0.01),
      "critic/advantages/max": 1.6 + noise(0.2),
      "critic/advantages/min": -1.4 + noise(0.2),
      "actor/pg_loss": skipped ? NaN : noise(0.05),
      "actor/pg_clipfrac": 0.004 + 0.003 * p + Math.abs(noise(0.002)),
      "actor/ppo_kl": 2e-4 + Math.abs(noise(2e-4)),
      "actor/entropy": 1.25 - 0.5 * p + noise(0.04),
      "actor/kl_loss": 0.002 + 0.02 * p + Math.abs(noise(0.002)),
      "actor/grad_norm": skipped ? Infinity : 0.28 + Math.abs(noise(0.08)) + (step % 13 === 0 ? 0.5 : 0),
      "actor/lr": 1e-6 * Math.min(1, step / 5),
      "response_length/mean": 620 + 480 * p + noise(40),
      "response_length/max": 3500 + noise(600),
      "response_length/clip_ratio": Math.max(0, 0.03 - 0.02 * p + noise(0.008)),
      "prompt_length/mean": 410 + noise(5),
      "timing_s/gen": gen,
      "timing_s/reward": reward,
      "timing_s/old_log_prob": old,
      "timing_s/ref": ref,
      "timing_s/update_actor": upd,
      "timing_s/step": total,
      "perf/throughput": 1450 + 300 * p + noise(80),
      "num_turns/mean": 1.6 + 0.9 * p + noise(0.1),
      "tool_calls/mean": 0.7 + 1.1 * p + noise(0.1),
      "tool_call_parse_failure_rate": Math.max(0, 0.05 - 0.04 * p + noise(0.01)),
      "format_failure_rate": Math.max(0, 0.12 - 0.1 * p + noise(0.01)),
      "train/skipped_step": skipped ? 1 : 0,
    }, { epoch: step <= steps / 2 ? 0 : 1, time: new Date(t) });
    if (step % 10 === 0) validate(step);
  }

  const rowsPer = opts.rowsPerDump ?? 6;
  const dumpSteps = opts.dumpSteps ?? [steps - 2, steps - 1, steps];
  for (const step of dumpSteps) {
    const rows: Record<string, unknown>[] = [];
    for (let i = 0; i < rowsPer; i++) {
      const turns = 1 + (i % 3);
      const good = i % 2 === 0;
      const truncated = i === rowsPer - 1;
      const seq = transcript(`Who directed the film that won the award in year ${1990 + i}?`, turns, good ? "Steven Spielberg" : "Ridley Scott", truncated ? "truncated" : "answer");
      rows.push({
        data_source: i % 3 === 0 ? "syntool_re_call" : "musique_re_call",
        sequences_str: seq,
        ground_truth: ["Steven Spielberg"],
        score: truncated ? 0 : good ? 1 - 0.1 * (i % 4) : 0.1,
        reason: truncated ? "no answer: the response was cut" : good ? "f1 1.0" : "f1 0.0",
        uid: `q${Math.floor(i / 5)}`,
        num_turns: turns + 1,
        tool_calls: turns,
        end: truncated ? "response_budget" : "answer",
        response_length: 300 + 150 * turns,
      });
    }
    if (step === dumpSteps[dumpSteps.length - 1]) rows.push(...(opts.extraRows ?? []));
    writeFileSync(join(dir, "rollout", `train_${step}.jsonl`), rows.map((x) => JSON.stringify(x)).join("\n") + "\n");
    if (step % 10 === 0) writeFileSync(join(dir, "rollout", `val_${step}.jsonl`), rows.slice(0, 3).map((x) => JSON.stringify(x)).join("\n") + "\n");
  }

  if (opts.config !== false) {
    writeFileSync(join(dir, "config.yaml"), stringify({
      data: { train_files: ["data/ReCall-data/syntool_re_call/train.parquet", "data/ReCall-data/musique_re_call/train.parquet"], train_batch_size: 256, max_response_length: 6656 },
      actor_rollout_ref: {
        model: { path: "Qwen/Qwen2.5-7B-Instruct" },
        actor: { optim: { lr: 1e-6 }, ppo_mini_batch_size: 64, kl_loss_coef: 0.001, kl_loss_type: "low_var_kl", entropy_coeff: 0.001 },
        rollout: { n: 5, max_turns: 10 },
      },
      algorithm: { adv_estimator: "grpo" },
      trainer: { project_name: "re_call", experiment_name: "qwen2.5-7b-grpo", total_epochs: 2, total_training_steps: 100 },
    }));
  }
}
