/** `--profile` (trainer.profile) of `recall train` and `recall sft` on the tiny preset: GPU ms per kernel family per step in metrics.jsonl, a table at the end. */
import { beforeAll, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseTrainCommandLine } from "../src/config/train.ts";
import { parseSftCommandLine } from "../src/config/sft.ts";
import { writeVerlParquet } from "../src/data/verl_parquet.ts";
import { getGpu } from "../src/gpu/runtime.ts";
import { initModel } from "../src/model/init.ts";
import { readMetrics, type MetricsRow } from "../src/train/metrics.ts";
import { runGrpo } from "../src/train/grpo.ts";
import { runSft } from "../src/sft/train.ts";

let dir: string;
let model: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "recall-profile-"));
  model = join(dir, "model");
  await initModel({ arch: "qwen2", preset: "tiny", outDir: model, seed: 3 });
});

/** Every step row has profile keys whose family times sum to the step's total; returns the families seen. */
function expectProfiledSteps(rows: MetricsRow[], steps: number): Set<string> {
  const stepRows = rows.filter((r) => r.metrics["timing_s/step"] !== undefined);
  expect(stepRows.map((r) => r.step)).toEqual(Array.from({ length: steps }, (_, i) => i + 1));
  const families = new Set<string>();
  for (const r of stepRows) {
    const keys = Object.keys(r.metrics).filter((k) => k.startsWith("profile/") && k.endsWith("_ms") && k !== "profile/gpu_ms");
    expect(keys.length).toBeGreaterThan(3);
    const sum = keys.reduce((a, k) => a + (r.metrics[k] as number), 0);
    for (const k of keys) {
      expect(r.metrics[k]).toBeGreaterThanOrEqual(0);
      families.add(k.slice("profile/".length, -"_ms".length));
    }
    expect(r.metrics["profile/gpu_ms"]).toBeCloseTo(sum, 6);
    expect(r.metrics["profile/gpu_ms"]).toBeGreaterThan(0);
    expect(r.metrics["profile/dispatches"]).toBeGreaterThan(keys.length - 1);
  }
  return families;
}

test("recall train --profile: profile/<family>_ms per step in metrics.jsonl, a table at the end, profiling off afterwards", async () => {
  const data = join(dir, "toy.parquet");
  writeVerlParquet(data, Array.from({ length: 8 }, (_, i) => ({ data_source: "toy", question: `Say some letters ${i}`, ability: "toy", ground_truth: "abc", index: i, split: "train", env: "", func_schemas: "" })));
  const reward = join(dir, "reward.ts");
  writeFileSync(reward, "export default ({ text }) => text.length % 3 / 2;\n");
  const { settings } = parseTrainCommandLine([
    "--train_files", data, "--actor_model_path", model, "--train_batch_size", "2", "--ppo_mini_batch_size", "2", "--rollout_n", "2",
    "--use_re_call", "false", "--max_response_length", "6", "--save_path", join(dir, "grpo"), "--save_freq", "-1", `custom_reward_function.path=${reward}`,
    "trainer.total_training_steps=2", "trainer.val_before_train=false", "--profile",
  ]);
  expect(settings["trainer.profile"]).toBe(true);
  const logs: string[] = [];
  const r = await runGrpo(settings, { log: (l) => logs.push(l), warn: () => {} });
  const families = expectProfiledSteps(readMetrics(join(r.runDir, "metrics.jsonl")), 2);
  // A GRPO step decodes (sampling), runs forward and backward matmuls and AdamW.
  expect([...families].some((f) => f.startsWith("sampling:"))).toBe(true);
  expect([...families].some((f) => f.startsWith("matmul"))).toBe(true);
  expect([...families].some((f) => f.startsWith("adamw:"))).toBe(true);
  expect(r.profile?.steps).toBe(2);
  const table = logs.find((l) => l.startsWith("GPU profile of 2 step(s):"));
  expect(table).toBeDefined();
  expect(table).toContain("GPU total");
  expect(table).toContain("wall time");
  expect((await getGpu()).profiler).toBeNull();
});

test("recall sft --profile: the same keys per step", async () => {
  const file = join(dir, "conv.jsonl");
  const rows = Array.from({ length: 4 }, (_, i) => ({ messages: [{ role: "user", content: `hi ${i}` }, { role: "assistant", content: `hello ${i}` }] }));
  writeFileSync(file, rows.map((x) => JSON.stringify(x)).join("\n") + "\n");
  const { settings } = parseSftCommandLine(["--train_files", file, "--model", model, "--save_path", join(dir, "sft"), "--batch_size", "2", "--max_steps", "2", "--val_split", "0", "--profile"]);
  const logs: string[] = [];
  const r = await runSft(settings, { log: (l) => logs.push(l), warn: () => {} });
  const families = expectProfiledSteps(readMetrics(join(r.runDir, "metrics.jsonl")), 2);
  expect([...families].some((f) => f.startsWith("adamw:"))).toBe(true);
  expect(logs.some((l) => l.startsWith("GPU profile of 2 step(s):"))).toBe(true);
  expect((await getGpu()).profiler).toBeNull();
});

test("without --profile no profile keys are written", async () => {
  const file = join(dir, "conv2.jsonl");
  writeFileSync(file, JSON.stringify({ messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "hello" }] }) + "\n");
  const { settings } = parseSftCommandLine(["--train_files", file, "--model", model, "--save_path", join(dir, "sft-plain"), "--batch_size", "1", "--max_steps", "1", "--val_split", "0"]);
  const r = await runSft(settings, { log: () => {}, warn: () => {} });
  const rows = readMetrics(join(r.runDir, "metrics.jsonl"));
  expect(rows.flatMap((x) => Object.keys(x.metrics)).filter((k) => k.startsWith("profile/"))).toEqual([]);
});
