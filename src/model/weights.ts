/**
 * Model parameters on the GPU, under their Hugging Face names. Loading streams one tensor at a time
 * (and big tensors in pieces) from safetensors into GPU buffers, so JS memory never holds a second
 * full copy of the model; saving reads them back one at a time.
 */
import { RecallError } from "../errors.ts";
import type { Gpu } from "../gpu/runtime.ts";
import { Tensor, DTYPE_BYTES, type DType } from "../gpu/tensor.ts";
import { parameterSpecs, type ModelConfig, type ParameterSpec } from "./config.ts";
import { SafetensorsModel, writeSafetensorsModel, checkWeightsMatchConfig, f32ToBf16, type WriteDType } from "./safetensors.ts";
import { castToBf16 } from "../ops/cast.ts";
import type { TensorSet } from "./tensor_set.ts";

/** Elements uploaded per piece: bounds the host memory a load needs (64 MiB of f32). */
const UPLOAD_PIECE = 16 * 1024 * 1024;

export interface ParameterSetOptions {
  /**
   * How the decoder layers' projection weights (q/k/v/o/gate/up/down) are stored; the matmul reads them as such and
   * computes in f32. "f16": a LoRA run's frozen base, on adapters with `shader-f16`; "bf16": a rollout's copy of the
   * policy (any adapter; see castFrom). Embedding, LM head, norms and biases stay f32. Default "f32".
   */
  projectionDtype?: ProjectionDtype;
}

/**
 * How a set stores its projection weights. "stored" (ParameterSet.load only): bf16 when the checkpoint holds every one of
 * them as BF16 (as Qwen's and Llama's releases do), else f32 — the same values at half the bytes, for what never trains
 * them: inference and a frozen reference model.
 */
export type ProjectionDtype = "f32" | "f16" | "bf16" | "stored";

/** The decoder layers' projection weights (what LoRA adapts and `projectionDtype` stores in 16 bits). */
const PROJECTION_WEIGHT = /^model\.layers\.\d+\.(self_attn|mlp)\.(q|k|v|o|gate|up|down)_proj\.weight$/;

export class ParameterSet implements TensorSet {
  readonly specs: ParameterSpec[];
  readonly tensors = new Map<string, Tensor>();
  /** Buffers of tensors taken from another set (shareUnlessDtype): that set frees them. */
  private readonly sharedBuffers = new Set<GPUBuffer>();

  constructor(readonly gpu: Gpu, readonly config: ModelConfig, fill: "zeros" | "empty", readonly options: ParameterSetOptions = {}) {
    this.specs = parameterSpecs(config);
    if (options.projectionDtype === "stored") throw new Error("ParameterSet: projectionDtype 'stored' is resolved by ParameterSet.load");
    const projectionDtype = options.projectionDtype ?? "f32";
    const alloc = (shape: readonly number[], label: string, dtype: DType) => (fill === "zeros" ? gpu.zeros(shape, dtype, label) : gpu.empty(shape, dtype, label));
    const fuse = gateUpFusable(gpu, config, DTYPE_BYTES[projectionDtype]);
    const align = gpu.limits.minStorageBufferOffsetAlignment;
    for (const s of this.specs) {
      if (this.tensors.has(s.name)) continue;
      const dtype: DType = PROJECTION_WEIGHT.test(s.name) ? projectionDtype : "f32";
      const up = s.name.endsWith(".mlp.gate_proj.weight") ? s.name.replace(".gate_proj.", ".up_proj.") : undefined;
      if (s.name.endsWith(".self_attn.q_proj.weight")) {
        // q_proj, k_proj, v_proj (and their biases) as the rows of one [rows, D] weight and one [rows] bias: one
        // matmul computes all three projections in decode (see qkvProjection). Each member starts at a row whose
        // byte offset meets the binding alignment in the weight and in the bias, so each can also be bound alone;
        // the rows between members are zeros (their output columns are never read).
        const prefix = s.name.slice(0, -"q_proj.weight".length);
        const D = s.shape[1]!;
        const names = ["q_proj", "k_proj", "v_proj"].map((m) => `${prefix}${m}`);
        const sizes = [config.numHeads, config.numKvHeads, config.numKvHeads].map((h) => h * config.headDim);
        const rowBytes = config.qkvBias ? [D * DTYPE_BYTES[dtype], 4] : [D * DTYPE_BYTES[dtype]];
        const { starts, rows } = alignedRows(sizes, rowBytes, align);
        const padded = rows !== sizes.reduce((a, b) => a + b, 0);
        const weight = padded ? gpu.zeros([rows, D], dtype, `${prefix}qkv_proj.weight`) : alloc([rows, D], `${prefix}qkv_proj.weight`, dtype);
        const bias = config.qkvBias ? (padded ? gpu.zeros([rows], "f32", `${prefix}qkv_proj.bias`) : alloc([rows], `${prefix}qkv_proj.bias`, "f32")) : undefined;
        names.forEach((n, i) => {
          this.tensors.set(`${n}.weight`, new Tensor(weight.buffer, [sizes[i]!, D], dtype, starts[i]! * D * DTYPE_BYTES[dtype]));
          if (bias) this.tensors.set(`${n}.bias`, new Tensor(bias.buffer, [sizes[i]!], "f32", starts[i]! * 4));
        });
      } else if (s.name.endsWith(".self_attn.q_norm.weight")) {
        // q_norm then k_norm in one buffer (k_norm at the next aligned offset): the decode epilogue binds both at once.
        const hd = s.shape[0]!;
        const { starts, rows } = alignedRows([hd, hd], [4], align);
        const both = rows === 2 * hd ? alloc([rows], `${s.name}+k_norm`, "f32") : gpu.zeros([rows], "f32", `${s.name}+k_norm`);
        this.tensors.set(s.name, new Tensor(both.buffer, [hd], "f32", 0));
        this.tensors.set(s.name.replace(".q_norm.", ".k_norm."), new Tensor(both.buffer, [hd], "f32", starts[1]! * 4));
      } else if (fuse && up) {
        // gate_proj then up_proj in one buffer: one [2I, D] matmul computes both (see gateUpWeight); each keeps its
        // own view, name and shape for loading, saving and the optimizer.
        const [I, D] = s.shape as [number, number];
        const both = alloc([2 * I, D], `${s.name}+up_proj`, dtype);
        this.tensors.set(s.name, new Tensor(both.buffer, [I, D], dtype, both.byteOffset));
        this.tensors.set(up, new Tensor(both.buffer, [I, D], dtype, both.byteOffset + I * D * DTYPE_BYTES[dtype]));
      } else {
        this.tensors.set(s.name, alloc(s.shape, s.name, dtype));
      }
    }
  }

  /** Whether some weights are stored in 16 bits, f16 or bf16 (frozen: such a set is never trained or saved). */
  get hasHalf(): boolean {
    return [...this.tensors.values()].some((t) => t.dtype !== "f32");
  }

  /**
   * Makes every tensor not stored as `dtype` the same tensor as `source`'s (a set of the same model): a rollout's bf16
   * copy shares the policy's embedding, norms and biases instead of copying them. The buffers this set had for them are
   * freed; release() then frees only this set's own buffers.
   */
  shareUnlessDtype(source: ParameterSet, dtype: DType): void {
    const own = new Set<GPUBuffer>();
    for (const t of this.tensors.values()) if (t.dtype === dtype) own.add(t.buffer);
    const freed = new Set<GPUBuffer>();
    for (const [name, t] of this.tensors) {
      if (t.dtype === dtype) continue;
      if (!own.has(t.buffer) && !freed.has(t.buffer)) {
        freed.add(t.buffer);
        this.gpu.release(t);
      }
      const theirs = source.get(name);
      this.tensors.set(name, theirs);
      this.sharedBuffers.add(theirs.buffer);
    }
  }

  /**
   * Casts `source`'s values (a set of the same model, f32) into this set's bf16 tensors with torch's rounding
   * (castToBf16); every other tensor must be shared with `source` (shareUnlessDtype). A rollout's bf16 copy of the
   * policy is refreshed so after every update. Records GPU work only.
   */
  castFrom(source: ParameterSet): void {
    for (const spec of this.specs) {
      const from = source.get(spec.name), to = this.get(spec.name);
      if (from === to) continue;
      if (from.dtype !== "f32" || to.dtype !== "bf16") throw new Error(`ParameterSet.castFrom: '${spec.name}' is ${from.dtype} → ${to.dtype}; needs f32 → bf16, or a tensor shared with the source`);
      castToBf16(this.gpu, from, to);
    }
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

  zerosLike(): ParameterSet {
    return new ParameterSet(this.gpu, this.config, "zeros");
  }

  release(): void {
    // Views that share a buffer (fused gate/up) release it once; tensors shared with another set stay its.
    const seen = new Set<GPUBuffer>(this.sharedBuffers);
    for (const t of this.tensors.values()) {
      if (seen.has(t.buffer)) continue;
      seen.add(t.buffer);
      this.gpu.release(t);
    }
    this.tensors.clear();
  }

  /** Loads every parameter from a model folder's safetensors (F32/F16/BF16), checking names and shapes against the config. */
  static async load(gpu: Gpu, config: ModelConfig, dir: string, options: ParameterSetOptions = {}): Promise<ParameterSet> {
    const file = SafetensorsModel.open(dir);
    checkWeightsMatchConfig(config, file, `${dir}/config.json`);
    const projectionDtype = options.projectionDtype === "stored" ? storedProjectionDtype(file, config) : options.projectionDtype;
    const set = new ParameterSet(gpu, config, "empty", { ...options, projectionDtype });
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
        if (t.dtype === "f16") {
          // Round to nearest even, as torch's .half(); a weight beyond f16's range would become infinite.
          const half = new Float16Array(piece);
          const over = firstNonFinite(Float32Array.from(half));
          if (over >= 0) {
            throw new RecallError(`${dir}: tensor '${spec.name}' holds ${piece[over]} at element ${start + over}, beyond f16's range`, {
              hint: "this model's frozen weights cannot be kept in f16",
            });
          }
          gpu.write(t, new Uint16Array(half.buffer), start);
        } else if (t.dtype === "bf16") {
          gpu.write(t, f32ToBf16(piece), start);
        } else {
          gpu.write(t, piece, start);
        }
      }
    }
    await gpu.sync();
    return set;
  }

  /** Writes a model folder's weights (HF names; F32 or BF16), atomically per file. */
  async save(dir: string, dtype: WriteDType = "F32"): Promise<string[]> {
    if (this.hasHalf) throw new Error("ParameterSet.save: f16-stored (frozen) weights are not saved");
    const sources = this.specs.map((s) => ({
      name: s.name,
      shape: s.shape,
      data: async () => this.gpu.readF32(this.get(s.name)),
    }));
    return writeSafetensorsModel(dir, sources, { dtype });
  }
}

/** How ParameterSet.load with projectionDtype "stored" keeps a model folder's projection weights. */
export function checkpointProjectionDtype(dir: string, config: ModelConfig): "f32" | "bf16" {
  return storedProjectionDtype(SafetensorsModel.open(dir), config);
}

/** bf16 when the file stores every projection weight as BF16 (bf16 → f32 → bf16 is exact), else f32. */
function storedProjectionDtype(file: SafetensorsModel, config: ModelConfig): "f32" | "bf16" {
  const projections = parameterSpecs(config).filter((s) => PROJECTION_WEIGHT.test(s.name));
  return projections.length > 0 && projections.every((s) => file.info(s.name).dtype === "BF16") ? "bf16" : "f32";
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

/**
 * Whether each layer's gate_proj and up_proj weights live back to back in one buffer: needs up_proj's offset
 * (I·D floats) to meet the adapter's storage-binding alignment, so that each can also be bound alone.
 */
export function gateUpFusable(gpu: Gpu, config: ModelConfig, elementBytes = 4): boolean {
  return (config.intermediateSize * config.hiddenSize * elementBytes) % gpu.limits.minStorageBufferOffsetAlignment === 0;
}

/**
 * Starting rows of members of `sizes` rows laid one after another, each start a row whose byte offset (`rowBytes`
 * per row, for every listed array sharing the rows) is a multiple of `align`; and the rows in all.
 */
export function alignedRows(sizes: readonly number[], rowBytes: readonly number[], align: number): { starts: number[]; rows: number } {
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  const step = rowBytes.reduce((s, rb) => {
    const need = align / gcd(rb, align);
    return (s * need) / gcd(s, need);
  }, 1);
  const starts: number[] = [];
  let at = 0;
  for (const n of sizes) {
    at = Math.ceil(at / step) * step;
    starts.push(at);
    at += n;
  }
  return { starts, rows: at };
}

/** The fused q/k/v projection of a layer: one weight (and bias) whose output columns hold q, k and v. */
export interface QkvProjection {
  /** [rows, D]: q_proj's rows, then k_proj's from row `k`, v_proj's from row `v` (zero rows between). */
  weight: Tensor;
  bias?: Tensor;
  k: number;
  v: number;
  rows: number;
}

/** The fused q/k/v weight (and bias) when the layer's q/k/v tensors sit in one buffer as ParameterSet lays them out, else undefined. */
export function qkvProjection(t: Pick<LayerTensors, "q" | "k" | "v" | "qBias" | "kBias" | "vBias">): QkvProjection | undefined {
  const { q, k, v } = t;
  if (q.buffer !== k.buffer || q.buffer !== v.buffer || q.shape.length !== 2 || q.dtype !== k.dtype || q.dtype !== v.dtype) return undefined;
  const rowBytes = q.shape[1]! * DTYPE_BYTES[q.dtype];
  const rowK = (k.byteOffset - q.byteOffset) / rowBytes, rowV = (v.byteOffset - q.byteOffset) / rowBytes;
  if (!Number.isInteger(rowK) || !Number.isInteger(rowV) || rowK < q.shape[0]! || rowV < rowK + k.shape[0]!) return undefined;
  const rows = rowV + v.shape[0]!;
  const weight = new Tensor(q.buffer, [rows, q.shape[1]!], q.dtype, q.byteOffset);
  if (!t.qBias && !t.kBias && !t.vBias) return { weight, k: rowK, v: rowV, rows };
  const { qBias: bq, kBias: bk, vBias: bv } = t;
  if (!bq || !bk || !bv || bq.buffer !== bk.buffer || bq.buffer !== bv.buffer) return undefined;
  if (bk.byteOffset - bq.byteOffset !== rowK * 4 || bv.byteOffset - bq.byteOffset !== rowV * 4) return undefined;
  return { weight, bias: new Tensor(bq.buffer, [rows], "f32", bq.byteOffset), k: rowK, v: rowV, rows };
}

/** Qwen3's q_norm and k_norm weights as one tensor (k_norm from element `k`) when ParameterSet put them in one buffer, else undefined. */
export function qkNormWeights(t: Pick<LayerTensors, "qNorm" | "kNorm">): { weight: Tensor; k: number } | undefined {
  const { qNorm: q, kNorm: k } = t;
  if (!q || !k || q.buffer !== k.buffer || k.byteOffset < q.byteOffset + q.byteLength) return undefined;
  const at = (k.byteOffset - q.byteOffset) / 4;
  return { weight: new Tensor(q.buffer, [at + k.numel], "f32", q.byteOffset), k: at };
}

/** The [2I, D] weight of gate_proj and up_proj together (rows 0..I−1 gate, I..2I−1 up) when they are fused, else undefined. */
export function gateUpWeight(t: Pick<LayerTensors, "gate" | "up">): Tensor | undefined {
  const { gate, up } = t;
  if (gate.buffer !== up.buffer || up.byteOffset !== gate.byteOffset + gate.byteLength || gate.shape.length !== 2) return undefined;
  return new Tensor(gate.buffer, [2 * gate.shape[0]!, gate.shape[1]!], gate.dtype, gate.byteOffset);
}

/** The embedding, final norm and LM head (the embedding itself when tied). */
export function outerTensors(set: ParameterSet): { embed: Tensor; finalNorm: Tensor; lmHead: Tensor } {
  const embed = set.get("model.embed_tokens.weight");
  return { embed, finalNorm: set.get("model.norm.weight"), lmHead: set.maybe("lm_head.weight") ?? embed };
}
