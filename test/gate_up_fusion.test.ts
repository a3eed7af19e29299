/**
 * Fused gate/up projections: a layer's gate_proj and up_proj weights live back to back in one buffer, so one
 * [N, 2I] matmul computes both (forward) and one computes both weight gradients (backward) in decode-sized passes. These tests hold the
 * fused path to the separate one on the same weights, and the saved checkpoint to the file it was loaded from.
 */
import { beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import { Transformer, makeBatch, releaseBatch } from "../src/model/transformer.ts";
import { gateUpWeight, layerTensors } from "../src/model/weights.ts";
import { SafetensorsModel } from "../src/model/safetensors.ts";
import { PROJECT_ROOT, expectClose } from "./harness.ts";

setDefaultTimeout(120_000);

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

async function forwardBackward(model: Transformer, seqs: number[][]) {
  const batch = makeBatch(gpu, seqs);
  const fwd = model.forward(batch, { train: true });
  const N = batch.B * batch.T;
  const w = gpu.upload(Float32Array.from({ length: N }, (_, i) => Math.sin(i + 1)), [N]);
  const e = gpu.upload(Float32Array.from({ length: N }, (_, i) => 0.1 * Math.cos(i)), [N]);
  const lp = await gpu.readF32(fwd.logprob);
  const grads = model.newGradients();
  model.backward(fwd, w, e, grads);
  const g = new Map(await Promise.all(grads.specs.map(async (sp) => [sp.name, await gpu.readF32(grads.get(sp.name))] as const)));
  grads.release();
  gpu.release(fwd.logprob, fwd.entropy, w, e);
  releaseBatch(gpu, batch);
  return { lp, g };
}

for (const name of ["qwen2_gqa_tied", "qwen3_qknorm_untied", "llama_mha_untied"]) {
  test(`${name}: fused gate/up gives the separate projections' log-probs and gradients`, async () => {
    const model = await Transformer.load(gpu, join(PROJECT_ROOT, `fixtures/golden/${name}/model`));
    const separate = model.withSeparateBuffers();
    try {
      expect(model.fusedGateUp).toBe(true);
      expect(separate.fusedGateUp).toBe(false);
      expect(gateUpWeight(layerTensors(model.params, 0))!.shape).toEqual([2 * model.I, model.D]);
      const V = model.V;
      const seq = (n: number, k: number) => Array.from({ length: n }, (_, t) => (t * k + 3) % V);
      // 26 rows: the fused products; 78 rows: training-sized, the halves as separate products on the fused buffer.
      for (const seqs of [[seq(13, 7), seq(6, 5)], [seq(13, 7), seq(6, 5), seq(13, 3), seq(9, 11), seq(13, 2), seq(1, 1)]]) {
        expect(model.fuseGateUpAt(seqs.length * 13)).toBe(seqs.length === 2);
        const a = await forwardBackward(model, seqs);
        const b = await forwardBackward(separate, seqs);
        expectClose(a.lp, b.lp, { atol: 1e-6, rtol: 1e-6 }, "log-probs");
        // Only the order of the sums over the intermediate dimension differs (one K = 2I product instead of two).
        for (const [k, ga] of a.g) expectClose(ga, b.g.get(k)!, { atol: 1e-5, rtol: 1e-4 }, k);
      }
    } finally {
      model.params.release();
      separate.params.release();
    }
  });
}

test("a fused parameter set saves every tensor under its HF name, bit for bit as loaded", async () => {
  const dir = join(PROJECT_ROOT, "fixtures/golden/qwen3_qknorm_untied/model");
  const model = await Transformer.load(gpu, dir);
  const out = mkdtempSync(join(tmpdir(), "recall-fused-save-"));
  await model.params.save(out);
  model.params.release();
  const src = SafetensorsModel.open(dir), dst = SafetensorsModel.open(out);
  for (const sp of model.params.specs) {
    const a = src.readF32(sp.name), b = dst.readF32(sp.name);
    expect(Buffer.from(b.buffer, b.byteOffset, b.byteLength).equals(Buffer.from(a.buffer, a.byteOffset, a.byteLength))).toBe(true);
  }
});
