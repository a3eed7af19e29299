/**
 * LoRA adapter folders as PEFT writes and reads them (`save_pretrained` / `PeftModel.from_pretrained`):
 *
 *   adapter_config.json          peft_type LORA, r, lora_alpha, target_modules, base_model_name_or_path, …
 *   adapter_model.safetensors    base_model.model.<module path>.lora_A.weight [r, in] and .lora_B.weight [out, r]
 *
 * Reading accepts what PEFT writes for these models and refuses, in one line naming the file, what this engine
 * would compute differently (DoRA, trained biases, per-module ranks, fan_in_fan_out layouts, extra saved modules).
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { RecallError } from "../errors.ts";
import type { Gpu } from "../gpu/runtime.ts";
import { readJson, writeFileAtomic } from "../util/fs.ts";
import type { ModelConfig } from "./config.ts";
import { LORA_MODULES, LoraWeights, loraModuleDims, peftTensorName, resolveTargetModules, type LoraModule, type LoraSettings } from "./lora.ts";
import { SafetensorsModel, writeSafetensors } from "./safetensors.ts";
import { firstNonFinite } from "./weights.ts";

export const ADAPTER_CONFIG = "adapter_config.json";
export const ADAPTER_WEIGHTS = "adapter_model.safetensors";

/** Whether a folder holds a PEFT adapter (its config file). */
export function isAdapterFolder(dir: string): boolean {
  return existsSync(join(dir, ADAPTER_CONFIG));
}

const TENSOR_NAME = /^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$/;

/** The settings of an adapter folder, from its config and (for regex or all-linear target_modules) its tensors. */
export function readAdapterSettings(dir: string): LoraSettings {
  const file = join(dir, ADAPTER_CONFIG);
  if (!existsSync(file)) throw new RecallError(`${dir} is not a LoRA adapter folder (no ${ADAPTER_CONFIG})`, { hint: "give the folder PEFT's save_pretrained or recall train/sft wrote" });
  const raw = readJson(file);
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new RecallError(`${file} should hold a JSON object`);
  const c = raw as Record<string, unknown>;
  const refuse = (why: string) => {
    throw new RecallError(`${file}: ${why}`);
  };
  if (c.peft_type !== undefined && c.peft_type !== "LORA") refuse(`peft_type '${String(c.peft_type)}' is not LORA`);
  const r = c.r;
  if (typeof r !== "number" || !Number.isInteger(r) || r < 1) refuse(`'r' must be a positive integer, got ${JSON.stringify(r)}`);
  const alpha = c.lora_alpha ?? 8;
  if (typeof alpha !== "number" || !(alpha > 0)) refuse(`'lora_alpha' must be a number above 0, got ${JSON.stringify(alpha)}`);
  const dropout = c.lora_dropout ?? 0;
  if (typeof dropout !== "number" || !(dropout >= 0 && dropout < 1)) refuse(`'lora_dropout' must be a number in [0, 1), got ${JSON.stringify(dropout)}`);
  if (c.use_dora === true) refuse("DoRA adapters (use_dora) are not supported");
  if (c.bias !== undefined && c.bias !== "none") refuse(`bias '${String(c.bias)}' trains biases too; only bias "none" is supported`);
  if (c.fan_in_fan_out === true) refuse("fan_in_fan_out adapters (GPT-2 Conv1D layout) do not apply to these models");
  for (const key of ["rank_pattern", "alpha_pattern"]) {
    const v = c[key];
    if (v !== undefined && v !== null && (typeof v !== "object" || Object.keys(v).length > 0)) refuse(`per-module '${key}' is not supported`);
  }
  if (Array.isArray(c.modules_to_save) && c.modules_to_save.length > 0) refuse(`modules_to_save (${c.modules_to_save.join(", ")}) is not supported`);
  if (c.layers_to_transform !== undefined && c.layers_to_transform !== null) refuse("layers_to_transform is not supported");
  // target_modules: a list of names, "all-linear", or a regex; the tensors in the file say which were adapted.
  const weights = openAdapterWeights(dir);
  const found = new Set<LoraModule>();
  for (const name of weights.names) {
    const m = TENSOR_NAME.exec(name);
    if (!m || !(LORA_MODULES as readonly string[]).includes(m[3]!)) throw new RecallError(`${weights.source}: tensor '${name}' is not a LoRA A/B matrix of a decoder-layer projection`);
    found.add(m[3] as LoraModule);
  }
  if (found.size === 0) refuse(`${ADAPTER_WEIGHTS} holds no LoRA tensors`);
  if (Array.isArray(c.target_modules)) {
    const listed = new Set(c.target_modules.map(String));
    for (const m of found) if (!listed.has(m)) refuse(`${ADAPTER_WEIGHTS} adapts ${m}, which target_modules does not list`);
  }
  return { rank: r as number, alpha: alpha as number, targetModules: resolveTargetModules([...found], file), useRslora: c.use_rslora === true, dropout: dropout as number };
}

function openAdapterWeights(dir: string): SafetensorsModel {
  const file = join(dir, ADAPTER_WEIGHTS);
  if (!existsSync(file)) {
    const bin = existsSync(join(dir, "adapter_model.bin"));
    throw new RecallError(`${dir}: no ${ADAPTER_WEIGHTS}${bin ? " (adapter_model.bin, a pickle, is not read)" : ""}`, {
      hint: bin ? "re-save it with PEFT's save_pretrained(..., safe_serialization=True)" : undefined,
    });
  }
  return SafetensorsModel.open(file);
}

/** An adapter folder read on the host: its settings and f32 data by tensor name (merging, tests). */
export interface HostAdapter {
  settings: LoraSettings;
  read(l: number, m: LoraModule, which: "A" | "B"): Float32Array;
}

/** Opens an adapter folder for a model with config `c`: every A and B present with the shapes the model needs. */
export function openAdapter(dir: string, c: ModelConfig): HostAdapter {
  const settings = readAdapterSettings(dir);
  const weights = openAdapterWeights(dir);
  const expected = new Set<string>();
  for (let l = 0; l < c.numLayers; l++) {
    for (const m of settings.targetModules) {
      const { inF, outF } = loraModuleDims(c, m);
      for (const [which, shape] of [["A", [settings.rank, inF]], ["B", [outF, settings.rank]]] as const) {
        const name = peftTensorName(l, m, which);
        expected.add(name);
        if (!weights.has(name)) throw new RecallError(`${weights.source}: no tensor '${name}' (the adapter targets ${m}, the model has ${c.numLayers} layers)`);
        const got = weights.info(name).shape;
        if (got.length !== 2 || got[0] !== shape[0] || got[1] !== shape[1]) {
          throw new RecallError(`${weights.source}: '${name}' has shape [${got.join(", ")}], the model needs [${shape.join(", ")}] (r=${settings.rank})`, {
            hint: "is this adapter for a different base model?",
          });
        }
      }
    }
  }
  for (const name of weights.names) if (!expected.has(name)) throw new RecallError(`${weights.source}: tensor '${name}' does not belong to a model of ${c.numLayers} layers`);
  return {
    settings,
    read(l, m, which) {
      const name = peftTensorName(l, m, which);
      const data = weights.readF32(name);
      const bad = firstNonFinite(data);
      if (bad >= 0) throw new RecallError(`${weights.source}: tensor '${name}' holds ${data[bad]} at element ${bad}; the adapter is damaged or diverged`);
      return data;
    },
  };
}

/** Loads an adapter folder onto the GPU for a model with config `c`. */
export async function loadAdapter(gpu: Gpu, c: ModelConfig, dir: string): Promise<LoraWeights> {
  const host = openAdapter(dir, c);
  const w = new LoraWeights(gpu, c, host.settings, "empty");
  for (let l = 0; l < c.numLayers; l++) {
    for (const m of host.settings.targetModules) {
      gpu.write(w.get(peftTensorName(l, m, "A")), host.read(l, m, "A"));
      gpu.write(w.get(peftTensorName(l, m, "B")), host.read(l, m, "B"));
    }
  }
  await gpu.sync();
  return w;
}

/** PEFT's adapter_config.json for these settings. */
export function adapterConfigJson(s: LoraSettings, baseModel: string): Record<string, unknown> {
  return {
    peft_type: "LORA",
    task_type: "CAUSAL_LM",
    base_model_name_or_path: baseModel,
    r: s.rank,
    lora_alpha: s.alpha,
    lora_dropout: s.dropout ?? 0,
    target_modules: [...s.targetModules],
    bias: "none",
    fan_in_fan_out: false,
    use_rslora: !!s.useRslora,
    use_dora: false,
    init_lora_weights: true,
    inference_mode: true,
    modules_to_save: null,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    revision: null,
  };
}

/**
 * Writes `dir`/adapter_model.safetensors (F32) and adapter_config.json, each through a temp name. A non-finite value
 * is refused before anything is written over.
 */
export async function saveAdapter(dir: string, w: LoraWeights, o: { baseModel: string; metadata?: Record<string, string> }): Promise<void> {
  mkdirSync(dir, { recursive: true });
  await writeSafetensors(
    join(dir, ADAPTER_WEIGHTS),
    w.specs.map((s) => ({
      name: s.name,
      shape: s.shape,
      data: async () => {
        const data = await w.gpu.readF32(w.get(s.name));
        const bad = firstNonFinite(data);
        if (bad >= 0) throw new RecallError(`refusing to save the adapter: ${s.name} holds ${data[bad]} at element ${bad}`);
        return data;
      },
    })),
    { metadata: o.metadata },
  );
  writeFileAtomic(join(dir, ADAPTER_CONFIG), JSON.stringify(adapterConfigJson(w.settings, o.baseModel), null, 2) + "\n");
}
