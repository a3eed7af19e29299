/** Parameters on the GPU: loading F32/F16/BF16 files, and saving back in HF format that loads again. */
import { beforeAll, expect, test } from "bun:test";
import { mkdtempSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import { Transformer } from "../src/model/transformer.ts";
import { SafetensorsModel, f32ToBf16, decodeToF32, writeSafetensorsModel } from "../src/model/safetensors.ts";
import { firstNonFinite } from "../src/model/weights.ts";
import { PROJECT_ROOT } from "./harness.ts";

let gpu: Gpu;
const src = join(PROJECT_ROOT, "fixtures/golden/qwen3_qknorm_untied/model");
beforeAll(async () => {
  gpu = await getGpu();
});

function bf16Round(x: Float32Array): Float32Array {
  const bits = f32ToBf16(x);
  return decodeToF32(new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength), "BF16");
}

test("save as F32 round-trips every parameter exactly; BF16 loads as the bf16-rounded values", async () => {
  const model = await Transformer.load(gpu, src);
  for (const dtype of ["F32", "BF16"] as const) {
    const out = mkdtempSync(join(tmpdir(), `recall-save-${dtype}-`));
    copyFileSync(join(src, "config.json"), join(out, "config.json"));
    const files = await model.params.save(out, dtype);
    expect(files).toEqual(["model.safetensors"]);
    const file = SafetensorsModel.open(out);
    expect(file.info("model.embed_tokens.weight").dtype).toBe(dtype);
    const again = await Transformer.load(gpu, out);
    for (const spec of model.params.specs) {
      const a = await gpu.readF32(model.params.get(spec.name));
      const b = await gpu.readF32(again.params.get(spec.name));
      expect([...b]).toEqual([...(dtype === "F32" ? a : bf16Round(a))]);
    }
    // The bf16 model scores close to the f32 one (same model up to rounding).
    const seq = [[3, 14, 15, 9, 26, 53, 5]];
    const [x] = await model.score(seq);
    const [y] = await again.score(seq);
    for (let i = 1; i < seq[0]!.length; i++) expect(Math.abs(x![i]! - y![i]!)).toBeLessThan(dtype === "F32" ? 1e-6 : 0.1);
    again.params.release();
  }
  model.params.release();
});

test("a NaN or infinity in the weights is refused at load, naming the tensor and element (issue 17.1)", async () => {
  const file = SafetensorsModel.open(src);
  for (const [bad, shown] of [[NaN, "NaN"], [-Infinity, "-Infinity"]] as const) {
    const out = mkdtempSync(join(tmpdir(), "recall-nonfinite-"));
    copyFileSync(join(src, "config.json"), join(out, "config.json"));
    const victim = "model.layers.1.mlp.down_proj.weight";
    await writeSafetensorsModel(
      out,
      file.names.map((name) => {
        const data = file.readF32(name);
        if (name === victim) data[5] = bad;
        return { name, shape: file.info(name).shape, data };
      }),
    );
    await expect(Transformer.load(gpu, out)).rejects.toThrow(`${out}: tensor '${victim}' holds ${shown} at element 5; the weights are damaged or diverged`);
  }
  expect(firstNonFinite(new Float32Array([0, -1e38, 3.4e38]))).toBe(-1);
  expect(firstNonFinite(new Float32Array([0, 1, Infinity]))).toBe(2);
});
