// Sequences that share prompts, each prompt run once (src/model/shared_prefix.ts): the same log-probs, entropies and
// gradients as running every sequence whole, to rounding, for every architecture, with and without checkpointing.
import { describe, expect, test, setDefaultTimeout } from "bun:test";
import { expectClose, randn, tinyModelOnGpu } from "./harness.ts";
import { makeSharedPrefixBatch, planSharedPrefix, sharedPrefixRowMultiple } from "../src/model/shared_prefix.ts";

setDefaultTimeout(120_000);

const range = (a: number, b: number) => Array.from({ length: Math.max(0, b - a) }, (_, i) => a + i);
const tokens = (n: number, seed: number) => Array.from({ length: n }, (_, t) => 1 + ((seed * 37 + t * 11) % 250));

// Three prompts (23, 31 and 9 tokens) with 3, 2 and 1 samples, members interleaved, responses of 1–20 tokens.
const prompts = [tokens(23, 1), tokens(31, 2), tokens(9, 3)];
const members: [number, number][] = [[0, 12], [1, 8], [0, 5], [2, 6], [1, 20], [0, 17], [0, 1]];
const seqs = members.map(([p, n], i) => [...prompts[p]!, ...tokens(n, 10 + i)]);
const prefixLengths = members.map(([p]) => prompts[p]!.length - 1);
// The rows that predict response tokens (from the prompt's last token on), one sample with a gap (a tool response).
const headRows = seqs.map((s, i) => range(prefixLengths[i]!, s.length - 1).filter((t) => i !== 4 || t < 36 || t > 40));

describe("shared-prefix batches", () => {
  test("the plan: one prefix per distinct prompt, aligned blocks, rows of the own block", () => {
    const plan = planSharedPrefix(seqs, prefixLengths, 4);
    expect(plan.prefixes.map((p) => p.length)).toEqual([22, 30, 8]);
    expect(plan.owner).toEqual([0, 1, 0, 2, 1, 0, 0]);
    expect((plan.P * plan.Tp) % 4).toBe(0);
    expect([plan.P, plan.Tp]).toEqual([3, 32]); // ≥ 3 prefixes of ≥ 30 rows, a multiple of 4: 3 × 32 (4 × 30 = 120)
    expect(plan.Ts).toBe(21);
    expect(plan.rows).toBe(96 + 7 * 21);
    // The row multiple: 256-byte binding offsets over Qwen2.5-0.5B's widths (q 896, k/v 128 and 14 heads of lse) → 32
    // rows; 16 bytes (lavapipe) → 1 when every width is a multiple of 4.
    const limits = (a: number) => ({ limits: { minStorageBufferOffsetAlignment: a } }) as unknown as Parameters<typeof sharedPrefixRowMultiple>[0];
    const qwen05 = { numHeads: 14, numKvHeads: 2, headDim: 64 } as Parameters<typeof sharedPrefixRowMultiple>[1];
    expect(sharedPrefixRowMultiple(limits(256), qwen05)).toBe(32);
    expect(sharedPrefixRowMultiple(limits(16), { ...qwen05, numHeads: 16 })).toBe(1);
    // A prefix must leave a token of its own.
    expect(() => planSharedPrefix([[1, 2]], [2], 1)).toThrow(/prefix/);
  });

  // The llama case aligns the own block to 64 rows (what a 256-byte offset alignment asks of some widths; lavapipe asks
  // 16 bytes): an empty aligning prefix and padded prefix rows then take part.
  for (const [arch, checkpoint, align] of [["qwen2", false, 0], ["qwen3", true, 0], ["llama", false, 64]] as const) {
    test(`forward values and every gradient equal running each sequence whole (${arch}${checkpoint ? ", activation checkpointing" : ""}${align ? `, own block aligned to ${align} rows` : ""})`, async () => {
      const { gpu, model, makeBatch, releaseBatch } = await tinyModelOnGpu(arch, 21);
      const plan = planSharedPrefix(seqs, prefixLengths, align || sharedPrefixRowMultiple(gpu, model.config));
      if (align) expect([plan.P, plan.Tp]).toEqual([4, 32]);
      const whole = makeBatch(gpu, seqs, undefined, headRows);
      const shared = makeSharedPrefixBatch(gpu, plan, seqs, prefixLengths, headRows);
      const R = headRows.reduce((n, r) => n + r.length, 0);
      expect(shared.head?.count).toBe(R);
      expect(shared.T).toBeLessThan(whole.B * whole.T);
      const fwdW = model.forward(whole, { train: true, checkpoint, temperature: 0.7 });
      const fwdS = model.forward(shared, { train: true, checkpoint, temperature: 0.7 });
      const [lpW, entW, lpS, entS] = (await gpu.readMany([fwdW.logprob, fwdW.entropy, fwdS.logprob, fwdS.entropy])).map((x) => new Float32Array(x));
      expectClose(lpS!, lpW!, { rtol: 1e-5, atol: 2e-5 }, "logprob");
      expectClose(entS!, entW!, { rtol: 1e-5, atol: 2e-5 }, "entropy");

      const dl = randn(R, 3, 0.5), de = randn(R, 4, 0.5);
      const gW = model.newGradients(), gS = model.newGradients();
      const t = [gpu.upload(dl, [R]), gpu.upload(de, [R])];
      model.backward(fwdW, t[0]!, t[1]!, gW);
      model.backward(fwdS, t[0]!, t[1]!, gS);
      let nonzero = 0;
      for (const spec of gW.specs) {
        const [w, s] = (await gpu.readMany([gW.get(spec.name), gS.get(spec.name)])).map((x) => new Float32Array(x));
        const scale = Math.max(...w!.map(Math.abs));
        expectClose(s!, w!, { rtol: 1e-4, atol: 1e-5 * scale }, spec.name);
        if (scale > 0) nonzero++;
      }
      expect(nonzero).toBe(gW.specs.length);
      gpu.release(...t, fwdW.logprob, fwdW.entropy, fwdS.logprob, fwdS.entropy);
      releaseBatch(gpu, whole);
      releaseBatch(gpu, shared);
      gW.release();
      gS.release();
      model.params.release();
    });
  }

  test("every row through the LM head: a sequence's values sit at batch.row(i, t); bad head rows are refused", async () => {
    const { gpu, model, makeBatch, releaseBatch } = await tinyModelOnGpu("qwen2", 22);
    const plan = planSharedPrefix(seqs, prefixLengths, sharedPrefixRowMultiple(gpu, model.config));
    const whole = makeBatch(gpu, seqs);
    const shared = makeSharedPrefixBatch(gpu, plan, seqs, prefixLengths);
    expect(shared.head).toBeUndefined();
    const fw = model.forward(whole), fs = model.forward(shared);
    const [lw, ls] = (await gpu.readMany([fw.logprob, fs.logprob])).map((x) => new Float32Array(x));
    const at = (x: Float32Array, b: typeof whole) => Float32Array.from(headRows.flatMap((ts, i) => ts.map((t) => x[b.row(i, t)]!)));
    expectClose(at(ls!, shared), at(lw!, whole), { rtol: 1e-5, atol: 2e-5 }, "logprob");
    for (const bad of [[prefixLengths[1]! - 1], [seqs[1]!.length - 1]]) {
      expect(() => makeSharedPrefixBatch(gpu, plan, seqs, prefixLengths, seqs.map((_, i) => (i === 1 ? bad : [])))).toThrow(/headRows\[1\]/);
    }
    gpu.release(fw.logprob, fw.entropy, fs.logprob, fs.entropy);
    releaseBatch(gpu, whole);
    releaseBatch(gpu, shared);
    model.params.release();
  });
});

describe("the trainer's passes share prompts", () => {
  test("GRPO groups run each prompt once; log-probs, entropies and the update's gradients are those of whole sequences", async () => {
    const { responseBatch, scoreResponses, forwardForUpdate } = await import("../src/train/actor.ts");
    const { gpu, model, releaseBatch } = await tinyModelOnGpu("qwen2", 23);
    // 3 prompts × 4 samples, responses of 3–30 tokens; one sample with a masked stretch (a tool response).
    const rl = Array.from({ length: 12 }, (_, i) => {
      const prompt = tokens(40 + 9 * (i % 3), 50 + (i % 3));
      const ids = [...prompt, ...tokens(3 + ((i * 7) % 28), 60 + i)];
      const used = i === 5 ? Float32Array.from({ length: ids.length - prompt.length }, (_, j) => (j >= 2 && j < 6 ? 0 : 1)) : undefined;
      return { ids, responseStart: prompt.length, ...(used ? { used } : {}) };
    });
    const rb = responseBatch(model, rl);
    expect(rb.batch.shared?.P).toBeGreaterThanOrEqual(3);
    expect(rb.batch.T).toBeLessThan(0.6 * rl.length * Math.max(...rl.map((s) => s.ids.length)));
    releaseBatch(gpu, rb.batch);
    // Alone, a sequence shares nothing: the reference values.
    const alone = await Promise.all(rl.map((s) => scoreResponses(model, [s], { temperature: 0.9, maxTokens: 1 << 20 })));
    const together = await scoreResponses(model, rl, { temperature: 0.9, maxTokens: 1 << 20 });
    // (Unused positions read 0 where the head skips them: compare the used ones.)
    const usedOnly = (x: Float32Array, i: number) => x.map((v, j) => (rl[i]!.used?.[j] === 0 ? 0 : v));
    rl.forEach((_, i) => {
      expectClose(usedOnly(together.logprob[i]!, i), usedOnly(alone[i]!.logprob[0]!, i), { rtol: 1e-5, atol: 2e-5 }, `logprob ${i}`);
      expectClose(usedOnly(together.entropy[i]!, i), usedOnly(alone[i]!.entropy[0]!, i), { rtol: 1e-5, atol: 2e-5 }, `entropy ${i}`);
    });
    // The update's gradient: all sequences in one shared pass against one pass per sequence.
    // (The loss gives unused positions no gradient.)
    const dl = rl.map((s, i) => usedOnly(randn(s.ids.length - s.responseStart, 70 + i, 0.3), i));
    const de = rl.map((s, i) => usedOnly(randn(s.ids.length - s.responseStart, 90 + i, 0.3), i));
    const gS = model.newGradients(), gW = model.newGradients();
    const fs = await forwardForUpdate(model, rl, { temperature: 0.9, checkpoint: true });
    fs.backward(dl, de, gS);
    for (let i = 0; i < rl.length; i++) {
      const f = await forwardForUpdate(model, [rl[i]!], { temperature: 0.9, checkpoint: true });
      f.backward([dl[i]!], [de[i]!], gW);
    }
    for (const spec of gW.specs) {
      const [w, s] = (await gpu.readMany([gW.get(spec.name), gS.get(spec.name)])).map((x) => new Float32Array(x));
      expectClose(s!, w!, { rtol: 1e-4, atol: 1e-5 * Math.max(...w!.map(Math.abs)) }, spec.name);
    }
    gS.release();
    gW.release();
    model.params.release();
  });
});

describe("shared prefixes under LoRA", () => {
  test("adapter gradients equal running each sequence whole (activation checkpointing)", async () => {
    const { LoraWeights, LORA_MODULES } = await import("../src/model/lora.ts");
    const { gpu, model, makeBatch, releaseBatch } = await tinyModelOnGpu("qwen2", 24);
    const lora = LoraWeights.init(gpu, model.config, { rank: 4, alpha: 8, targetModules: [...LORA_MODULES] }, 3);
    lora.specs.forEach((sp, i) => {
      if (sp.name.endsWith(".lora_B.weight")) gpu.write(lora.get(sp.name), Float32Array.from({ length: sp.shape[0]! * sp.shape[1]! }, (_, j) => Math.sin(i * 7 + j) * 0.1));
    });
    model.adapter = lora;
    const plan = planSharedPrefix(seqs, prefixLengths, sharedPrefixRowMultiple(gpu, model.config));
    const R = headRows.reduce((n, r) => n + r.length, 0);
    const dl = gpu.upload(randn(R, 5, 0.5), [R]), de = gpu.upload(randn(R, 6, 0.5), [R]);
    const grads: Float32Array[][] = [];
    for (const shared of [false, true]) {
      const batch = shared ? makeSharedPrefixBatch(gpu, plan, seqs, prefixLengths, headRows) : makeBatch(gpu, seqs, undefined, headRows);
      const g = lora.zerosLike();
      const fwd = model.forward(batch, { train: true, checkpoint: true });
      model.backward(fwd, dl, de, g);
      grads.push(await Promise.all(g.list().map((t) => gpu.readF32(t))));
      gpu.release(fwd.logprob, fwd.entropy);
      releaseBatch(gpu, batch);
      g.release();
    }
    grads[0]!.forEach((w, k) => expectClose(grads[1]![k]!, w, { rtol: 1e-4, atol: 1e-5 * Math.max(...w.map(Math.abs)) }, `adapter tensor ${k}`));
    expect(Math.max(...grads[0]![0]!.map(Math.abs))).toBeGreaterThan(0);
    gpu.release(dl, de);
    lora.release();
    model.params.release();
  });
});
