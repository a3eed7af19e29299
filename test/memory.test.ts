/** The memory estimate: exact parameter-derived items, activation counts, and how the options move the total. */
import { logprobsScratchBytes } from "../src/ops/logprobs.ts";
import { describe, expect, test } from "bun:test";
import { parseModelConfig } from "../src/model/config.ts";
import { activationFloatsPerTokenPerLayer, estimateMemory, formatBytes, formatMemoryEstimate, kvBytesPerToken } from "../src/model/memory.ts";
import { presetConfig } from "../src/model/init.ts";
import { tinyModelOnGpu } from "./harness.ts";

const qwen05 = presetConfig("qwen2", "0.5b", 151665); // Qwen2.5-0.5B's shape

describe("memory estimate", () => {
  test("weights, grads and AdamW state follow the parameter count (Qwen2.5-0.5B: 494,032,768)", () => {
    const e = estimateMemory(qwen05, { batch: 1, seqLen: 128 });
    expect(e.weights).toBe(494_032_768 * 4);
    expect(e.grads).toBe(e.weights);
    expect(e.optimizer).toBe(2 * e.weights);
    expect(e.referenceWeights).toBe(0);
    expect(estimateMemory(qwen05, { batch: 1, seqLen: 128, referenceModel: true }).referenceWeights).toBe(e.weights);
    const inference = estimateMemory(qwen05, { batch: 1, seqLen: 128, training: false });
    expect(inference.grads + inference.optimizer + inference.backwardScratch).toBe(0);
  });

  test("16-bit projections and the bf16 rollout copy (Qwen2.5-0.5B: 357,826,560 projection weights, 136M-weight tied head)", () => {
    const projections = 24 * (896 * (896 + 2 * 128) + 896 * 896 + 3 * 896 * 4864);
    expect(projections).toBe(357_826_560);
    const half = estimateMemory(qwen05, { batch: 1, seqLen: 128, training: false, halfProjections: true });
    expect(half.weights).toBe(494_032_768 * 4 - 2 * projections);
    expect(formatMemoryEstimate(half)).toContain("projections 16-bit, the rest f32");
    const e = estimateMemory(qwen05, { batch: 1, seqLen: 128 });
    const copy = estimateMemory(qwen05, { batch: 1, seqLen: 128, bf16RolloutCopy: true });
    expect(copy.rolloutWeights).toBe(2 * (projections + 151936 * 896));
    expect(copy.total - e.total).toBe(copy.rolloutWeights);
    const ref = { batch: 1, seqLen: 128, referenceModel: "bf16-projections" as const };
    expect(estimateMemory(qwen05, ref).referenceWeights).toBe(494_032_768 * 4 - 2 * projections);
    expect(formatMemoryEstimate(estimateMemory(qwen05, ref), ref)).toContain("projections bf16, as stored");
  });

  test("KV cache: layers × 2 × kv heads × head_dim × 4 bytes per token", () => {
    expect(kvBytesPerToken(qwen05)).toBe(24 * 2 * 2 * 64 * 4);
    const e = estimateMemory(qwen05, { batch: 1, seqLen: 1, training: false, kvSequences: 16, kvCapacity: 2048 });
    expect(e.kvCache).toBe(16 * 2048 * 24576);
    expect(e.decodeLogits).toBe(16 * 151936 * 4);
  });

  test("activations per token per layer, counted by hand for a Qwen3 shape with q/k norm", () => {
    const c = parseModelConfig({ architectures: ["Qwen3ForCausalLM"], hidden_size: 8, intermediate_size: 20, num_hidden_layers: 3, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 6, vocab_size: 50 });
    // residual 8, norm 8+1, qkv 24+12+12, qk-norm 24+12+4+2, rope 24+12, attn 24+4, residual 8, norm 8+1, mlp 60
    expect(activationFloatsPerTokenPerLayer(c)).toBe(8 + 9 + 48 + 42 + 36 + 28 + 8 + 9 + 60);
  });

  test("checkpointing keeps layer inputs only; the LM head never holds more than chunk × vocab logits", () => {
    const run = { batch: 16, seqLen: 512, lmHeadChunk: 256 };
    const full = estimateMemory(qwen05, run);
    const ckpt = estimateMemory(qwen05, { ...run, checkpointing: true });
    expect(ckpt.activations).toBeLessThan(full.activations / 4);
    const tokens = 16 * 512;
    expect(full.activations).toBe(tokens * (24 * full.activationFloatsPerTokenPerLayer + 896 + 4) * 4);
    expect(ckpt.activations).toBe(tokens * (24 * 896 + full.activationFloatsPerTokenPerLayer + 896 + 4) * 4);
    // One block of logits [256 tokens × one vocab slice] plus running statistics — not tokens × vocab.
    expect(full.lmHeadScratch).toBe(logprobsScratchBytes({ N: 16 * 512, V: 151936, D: 896 }, { chunk: 256 }));
    expect(full.lmHeadScratch).toBeLessThan(256 * 151936 * 4);
    expect(full.total).toBe(full.weights + full.grads + full.optimizer + full.activations + full.backwardScratch + full.lmHeadScratch);
  });

  test("formatter: one line per non-zero item and a total", () => {
    const e = estimateMemory(qwen05, { batch: 2, seqLen: 64, checkpointing: true, kvSequences: 2, kvCapacity: 128 });
    const text = formatMemoryEstimate(e, { batch: 2, seqLen: 64, checkpointing: true });
    expect(text).toContain("weights");
    expect(text).toContain("1.84 GiB");
    expect(text).toContain("KV cache");
    expect(text).toContain("checkpointing");
    expect(text).not.toContain("reference weights");
    expect(text.split("\n").at(-1)!.trim()).toMatch(/^total\s+\d+\.\d+ GiB$/);
    expect([formatBytes(512), formatBytes(1536), formatBytes(3 * 2 ** 20), formatBytes(2 ** 31)]).toEqual(["512 B", "1.5 KiB", "3.0 MiB", "2.00 GiB"]);
  });
});

describe("memory estimate against the engine", () => {
  test("a training step's measured GPU peak is within the estimate's ballpark (0.5×–1.5×)", async () => {
    const { gpu, model, makeBatch, releaseBatch } = await tinyModelOnGpu("qwen3", 1);
    const B = 4, T = 64;
    const est = estimateMemory(model.config, { batch: B, seqLen: T, training: true });
    const grads = model.newGradients();
    gpu.pool.trim();
    const base = gpu.pool.stats.inUse - model.params.numel * 4 - grads.numel * 4;
    gpu.pool.stats.peak = gpu.pool.stats.inUse;
    const seqs = Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => 1 + ((b + t) % 200)));
    const batch = makeBatch(gpu, seqs);
    const fwd = model.forward(batch, { train: true });
    const w = gpu.upload(new Float32Array(B * T).fill(1), [B * T]);
    model.backward(fwd, w, null, grads);
    await gpu.sync();
    const measured = gpu.pool.stats.peak - base;
    const expected = est.weights + est.grads + est.activations + est.backwardScratch + est.lmHeadScratch;
    expect(measured / expected).toBeGreaterThan(0.5);
    expect(measured / expected).toBeLessThan(1.5);
    gpu.release(w, fwd.logprob, fwd.entropy);
    releaseBatch(gpu, batch);
    grads.release();
    model.params.release();
  });

  test("a forward kept for its backward holds its activations and no logits scratch (passes of a micro-batch add no scratch each)", async () => {
    const { Tensor } = await import("../src/gpu/tensor.ts");
    const { gpu, model, makeBatch, releaseBatch } = await tinyModelOnGpu("qwen2", 3);
    const grads = model.newGradients();
    const passes = [[3, 40], [2, 17]].map(([B, T]) => makeBatch(gpu, Array.from({ length: B! }, (_, b) => Array.from({ length: T! }, (_, t) => 1 + ((b * 5 + t) % 200)))));
    const fwds = passes.map((batch) => {
      const before = gpu.pool.stats.inUse;
      const fwd = model.forward(batch, { train: true, checkpoint: true });
      const kept = new Set<GPUBuffer>([fwd.logprob.buffer, fwd.entropy.buffer]);
      const saved = fwd.saved!;
      for (const t of [...saved.xs, saved.hf, saved.rf, saved.lmLse, ...saved.layers.flatMap((a) => Object.values(a))]) if (t instanceof Tensor) kept.add(t.buffer);
      expect(gpu.pool.stats.inUse - before).toBe([...kept].reduce((n, b) => n + b.size, 0));
      return fwd;
    });
    // Both backwards still run (each recomputes its logits in a scratch of its own).
    for (const [k, fwd] of fwds.entries()) {
      const N = passes[k]!.B * passes[k]!.T;
      const w = gpu.upload(new Float32Array(N).fill(1), [N]);
      model.backward(fwd, w, null, grads);
      gpu.release(w, fwd.logprob, fwd.entropy);
      releaseBatch(gpu, passes[k]!);
    }
    await gpu.sync();
    grads.release();
    model.params.release();
  });
});
