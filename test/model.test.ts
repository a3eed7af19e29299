/**
 * The whole WebGPU model against golden fixtures from an independent PyTorch implementation
 * (scripts/golden.py): per-token log-probs, entropies, and the gradient of every parameter, for tiny
 * Qwen2 (GQA, bias, tied head), Qwen3 (q/k norm, head_dim ≠ hidden/heads, untied) and Llama configs.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import { Transformer, makeBatch, releaseBatch } from "../src/model/transformer.ts";
import { SafetensorsModel } from "../src/model/safetensors.ts";
import { PROJECT_ROOT, expectClose, goldenInputs } from "./harness.ts";

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

const CASES = ["qwen2_gqa_tied", "qwen3_qknorm_untied", "llama_mha_untied"];

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const v of a) m = Math.max(m, Math.abs(v));
  return m;
}

for (const name of CASES) {
  describe(`golden ${name}`, () => {
    const dir = join(PROJECT_ROOT, "fixtures/golden", name);
    const inputs = goldenInputs(name);
    const expected = SafetensorsModel.open(join(dir, "expected.safetensors"));
    const flat = (m: number[][]) => Float32Array.from(m.flat());
    const masked = (x: Float32Array, mask: number[][]) => x.map((v, i) => (mask.flat()[i] ? v : 0));

    test("log-probs and entropies match PyTorch", async () => {
      const model = await Transformer.load(gpu, join(dir, "model"));
      const seqs = inputs.ids.map((row, b) => row.slice(0, inputs.lengths[b]));
      const batch = makeBatch(gpu, seqs, inputs.ids[0]!.length);
      const fwd = model.forward(batch);
      const [lp, ent] = await gpu.readMany([fwd.logprob, fwd.entropy]);
      expectClose(masked(new Float32Array(lp!), inputs.logprob_mask), expected.readF32("logprobs"), { atol: 2e-5, rtol: 1e-5 }, "logprobs");
      expectClose(masked(new Float32Array(ent!), inputs.entropy_mask), expected.readF32("entropies"), { atol: 2e-5, rtol: 1e-5 }, "entropies");
      gpu.release(fwd.logprob, fwd.entropy);
      releaseBatch(gpu, batch);
      model.params.release();
    });

    for (const [kind, weights, gradFile] of [
      ["log-prob loss", "loss_weights", "grads.safetensors"],
      ["entropy loss", "entropy_weights", "grads_entropy.safetensors"],
    ] as const) {
      for (const checkpoint of [false, true]) {
        test(`gradients of every parameter (${kind}${checkpoint ? ", activation checkpointing" : ""})`, async () => {
          const model = await Transformer.load(gpu, join(dir, "model"));
          const grads = model.newGradients();
          const seqs = inputs.ids.map((row, b) => row.slice(0, inputs.lengths[b]));
          const batch = makeBatch(gpu, seqs, inputs.ids[0]!.length);
          const fwd = model.forward(batch, { train: true, checkpoint });
          const w = gpu.upload(flat(inputs[weights]), [batch.B * batch.T]);
          const zero = gpu.zeros([batch.B * batch.T]);
          if (kind === "log-prob loss") model.backward(fwd, w, null, grads);
          else model.backward(fwd, zero, w, grads);
          const want = SafetensorsModel.open(join(dir, gradFile));
          expect(want.names.sort()).toEqual(grads.specs.map((s) => s.name).sort());
          for (const spec of grads.specs) {
            const got = await gpu.readF32(grads.get(spec.name));
            const ref = want.readF32(spec.name);
            const scale = Math.max(maxAbs(ref), 1e-6);
            expectClose(got, ref, { atol: 2e-4 * scale, rtol: 0 }, spec.name);
          }
          gpu.release(w, zero, fwd.logprob, fwd.entropy);
          releaseBatch(gpu, batch);
          grads.release();
          model.params.release();
        });
      }
    }
  });
}
