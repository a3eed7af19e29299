/**
 * Model parameters on the GPU, under their Hugging Face names. Loading streams one tensor at a time
 * (and big tensors in pieces) from safetensors into GPU buffers, so JS memory never holds a second
 * full copy of the model; saving reads them back one at a time.
 */
import { RecallError } from "../errors.ts";
import type { Gpu } from "../gpu/runtime.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { parameterSpecs, type ModelConfig, type ParameterSpec } from "./config.ts";
import { SafetensorsModel, writeSafetensorsModel, checkWeightsMatchConfig, type WriteDType } from "./safetensors.ts";

/** Elements uploaded per piece: bounds the host memory a load needs (64 MiB of f32). */
const UPLOAD_PIECE = 16 * 1024 * 1024;

export class ParameterSet {
  readonly specs: ParameterSpec[];
  readonly tensors = new Map<string, Tensor>();

  constructor(readonly gpu: Gpu, readonly config: ModelConfig, fill: "zeros" | "empty") {
    this.specs = parameterSpecs(config);
    for (const s of this.specs) this.tensors.set(s.name, fill === "zeros" ? gpu.zeros(s.shape, "f32", s.name) : gpu.empty(s.shape, "f32", s.name));
  }

  get(name: string): Tensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`no parameter named ${name}`);
    return t;
  }

  maybe(name: string): Tensor | undefined {
    return this.tensors.get(name);
  }

  /** All tensors in HF order (the optimizer and grad-norm walk this). */
  list(): Tensor[] {
    return this.specs.map((s) => this.get(s.name));
  }

  get numel(): number {
    return this.list().reduce((s, t) => s + t.numel, 0);
  }

  zero(): void {
    for (const t of this.tensors.values()) this.gpu.clear(t);
  }

  release(): void {
    for (const t of this.tensors.values()) this.gpu.release(t);
    this.tensors.clear();
  }

  /** Loads every parameter from a model folder's safetensors (F32/F16/BF16), checking names and shapes against the config. */
  static async load(gpu: Gpu, config: ModelConfig, dir: string): Promise<ParameterSet> {
    const file = SafetensorsModel.open(dir);
    checkWeightsMatchConfig(config, file, `${dir}/config.json`);
    const set = new ParameterSet(gpu, config, "empty");
    for (const spec of set.specs) {
      const t = set.get(spec.name);
      for (let start = 0; start < t.numel; start += UPLOAD_PIECE) {
        const count = Math.min(UPLOAD_PIECE, t.numel - start);
        const piece = file.readF32(spec.name, { start, count });
        // A NaN or infinity would flow into every logit (all-null scores, sampling from garbage): refuse the file.
        const bad = firstNonFinite(piece);
        if (bad >= 0) {
          throw new RecallError(`${dir}: tensor '${spec.name}' holds ${piece[bad]} at element ${start + bad}; the weights are damaged or diverged`, {
            hint: "use an earlier checkpoint, or re-save the model from a run that did not diverge",
          });
        }
        gpu.write(t, piece, start);
      }
    }
    await gpu.sync();
    return set;
  }

  /** Writes a model folder's weights (HF names; F32 or BF16), atomically per file. */
  async save(dir: string, dtype: WriteDType = "F32"): Promise<string[]> {
    const sources = this.specs.map((s) => ({
      name: s.name,
      shape: s.shape,
      data: async () => this.gpu.readF32(this.get(s.name)),
    }));
    return writeSafetensorsModel(dir, sources, { dtype });
  }
}

/** Index of the first NaN or ±Infinity in `xs`, or -1 (x − x is 0 only for finite x). */
export function firstNonFinite(xs: Float32Array): number {
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i]!;
    if (x - x !== 0) return i;
  }
  return -1;
}

/** The tensors of one decoder layer, by role (a view into a ParameterSet: parameters or their gradients). */
export interface LayerTensors {
  inputNorm: Tensor;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  o: Tensor;
  qBias?: Tensor;
  kBias?: Tensor;
  vBias?: Tensor;
  oBias?: Tensor;
  qNorm?: Tensor;
  kNorm?: Tensor;
  postNorm: Tensor;
  gate: Tensor;
  up: Tensor;
  down: Tensor;
}

export function layerTensors(set: ParameterSet, l: number): LayerTensors {
  const p = `model.layers.${l}`;
  return {
    inputNorm: set.get(`${p}.input_layernorm.weight`),
    q: set.get(`${p}.self_attn.q_proj.weight`),
    k: set.get(`${p}.self_attn.k_proj.weight`),
    v: set.get(`${p}.self_attn.v_proj.weight`),
    o: set.get(`${p}.self_attn.o_proj.weight`),
    qBias: set.maybe(`${p}.self_attn.q_proj.bias`),
    kBias: set.maybe(`${p}.self_attn.k_proj.bias`),
    vBias: set.maybe(`${p}.self_attn.v_proj.bias`),
    oBias: set.maybe(`${p}.self_attn.o_proj.bias`),
    qNorm: set.maybe(`${p}.self_attn.q_norm.weight`),
    kNorm: set.maybe(`${p}.self_attn.k_norm.weight`),
    postNorm: set.get(`${p}.post_attention_layernorm.weight`),
    gate: set.get(`${p}.mlp.gate_proj.weight`),
    up: set.get(`${p}.mlp.up_proj.weight`),
    down: set.get(`${p}.mlp.down_proj.weight`),
  };
}

/** The embedding, final norm and LM head (the embedding itself when tied). */
export function outerTensors(set: ParameterSet): { embed: Tensor; finalNorm: Tensor; lmHead: Tensor } {
  const embed = set.get("model.embed_tokens.weight");
  return { embed, finalNorm: set.get("model.norm.weight"), lmHead: set.maybe("lm_head.weight") ?? embed };
}
