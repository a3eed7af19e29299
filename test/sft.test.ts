/**
 * `recall sft`: the masked loss, gradients and one optimizer step against PyTorch (fixtures/sft from
 * scripts/golden_sft.py), packing/micro-batching equal to unpacked, OpenAI-style tool calls rendered as ReCall's exact
 * text with the right loss mask, truncation reported, a tiny model memorising conversations, and exact resume after
 * kill -9 (the final weights equal an uninterrupted run's, byte for byte).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import { Transformer } from "../src/model/transformer.ts";
import { SafetensorsModel } from "../src/model/safetensors.ts";
import { initModel } from "../src/model/init.ts";
import { RecallTokenizer } from "../src/data/tokenizer.ts";
import { ActorOptimizer } from "../src/train/optimizer.ts";
import { readMetrics } from "../src/train/metrics.ts";
import { reCallPrompt, reCallToolResponseBlock, IM_END } from "../src/rollout/chatml.ts";
import { WIKIPEDIA_SEARCH_FUNC_SCHEMAS } from "../src/rollout/templates.ts";
import { pyJsonLoads } from "../src/python/json.ts";
import { funcSchemasText, rowConversation } from "../src/sft/conversation.ts";
import { renderConversation } from "../src/sft/render.ts";
import { loadSftFiles } from "../src/sft/dataset.ts";
import { accumulateBatchGradient, microBatches, type TrainSequence } from "../src/sft/step.ts";
import { evaluateHeldOut } from "../src/sft/evaluate.ts";
import { runSft } from "../src/sft/train.ts";
import { parseSftCommandLine } from "../src/config/sft.ts";
import { PROJECT_ROOT, expectClose } from "./harness.ts";

let gpu: Gpu;
let tmp: string;
let tinyDir: string;
let tokenizer: RecallTokenizer;
beforeAll(async () => {
  gpu = await getGpu();
  tmp = mkdtempSync(join(tmpdir(), "recall-sft-"));
  tinyDir = join(tmp, "tiny");
  await initModel({ arch: "qwen2", preset: "tiny", outDir: tinyDir, seed: 3 });
  tokenizer = RecallTokenizer.load(tinyDir);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const KEYS = { messagesKey: "messages", toolsKey: "tools", promptKey: "prompt", responseKey: "response" };

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const v of a) m = Math.max(m, Math.abs(v));
  return m;
}

describe("golden: masked loss, gradients and one step match PyTorch", () => {
  const dir = join(PROJECT_ROOT, "fixtures/sft");
  const inputs = JSON.parse(readFileSync(join(dir, "inputs.json"), "utf8")) as {
    model: string; ids: number[][]; lengths: number[]; mask: number[][]; trained_tokens: number; loss: number; grad_norm: number;
    optim: { lr: number; betas: [number, number]; eps: number; weight_decay: number; max_norm: number };
  };
  const seqs: TrainSequence[] = inputs.ids.map((row, b) => ({ ids: row.slice(0, inputs.lengths[b]), mask: inputs.mask[b]!.slice(0, inputs.lengths[b]) }));
  const wantGrads = SafetensorsModel.open(join(dir, "grads.safetensors"));

  async function gradsFor(passes: number[][]) {
    const model = await Transformer.load(gpu, join(PROJECT_ROOT, inputs.model));
    const grads = model.newGradients();
    const r = await accumulateBatchGradient(model, grads, seqs, passes, { checkpoint: false });
    return { model, grads, r };
  }

  test("loss and every parameter's gradient (one packed pass)", async () => {
    const { model, grads, r } = await gradsFor([[0, 1, 2]]);
    expect(r.tokens).toBe(inputs.trained_tokens);
    expect(Math.abs(r.loss - inputs.loss)).toBeLessThan(2e-5 * Math.abs(inputs.loss));
    for (const spec of grads.specs) {
      const ref = wantGrads.readF32(spec.name);
      expectClose(await gpu.readF32(grads.get(spec.name)), ref, { atol: 2e-4 * Math.max(maxAbs(ref), 1e-6), rtol: 0 }, spec.name);
    }
    // One optimizer step: clip_grad_norm_ + AdamW, as torch does it.
    const o = inputs.optim;
    const opt = new ActorOptimizer(gpu, model.params, grads, { beta1: o.betas[0], beta2: o.betas[1], eps: o.eps, weightDecay: o.weight_decay, gradClip: o.max_norm });
    const step = await opt.apply(o.lr);
    expect(step.skipped).toBe(false);
    expect(Math.abs(step.gradNorm - inputs.grad_norm)).toBeLessThan(1e-4 * inputs.grad_norm);
    const updated = SafetensorsModel.open(join(dir, "updated.safetensors"));
    for (const spec of model.params.specs) {
      const ref = updated.readF32(spec.name);
      expectClose(await gpu.readF32(model.params.get(spec.name)), ref, { atol: 2e-5 * Math.max(maxAbs(ref), 1e-6), rtol: 0 }, `updated ${spec.name}`);
    }
    opt.release();
    grads.release();
    model.params.release();
  });

  test("packing equals unpacked: any cut into micro-batches gives the same loss and gradients", async () => {
    const packed = await gradsFor([[0, 1, 2]]);
    for (const passes of [[[0], [1], [2]], [[0, 2], [1]], microBatches(seqs, { maxTokens: 20 }), microBatches(seqs, { sequences: 2, maxTokens: 0 })]) {
      const other = await gradsFor(passes);
      expect(Math.abs(other.r.loss - packed.r.loss)).toBeLessThan(1e-6 * Math.abs(packed.r.loss));
      for (const spec of packed.grads.specs) {
        const ref = await gpu.readF32(packed.grads.get(spec.name));
        expectClose(await gpu.readF32(other.grads.get(spec.name)), ref, { atol: 1e-5 * Math.max(maxAbs(ref), 1e-6), rtol: 0 }, `${JSON.stringify(passes)} ${spec.name}`);
      }
      other.grads.release();
      other.model.params.release();
    }
    packed.grads.release();
    packed.model.params.release();
  });

  test("micro-batches under a padded-token budget hold every sequence once", () => {
    const passes = microBatches(seqs, { maxTokens: 20 });
    expect(passes.flat().sort()).toEqual([0, 1, 2]);
    for (const p of passes) expect(p.length * Math.max(...p.map((i) => seqs[i]!.ids.length))).toBeLessThanOrEqual(20);
  });
});

describe("conversations: OpenAI-style tool calls become ReCall's text", () => {
  const tools = JSON.parse(WIKIPEDIA_SEARCH_FUNC_SCHEMAS);
  const row = {
    tools,
    messages: [
      { role: "user", content: "Who wrote Faust?" },
      {
        role: "assistant",
        content: "<think>Search twice.</think>",
        tool_calls: [
          { id: "a", type: "function", function: { name: "wikipedia_search", arguments: '{"query": "Faust author", "top_n": 2}' } },
          { id: "b", type: "function", function: { name: "wikipedia_search", arguments: { query: "Goethe é" } } },
        ],
      },
      // answered out of order: the block lists responses in call order, as a rollout does
      { role: "tool", tool_call_id: "b", content: "Goethe was a poet." },
      { role: "tool", tool_call_id: "a", content: "Faust is by Goethe." },
      { role: "assistant", content: "<think>Got it.</think>\nThe answer is \\boxed{Goethe}." },
    ],
  };

  test("the schema text of a tools list is json.dumps(indent=4), as ReCall's MuSiQue rows carry it", () => {
    expect(funcSchemasText(tools, "x")).toBe(WIKIPEDIA_SEARCH_FUNC_SCHEMAS);
  });

  for (const template of ["chatml", "model"] as const) {
    test(`rendered text is the ReCall rollout's, byte for byte (${template} template), and only assistant turns are trained`, () => {
      const conv = rowConversation(row, KEYS, "row 1");
      const call1 = '{"name": "wikipedia_search", "arguments": {"query": "Faust author", "top_n": 2}}';
      const call2 = '{"name": "wikipedia_search", "arguments": {"query": "Goethe é"}}';
      const turn1 = `<think>Search twice.</think>\n<tool_call>\n${call1}\n</tool_call>\n<tool_call>\n${call2}\n</tool_call>`;
      const turn2 = "<think>Got it.</think>\nThe answer is \\boxed{Goethe}.";
      // The rollout: prompt ending in "<think>", the sampled turn, the injected tool-response block, the next turn.
      const expected =
        reCallPrompt("Who wrote Faust?", WIKIPEDIA_SEARCH_FUNC_SCHEMAS) + turn1.slice("<think>".length) + IM_END +
        reCallToolResponseBlock([{ callText: call1, result: "Faust is by Goethe." }, { callText: call2, result: "Goethe was a poet." }]) +
        turn2.slice("<think>".length) + IM_END + "\n";
      const r = renderConversation(conv.messages, tokenizer, { template, trainOnPrompt: false }, "row 1");
      expect(tokenizer.decode(r.ids)).toBe(expected);
      const trained = r.ids.filter((_, i) => r.mask[i] === 1);
      expect(tokenizer.decode(trained)).toBe(turn1 + IM_END + turn2 + IM_END);
      const all = renderConversation(conv.messages, tokenizer, { template, trainOnPrompt: true }, "row 1");
      expect(all.mask.slice(1).every((m) => m === 1)).toBe(true);
    });
  }

  test("assistant text already in ReCall format (recall synth) and prompt/response pairs pass through", () => {
    const call = '{"name": "calc", "arguments": {"x": 1}}';
    const conv = rowConversation(
      { messages: [{ role: "system", content: "Use calc." }, { role: "user", content: "1?" }, { role: "assistant", content: `<think>a</think>\n<tool_call>\n${call}\n</tool_call>` }, { role: "tool", content: "1" }, { role: "assistant", content: "\\boxed{1}" }] },
      KEYS,
      "row 2",
    );
    expect(conv.messages[3]).toEqual({ role: "user", content: `<tool_response>${call}\n1\n</tool_response>\n` });
    expect(rowConversation({ prompt: "p", response: "r" }, KEYS, "row 3").messages).toEqual([{ role: "user", content: "p" }, { role: "assistant", content: "r" }]);
    expect(pyJsonLoads(call)).toBeTruthy();
  });

  test("bad rows are refused naming the row and message", () => {
    expect(() => rowConversation({ messages: [{ role: "user", content: "x" }, { role: "tool", content: "y" }] }, KEYS, "f.jsonl line 4")).toThrow("f.jsonl line 4, message 2: a tool message must follow an assistant turn with tool calls");
    expect(() => rowConversation({ messages: [{ role: "user", content: "x" }] }, KEYS, "f.jsonl line 5")).toThrow("f.jsonl line 5: the conversation has no assistant turn");
    expect(() => rowConversation({ question: "x" }, KEYS, "f.jsonl line 6")).toThrow("no 'messages' list and no 'prompt'/'response' pair (the row has: question)");
    expect(() => rowConversation({ tools, messages: [{ role: "system", content: "s" }, { role: "user", content: "u" }, { role: "assistant", content: "a" }] }, KEYS, "r")).toThrow("drop the system message or the tools");
    const badArgs = { messages: [{ role: "user", content: "u" }, { role: "assistant", content: null, tool_calls: [{ function: { name: "f", arguments: "{oops" } }] }] };
    expect(() => rowConversation(badArgs, KEYS, "r")).toThrow("r, message 2, tool call 1: the arguments of tool call 'f' are not valid JSON");
  });
});

/** Short conversations a tiny byte-level model can memorise. */
function writeConversations(path: string, n = 6): void {
  const names = ["ada", "bob", "cy", "dee", "eve", "fay", "gus", "hal"];
  const rows = Array.from({ length: n }, (_, i) => {
    const a = 11 + 7 * i, b = 23 + 5 * i;
    return { messages: [{ role: "system", content: "Be brief." }, { role: "user", content: `${names[i]}: ${a}*${b}?` }, { role: "assistant", content: `${a * b} ok` }] };
  });
  writeFileSync(path, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
}

describe("data: max_length", () => {
  test("truncation is reported, and error mode refuses naming the row", async () => {
    const file = join(tmp, "long.jsonl");
    writeConversations(file, 2);
    const o = { ...KEYS, template: "model" as const, trainOnPrompt: false, maxLength: 1000, truncation: "right" as const };
    const full = await loadSftFiles([file], tokenizer, o);
    // Cut into the answers (the last few tokens of each conversation are trained ones).
    const maxLength = Math.min(...full.examples.map((x) => x.ids.length)) - 3;
    const cut = await loadSftFiles([file], tokenizer, { ...o, maxLength });
    expect(cut.truncation.truncated).toBe(2);
    // Right truncation keeps the start; the conversations end with their trained turn, so trained tokens are lost (or all of them).
    const lost = full.examples.reduce((a, x) => a + x.mask.reduce((p, q) => p + q, 0), 0) - cut.examples.reduce((a, x) => a + x.mask.reduce((p, q) => p + q, 0), 0);
    expect(cut.truncation.trainedTokensCut).toBe(lost);
    expect(lost).toBeGreaterThan(0);
    expect(cut.examples.every((x) => x.ids.length === maxLength)).toBe(true);
    await expect(loadSftFiles([file], tokenizer, { ...o, maxLength, truncation: "error" })).rejects.toThrow(`${file}:1: the conversation has`);
  });
});

describe("training", () => {
  test("a tiny model memorises a small conversation set (loss near 0, held-out token accuracy 100%)", async () => {
    const file = join(tmp, "mem.jsonl");
    writeConversations(file);
    const { settings } = parseSftCommandLine([
      "--train_files", file, "--val_files", file, "--model", tinyDir, "--save_path", join(tmp, "mem-run"),
      "--batch_size", "6", "--lr", "1e-2", "--lr_scheduler", "constant", "--warmup_ratio", "0.05", "--weight_decay", "0", "--max_steps", "80", "--test_freq", "40",
    ]);
    const t0 = performance.now();
    const r = await runSft(settings, { log: () => {}, warn: () => {} });
    const seconds = (performance.now() - t0) / 1000;
    expect(seconds).toBeLessThan(60);
    expect(r.steps).toBe(80);
    expect(r.lastMetrics["train/loss"]!).toBeLessThan(0.02);
    expect(r.lastHeldOut!.tokenAccuracy).toBe(1);
    const rows = readMetrics(join(r.runDir, "metrics.jsonl"));
    expect(rows[0]!.metrics["val/loss"]).toBeGreaterThan(3); // step 0: before training
    expect(rows.find((x) => x.step === 1)!.metrics["train/loss"]).toBeGreaterThan(3);
    expect(existsSync(join(r.runDir, "report.html"))).toBe(true);
    expect(readFileSync(join(r.runDir, "latest_checkpointed_iteration.txt"), "utf8")).toBe("80");
    expect(existsSync(join(r.runDir, "global_step_80", "model.safetensors"))).toBe(true);
    // The checkpoint is a model folder recall opens again.
    const again = await Transformer.load(gpu, join(r.runDir, "global_step_80"));
    const evalAgain = await evaluateHeldOut(again, r.lastHeldOut ? (await loadSftFiles([file], tokenizer, { ...KEYS, template: "model", trainOnPrompt: false, maxLength: 2048, truncation: "right" })).examples : [], [[0, 1, 2, 3, 4, 5]]);
    expect(Math.abs(evalAgain.loss - r.lastHeldOut!.loss)).toBeLessThan(1e-5);
    again.params.release();
  }, 120_000);

  test("resume after kill -9 ends with the same weights as an uninterrupted run, byte for byte", async () => {
    const file = join(tmp, "resume.jsonl");
    writeConversations(file, 8);
    const args = (dir: string) => [
      `${PROJECT_ROOT}/recall`, "sft", "--train_files", file, "--model", tinyDir, "--save_path", dir, "--batch_size", "3", "--lr", "5e-3",
      "--max_steps", "24", "--save_freq", "4", "--val_split", "0.25", "--test_freq", "6", "--seed", "5",
    ];
    const run = (dir: string) => Bun.spawnSync(args(dir), { cwd: PROJECT_ROOT, env: { ...process.env, NO_COLOR: "1" }, stdout: "pipe", stderr: "pipe" });
    const straight = run(join(tmp, "straight"));
    expect(straight.exitCode).toBe(0);

    const killedDir = join(tmp, "killed");
    const runDir = join(killedDir, "recall", "sft");
    const latest = join(runDir, "latest_checkpointed_iteration.txt");
    const p = Bun.spawn(args(killedDir), { cwd: PROJECT_ROOT, env: { ...process.env, NO_COLOR: "1" }, stdout: "ignore", stderr: "ignore" });
    const deadline = Date.now() + 90_000;
    while (Date.now() < deadline && !(existsSync(latest) && Number(readFileSync(latest, "utf8")) >= 8)) await Bun.sleep(20);
    p.kill(9);
    await p.exited;
    const killedAt = Number(readFileSync(latest, "utf8"));
    expect(killedAt).toBeGreaterThanOrEqual(8);
    expect(killedAt).toBeLessThan(24);
    const resumeStart = Date.now();
    const resumed = run(killedDir);
    expect(resumed.exitCode).toBe(0);

    const a = join(tmp, "straight", "recall", "sft", "global_step_24");
    const b = join(runDir, "global_step_24");
    for (const f of ["model.safetensors", "optimizer.safetensors"]) expect(Bun.hash(readFileSync(join(b, f)))).toBe(Bun.hash(readFileSync(join(a, f))));
    // The metrics of both runs agree step by step (the log was cut back to the checkpoint on resume).
    const ma = readMetrics(join(tmp, "straight", "recall", "sft", "metrics.jsonl"));
    const mb = readMetrics(join(runDir, "metrics.jsonl"));
    expect(mb.map((r) => r.step)).toEqual(ma.map((r) => r.step));
    // It resumed (steps up to the checkpoint kept from the killed process), not started over.
    for (const r of mb) expect(Date.parse(r.time!) < resumeStart).toBe(r.step <= killedAt);
    for (let i = 0; i < ma.length; i++) {
      expect(mb[i]!.metrics["train/loss"]).toBe(ma[i]!.metrics["train/loss"]!);
      expect(mb[i]!.metrics["val/loss"]).toBe(ma[i]!.metrics["val/loss"]!);
    }
  }, 240_000);
});
