/**
 * `recall merge`: a base model folder plus a LoRA adapter folder → a plain Hugging Face model folder with
 * W' = W + s·B·A in every adapted projection (what PEFT's merge_and_unload + save_pretrained give), on the CPU, one
 * tensor at a time. The other files of the base folder (config, generation config, tokenizer) are copied; weights are
 * written in the base's dtype when it is BF16, else F32. The output goes to `<out>.partial` and is renamed when done.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { RecallError } from "../errors.ts";
import { loadModelConfig, parameterSpecs } from "./config.ts";
import { LORA_MODULES, loraModuleDims, loraModulePath, loraScale, type LoraModule } from "./lora.ts";
import { openAdapter } from "./peft_adapter.ts";
import { SafetensorsModel, checkWeightsMatchConfig, writeSafetensorsModel } from "./safetensors.ts";

/** Files of a model folder that are weights (not copied next to the merged ones). */
const WEIGHT_FILE = /(\.safetensors|\.bin|\.pt|\.pth|\.safetensors\.index\.json|\.bin\.index\.json)$/;

/** W += s·B·A in place: W [out, in], B [out, r], A [r, in]. */
export function addLowRank(W: Float32Array, A: Float32Array, B: Float32Array, d: { outF: number; inF: number; rank: number }, scale: number): void {
  const { outF, inF, rank } = d;
  const row = new Float64Array(inF);
  for (let o = 0; o < outF; o++) {
    row.fill(0);
    for (let k = 0; k < rank; k++) {
      const b = B[o * rank + k]! * scale;
      if (b === 0) continue;
      const a0 = k * inF;
      for (let i = 0; i < inF; i++) row[i]! += b * A[a0 + i]!;
    }
    const w0 = o * inF;
    for (let i = 0; i < inF; i++) W[w0 + i] = W[w0 + i]! + row[i]!;
  }
}

export interface MergeResult {
  out: string;
  mergedTensors: number;
  files: string[];
}

export async function mergeAdapter(o: { base: string; adapter: string; out: string }): Promise<MergeResult> {
  if (existsSync(o.out) && (!statSync(o.out).isDirectory() || readdirSync(o.out).length > 0)) {
    throw new RecallError(`--out ${o.out} already exists and is not an empty folder`, { hint: "give a new folder for the merged model" });
  }
  const config = loadModelConfig(o.base);
  const weights = SafetensorsModel.open(o.base);
  checkWeightsMatchConfig(config, weights, `${o.base}/config.json`);
  const adapter = openAdapter(o.adapter, config);
  const s = adapter.settings;
  const scale = loraScale(s);
  const adapted = new Map<string, { l: number; m: LoraModule }>();
  for (let l = 0; l < config.numLayers; l++) for (const m of LORA_MODULES) if (s.targetModules.includes(m)) adapted.set(`${loraModulePath(l, m)}.weight`, { l, m });
  const dtype = weights.names.every((n) => weights.info(n).dtype === "BF16") ? "BF16" : "F32";

  const partial = `${o.out}.partial`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial, { recursive: true });
  try {
    for (const f of readdirSync(o.base)) {
      const src = join(o.base, f);
      if (!WEIGHT_FILE.test(f) && statSync(src).isFile()) copyFileSync(src, join(partial, f));
    }
    const sources = parameterSpecs(config).map((spec) => ({
      name: spec.name,
      shape: spec.shape,
      data: () => {
        const w = weights.readF32(spec.name);
        const hit = adapted.get(spec.name);
        if (hit) addLowRank(w, adapter.read(hit.l, hit.m, "A"), adapter.read(hit.l, hit.m, "B"), { ...loraModuleDims(config, hit.m), rank: s.rank }, scale);
        return w;
      },
    }));
    const files = await writeSafetensorsModel(partial, sources, { dtype, metadata: { merged_adapter: o.adapter } });
    rmSync(o.out, { recursive: true, force: true });
    renameSync(partial, o.out);
    return { out: o.out, mergedTensors: adapted.size, files };
  } catch (e) {
    rmSync(partial, { recursive: true, force: true });
    throw e;
  }
}
