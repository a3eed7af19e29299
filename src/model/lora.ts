/**
 * LoRA (Hu et al. 2021) as PEFT defines it for the linear projections of a decoder layer:
 *
 *   y = x·Wᵀ (+ b) + s · (x·Aᵀ)·Bᵀ,   A [r, in], B [out, r], s = lora_alpha / r   (rsLoRA: lora_alpha / √r)
 *
 * with W frozen. A starts as PEFT's `kaiming_uniform_(a=√5)` — uniform in ±1/√in — and B at zero, so a fresh
 * adapter leaves every output unchanged. The tensors carry PEFT's saved names
 * (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`), so an adapter folder written from them is
 * one `peft.PeftModel.from_pretrained` loads (src/model/peft_adapter.ts).
 */
import { RecallError } from "../errors.ts";
import type { Gpu } from "../gpu/runtime.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { mulberry32 } from "../util/prng.ts";
import type { ModelConfig } from "./config.ts";
import type { TensorSet, TensorSpec } from "./tensor_set.ts";

/** The projections LoRA can target, in a decoder layer's order. */
export const LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;
export type LoraModule = (typeof LORA_MODULES)[number];

export interface LoraSettings {
  rank: number;
  alpha: number;
  targetModules: readonly LoraModule[];
  /** rsLoRA scaling alpha/√r (PEFT's use_rslora); adapters trained here use alpha/r. */
  useRslora?: boolean;
  /** PEFT's lora_dropout, in [0, 1) (0 when absent): applied in training passes only (src/model/lora_dropout.ts). */
  dropout?: number;
}

/** s in y += s·(x·Aᵀ)·Bᵀ. */
export function loraScale(s: LoraSettings): number {
  return s.useRslora ? s.alpha / Math.sqrt(s.rank) : s.alpha / s.rank;
}

/**
 * Module names as users give them (verl's `target_modules`, PEFT's list): `all-linear` is every projection of the
 * decoder layers (PEFT leaves the LM head out too). Unknown names are refused, naming `where`.
 */
export function resolveTargetModules(names: readonly string[], where: string): LoraModule[] {
  if (names.length === 0) throw new RecallError(`${where}: no target modules; give e.g. q_proj,v_proj or all-linear`);
  const out = new Set<LoraModule>();
  for (const raw of names) {
    const name = raw.trim();
    if (name === "all-linear") LORA_MODULES.forEach((m) => out.add(m));
    else if ((LORA_MODULES as readonly string[]).includes(name)) out.add(name as LoraModule);
    else throw new RecallError(`${where}: '${name}' is not a module LoRA can target here`, { hint: `modules: ${LORA_MODULES.join(", ")}, or all-linear` });
  }
  return LORA_MODULES.filter((m) => out.has(m));
}

/** A settings check (src/config): what is wrong with a target_modules list, or undefined. */
export function targetModulesProblem(names: readonly string[]): string | undefined {
  if (names.length === 0) return "needs at least one module (e.g. q_proj,v_proj or all-linear)";
  const bad = names.find((n) => n.trim() !== "all-linear" && !(LORA_MODULES as readonly string[]).includes(n.trim()));
  return bad === undefined ? undefined : `'${bad}' is not a module LoRA can target here (${LORA_MODULES.join(", ")}, or all-linear)`;
}

/** Input and output features of a projection. */
export function loraModuleDims(c: ModelConfig, m: LoraModule): { inF: number; outF: number } {
  const H = c.hiddenSize, I = c.intermediateSize, q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim;
  switch (m) {
    case "q_proj":
      return { inF: H, outF: q };
    case "k_proj":
    case "v_proj":
      return { inF: H, outF: kv };
    case "o_proj":
      return { inF: q, outF: H };
    case "gate_proj":
    case "up_proj":
      return { inF: H, outF: I };
    case "down_proj":
      return { inF: I, outF: H };
  }
}

/** The projection's name in the base model (its weight is `${name}.weight`). */
export function loraModulePath(l: number, m: LoraModule): string {
  const block = m === "gate_proj" || m === "up_proj" || m === "down_proj" ? "mlp" : "self_attn";
  return `model.layers.${l}.${block}.${m}`;
}

/** PEFT's saved tensor name of A or B of one projection. */
export function peftTensorName(l: number, m: LoraModule, which: "A" | "B"): string {
  return `base_model.model.${loraModulePath(l, m)}.lora_${which}.weight`;
}

export interface LoraPair {
  A: Tensor;
  B: Tensor;
}

/** A LoRA adapter's A and B matrices on the GPU (or their gradients, or AdamW moments), under PEFT's names. */
export class LoraWeights implements TensorSet {
  readonly specs: TensorSpec[] = [];
  private readonly tensors = new Map<string, Tensor>();
  readonly scale: number;
  private readonly targets: ReadonlySet<LoraModule>;

  constructor(
    readonly gpu: Gpu,
    readonly config: ModelConfig,
    readonly settings: LoraSettings,
    fill: "zeros" | "empty",
  ) {
    if (!Number.isInteger(settings.rank) || settings.rank < 1) throw new RecallError(`LoRA rank must be a positive integer, got ${settings.rank}`);
    if (!(settings.alpha > 0)) throw new RecallError(`LoRA alpha must be above 0, got ${settings.alpha}`);
    const p = settings.dropout ?? 0;
    if (!(p >= 0 && p < 1)) throw new RecallError(`LoRA dropout must be in [0, 1), got ${p}`);
    this.scale = loraScale(settings);
    this.targets = new Set(settings.targetModules);
    const r = settings.rank;
    for (let l = 0; l < config.numLayers; l++) {
      for (const m of LORA_MODULES) {
        if (!this.targets.has(m)) continue;
        const { inF, outF } = loraModuleDims(config, m);
        this.specs.push({ name: peftTensorName(l, m, "A"), shape: [r, inF] }, { name: peftTensorName(l, m, "B"), shape: [outF, r] });
      }
    }
    for (const s of this.specs) this.tensors.set(s.name, fill === "zeros" ? gpu.zeros(s.shape, "f32", s.name) : gpu.empty(s.shape, "f32", s.name));
  }

  /** A fresh adapter as PEFT initialises one: A uniform in ±1/√in (kaiming_uniform_ with a = √5), B zero. */
  static init(gpu: Gpu, config: ModelConfig, settings: LoraSettings, seed: number): LoraWeights {
    const w = new LoraWeights(gpu, config, settings, "zeros");
    const rand = mulberry32(seed);
    for (const s of w.specs) {
      if (!s.name.endsWith(".lora_A.weight")) continue;
      const bound = 1 / Math.sqrt(s.shape[1]!);
      const data = new Float32Array(s.shape[0]! * s.shape[1]!);
      for (let i = 0; i < data.length; i++) data[i] = (2 * rand() - 1) * bound;
      gpu.write(w.get(s.name), data);
    }
    return w;
  }

  /** Whether the adapter adapts projection m. */
  targetsModule(m: LoraModule): boolean {
    return this.targets.has(m);
  }

  /** A and B of layer l's projection m, or undefined when the adapter does not target it. */
  pair(l: number, m: LoraModule): LoraPair | undefined {
    if (!this.targets.has(m)) return undefined;
    return { A: this.get(peftTensorName(l, m, "A")), B: this.get(peftTensorName(l, m, "B")) };
  }

  get(name: string): Tensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`no LoRA tensor named ${name}`);
    return t;
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  list(): Tensor[] {
    return this.specs.map((s) => this.get(s.name));
  }

  get numel(): number {
    return this.specs.reduce((n, s) => n + s.shape[0]! * s.shape[1]!, 0);
  }

  zerosLike(): LoraWeights {
    return new LoraWeights(this.gpu, this.config, this.settings, "zeros");
  }

  zero(): void {
    for (const t of this.tensors.values()) this.gpu.clear(t);
  }

  release(): void {
    for (const t of this.tensors.values()) this.gpu.release(t);
    this.tensors.clear();
  }
}

/** Trainable LoRA parameters of a model: r·(in + out) per targeted projection per layer. */
export function loraParameterCount(c: ModelConfig, s: Pick<LoraSettings, "rank" | "targetModules">): number {
  return c.numLayers * s.targetModules.reduce((n, m) => {
    const { inF, outF } = loraModuleDims(c, m);
    return n + s.rank * (inF + outF);
  }, 0);
}
