/**
 * The generation step (Transformer.forwardCached): how many dispatches a decode step's layer records (≤ 8: fused
 * q/k/v and gate/up products, RoPE fused with the cache append, SwiGLU in the gate/up epilogue, the residual
 * updated in place), and that every way the step can run gives the training forward's log-probs: the fused
 * products, the separate ones (prefill-sized steps, a LoRA adapter on every projection, a parameter set with each
 * tensor in its own buffer), and the padded q/k/v layout a 256-byte binding alignment gives. At small hidden sizes
 * the RMSNorms run inside the products that read them (6 dispatches a layer), with the same log-probs bit for bit. A
 * bf16 rollout copy of the weights decodes exactly as the f32 model does on the same (rounded) values.
 */
import { beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getGpu, type DispatchSpec, type Gpu } from "../src/gpu/runtime.ts";
import { Transformer, makeBatch, releaseBatch } from "../src/model/transformer.ts";
import { GenerationSession } from "../src/model/generate.ts";
import { ParameterSet, layerTensors, outerTensors, qkNormWeights, qkvProjection } from "../src/model/weights.ts";
import { LoraWeights, LORA_MODULES } from "../src/model/lora.ts";
import { loadModelConfig } from "../src/model/config.ts";
import { SafetensorsModel, f32ToBf16 } from "../src/model/safetensors.ts";
import { initModel } from "../src/model/init.ts";
import { Tensor } from "../src/gpu/tensor.ts";
import { Bf16RolloutWeights } from "../src/train/rollout.ts";
import { PROJECT_ROOT, expectClose, randn } from "./harness.ts";

setDefaultTimeout(120_000);

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

const FIXTURES = ["qwen2_gqa_tied", "qwen3_qknorm_untied", "llama_mha_untied"] as const;
const modelDir = (name: string) => join(PROJECT_ROOT, `fixtures/golden/${name}/model`);
const GREEDY = { temperature: 0, topP: 1, topK: 0, seed: 0 };

/** Kernel names of every dispatch, and "copy" for every buffer copy or clear (each also ends a compute pass). */
async function recordOps<T>(f: () => T | Promise<T>): Promise<{ result: T; ops: string[] }> {
  const ops: string[] = [];
  const g = gpu as unknown as Record<string, unknown>;
  const wrap = (name: string, label: (...a: unknown[]) => string) => {
    const orig = (gpu as unknown as Record<string, (...a: unknown[]) => unknown>)[name]!.bind(gpu);
    g[name] = (...a: unknown[]) => {
      ops.push(label(...a));
      return orig(...a);
    };
  };
  wrap("dispatch", (spec) => {
    const k = (spec as DispatchSpec).kernel;
    return `${typeof k.shader === "string" ? k.shader : k.shader.name}.${k.entry}`;
  });
  for (const name of ["copy", "copyRegion", "clear"]) wrap(name, () => "copy");
  try {
    return { result: await f(), ops };
  } finally {
    for (const name of ["dispatch", "copy", "copyRegion", "clear"]) delete g[name];
  }
}

/** log p(seq[i] | seq[<i]) for i ≥ 1 from the cached path: a prefill of `prefill` tokens, then one token per step. */
async function cachedLogprobs(model: Transformer, seq: number[], prefill: number, B = 1): Promise<number[]> {
  const s = new GenerationSession(model, B, seq.length + 1);
  // Other slots hold their own prompts, so the step is a batch.
  s.append(Array.from({ length: B }, (_, b) => (b === 0 ? seq.slice(0, prefill) : seq.slice(0, 1 + b).reverse())));
  const out: number[] = [];
  for (let i = prefill; i < seq.length; i++) {
    const l = (await s.readLogits()).subarray(0, model.V);
    let m = -Infinity;
    for (const v of l) m = Math.max(m, v);
    let z = 0;
    for (const v of l) z += Math.exp(v - m);
    out.push(l[seq[i]!]! - m - Math.log(z));
    s.append(Array.from({ length: B }, (_, b) => [b === 0 ? seq[i]! : seq[(i * 3 + b) % seq.length]!]));
  }
  s.release();
  return out;
}

/** The training forward's log-probs of the same tokens. */
async function forwardLogprobs(model: Transformer, seq: number[], from: number): Promise<number[]> {
  const batch = makeBatch(gpu, [seq]);
  const fwd = model.forward(batch);
  const lp = await gpu.readF32(fwd.logprob);
  gpu.release(fwd.logprob, fwd.entropy);
  releaseBatch(gpu, batch);
  return Array.from(lp.subarray(from - 1, seq.length - 1));
}

const sequence = (V: number, n: number) => Array.from({ length: n }, (_, t) => (t * 37 + 11) % V);

describe("a decode step", () => {
  for (const name of FIXTURES) {
    test(`${name}: at most 8 dispatches per layer, no copies, no row gather before the LM head; 6 with the norms in the products`, async () => {
      const model = await Transformer.load(gpu, modelDir(name));
      /** The dispatches and copies of one decode step of 3 sequences. */
      const stepOps = async () => {
        const s = new GenerationSession(model, 3, 16);
        s.append([[1, 2, 3], [4], [5, 6]]);
        await s.sampleNext([0, 1, 2], GREEDY);
        const { ops } = await recordOps(() => s.advance([0, 1, 2]));
        await gpu.sync();
        s.release();
        return ops;
      };
      try {
        expect(model.fusedQkv).toBe(true);
        const L = model.config.numLayers;
        model.normsInProducts = false;
        let ops = await stepOps();
        // The layers' work lies between the embedding lookup and the final norm (the last norm of the step).
        const first = ops.indexOf("embedding.embedding_forward");
        const finalNorm = ops.findLastIndex((o) => o.startsWith("rmsnorm."));
        expect(first).toBe(0);
        const perLayer = ops.slice(first + 1, finalNorm);
        expect(perLayer.filter((o) => o === "copy")).toEqual([]);
        expect(perLayer.length).toBeLessThanOrEqual(8 * L);
        expect(perLayer.length % L).toBe(0);
        // After the final norm only the LM head's product: a decode step's rows are its sequences' last rows already.
        expect(ops.slice(finalNorm + 1)).toHaveLength(1);
        expect(ops.slice(finalNorm + 1)[0]).toStartWith("matmul");

        // Hidden sizes this small take every norm into the product that reads it: 6 dispatches a layer, no norm pass,
        // and the LM head's product takes the final norm.
        model.normsInProducts = true;
        ops = await stepOps();
        expect(ops[0]).toBe("embedding.embedding_forward");
        expect(ops.filter((o) => o.startsWith("rmsnorm.") || o === "copy")).toEqual([]);
        expect(ops.length).toBe(1 + 6 * L + 1);
        expect(ops.filter((o) => o.endsWith("matmul_sg_a4b4_norm"))).toHaveLength(2 * L + 1);
      } finally {
        model.params.release();
      }
    });
  }
});

describe("every way a generation step runs gives the training forward's log-probs", () => {
  for (const name of FIXTURES) {
    test(`${name}: fused decode steps, a prefill past the fused size, separate buffers, LoRA on every projection`, async () => {
      const model = await Transformer.load(gpu, modelDir(name));
      const seq = sequence(model.V, 80);
      const tol = { atol: 2e-4, rtol: 2e-4 };
      try {
        // Decode steps of 1 row (fused products) after a 9-token prefill (fused: 9 rows), in a batch of 4.
        const want = await forwardLogprobs(model, seq, 9);
        expectClose(await cachedLogprobs(model, seq, 9, 4), want, tol, "fused decode");
        // A 70-row prefill runs the separate products (q, k, v one after another in one buffer; gate, up, swiglu).
        expect(model.fuseQkvAt(70) || model.fuseGateUpAt(70)).toBe(false);
        expectClose(await cachedLogprobs(model, seq, 70), want.slice(70 - 9), tol, "separate prefill");

        // Every tensor in its own buffer: no fused products, and (Qwen3) the q/k norm weights copied together per step.
        const apart = model.withSeparateBuffers();
        expect(apart.fusedQkv || apart.fusedGateUp).toBe(false);
        if (model.config.qkNorm) expect(qkNormWeights(layerTensors(apart.params, 0))).toBeUndefined();
        expectClose(await cachedLogprobs(apart, seq, 9, 2), want, tol, "separate buffers");
        apart.params.release();

        // A LoRA adapter with non-zero B on every projection: the adapter's terms go into each separate product.
        const lora = LoraWeights.init(gpu, model.config, { rank: 4, alpha: 8, targetModules: [...LORA_MODULES] }, 7);
        lora.specs.forEach((sp, i) => {
          if (sp.name.endsWith(".lora_B.weight")) gpu.write(lora.get(sp.name), randn(sp.shape[0]! * sp.shape[1]!, 40 + i, 0.2));
        });
        model.adapter = lora;
        expect(model.fuseQkvAt(1) || model.fuseGateUpAt(1)).toBe(false);
        const wantLora = await forwardLogprobs(model, seq, 9);
        expect(Math.max(...wantLora.map((v, i) => Math.abs(v - want[i]!)))).toBeGreaterThan(1e-3); // the adapter matters
        expectClose(await cachedLogprobs(model, seq, 9, 3), wantLora, tol, "LoRA decode");
        // Switched off (the reference policy), the fused products are back.
        await model.withoutAdapter(async () => {
          expect(model.fuseQkvAt(1)).toBe(true);
          expectClose(await cachedLogprobs(model, seq, 9, 2), want, tol, "adapter off");
        });
        model.adapter = undefined;
        lora.release();
      } finally {
        model.params.release();
      }
    });
  }

  test("a 256-byte binding alignment pads the q/k/v rows and the q/k norms; decoding and saving are unchanged", async () => {
    // The same adapter, reporting the alignment most discrete GPUs have (lavapipe's is 16 bytes, which needs no padding here).
    const limits = { ...gpu.limits, minStorageBufferOffsetAlignment: 256 };
    const aligned = new Proxy(gpu, {
      get(target, key) {
        if (key === "limits") return limits;
        const v = Reflect.get(target, key, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    for (const name of ["qwen2_gqa_tied", "qwen3_qknorm_untied"]) {
      const dir = modelDir(name);
      const config = loadModelConfig(dir);
      const plain = await Transformer.load(gpu, dir);
      const padded = new Transformer(gpu, config, await ParameterSet.load(aligned, config, dir));
      try {
        const P = layerTensors(padded.params, 0);
        const qkv = qkvProjection(P)!;
        const { numHeads: Hq, numKvHeads: Hkv, headDim: hd } = config;
        expect(qkv.rows).toBeGreaterThan((Hq + 2 * Hkv) * hd); // zero rows between the members
        for (const t of [P.q, P.k, P.v, P.qBias, P.kBias, P.vBias, P.qNorm, P.kNorm]) if (t) expect(t.byteOffset % 256).toBe(0);
        if (config.qkNorm) expect(qkNormWeights(P)!.k).toBeGreaterThan(hd);
        const seq = sequence(config.vocabSize, 24);
        const want = await forwardLogprobs(plain, seq, 5);
        expectClose(await forwardLogprobs(padded, seq, 5), want, { atol: 1e-6, rtol: 1e-6 }, "training forward");
        expectClose(await cachedLogprobs(padded, seq, 5, 3), want, { atol: 2e-4, rtol: 2e-4 }, "decode");
        const s = [plain, padded].map((m) => new GenerationSession(m, 2, 32));
        const runs = await Promise.all(
          s.map(async (x) => {
            x.append([[3, 50, 77], [9]]);
            return (await x.generate({ maxNewTokens: 10, sampling: GREEDY })).map((r) => r!.tokens);
          }),
        );
        s.forEach((x) => x.release());
        expect(runs[1]).toEqual(runs[0]!);
        // Saved under HF names, bit for bit as loaded.
        const out = mkdtempSync(join(tmpdir(), "recall-padded-save-"));
        await padded.params.save(out);
        const src = SafetensorsModel.open(dir), dst = SafetensorsModel.open(out);
        for (const sp of padded.params.specs) {
          const a = src.readF32(sp.name), b = dst.readF32(sp.name);
          expect(Buffer.from(b.buffer, b.byteOffset, b.byteLength).equals(Buffer.from(a.buffer, a.byteOffset, a.byteLength))).toBe(true);
        }
      } finally {
        plain.params.release();
        padded.params.release();
      }
    }
  });
});

describe("a bf16 rollout copy (actor_rollout_ref.rollout.dtype=bfloat16)", () => {
  /** Each projection weight of the copy as bf16 bits, read back. */
  async function bf16Bits(t: Tensor): Promise<Uint16Array> {
    return new Uint16Array(await gpu.read(new Tensor(t.buffer, [Math.ceil(t.numel / 2)], "u32", t.byteOffset))).slice(0, t.numel);
  }

  for (const name of FIXTURES) {
    test(`${name}: torch's bf16 rounding of the policy's projections and LM head, refreshed after a change; the rest shared; decodes as the f32 model on the rounded weights, bit for bit`, async () => {
      const policy = await Transformer.load(gpu, modelDir(name));
      const rounded = await Transformer.load(gpu, modelDir(name));
      const copy = new Bf16RolloutWeights(policy);
      /** The bf16 bits of f32 values, and those values back as f32 (each on top of 16 zero bits). */
      const round = (x: Float32Array) => {
        const bits = f32ToBf16(x);
        const words = new Uint32Array(bits.length);
        for (let i = 0; i < bits.length; i++) words[i] = bits[i]! << 16;
        return { bits, values: new Float32Array(words.buffer) };
      };
      let head: Tensor | undefined;
      try {
        // A projection and the LM head change after an update: the next refresh takes them.
        const q0 = policy.params.get("model.layers.0.self_attn.q_proj.weight");
        gpu.write(q0, randn(q0.numel, 9, 0.05));
        const lmHead = outerTensors(policy.params).lmHead;
        gpu.write(lmHead, randn(lmHead.numel, 10, 0.05));
        copy.refresh();
        let projections = 0;
        for (const sp of policy.params.specs) {
          const want = await gpu.readF32(policy.params.get(sp.name));
          const t = copy.model.params.get(sp.name);
          if (t.dtype === "bf16") {
            projections++;
            const r = round(want);
            expect(await bf16Bits(t), sp.name).toEqual(r.bits);
            gpu.write(rounded.params.get(sp.name), r.values);
          } else {
            // The embedding, norms and biases are the policy's own tensors.
            expect(t, sp.name).toBe(policy.params.get(sp.name));
            gpu.write(rounded.params.get(sp.name), want);
          }
        }
        expect(projections).toBe(7 * policy.config.numLayers);
        expect(copy.model.fusedQkv && copy.model.fusedGateUp).toBe(true);
        // The LM head (the embedding's values when tied) in bf16; the f32 model gets the same values as its decode head.
        const h = round(await gpu.readF32(lmHead));
        expect(await bf16Bits(copy.model.decodeHead!)).toEqual(h.bits);
        head = gpu.upload(h.values, [policy.V, policy.D]);
        rounded.decodeHead = head;
        const seq = sequence(policy.V, 80);
        // Fused decode steps in a batch of 3, and a 70-row prefill through the separate products.
        expect(await cachedLogprobs(copy.model, seq, 9, 3)).toEqual(await cachedLogprobs(rounded, seq, 9, 3));
        expect(await cachedLogprobs(copy.model, seq, 70)).toEqual(await cachedLogprobs(rounded, seq, 70));
        // ... and not what the policy's own f32 weights give.
        expect(await cachedLogprobs(copy.model, seq, 9)).not.toEqual(await cachedLogprobs(policy, seq, 9));
      } finally {
        copy.release();
        for (const m of [policy, rounded]) m.params.release();
        if (head) gpu.release(head);
      }
    });
  }
});

describe("a bf16 checkpoint opened for inference keeps its projections in bf16 (projectionDtype 'stored')", () => {
  test("the same log-probs (whole-sequence forward and cached decode) as loading it into f32, bit for bit; f32 and mixed files stay f32", async () => {
    const dir = mkdtempSync(join(tmpdir(), "recall-bf16-ckpt-"));
    for (const arch of ["qwen2", "qwen3", "llama"] as const) {
      const bf16 = join(dir, `${arch}-bf16`), f32 = join(dir, `${arch}-f32`);
      await initModel({ arch, preset: "tiny", outDir: bf16, seed: 5, dtype: "BF16" });
      await initModel({ arch, preset: "tiny", outDir: f32, seed: 5 });
      const stored = await Transformer.load(gpu, bf16, { projectionDtype: "stored" });
      const wide = await Transformer.load(gpu, bf16);
      try {
        expect(stored.params.get("model.layers.0.mlp.down_proj.weight").dtype).toBe("bf16");
        expect(stored.params.get("model.layers.0.input_layernorm.weight").dtype).toBe("f32");
        expect(wide.params.get("model.layers.0.mlp.down_proj.weight").dtype).toBe("f32");
        const seq = sequence(stored.V, 80);
        expect(await forwardLogprobs(stored, seq, 1)).toEqual(await forwardLogprobs(wide, seq, 1));
        expect(await cachedLogprobs(stored, seq, 9, 3)).toEqual(await cachedLogprobs(wide, seq, 9, 3));
      } finally {
        stored.params.release();
        wide.params.release();
      }
      const plain = await Transformer.load(gpu, f32, { projectionDtype: "stored" });
      expect(plain.params.get("model.layers.0.mlp.down_proj.weight").dtype).toBe("f32");
      plain.params.release();
    }
    // One projection in F32 among BF16 ones: the file is not a bf16 checkpoint, everything loads as f32.
    const mixed = join(dir, "mixed");
    await initModel({ arch: "qwen2", preset: "tiny", outDir: mixed, seed: 5 });
    const src = SafetensorsModel.open(join(dir, "qwen2-bf16"));
    const header: Record<string, unknown> = {};
    const parts: Uint8Array[] = [];
    let at = 0;
    for (const name of src.names) {
      const wide = name === "model.layers.1.mlp.up_proj.weight";
      const bytes = wide ? new Uint8Array(src.readF32(name).buffer) : src.readBytes(name);
      header[name] = { dtype: wide ? "F32" : "BF16", shape: src.info(name).shape, data_offsets: [at, at + bytes.byteLength] };
      parts.push(bytes);
      at += bytes.byteLength;
    }
    const json = new TextEncoder().encode(JSON.stringify(header).padEnd(Math.ceil(JSON.stringify(header).length / 8) * 8));
    const len = new Uint8Array(8);
    new DataView(len.buffer).setBigUint64(0, BigInt(json.byteLength), true);
    writeFileSync(join(mixed, "model.safetensors"), Buffer.concat([len, json, ...parts]));
    const mixedModel = await Transformer.load(gpu, mixed, { projectionDtype: "stored" });
    expect(mixedModel.params.get("model.layers.0.self_attn.q_proj.weight").dtype).toBe("f32");
    mixedModel.params.release();
  });
});

describe("RMSNorms inside the products (a generation step at small hidden sizes)", () => {
  for (const name of FIXTURES) {
    test(`${name}: the same log-probs bit for bit as every norm on its own, decode and prefill`, async () => {
      const model = await Transformer.load(gpu, modelDir(name));
      try {
        const seq = sequence(model.V, 80);
        const both = async (prefill: number, B: number) => {
          model.normsInProducts = false;
          const apart = await cachedLogprobs(model, seq, prefill, B);
          model.normsInProducts = true;
          return [await cachedLogprobs(model, seq, prefill, B), apart] as const;
        };
        for (const [prefill, B] of [[9, 4], [9, 1], [40, 2]] as const) {
          const [fused, apart] = await both(prefill, B);
          expect(fused, `prefill ${prefill}, B=${B}`).toEqual(apart);
        }
      } finally {
        model.params.release();
      }
    });
  }
});
