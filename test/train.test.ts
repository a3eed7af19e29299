/**
 * `recall train` end to end on a tiny model: the run folder verl users expect, exact resume after kill -9,
 * learning on a trivially rewarded task, DAPO dynamic sampling, skipped non-finite steps, and the loss mask of
 * tool-calling rollouts.
 */
import { beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseTrainCommandLine } from "../src/config/train.ts";
import { writeVerlParquet } from "../src/data/verl_parquet.ts";
import { getGpu } from "../src/gpu/runtime.ts";
import { initModel } from "../src/model/init.ts";
import { Transformer } from "../src/model/transformer.ts";
import { readMetrics } from "../src/train/metrics.ts";
import { runGrpo, type TrainResult } from "../src/train/grpo.ts";
import { ActorOptimizer } from "../src/train/optimizer.ts";
import { latestCheckpoint, saveCheckpoint } from "../src/train/checkpoint.ts";
import { rolloutBatch } from "../src/train/rollout.ts";
import type { RlExample } from "../src/data/rl_dataset.ts";
import type { RolloutTokenizer, TokenCompletion, TokenGenerator, TokenSamplingParams } from "../src/rollout/generator.ts";
import type { ExecuteRequest, ToolExecutor } from "../src/sandbox/types.ts";
import { PROJECT_ROOT } from "./harness.ts";

let dir: string;
let model: string;
let data: string;
let reward: string;

/** Dense toy reward: the fraction of the response that is ASCII letters (a random model starts near 0.3). */
const ASCII_REWARD = `export default ({ text }) => {
  const t = [...text.replace("<|im_end|>", "")];
  return t.length === 0 ? 0 : t.filter((c) => /[A-Za-z]/.test(c)).length / t.length;
};
`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "recall-train-"));
  model = join(dir, "model");
  await initModel({ arch: "qwen2", preset: "tiny", outDir: model, seed: 3 });
  data = join(dir, "toy.parquet");
  writeVerlParquet(data, Array.from({ length: 16 }, (_, i) => ({ data_source: "toy", question: `Say some letters ${i}`, ability: "toy", ground_truth: "abc", index: i, split: "train", env: "", func_schemas: "" })));
  reward = join(dir, "ascii.ts");
  writeFileSync(reward, ASCII_REWARD);
});

function args(out: string, steps: number, more: string[] = []): string[] {
  return [
    "--train_files", data, "--actor_model_path", model, "--train_batch_size", "4", "--ppo_mini_batch_size", "2", "--rollout_n", "4",
    "--use_re_call", "false", "--max_response_length", "8", "--save_path", out, `custom_reward_function.path=${reward}`,
    `trainer.total_training_steps=${steps}`, "trainer.val_before_train=false", ...more,
  ];
}

async function train(argv: string[], onStep?: (step: number, m: Readonly<Record<string, number>>) => void): Promise<TrainResult> {
  const { settings } = parseTrainCommandLine(argv);
  return runGrpo(settings, { log: () => {}, warn: () => {}, onStep });
}

test("a run writes what verl users expect: HF checkpoints, latest iteration, metrics with verl's names, rollout dumps, report, batches", async () => {
  const out = join(dir, "run1");
  const r = await train(args(out, 2, ["--test_files", data, "--save_freq", "1", "--test_freq", "2", "--save_batches", "true", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2", "actor_rollout_ref.actor.use_dynamic_bsz=false"]));
  expect(r.runDir).toBe(join(out, "recall", "grpo"));
  expect(r.steps).toBe(2);
  const run = r.runDir;
  expect(readFileSync(join(run, "latest_checkpointed_iteration.txt"), "utf8")).toBe("2");
  for (const f of ["config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "optimizer.safetensors", "trainer_state.json"]) {
    expect(existsSync(join(run, "global_step_2", f))).toBe(true);
  }
  // The checkpoint is a model folder the engine loads, and it differs from the start.
  const gpu = await getGpu();
  const trained = await Transformer.load(gpu, join(run, "global_step_2"));
  const start = await Transformer.load(gpu, model);
  const [a, b] = await Promise.all([gpu.readF32(trained.params.get("model.norm.weight")), gpu.readF32(start.params.get("model.norm.weight"))]);
  expect([...a]).not.toEqual([...b]);
  trained.params.release();
  start.params.release();

  const rows = readMetrics(join(run, "metrics.jsonl"));
  expect(rows.map((x) => x.step)).toEqual([1, 2]);
  const m = rows[1]!.metrics;
  for (const k of ["critic/score/mean", "critic/score/max", "critic/rewards/mean", "critic/advantages/mean", "actor/pg_loss", "actor/pg_clipfrac", "actor/ppo_kl", "actor/entropy", "actor/kl_loss", "actor/grad_norm", "actor/lr", "response_length/mean", "response_length/clip_ratio", "prompt_length/mean", "timing_s/gen", "timing_s/old_log_prob", "timing_s/ref", "timing_s/update_actor", "timing_s/step", "perf/throughput", "num_turns/mean", "tool_calls/mean", "val/test_score/toy"]) {
    expect(typeof m[k]).toBe("number");
  }
  expect(m["actor/lr"]).toBe(1e-6);
  // The rollout engine decoded this step's responses, most steps ahead of the previous readback (validation not counted).
  expect(m["perf/decode_steps"]).toBeGreaterThan(0);
  expect(m["perf/decode_steps"]).toBeLessThanOrEqual(m["response_length/max"]! + 8);
  expect(m["perf/decoded_ahead"]).toBeGreaterThan(0);
  expect(m["perf/decoded_ahead"]).toBeLessThan(m["perf/decode_steps"]!);
  const dump = readFileSync(join(run, "rollout", "train_2.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  expect(dump.length).toBe(16);
  expect(Object.keys(dump[0]).slice(0, 5)).toEqual(["data_source", "sequences_str", "ground_truth", "score", "reason"]);
  expect(dump[0].sequences_str.startsWith("<|im_start|>")).toBe(true);
  expect(existsSync(join(run, "rollout", "val_2.jsonl"))).toBe(true);
  expect(existsSync(join(run, "report.html"))).toBe(true);
  const batch = JSON.parse(readFileSync(join(run, "batches", "step_1.json"), "utf8"));
  expect(batch.sequences.length).toBe(16);
  expect(existsSync(join(run, "batches", "step_1.safetensors"))).toBe(true);
});

test("resume point: the step latest_checkpointed_iteration.txt names, or a newer complete folder (killed between the rename and the file)", () => {
  const run = join(dir, "latest");
  const step = (n: number, complete = true) => {
    mkdirSync(join(run, `global_step_${n}`), { recursive: true });
    if (complete) writeFileSync(join(run, `global_step_${n}`, "trainer_state.json"), "{}");
  };
  expect(latestCheckpoint(run)).toBeUndefined();
  step(1);
  expect(latestCheckpoint(run)).toBe(join(run, "global_step_1")); // no file yet: the newest complete folder
  writeFileSync(join(run, "latest_checkpointed_iteration.txt"), "1");
  step(2);
  step(3, false); // a folder without its state is not a checkpoint
  expect(latestCheckpoint(run)).toBe(join(run, "global_step_2"));
  writeFileSync(join(run, "latest_checkpointed_iteration.txt"), "2");
  expect(latestCheckpoint(run)).toBe(join(run, "global_step_2"));
  writeFileSync(join(run, "latest_checkpointed_iteration.txt"), "7");
  expect(() => latestCheckpoint(run)).toThrow("names step 7");
});

test("kill -9 mid-run, resume: the next steps equal the uninterrupted run's (same samples, same weights, byte for byte)", async () => {
  const a = join(dir, "resumeA"), b = join(dir, "resumeB");
  const cli = (out: string) => [join(PROJECT_ROOT, "recall"), "train", ...args(out, 3, ["--save_freq", "1"])];
  const full = Bun.spawnSync(cli(a), { env: { ...process.env, NO_COLOR: "1" } });
  expect(full.exitCode).toBe(0);

  const victim = Bun.spawn(cli(b), { env: { ...process.env, NO_COLOR: "1" }, stdout: "ignore", stderr: "ignore" });
  const first = join(b, "recall", "grpo", "global_step_1", "trainer_state.json");
  while (!existsSync(first) && victim.exitCode === null) await Bun.sleep(10);
  victim.kill(9);
  await victim.exited;
  expect(existsSync(join(b, "recall", "grpo", "global_step_3"))).toBe(false);
  const step1 = join(b, "recall", "grpo", "global_step_1", "model.safetensors");
  const savedAt = statSync(step1).mtimeMs;

  const resumed = Bun.spawnSync(cli(b), { env: { ...process.env, NO_COLOR: "1" } });
  expect(resumed.exitCode).toBe(0);
  // It resumed (step 1 was not redone), it did not start over.
  expect(statSync(step1).mtimeMs).toBe(savedAt);
  for (const step of [2, 3]) {
    for (const f of ["model.safetensors", "optimizer.safetensors"]) {
      const x = readFileSync(join(a, "recall", "grpo", `global_step_${step}`, f));
      const y = readFileSync(join(b, "recall", "grpo", `global_step_${step}`, f));
      expect(Buffer.compare(x, y)).toBe(0);
    }
    expect(readFileSync(join(b, "recall", "grpo", "rollout", `train_${step}.jsonl`), "utf8")).toBe(readFileSync(join(a, "recall", "grpo", "rollout", `train_${step}.jsonl`), "utf8"));
  }
  // The metrics log has each step once.
  expect(readMetrics(join(b, "recall", "grpo", "metrics.jsonl")).map((r) => r.step)).toEqual([1, 2, 3]);
}, 240_000);

test("learning: a tiny model raises its mean reward on a trivially rewarded task within a minute", async () => {
  const scores: number[] = [];
  await train(
    args(join(dir, "learn"), 15, ["--save_freq", "-1", "actor_rollout_ref.actor.optim.lr=1e-2", "actor_rollout_ref.actor.use_kl_loss=false", "actor_rollout_ref.actor.entropy_coeff=0", "--rollout_n", "8", "--ppo_mini_batch_size", "4"]),
    (_, m) => scores.push(m["critic/score/mean"]!),
  );
  const first = (scores[0]! + scores[1]! + scores[2]!) / 3;
  const last = (scores[12]! + scores[13]! + scores[14]!) / 3;
  expect(last).toBeGreaterThan(first + 0.15);
}, 180_000);

test("dynamic sampling (DAPO filter_groups) drops groups whose rewards are all equal and keeps generating until the batch is full", async () => {
  // Prompts 0–7 always score 0.5 (their groups are uninformative); the others get the dense reward.
  const mixed = join(dir, "mixed.ts");
  writeFileSync(mixed, `import ascii from "./ascii.ts";\nexport default (i) => (Number(i.extraInfo.index) < 8 ? 0.5 : ascii(i));\n`);
  const batches: number[] = [];
  const r = await train(
    [...args(join(dir, "dapo"), 2, ["--save_freq", "-1", "algorithm.filter_groups.enable=true", "algorithm.filter_groups.max_num_gen_batches=20"]), `custom_reward_function.path=${mixed}`],
    (_, m) => batches.push(m["train/num_gen_batches"]!),
  );
  expect(batches.some((n) => n >= 2)).toBe(true);
  for (const step of [1, 2]) {
    const rows = readFileSync(join(r.runDir, "rollout", `train_${step}.jsonl`), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { uid: number; score: number });
    expect(rows.length).toBe(16);
    const groups = Map.groupBy(rows, (x) => x.uid);
    expect(groups.size).toBe(4);
    for (const g of groups.values()) expect(new Set(g.map((x) => x.score)).size).toBeGreaterThan(1);
  }
}, 180_000);

test("a non-finite gradient skips the step (weights, moments and step count untouched); non-finite weights are never checkpointed", async () => {
  const gpu = await getGpu();
  const m = await Transformer.load(gpu, model);
  const grads = m.newGradients();
  const opt = new ActorOptimizer(gpu, m.params, grads, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, gradClip: 1 });
  const name = "model.norm.weight";
  const before = await gpu.readF32(m.params.get(name));
  gpu.write(grads.get(name), new Float32Array(before.length).fill(Number.NaN));
  const r = await opt.apply(1e-3);
  expect(r.skipped).toBe(true);
  expect(opt.step).toBe(0);
  expect([...(await gpu.readF32(m.params.get(name)))]).toEqual([...before]);
  expect([...(await gpu.readF32(opt.m.get(name)))].every((x) => x === 0)).toBe(true);
  // The gradients were cleared, so the next step is a normal one.
  gpu.write(grads.get(name), new Float32Array(before.length).fill(0.5));
  expect((await opt.apply(1e-3)).skipped).toBe(false);
  expect(opt.step).toBe(1);

  const run = join(dir, "nan-ckpt");
  gpu.write(m.params.get(name), new Float32Array(before.length).fill(Number.POSITIVE_INFINITY));
  const state = { step: 1, optimizerSteps: 1, cursor: { epoch: 0, batch: 1 }, seed: 0, settings: {}, recallVersion: "test", savedAt: "" };
  await expect(saveCheckpoint(gpu, { runDir: run, step: 1, baseModelDir: model, params: m.params, moments: { m: opt.m, v: opt.v }, state })).rejects.toThrow(`parameter ${name} holds a non-finite value`);
  expect(existsSync(join(run, "global_step_1"))).toBe(false);
  expect(existsSync(join(run, "latest_checkpointed_iteration.txt"))).toBe(false);
  opt.release();
  grads.release();
  m.params.release();
});

test("tool-calling rollouts: n samples per prompt interleaved; the loss mask is 1 on sampled ids only, 0 on tool responses and injected prefixes", async () => {
  // A scripted engine: turn 1 calls a tool, turn 2 answers. Byte-level ids for readability.
  const enc = (t: string) => [...Buffer.from(t, "utf8")].map((b) => b + 10);
  const special = new Map([["<|im_end|>", 1], ["<|im_start|>", 2], ["<|endoftext|>", 3]]);
  const tokenizer: RolloutTokenizer = {
    encode(text) {
      const out: number[] = [];
      for (const part of text.split(/(<\|im_end\|>|<\|im_start\|>|<\|endoftext\|>)/)) out.push(...(special.get(part) !== undefined ? [special.get(part)!] : enc(part)));
      return out;
    },
    decode: (ids) => ids.map((i) => [...special].find(([, v]) => v === i)?.[0] ?? String.fromCharCode(i - 10)).join(""),
    tokenId: (t) => special.get(t),
  };
  const turns = ['<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call><|im_end|>', "</think> \\boxed{5}<|im_end|>"];
  const generator: TokenGenerator = {
    kind: "tokens",
    description: "scripted",
    tokenizer,
    async completeTokens(prompt: readonly number[], p: TokenSamplingParams): Promise<TokenCompletion> {
      const turn = tokenizer.decode(prompt).includes("<tool_response>") ? 1 : 0;
      void p;
      return { tokenIds: tokenizer.encode(turns[turn]!), finishReason: "stop" };
    },
  };
  const calls: ExecuteRequest[] = [];
  const sandbox: ToolExecutor = { execute: async (req) => (calls.push(req), { output: "", result: 5, error: null }), close: async () => {} };
  const example = (i: number): RlExample => ({ index: i, where: `row ${i}`, dataSource: "toy_re_call", question: `q${i}`, prompt: `<|im_start|>user\nq${i}<|im_end|>\n<|im_start|>assistant\n<think>`, promptIds: [], groundTruth: "5", env: "def add(a, b):\n    return a + b", funcSchemas: "[]", extraInfo: {} });
  const ts = await rolloutBatch([example(0), example(1)], generator, sandbox, { n: 3, temperature: 1, topP: 1, topK: 0, seed: 1, limits: { maxTurns: 5, maxTokensPerTurn: 64, maxResponseTokens: 512 }, toolTimeout: 5 });
  expect(ts.map((t) => [t.uid, t.sample])).toEqual([[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]);
  expect(calls.length).toBe(6);
  expect(calls[0]!.call).toBe("add(a=2, b=3)");
  for (const t of ts) {
    const seg = t.conversation.segments;
    expect(seg.map((s) => s.source)).toEqual(["policy", "env", "policy"]);
    const expected = seg.flatMap((s) => s.tokenIds!.map(() => (s.source === "policy" ? 1 : 0)));
    expect(t.lossMask).toEqual(expected);
    expect(tokenizer.decode(seg[1]!.tokenIds!)).toBe('\n<|im_start|>user\n<tool_response>{"name": "add", "arguments": {"a": 2, "b": 3}}\nresult: \n5\n</tool_response>\n<|im_end|>\n<|im_start|>assistant\n<think>');
    expect(t.responseIds.length).toBe(t.lossMask.length);
  }
});

test("a run whose buffers cannot exist on this adapter is refused before it starts, with the numbers and what to lower", async () => {
  const out = join(dir, "too-big");
  await expect(train(args(out, 1, ["actor_rollout_ref.rollout.max_num_seqs=200000"]))).rejects.toThrow(/one layer's KV cache .* MiB in one buffer; the adapter allows \d+ MiB/);
  expect(existsSync(join(out, "recall", "grpo", "metrics.jsonl"))).toBe(false);
});

test("actor.shuffle and data.val_batch_size: mini-batches drawn from a seeded reshuffle, validation in chunks", async () => {
  const r = await train(args(join(dir, "shuffle"), 1, ["--save_freq", "-1", "--test_files", data, "actor_rollout_ref.actor.shuffle=true", "data.val_batch_size=5"]));
  const val = readFileSync(join(r.runDir, "rollout", "val_1.jsonl"), "utf8").trim().split("\n");
  expect(val.length).toBe(16);
  expect(typeof r.lastMetrics["actor/pg_loss"]).toBe("number");
});

test("rollout.dtype=bfloat16: the rollouts decode with a bf16 copy of the weights; the run trains; under LoRA, with the base kept bf16", async () => {
  const out = join(dir, "run-bf16");
  const logs: string[] = [];
  const { settings } = parseTrainCommandLine(args(out, 2, ["--rollout_dtype", "bf16"]));
  expect(settings["actor_rollout_ref.rollout.dtype"]).toBe("bfloat16");
  const r = await runGrpo(settings, { log: (m) => logs.push(m), warn: () => {} });
  expect(r.steps).toBe(2);
  expect(logs.some((m) => m.includes("rollout weights") && m.includes("bf16 projections and LM head"))).toBe(true);
  expect(logs.some((m) => m.startsWith("rollout: decoding with bf16 projection and LM-head weights"))).toBe(true);
  const rows = readMetrics(join(r.runDir, "metrics.jsonl"));
  expect(rows.map((x) => x.step)).toEqual([1, 2]);
  for (const row of rows) expect(Number.isFinite(row.metrics["actor/grad_norm"]!)).toBe(true);
  // Under LoRA the rollout decodes with the frozen base itself, kept in bf16 (here rounded from the f32 checkpoint).
  const loraLogs: string[] = [];
  const lora = parseTrainCommandLine(args(join(dir, "run-bf16-lora"), 1, ["--rollout_dtype", "bfloat16", "actor_rollout_ref.model.lora_rank=4"])).settings;
  expect((await runGrpo(lora, { log: (m) => loraLogs.push(m), warn: () => {} })).steps).toBe(1);
  expect(loraLogs.some((m) => m.startsWith("LoRA:") && m.includes("(projections in bf16)"))).toBe(true);
  expect(loraLogs.some((m) => m.startsWith("rollout: decoding with the frozen base's bf16 projections"))).toBe(true);
  expect(loraLogs.some((m) => m.includes("rollout weights"))).toBe(false);
  expect(() => parseTrainCommandLine(args(out, 1, ["--rollout_dtype", "float16"]))).toThrow(/rollout_dtype|rollout\.dtype/);
});

test("a bf16 base checkpoint: the policy trains in f32, the frozen reference keeps bf16 projections, the KL starts at 0; a LoRA base stays bf16", async () => {
  const base = join(dir, "model-bf16");
  await initModel({ arch: "qwen2", preset: "tiny", outDir: base, seed: 3, dtype: "BF16" });
  const argv = args(join(dir, "run-bf16-base"), 1, ["actor_rollout_ref.actor.use_kl_loss=true", "actor_rollout_ref.actor.kl_loss_coef=0.01"]).map((a) => (a === model ? base : a));
  const logs: string[] = [];
  const r = await runGrpo(parseTrainCommandLine(argv).settings, { log: (m) => logs.push(m), warn: () => {} });
  expect(logs.some((m) => m.includes("reference weights") && m.includes("projections bf16, as stored"))).toBe(true);
  // Before the first update the policy is the reference: the same log-probs, though one holds its projections in bf16.
  expect(r.lastMetrics["actor/kl_loss"]).toBe(0);
  // A LoRA run on it keeps the frozen base's projections bf16 too, on any adapter.
  const loraLogs: string[] = [];
  const lora = args(join(dir, "run-bf16-base-lora"), 1, ["actor_rollout_ref.model.lora_rank=4"]).map((a) => (a === model ? base : a));
  await runGrpo(parseTrainCommandLine(lora).settings, { log: (m) => loraLogs.push(m), warn: () => {} });
  expect(loraLogs.some((m) => m.startsWith("LoRA:") && m.includes("(projections in bf16)"))).toBe(true);
});
