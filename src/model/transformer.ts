/**
 * The decoder-only transformer of Qwen2 / Qwen2.5 / Qwen3 / Llama on the GPU: forward and backward
 * in one readable file, built from the ops in src/ops (each with a CPU reference and tests).
 *
 *   x₀ = embed(ids)
 *   for each layer:  h = rmsnorm(x)                      (input_layernorm)
 *                    q, k, v = h·Wqᵀ+bq, h·Wkᵀ+bk, h·Wvᵀ+bv
 *                    q, k = rmsnorm per head (Qwen3 q_norm/k_norm), then RoPE
 *                    x' = x + attention(q, k, v)·Woᵀ      (causal GQA over each sequence's valid keys)
 *                    x  = x' + (silu(h'·Wgᵀ) ⊙ h'·Wuᵀ)·Wdᵀ  with h' = rmsnorm(x')  (post_attention_layernorm)
 *   log p(target), entropy = logsoftmax(rmsnorm(x)·Wₗₘᵀ)   (fused, chunked: never [tokens × vocab] at once)
 *
 * With a LoRA adapter attached (src/model/lora.ts), each projection it targets adds s·(h·Aᵀ)·Bᵀ to its output, and
 * a backward into the adapter's gradients leaves the base weights frozen (no base gradients are computed). A training
 * pass may apply LoRA dropout to the adapter branch's input (src/model/lora_dropout.ts): s·(dropout(h)·Aᵀ)·Bᵀ.
 *
 * A batch is B right-padded sequences of T rows; row b·T + t holds token t of sequence b. Padding rows
 * compute finite garbage that no valid row reads (attention masks them) and get zero gradient (the
 * caller's per-token loss weights are zero there). Sequences that share prompts may instead come as a shared-prefix
 * batch (src/model/shared_prefix.ts: each prompt's rows once, then every sequence's own rows); only attention
 * (`attend`, `attendBackward`) tells the two layouts apart.
 */
import type { Gpu } from "../gpu/runtime.ts";
import { Tensor } from "../gpu/tensor.ts";
import { matmul, normAFusable, type MatmulBType } from "../ops/matmul.ts";
import { rmsnorm, rmsnormBackward } from "../ops/rmsnorm.ts";
import { rope, ropeInvFreq } from "../ops/rope.ts";
import { attention, attentionBackward, attentionBackwardWorkElements } from "../ops/attention.ts";
import { swiglu, swigluBackward } from "../ops/elementwise.ts";
import { embedding, embeddingBackward, embeddingScratchSize } from "../ops/embedding.ts";
import { logprobs, logprobsBackward, logprobsPlan, lastLogits, lastLogitsScratch } from "../ops/logprobs.ts";
import { ropeAppend, type RopeAppendLayout, type RopeAppendNorm } from "../ops/rope_append.ts";
import { dropout } from "../ops/dropout.ts";
import { gatherRows, gatherRowsBackward } from "../ops/gather_rows.ts";
import { loadModelConfig, type ModelConfig } from "./config.ts";
import { ParameterSet, gateUpWeight, layerTensors, outerTensors, qkNormWeights, qkvProjection, type LayerTensors, type ParameterSetOptions } from "./weights.ts";
import { LoraWeights, type LoraModule } from "./lora.ts";
import { loraDropoutKey, type LoraDropoutPass } from "./lora_dropout.ts";
import { isAdapterFolder } from "./peft_adapter.ts";
import type { SharedPrefixLayout } from "./shared_prefix.ts";
import { RecallError } from "../errors.ts";
import { existsSync } from "node:fs";
import { join } from "node:path";

/** Token ids and per-row metadata of a padded batch, on the GPU. */
export interface TokenBatch {
  B: number;
  T: number;
  lengths: number[];
  /** u32 [B·T] input ids (0 on padding). */
  ids: Tensor;
  /** u32 [B·T] the next token of each row (0 where there is none: the last token and padding). */
  targets: Tensor;
  /** u32 [B·T] RoPE position of each row. */
  positions: Tensor;
  /** u32 [B] zeros: every sequence starts at position 0. */
  qStart: Tensor;
  /** u32 [B] valid length of each sequence. */
  kvLen: Tensor;
  /** The rows that go through the LM head, when not all of them (see makeBatch's `headRows`). */
  head?: HeadRows;
  /** The batch row holding token t of sequence b. */
  row(b: number, t: number): number;
  /** A generation step's: the most keys any of its rows attends (cache length + new rows), when known. */
  longestKeys?: number;
  /**
   * Sequences that share prompts, each prompt run once (src/model/shared_prefix.ts): then the rows are two blocks,
   * B = 1 and T = N for the code that works row by row, and qStart/kvLen are not read.
   */
  shared?: SharedPrefixLayout;
}

/**
 * The rows whose log-probs a pass is asked for: the LM head (and its backward) runs on these R rows only, and the
 * forward's logprob and entropy hold R values in this order. A trainer wants the response tokens' rows; the prompt's
 * and the padding's rows would be a vocabulary-wide product each for nothing (the LM head is a quarter of a 0.5B
 * model's multiply-adds).
 */
export interface HeadRows {
  /** u32 [R] row indices b·T + t, increasing. */
  rows: Tensor;
  /** u32 [R] the next token of each of those rows. */
  targets: Tensor;
  count: number;
}

/**
 * Pads sequences into a [B, T] batch. `headRows[b]`: the rows t of sequence b whose log-probs are wanted (increasing,
 * each below length − 1); only they go through the LM head (at least one row in all, else every row does).
 */
export function makeBatch(gpu: Gpu, sequences: readonly (readonly number[])[], T?: number, headRows?: readonly (readonly number[])[]): TokenBatch {
  const B = sequences.length;
  const lengths = sequences.map((s) => s.length);
  const width = T ?? Math.max(1, ...lengths);
  const ids = new Uint32Array(B * width);
  const targets = new Uint32Array(B * width);
  const positions = new Uint32Array(B * width);
  const head: number[] = [];
  sequences.forEach((s, b) => {
    if (s.length > width) throw new Error(`makeBatch: sequence ${b} has ${s.length} tokens, more than T=${width}`);
    for (let t = 0; t < width; t++) {
      ids[b * width + t] = t < s.length ? s[t]! : 0;
      targets[b * width + t] = t + 1 < s.length ? s[t + 1]! : 0;
      positions[b * width + t] = t;
    }
    head.push(...checkedHeadRows("makeBatch", b, headRows?.[b] ?? [], 0, s.length - 1, (t) => b * width + t));
  });
  const chosen = uploadHeadRows(gpu, head, targets);
  return {
    B,
    T: width,
    lengths,
    ids: gpu.upload(ids, [B * width]),
    targets: gpu.upload(targets, [B * width]),
    positions: gpu.upload(positions, [B * width]),
    qStart: gpu.upload(new Uint32Array(B), [B]),
    kvLen: gpu.upload(Uint32Array.from(lengths), [B]),
    row: (b, t) => b * width + t,
    ...(chosen ? { head: chosen } : {}),
  };
}

/**
 * The batch rows of one sequence's head rows `ts` (each mapped by `row`), checked: increasing, from `from`, and below
 * `below`, the sequence's last predicting row. `op` and `b` name them in the error.
 */
export function checkedHeadRows(op: string, b: number, ts: readonly number[], from: number, below: number, row: (t: number) => number): number[] {
  let last = from - 1;
  return ts.map((t) => {
    if (!Number.isInteger(t) || t <= last || t >= below) {
      throw new Error(`${op}: headRows[${b}] must be increasing rows from ${from} to below ${below} (the sequence's last predicting row), got ${t}`);
    }
    last = t;
    return row(t);
  });
}

/** A batch's HeadRows: the chosen rows and their targets on the GPU; undefined for none (every row goes through the head). */
export function uploadHeadRows(gpu: Gpu, rows: readonly number[], targets: Uint32Array): HeadRows | undefined {
  if (!rows.length) return undefined;
  return {
    rows: gpu.upload(Uint32Array.from(rows), [rows.length], "u32"),
    targets: gpu.upload(Uint32Array.from(rows, (r) => targets[r]!), [rows.length], "u32"),
    count: rows.length,
  };
}

export function releaseBatch(gpu: Gpu, b: TokenBatch): void {
  gpu.release(b.ids, b.targets, b.positions, b.qStart, b.kvLen);
  if (b.head) gpu.release(b.head.rows, b.head.targets);
  const s = b.shared;
  if (s) gpu.release(s.prefixQStart, s.prefixKvLen, s.ownQStart, s.ownKvLen, s.keyRows, s.keySources);
}

/** Rows r0 .. r0 + rows of a row-major [N, width] f32 tensor, bound from there (a shared-prefix layout aligns r0). */
function rowsOf(t: Tensor, r0: number, rows: number, width: number): Tensor {
  return new Tensor(t.buffer, [rows, width], t.dtype, t.byteOffset + r0 * width * 4);
}

/** Activations of one layer that its backward needs. */
interface LayerActivations {
  h1: Tensor; // input_layernorm output [N, D]
  r1: Tensor; // its 1/rms per row [N]
  qRaw?: Tensor; // Qwen3: q before q_norm [N, Hq·hd]
  kRaw?: Tensor;
  rq?: Tensor; // 1/rms per (row, head)
  rk?: Tensor;
  q: Tensor; // after norm and RoPE [N, Hq·hd]
  k: Tensor; // [N, Hkv·hd]
  v: Tensor;
  attn: Tensor; // attention output [N, Hq·hd]
  lse: Tensor; // [B, Hq, T]
  xMid: Tensor; // residual after attention [N, D]
  h2: Tensor; // post_attention_layernorm output [N, D]
  r2: Tensor;
  gate: Tensor; // [N, I]; with fused gate/up weights [N, 2I]: each row is gate then up
  up?: Tensor; // [N, I]; absent when fused
  act: Tensor; // silu(gate)·up [N, I]
}

/**
 * Working tensors of a generation step's layer (forwardCached): nothing is kept for a backward, and the residual
 * stream is updated in place.
 */
interface CachedActivations {
  h: Tensor; // input_layernorm output, then post_attention_layernorm output [N, D]
  qkv: Tensor; // the fused q/k/v projection [N, rows], or the three products one after another
  q: Tensor; // after norm and RoPE [N, Hq·hd]; k and v go straight into the cache
  attn: Tensor; // [N, Hq·hd]
  lse: Tensor;
  act: Tensor; // silu(gate)·up [N, I]
  gate?: Tensor; // [N, I] each, when the gate/up products run separately
  up?: Tensor;
}

/**
 * One layer's KV cache as seen by a generation step: [B, capacity, Hkv·hd] keys and values. The step's batch says
 * where its rows go: sequence b's cache holds qStart[b] positions, and its rows t < kvLen[b] − qStart[b] are new.
 */
export interface LayerCache {
  k: Tensor;
  v: Tensor;
  capacity: number;
}

export interface ForwardOptions {
  /** Keep what the backward needs. */
  train?: boolean;
  /** Activation checkpointing: keep only each layer's input and recompute the layer during backward. */
  checkpoint?: boolean;
  /** Logits are divided by this before the log-softmax (rollout temperature); default 1. */
  temperature?: number;
  /**
   * LoRA dropout of a training pass (with `train`): the backward, and the recompute of activation checkpointing, draw
   * the same masks. Left out everywhere else (log-probs, rollouts, evaluation), as PEFT's dropout is off in eval mode.
   */
  loraDropout?: LoraDropoutPass;
}

export interface ForwardResult {
  batch: TokenBatch;
  /** f32 [B·T] (or [R]: batch.head's rows) log p(targets[row] | row and before), natural log. Meaningful for t < length − 1. */
  logprob: Tensor;
  /** f32 [B·T] (or [R]) entropy of the next-token distribution at each row. */
  entropy: Tensor;
  options: ForwardOptions;
  /** Saved for backward (train only). */
  saved?: {
    xs: Tensor[]; // residual stream entering each layer, and after the last: [L + 1] × [N, D]
    layers: LayerActivations[]; // one per layer, or one shared set when checkpointing
    hf: Tensor; // final norm output, the LM head's input (batch.head's rows only when given)
    rf: Tensor;
    lmLse: Tensor;
  };
}

/** Rows up to which a pass uses the fused gate/up products (see Transformer.fuseGateUpAt). */
const FUSED_GATE_UP_MAX_ROWS = 64;
/**
 * Rows up to which a generation step uses the fused q/k/v product (see Transformer.fuseQkvAt). On lavapipe the fused
 * and separate products of the small preset's prefill sizes (64–1024 rows) timed within noise of each other (load
 * 4.4), so larger steps keep the separate products, as gate/up does.
 */
const FUSED_QKV_MAX_ROWS = 64;
/**
 * Widest hidden size at which a software adapter fuses a generation step's RMSNorms into the products that read them
 * (see Transformer.normInProduct). Measured on lavapipe, the same tokens alternated in one process: `tiny` (D = 64)
 * decoded 1.22× (B = 16) and 1.48× (B = 1) faster, `small` (D = 384) 0.87× (B = 1), 0.93× (B = 4), 0.98× (B = 16).
 */
const NORM_IN_PRODUCT_MAX_SOFTWARE_D = 128;

export class Transformer {
  readonly D: number;
  readonly Hq: number;
  readonly Hkv: number;
  readonly hd: number;
  readonly I: number;
  readonly V: number;
  /** RoPE inverse frequencies θ^(−2i/hd), i < hd/2. */
  readonly invFreq: Tensor;
  /**
   * Each layer's gate_proj and up_proj weights sit back to back (ParameterSet), so one [N, 2I] matmul computes both
   * projections and one computes both weight gradients; the SwiGLU kernels read and write the two halves by stride.
   */
  readonly fusedGateUp: boolean;
  /**
   * Each layer's q_proj, k_proj and v_proj weights (and biases) are the rows of one buffer (ParameterSet), so one
   * [N, q|k|v] matmul computes the three projections of a generation step (see fuseQkvAt).
   */
  readonly fusedQkv: boolean;
  private ones: Tensor | undefined;
  /** The LoRA adapter added to the projections it targets (undefined: the base model alone). */
  adapter: LoraWeights | undefined;
  /**
   * The [V, D] weight a generation step's LM head multiplies with, when not the parameters' own (lm_head, or the
   * embedding when tied): a bf16 rollout copy's bf16 head (src/train/rollout.ts). Whole-sequence passes ignore it.
   */
  decodeHead: Tensor | undefined;
  /** false: generation steps run every RMSNorm as its own dispatch (tests and benches compare; same values). */
  normsInProducts = true;
  /** False while the base model runs with the adapter switched off (the reference policy: no second weight copy). */
  private adapterEnabled = true;

  /**
   * Whether a pass over N rows uses the fused gate/up products: decode-sized passes do (one dispatch fewer per layer);
   * training-sized ones run the two halves as separate products on the same weights, because on lavapipe the fused
   * [N, 2I] products measured 0.72× the separate ones at B=16, T=128 (bench/gate_up.ts), decode 0.99×.
   */
  fuseGateUpAt(N: number): boolean {
    // An adapter on gate_proj or up_proj adds to each half on its own: the separate products keep them apart.
    const adapted = this.activeAdapter && (this.activeAdapter.targetsModule("gate_proj") || this.activeAdapter.targetsModule("up_proj"));
    return this.fusedGateUp && N <= FUSED_GATE_UP_MAX_ROWS && !adapted;
  }

  /**
   * Whether a generation step over N rows computes q, k and v with one fused product: decode-sized steps do, like
   * fuseGateUpAt; an adapter on q_proj, k_proj or v_proj keeps the separate products (its terms add to each alone).
   */
  fuseQkvAt(N: number): boolean {
    const a = this.activeAdapter;
    const adapted = a && (a.targetsModule("q_proj") || a.targetsModule("k_proj") || a.targetsModule("v_proj"));
    return this.fusedQkv && N <= FUSED_QKV_MAX_ROWS && !adapted;
  }

  /** The adapter in effect: attached and not switched off. */
  get activeAdapter(): LoraWeights | undefined {
    return this.adapterEnabled ? this.adapter : undefined;
  }

  /** Runs `f` on the base model alone (the adapter switched off), e.g. reference log-probs; the adapter is back after. */
  async withoutAdapter<T>(f: () => Promise<T>): Promise<T> {
    const was = this.adapterEnabled;
    this.adapterEnabled = false;
    try {
      return await f();
    } finally {
      this.adapterEnabled = was;
    }
  }

  constructor(
    readonly gpu: Gpu,
    readonly config: ModelConfig,
    readonly params: ParameterSet,
  ) {
    this.D = config.hiddenSize;
    this.Hq = config.numHeads;
    this.Hkv = config.numKvHeads;
    this.hd = config.headDim;
    this.I = config.intermediateSize;
    this.V = config.vocabSize;
    this.invFreq = gpu.upload(ropeInvFreq(config.ropeTheta, config.headDim), [config.headDim / 2]);
    this.fusedGateUp = Array.from({ length: config.numLayers }, (_, l) => gateUpWeight(layerTensors(params, l))).every((w) => w !== undefined);
    this.fusedQkv = Array.from({ length: config.numLayers }, (_, l) => qkvProjection(layerTensors(params, l))).every((w) => w !== undefined);
  }

  /** Loads a model folder; `projectionDtype` stores the projection weights in 16 bits (see ParameterSet). */
  static async load(gpu: Gpu, dir: string, o: ParameterSetOptions = {}): Promise<Transformer> {
    if (isAdapterFolder(dir) && !existsSync(join(dir, "config.json"))) {
      throw new RecallError(`${dir} is a LoRA adapter, not a whole model`, { hint: `pass the base model as the model and this folder as --adapter (or fold it in with 'recall merge')` });
    }
    const config = loadModelConfig(dir);
    return new Transformer(gpu, config, await ParameterSet.load(gpu, config, dir, o));
  }

  /**
   * The same weights (copied) with every parameter in a buffer of its own, so none of the fused paths (one q/k/v
   * product, one gate/up product, q/k norm weights bound together) applies: what tests and benches compare them with.
   */
  withSeparateBuffers(): Transformer {
    const params = new ParameterSet(this.gpu, this.config, "empty");
    for (const sp of params.specs) {
      const own = this.gpu.empty(sp.shape, "f32", sp.name);
      this.gpu.copy(this.params.get(sp.name), own);
      params.tensors.set(sp.name, own);
    }
    return new Transformer(this.gpu, this.config, params);
  }

  /** A zeroed gradient set with the same names and shapes as the parameters. */
  newGradients(): ParameterSet {
    return new ParameterSet(this.gpu, this.config, "zeros");
  }

  // ---- forward ---------------------------------------------------------------------------------

  /**
   * y (+)= x·Wᵀ (+ b), layer l's projection m over M rows, plus the adapter's s·(x·Aᵀ)·Bᵀ when it targets m: two thin
   * products through an [M, r] scratch, the second accumulating into y.
   */
  private project(
    l: number,
    m: LoraModule,
    x: Tensor,
    W: Tensor,
    y: Tensor,
    d: { M: number; outF: number; inF: number },
    o: { bias?: Tensor; accumulate?: boolean; drop?: LoraDropoutPass; offsetC?: number } = {},
  ): void {
    const g = this.gpu;
    matmul(g, x, W, y, { M: d.M, N: d.outF, K: d.inF }, { transB: true, bias: o.bias, accumulate: o.accumulate, offsetC: o.offsetC });
    const lora = this.activeAdapter;
    const ab = lora?.pair(l, m);
    if (!lora || !ab) return;
    const r = lora.settings.rank;
    const u = g.empty([d.M, r]);
    const xd = this.droppedInput(l, m, x, d, o.drop);
    matmul(g, xd ?? x, ab.A, u, { M: d.M, N: r, K: d.inF }, { transB: true });
    matmul(g, u, ab.B, y, { M: d.M, N: d.outF, K: r }, { transB: true, alpha: lora.scale, accumulate: true, offsetC: o.offsetC });
    g.release(u, ...(xd ? [xd] : []));
  }

  /** dropout(x) for layer l's projection m in a pass with LoRA dropout (a new [M, inF] tensor), or undefined without. */
  private droppedInput(l: number, m: LoraModule, x: Tensor, d: { M: number; inF: number }, drop: LoraDropoutPass | undefined): Tensor | undefined {
    if (!drop || drop.p === 0) return undefined;
    const xd = this.gpu.empty([d.M, d.inF]);
    dropout(this.gpu, x, xd, drop.p, loraDropoutKey(drop.seed, l, m), { n: d.M * d.inF });
    return xd;
  }

  private allocLayer(N: number, B: number, T: number): LayerActivations {
    const g = this.gpu, { D, Hq, Hkv, hd, I } = this;
    const qkNorm = this.config.qkNorm;
    return {
      h1: g.empty([N, D]),
      r1: g.empty([N]),
      qRaw: qkNorm ? g.empty([N, Hq * hd]) : undefined,
      kRaw: qkNorm ? g.empty([N, Hkv * hd]) : undefined,
      rq: qkNorm ? g.empty([N * Hq]) : undefined,
      rk: qkNorm ? g.empty([N * Hkv]) : undefined,
      q: g.empty([N, Hq * hd]),
      k: g.empty([N, Hkv * hd]),
      v: g.empty([N, Hkv * hd]),
      attn: g.empty([N, Hq * hd]),
      lse: g.empty([B * Hq * T]),
      xMid: g.empty([N, D]),
      h2: g.empty([N, D]),
      r2: g.empty([N]),
      gate: g.empty([N, this.fuseGateUpAt(N) ? 2 * I : I]),
      up: this.fuseGateUpAt(N) ? undefined : g.empty([N, I]),
      act: g.empty([N, I]),
    };
  }

  private releaseLayer(a: LayerActivations): void {
    for (const t of Object.values(a)) if (t) this.gpu.release(t);
  }

  /** One decoder layer of a whole-sequence pass (training, scoring): x → xOut, filling the activations `a`. */
  private layerForward(l: number, batch: TokenBatch, x: Tensor, xOut: Tensor, a: LayerActivations, drop?: LoraDropoutPass): void {
    const g = this.gpu, { D, Hq, Hkv, hd, I } = this;
    const { B, T } = batch;
    const N = B * T;
    const eps = this.config.rmsNormEps;
    const P = layerTensors(this.params, l);
    rmsnorm(g, x, P.inputNorm, a.h1, a.r1, { rows: N, D }, { eps });
    this.project(l, "q_proj", a.h1, P.q, a.qRaw ?? a.q, { M: N, outF: Hq * hd, inF: D }, { bias: P.qBias, drop });
    this.project(l, "k_proj", a.h1, P.k, a.kRaw ?? a.k, { M: N, outF: Hkv * hd, inF: D }, { bias: P.kBias, drop });
    this.project(l, "v_proj", a.h1, P.v, a.v, { M: N, outF: Hkv * hd, inF: D }, { bias: P.vBias, drop });
    if (this.config.qkNorm) {
      rmsnorm(g, a.qRaw!, P.qNorm!, a.q, a.rq!, { rows: N * Hq, D: hd }, { eps });
      rmsnorm(g, a.kRaw!, P.kNorm!, a.k, a.rk!, { rows: N * Hkv, D: hd }, { eps });
    }
    rope(g, a.q, a.k, batch.positions, this.invFreq, { rows: N, Hq, Hkv, headDim: hd });
    this.attend(batch, a);
    g.copy(x, a.xMid);
    this.project(l, "o_proj", a.attn, P.o, a.xMid, { M: N, outF: D, inF: Hq * hd }, { bias: P.oBias, accumulate: true, drop });
    rmsnorm(g, a.xMid, P.postNorm, a.h2, a.r2, { rows: N, D }, { eps });
    if (!a.up) {
      matmul(g, a.h2, gateUpWeight(P)!, a.gate, { M: N, N: 2 * I, K: D }, { transB: true });
      swiglu(g, a.gate, a.gate, a.act, { rows: N, I }, { strideGate: 2 * I, offsetUp: I, strideUp: 2 * I });
    } else {
      this.project(l, "gate_proj", a.h2, P.gate, a.gate, { M: N, outF: I, inF: D }, { drop });
      this.project(l, "up_proj", a.h2, P.up, a.up!, { M: N, outF: I, inF: D }, { drop });
      swiglu(g, a.gate, a.up!, a.act, { rows: N, I });
    }
    g.copy(a.xMid, xOut);
    this.project(l, "down_proj", a.act, P.down, xOut, { M: N, outF: D, inF: I }, { accumulate: true, drop });
  }

  private allocCached(N: number, B: number, T: number): CachedActivations {
    const g = this.gpu, { D, Hq, Hkv, hd, I } = this;
    const separate = !this.fuseGateUpAt(N);
    const qkvRows = this.fuseQkvAt(N) ? qkvProjection(layerTensors(this.params, 0))!.rows : (Hq + 2 * Hkv) * hd;
    return {
      h: g.empty([N, D]),
      qkv: g.empty([N * qkvRows]),
      q: g.empty([N, Hq * hd]),
      attn: g.empty([N, Hq * hd]),
      lse: g.empty([B * Hq * T]),
      act: g.empty([N, I]),
      gate: separate ? g.empty([N, I]) : undefined,
      up: separate ? g.empty([N, I]) : undefined,
    };
  }

  /**
   * One decoder layer of a generation step: the step's rows attend to everything cached for their sequence, their
   * keys/values join the cache, and the layer's attention and MLP outputs are added to the residual stream x in
   * place (nothing reads a layer's input again). A decode-sized step runs 8 dispatches: input norm, the fused q/k/v
   * product, ropeAppend (q/k norm, RoPE, cache append), attention, o_proj, post-attention norm, the fused gate/up
   * product with SwiGLU in its epilogue, and down_proj.
   */
  private layerCached(l: number, batch: TokenBatch, x: Tensor, a: CachedActivations, cache: LayerCache): void {
    const g = this.gpu, { D, Hq, Hkv, hd, I } = this;
    const { B, T } = batch;
    const N = B * T;
    const eps = this.config.rmsNormEps;
    const P = layerTensors(this.params, l);
    let layout: RopeAppendLayout;
    const fused = this.fuseQkvAt(N) ? qkvProjection(P) : undefined;
    const qkvNorm = fused && this.normInProduct({ M: N, N: fused.rows, K: D }, fused.weight);
    if (!qkvNorm) rmsnorm(g, x, P.inputNorm, a.h, null, { rows: N, D }, { eps });
    if (fused) {
      const normA = qkvNorm ? { weight: P.inputNorm, eps } : undefined;
      matmul(g, normA ? x : a.h, fused.weight, a.qkv, { M: N, N: fused.rows, K: D }, { transB: true, bias: fused.bias, normA });
      layout = { q: { offset: 0, stride: fused.rows }, k: { offset: fused.k, stride: fused.rows }, v: { offset: fused.v, stride: fused.rows } };
    } else {
      // The three products one after another in the same buffer.
      const kAt = N * Hq * hd, vAt = kAt + N * Hkv * hd;
      this.project(l, "q_proj", a.h, P.q, a.qkv, { M: N, outF: Hq * hd, inF: D }, { bias: P.qBias });
      this.project(l, "k_proj", a.h, P.k, a.qkv, { M: N, outF: Hkv * hd, inF: D }, { bias: P.kBias, offsetC: kAt });
      this.project(l, "v_proj", a.h, P.v, a.qkv, { M: N, outF: Hkv * hd, inF: D }, { bias: P.vBias, offsetC: vAt });
      layout = { q: { offset: 0, stride: Hq * hd }, k: { offset: kAt, stride: Hkv * hd }, v: { offset: vAt, stride: Hkv * hd } };
    }
    const norm = this.config.qkNorm ? this.qkNormOf(P) : undefined;
    ropeAppend(g, a.qkv, layout, this.invFreq, batch.qStart, batch.kvLen, a.q, cache.k, cache.v, { B, T, Hq, Hkv, hd, Tmax: cache.capacity }, norm);
    if (norm?.copy) g.release(norm.weight);
    attention(g, a.q, cache.k, cache.v, batch.qStart, batch.kvLen, a.attn, a.lse, { B, Tq: T, Tk: cache.capacity, Hq, Hkv, hd }, { keys: batch.longestKeys });
    this.project(l, "o_proj", a.attn, P.o, x, { M: N, outF: D, inF: Hq * hd }, { bias: P.oBias, accumulate: true });
    const gateUp = a.gate ? undefined : gateUpWeight(P)!;
    const mlpNorm = gateUp && this.normInProduct({ M: N, N: I, K: D }, gateUp, true);
    if (!mlpNorm) rmsnorm(g, x, P.postNorm, a.h, null, { rows: N, D }, { eps });
    if (gateUp) {
      const normA = mlpNorm ? { weight: P.postNorm, eps } : undefined;
      matmul(g, normA ? x : a.h, gateUp, a.act, { M: N, N: I, K: D }, { transB: true, glu: true, normA });
    } else {
      this.project(l, "gate_proj", a.h, P.gate, a.gate!, { M: N, outF: I, inF: D });
      this.project(l, "up_proj", a.h, P.up, a.up!, { M: N, outF: I, inF: D });
      swiglu(g, a.gate!, a.up!, a.act, { rows: N, I });
    }
    this.project(l, "down_proj", a.act, P.down, x, { M: N, outF: D, inF: I }, { accumulate: true });
  }

  /**
   * Whether a generation step computes an RMSNorm inside the product that reads it (matmul's normA: one dispatch and an
   * [N, D] round trip fewer, the same values bit for bit). The fused product recomputes each row's norm per workgroup
   * and its lanes reload their rows for it: on a GPU that is a few cached reads of a small A beside the weights; on a
   * software adapter, where every load costs 10–14 FMAs (bench/roofline.ts), the lanes' pass over their rows costs
   * about what the saved dispatch does once rows are wide (NORM_IN_PRODUCT_MAX_SOFTWARE_D).
   */
  private normInProduct(dims: { M: number; N: number; K: number }, weight: Tensor, glu = false): boolean {
    const o = { transB: true, glu };
    if (!this.normsInProducts || !normAFusable(this.gpu, dims, o, weight.dtype as MatmulBType)) return false;
    return !this.gpu.handle.info.software || dims.K <= NORM_IN_PRODUCT_MAX_SOFTWARE_D;
  }

  /**
   * Qwen3's q_norm and k_norm weights as ropeAppend binds them: one tensor, a fresh copy (`copy`: the caller
   * releases it) when they sit apart (a parameter set not laid out by ParameterSet).
   */
  private qkNormOf(P: LayerTensors): RopeAppendNorm & { copy: boolean } {
    const eps = this.config.rmsNormEps;
    const both = qkNormWeights(P);
    if (both) return { weight: both.weight, q: 0, k: both.k, eps, copy: false };
    const hd = this.hd, copy = this.gpu.empty([2 * hd]);
    this.gpu.copyRegion(P.qNorm!, 0, copy, 0, hd);
    this.gpu.copyRegion(P.kNorm!, 0, copy, hd, hd);
    return { weight: copy, q: 0, k: hd, eps, copy: true };
  }


  /** Log-probs of each row's target and entropies for a padded batch. Records GPU work; read the result tensors to wait. */
  forward(batch: TokenBatch, options: ForwardOptions = {}): ForwardResult {
    const g = this.gpu, { D, V } = this;
    const L = this.config.numLayers;
    const { B, T } = batch;
    const N = B * T;
    const train = !!options.train;
    const drop = this.dropoutOf(options);
    const outer = outerTensors(this.params);

    // The residual stream: every layer's input is kept when training; otherwise two buffers alternate.
    const xs: Tensor[] = train ? Array.from({ length: L + 1 }, () => g.empty([N, D])) : [g.empty([N, D]), g.empty([N, D])];
    const at = (i: number) => (train ? xs[i]! : xs[i % 2]!);
    embedding(g, batch.ids, outer.embed, xs[0]!, { N, V, D });

    const shareLayers = !train || !!options.checkpoint;
    const layers: LayerActivations[] = shareLayers ? [this.allocLayer(N, B, T)] : Array.from({ length: L }, () => this.allocLayer(N, B, T));
    for (let l = 0; l < L; l++) this.layerForward(l, batch, at(l), at(l + 1), layers[shareLayers ? 0 : l]!, drop);

    let hf = g.empty([N, D]);
    const rf = g.empty([N]);
    rmsnorm(g, at(L), outer.finalNorm, hf, rf, { rows: N, D }, { eps: this.config.rmsNormEps });
    const head = batch.head;
    if (head) {
      // Gather the head's rows (an embedding lookup whose table is hf): the LM head then runs on R rows.
      const rows = g.empty([head.count, D]);
      embedding(g, head.rows, hf, rows, { N: head.count, V: N, D });
      g.release(hf);
      hf = rows;
    }
    const R = head ? head.count : N;
    const dims = { N: R, V, D };
    const plan = logprobsPlan(dims, { temperature: options.temperature });
    const scratch = g.empty([plan.scratchElements]);
    const logprob = g.empty([R]);
    const entropy = g.empty([R]);
    const lmLse = g.empty([R]);
    logprobs(g, hf, outer.lmHead, head ? head.targets : batch.targets, logprob, entropy, lmLse, scratch, dims, { temperature: options.temperature });
    // The backward recomputes the logits into a scratch of its own: a micro-batch run as several passes keeps one
    // logits block alive, not one per pass (the memory estimate counts one).
    g.release(scratch);

    if (!train) {
      g.release(...xs, hf, rf, lmLse);
      for (const a of layers) this.releaseLayer(a);
      return { batch, logprob, entropy, options };
    }
    return { batch, logprob, entropy, options, saved: { xs, layers, hf, rf, lmLse } };
  }

  /**
   * A generation step: the batch's rows (each sequence's new tokens, right-padded; qStart = cache length,
   * kvLen = cache length + new) go through every layer against the caches, and `logits` [B, V] receives
   * the logits of row `lastRows[b]` of each sequence (with one row per sequence, T = 1, that row is b and `lastRows`
   * is not read). Row t of sequence b sits at position qStart[b] + t (the batch's `positions` are not read). Records
   * GPU work only.
   */
  forwardCached(batch: TokenBatch, caches: readonly LayerCache[], lastRows: Tensor, logits: Tensor): void {
    const g = this.gpu, { D, V } = this;
    const { B, T } = batch;
    const N = B * T;
    const outer = outerTensors(this.params);
    const x = g.empty([N, D]);
    embedding(g, batch.ids, outer.embed, x, { N, V, D });
    const a = this.allocCached(N, B, T);
    for (let l = 0; l < this.config.numLayers; l++) this.layerCached(l, batch, x, a, caches[l]!);
    // One row per sequence (a decode step): row b is sequence b's last row, so the LM head reads the rows as they are,
    // and with the whole vocabulary in one product the final norm runs inside it.
    const rows = T === 1 ? undefined : lastRows;
    const need = lastLogitsScratch({ B, V, D, N }, { rows: !!rows });
    const head = this.decodeHead ?? outer.lmHead;
    const eps = this.config.rmsNormEps;
    const finalNorm = !rows && need.sliceScratch === 0 && this.normInProduct({ M: B, N: V, K: D }, head);
    const hf = finalNorm ? undefined : g.empty([N, D]);
    if (hf) rmsnorm(g, x, outer.finalNorm, hf, null, { rows: N, D }, { eps });
    const gathered = g.empty([Math.max(1, need.gathered)]);
    const sliceScratch = need.sliceScratch > 0 ? g.empty([need.sliceScratch]) : undefined;
    const normA = finalNorm ? { weight: outer.finalNorm, eps } : undefined;
    lastLogits(g, hf ?? x, head, logits, { B, V, D, N }, { rows, gathered, sliceScratch, normA });
    g.release(x, gathered, ...(hf ? [hf] : []), ...(sliceScratch ? [sliceScratch] : []));
    for (const t of Object.values(a)) if (t) g.release(t);
  }

  // ---- backward --------------------------------------------------------------------------------

  /** A [N] tensor of ones: bias gradients are column sums, computed as onesᵀ·dY with the matmul kernel. */
  private onesFor(N: number): Tensor {
    if (!this.ones || this.ones.numel < N) {
      if (this.ones) this.gpu.release(this.ones);
      this.ones = this.gpu.upload(new Float32Array(N).fill(1), [N]);
    }
    return this.ones;
  }

  private biasGrad(dy: Tensor, dBias: Tensor | undefined, N: number, F: number): void {
    if (dBias) matmul(this.gpu, this.onesFor(N), dy, dBias, { M: 1, N: F, K: N }, { accumulate: true });
  }

  /**
   * Accumulates into `grads` the gradient of Σ_rows dLogprob[row]·logprob[row] + dEntropy[row]·entropy[row]
   * (dEntropy may be null). Releases the forward's saved activations. `grads` is either a full parameter set (full
   * fine-tuning) or the attached adapter's gradients (LoRA: the base weights get none, and their products are skipped).
   */
  backward(fwd: ForwardResult, dLogprob: Tensor, dEntropy: Tensor | null, grads: ParameterSet | LoraWeights): void {
    const saved = fwd.saved;
    if (!saved) throw new Error("backward needs a forward run with { train: true }");
    const loraGrads = grads instanceof LoraWeights ? grads : undefined;
    if (loraGrads && !this.activeAdapter) throw new Error("backward: adapter gradients need an attached, enabled adapter");
    if (!loraGrads && this.activeAdapter) throw new Error("backward: full fine-tuning with a LoRA adapter attached is not supported");
    if (!loraGrads && this.params.hasHalf) throw new Error("backward: f16-stored weights are frozen; train a LoRA adapter on them");
    const full = grads instanceof LoraWeights ? undefined : grads;
    const g = this.gpu, { D, Hq, Hkv, hd, I, V } = this;
    const L = this.config.numLayers;
    const { batch } = fwd;
    const { B, T } = batch;
    const N = B * T;
    const drop = this.dropoutOf(fwd.options);
    const outer = outerTensors(this.params);
    const gOuter = full ? outerTensors(full) : undefined;

    const head = batch.head;
    const R = head ? head.count : N;
    const zeroEntropy = dEntropy ? null : g.zeros([R]);
    const dx = g.empty([N, D]);
    const dhf = head ? g.zeros([N, D]) : g.empty([N, D]);
    const dHead = head ? g.empty([R, D]) : dhf;
    const lmDims = { N: R, V, D };
    const lmScratch = g.empty([logprobsPlan(lmDims, { temperature: fwd.options.temperature }).scratchElements]);
    logprobsBackward(g, saved.hf, outer.lmHead, head ? head.targets : batch.targets, saved.lmLse, fwd.entropy, dLogprob, dEntropy ?? zeroEntropy!, dHead, gOuter?.lmHead ?? null, lmScratch, lmDims, { temperature: fwd.options.temperature });
    g.release(lmScratch);
    if (head) {
      // Back into the head's rows of dhf (the other rows' gradient is 0): the embedding backward's scatter, whose rows
      // here are distinct, so each is a copy.
      const scatter = g.empty([embeddingScratchSize({ N: R, V: N })], "u32");
      embeddingBackward(g, head.rows, dHead, dhf, scatter, { N: R, V: N, D });
      g.release(scatter, dHead);
    }
    rmsnormBackward(g, dhf, saved.xs[L]!, outer.finalNorm, saved.rf, dx, gOuter?.finalNorm ?? null, { rows: N, D });

    const t = {
      dAct: g.empty([N, I]),
      dGate: g.empty([N, this.fuseGateUpAt(N) ? 2 * I : I]),
      dUp: this.fuseGateUpAt(N) ? undefined : g.empty([N, I]),
      dH: g.empty([N, D]),
      dAttn: g.empty([N, Hq * hd]),
      dq: g.empty([N, Hq * hd]),
      dk: g.empty([N, Hkv * hd]),
      dv: g.empty([N, Hkv * hd]),
      dqRaw: this.config.qkNorm ? g.empty([N, Hq * hd]) : undefined,
      dkRaw: this.config.qkNorm ? g.empty([N, Hkv * hd]) : undefined,
      work: g.empty([this.attentionWorkElements(batch)], "u32"),
    };

    for (let l = L - 1; l >= 0; l--) {
      const x = saved.xs[l]!;
      const a = saved.layers.length === 1 ? saved.layers[0]! : saved.layers[l]!;
      // Checkpointing: the shared activations hold the last layer's; recompute every other layer from its saved input.
      if (saved.layers.length === 1 && l < L - 1) this.layerForward(l, batch, x, saved.xs[l + 1]!, a, drop);
      const P = layerTensors(this.params, l);
      const G = full ? layerTensors(full, l) : undefined;
      this.layerBackward(l, P, G, { grads: loraGrads, drop }, a, batch, x, dx, t);
    }
    if (gOuter) {
      const embScratch = g.empty([embeddingScratchSize({ N, V })], "u32");
      embeddingBackward(g, batch.ids, dx, gOuter.embed, embScratch, { N, V, D });
      g.release(embScratch);
    }

    g.release(dx, dhf, ...(Object.values(t).filter(Boolean) as Tensor[]));
    if (zeroEntropy) g.release(zeroEntropy);
    this.releaseForward(fwd);
  }

  /** The pass's LoRA dropout when it does anything: a training pass, an adapter in effect, p > 0. */
  private dropoutOf(o: ForwardOptions): LoraDropoutPass | undefined {
    const drop = o.loraDropout;
    if (!drop || drop.p === 0 || !this.activeAdapter) return undefined;
    if (!o.train) throw new Error("forward: LoRA dropout applies to training passes ({ train: true }) only");
    if (!(drop.p > 0 && drop.p < 1)) throw new Error(`forward: LoRA dropout must be in [0, 1), got ${drop.p}`);
    return drop;
  }

  /**
   * The adapter's part of a projection's backward, given dy = ∂/∂y and the projection's input x, with x̃ = x or, in a
   * pass with LoRA dropout, dropout(x) (the forward's mask, drawn again from its key):
   * dx += s·dropout'((dy·B)·A), and into the adapter's gradients dA += s·(dy·B)ᵀ·x̃, dB += s·dyᵀ·(x̃·Aᵀ).
   */
  private projectBackward(
    l: number,
    m: LoraModule,
    x: Tensor,
    dy: Tensor,
    dx: Tensor,
    d: { M: number; outF: number; inF: number },
    lo: { grads: LoraWeights | undefined; drop: LoraDropoutPass | undefined },
  ): void {
    const lora = this.activeAdapter;
    const ab = lora?.pair(l, m);
    if (!lora || !ab) return;
    const g = this.gpu, r = lora.settings.rank, s = lora.scale, { M, outF, inF } = d;
    const v = g.empty([M, r]);
    matmul(g, dy, ab.B, v, { M, N: r, K: outF });
    let xd: Tensor | undefined;
    if (!lo.drop || lo.drop.p === 0) {
      matmul(g, v, ab.A, dx, { M, N: inF, K: r }, { alpha: s, accumulate: true });
    } else {
      // The gradient reaches x through the same mask and 1/(1-p) as the forward; the scratch then holds x̃.
      const key = loraDropoutKey(lo.drop.seed, l, m);
      xd = g.empty([M, inF]);
      matmul(g, v, ab.A, xd, { M, N: inF, K: r }, { alpha: s });
      dropout(g, xd, dx, lo.drop.p, key, { n: M * inF, accumulate: true });
      dropout(g, x, xd, lo.drop.p, key, { n: M * inF });
    }
    const gab = lo.grads?.pair(l, m);
    if (gab) {
      const xin = xd ?? x;
      const u = g.empty([M, r]);
      matmul(g, v, xin, gab.A, { M: r, N: inF, K: M }, { transA: true, alpha: s, accumulate: true });
      matmul(g, xin, ab.A, u, { M, N: r, K: inF }, { transB: true });
      matmul(g, dy, u, gab.B, { M: outF, N: r, K: M }, { transA: true, alpha: s, accumulate: true });
      g.release(u);
    }
    g.release(v, ...(xd ? [xd] : []));
  }

  /**
   * dx holds ∂/∂(layer output) on entry and ∂/∂(layer input) on return; parameter gradients accumulate into G (full
   * fine-tuning) or the adapter's into lo.grads (G undefined: the base weights are frozen; lo.drop: the pass's LoRA dropout).
   */
  private layerBackward(
    l: number,
    P: LayerTensors,
    G: LayerTensors | undefined,
    lo: { grads: LoraWeights | undefined; drop: LoraDropoutPass | undefined },
    a: LayerActivations,
    batch: TokenBatch,
    x: Tensor,
    dx: Tensor,
    t: Record<"dAct" | "dGate" | "dH" | "dAttn" | "dq" | "dk" | "dv" | "work", Tensor> & { dUp?: Tensor; dqRaw?: Tensor; dkRaw?: Tensor },
  ): void {
    const g = this.gpu, { D, Hq, Hkv, hd, I } = this;
    const { B, T } = batch;
    const N = B * T;
    const acc = { transA: true, accumulate: true } as const;

    // MLP: x_out = x_mid + act·Wdᵀ, act = silu(h2·Wgᵀ) ⊙ h2·Wuᵀ, h2 = rmsnorm(x_mid)
    matmul(g, dx, P.down, t.dAct, { M: N, N: I, K: D });
    if (G) matmul(g, dx, a.act, G.down, { M: D, N: I, K: N }, acc);
    this.projectBackward(l, "down_proj", a.act, dx, t.dAct, { M: N, outF: D, inF: I }, lo);
    if (!a.up) {
      // dGate holds [N, 2I]: each row's gate gradient then its up gradient, matching the fused [2I, D] weight.
      const gu = gateUpWeight(P)!, gGu = G ? gateUpWeight(G) : undefined;
      if (G && !gGu) throw new Error("backward: the gradient set's gate/up weights are not laid out like the parameters'");
      const fused = { strideGate: 2 * I, offsetUp: I, strideUp: 2 * I, strideDGate: 2 * I, offsetDUp: I, strideDUp: 2 * I };
      swigluBackward(g, t.dAct, a.gate, a.gate, t.dGate, t.dGate, { rows: N, I }, fused);
      matmul(g, t.dGate, gu, t.dH, { M: N, N: D, K: 2 * I });
      if (gGu) matmul(g, t.dGate, a.h2, gGu, { M: 2 * I, N: D, K: N }, acc);
    } else {
      swigluBackward(g, t.dAct, a.gate, a.up!, t.dGate, t.dUp!, { rows: N, I });
      matmul(g, t.dGate, P.gate, t.dH, { M: N, N: D, K: I });
      matmul(g, t.dUp!, P.up, t.dH, { M: N, N: D, K: I }, { accumulate: true });
      if (G) {
        matmul(g, t.dGate, a.h2, G.gate, { M: I, N: D, K: N }, acc);
        matmul(g, t.dUp!, a.h2, G.up, { M: I, N: D, K: N }, acc);
      }
      this.projectBackward(l, "gate_proj", a.h2, t.dGate, t.dH, { M: N, outF: I, inF: D }, lo);
      this.projectBackward(l, "up_proj", a.h2, t.dUp!, t.dH, { M: N, outF: I, inF: D }, lo);
    }
    rmsnormBackward(g, t.dH, a.xMid, P.postNorm, a.r2, dx, G?.postNorm ?? null, { rows: N, D }, { accumulateDx: true });

    // Attention: x_mid = x + attn·Woᵀ + bo
    matmul(g, dx, P.o, t.dAttn, { M: N, N: Hq * hd, K: D });
    if (G) {
      matmul(g, dx, a.attn, G.o, { M: D, N: Hq * hd, K: N }, acc);
      this.biasGrad(dx, G.oBias, N, D);
    }
    this.projectBackward(l, "o_proj", a.attn, dx, t.dAttn, { M: N, outF: D, inF: Hq * hd }, lo);
    this.attendBackward(batch, a, t);
    rope(g, t.dq, t.dk, batch.positions, this.invFreq, { rows: N, Hq, Hkv, headDim: hd }, { inverse: true });
    let dq = t.dq, dk = t.dk;
    if (this.config.qkNorm) {
      rmsnormBackward(g, t.dq, a.qRaw!, P.qNorm!, a.rq!, t.dqRaw!, G ? G.qNorm! : null, { rows: N * Hq, D: hd });
      rmsnormBackward(g, t.dk, a.kRaw!, P.kNorm!, a.rk!, t.dkRaw!, G ? G.kNorm! : null, { rows: N * Hkv, D: hd });
      dq = t.dqRaw!;
      dk = t.dkRaw!;
    }
    matmul(g, dq, P.q, t.dH, { M: N, N: D, K: Hq * hd });
    matmul(g, dk, P.k, t.dH, { M: N, N: D, K: Hkv * hd }, { accumulate: true });
    matmul(g, t.dv, P.v, t.dH, { M: N, N: D, K: Hkv * hd }, { accumulate: true });
    this.projectBackward(l, "q_proj", a.h1, dq, t.dH, { M: N, outF: Hq * hd, inF: D }, lo);
    this.projectBackward(l, "k_proj", a.h1, dk, t.dH, { M: N, outF: Hkv * hd, inF: D }, lo);
    this.projectBackward(l, "v_proj", a.h1, t.dv, t.dH, { M: N, outF: Hkv * hd, inF: D }, lo);
    if (G) {
      matmul(g, dq, a.h1, G.q, { M: Hq * hd, N: D, K: N }, acc);
      matmul(g, dk, a.h1, G.k, { M: Hkv * hd, N: D, K: N }, acc);
      matmul(g, t.dv, a.h1, G.v, { M: Hkv * hd, N: D, K: N }, acc);
      this.biasGrad(dq, G.qBias, N, Hq * hd);
      this.biasGrad(dk, G.kBias, N, Hkv * hd);
      this.biasGrad(t.dv, G.vBias, N, Hkv * hd);
    }
    rmsnormBackward(g, t.dH, x, P.inputNorm, a.r1, dx, G?.inputNorm ?? null, { rows: N, D }, { accumulateDx: true });
  }

  /**
   * A whole-sequence pass's attention: the batch's sequences, or with a shared-prefix layout the prefix block as plain
   * sequences and the own block against its members' gathered keys (a prefill whose cache is the prefix).
   */
  private attend(batch: TokenBatch, a: LayerActivations): void {
    const g = this.gpu, { Hq, Hkv, hd } = this;
    const sh = batch.shared;
    if (!sh) {
      attention(g, a.q, a.k, a.v, batch.qStart, batch.kvLen, a.attn, a.lse, { B: batch.B, Tq: batch.T, Tk: batch.T, Hq, Hkv, hd });
      return;
    }
    const p = this.sharedBlocks(sh, a);
    attention(g, p.prefix.q, p.prefix.k, p.prefix.v, sh.prefixQStart, sh.prefixKvLen, p.prefix.attn, p.prefix.lse, p.prefix.dims);
    const [k, v] = this.gatherKeys(batch, sh, a);
    attention(g, p.own.q, k, v, sh.ownQStart, sh.ownKvLen, p.own.attn, p.own.lse, p.own.dims);
    g.release(k, v);
  }

  /** attend's backward: dq, dk, dv of every row from dAttn (t.dk/t.dv's prefix rows summed over the members that read them). */
  private attendBackward(batch: TokenBatch, a: LayerActivations, t: Record<"dAttn" | "dq" | "dk" | "dv" | "work", Tensor>): void {
    const g = this.gpu, { Hq, Hkv, hd } = this;
    const sh = batch.shared;
    if (!sh) {
      attentionBackward(g, a.q, a.k, a.v, batch.qStart, batch.kvLen, a.attn, a.lse, t.dAttn, t.dq, t.dk, t.dv, t.work, { B: batch.B, Tq: batch.T, Tk: batch.T, Hq, Hkv, hd });
      return;
    }
    // d: the same blocks of the gradients (its lse, the forward's, is not used).
    const p = this.sharedBlocks(sh, a), d = this.sharedBlocks(sh, { q: t.dq, k: t.dk, v: t.dv, attn: t.dAttn, lse: a.lse });
    const kw = Hkv * hd, keys = sh.S * sh.Tk, N = batch.T;
    attentionBackward(g, p.prefix.q, p.prefix.k, p.prefix.v, sh.prefixQStart, sh.prefixKvLen, p.prefix.attn, p.prefix.lse, d.prefix.attn, d.prefix.q, d.prefix.k, d.prefix.v, t.work, p.prefix.dims);
    const [k, v] = this.gatherKeys(batch, sh, a);
    const dk = g.empty([keys, kw]), dv = g.empty([keys, kw]);
    attentionBackward(g, p.own.q, k, v, sh.ownQStart, sh.ownKvLen, p.own.attn, p.own.lse, d.own.attn, d.own.q, dk, dv, t.work, p.own.dims);
    // Each row's key gradient sums the gathered keys it fed: a prefix row adds its members' to its own attention's.
    const back = { rows: N, width: kw, srcRows: keys, accumulateRows: sh.P * sh.Tp };
    gatherRowsBackward(g, sh.keySources, dk, t.dk, back);
    gatherRowsBackward(g, sh.keySources, dv, t.dv, back);
    g.release(k, v, dk, dv);
  }

  /** The two blocks of a shared-prefix layout's per-row tensors, and their attention sizes. */
  private sharedBlocks(sh: SharedPrefixLayout, x: Pick<LayerActivations, "q" | "k" | "v" | "attn" | "lse">) {
    const { Hq, Hkv, hd } = this;
    const qw = Hq * hd, kw = Hkv * hd, Np = sh.P * sh.Tp, No = sh.S * sh.Ts;
    const block = (r0: number, rows: number) => ({ q: rowsOf(x.q, r0, rows, qw), k: rowsOf(x.k, r0, rows, kw), v: rowsOf(x.v, r0, rows, kw), attn: rowsOf(x.attn, r0, rows, qw), lse: rowsOf(x.lse, r0, rows, Hq) });
    return {
      prefix: { ...block(0, Np), dims: { B: sh.P, Tq: sh.Tp, Tk: sh.Tp, Hq, Hkv, hd } },
      own: { ...block(Np, No), dims: { B: sh.S, Tq: sh.Ts, Tk: sh.Tk, Hq, Hkv, hd } },
    };
  }

  /** Each own sequence's keys and values [S·Tk, Hkv·hd]: its prefix's rows, then its own (zero rows past them). */
  private gatherKeys(batch: TokenBatch, sh: SharedPrefixLayout, a: Pick<LayerActivations, "k" | "v">): [Tensor, Tensor] {
    const g = this.gpu, kw = this.Hkv * this.hd, keys = sh.S * sh.Tk, dims = { rows: keys, width: kw, srcRows: batch.T };
    const k = g.empty([keys, kw]), v = g.empty([keys, kw]);
    gatherRows(g, sh.keyRows, a.k, k, dims);
    gatherRows(g, sh.keyRows, a.v, v, dims);
    return [k, v];
  }

  /** Words of the attention backward's scratch for this batch (the larger block's, with a shared-prefix layout). */
  private attentionWorkElements(batch: TokenBatch): number {
    const sh = batch.shared, Hq = this.Hq;
    if (!sh) return attentionBackwardWorkElements({ B: batch.B, Tq: batch.T, Hq });
    return Math.max(attentionBackwardWorkElements({ B: sh.P, Tq: sh.Tp, Hq }), attentionBackwardWorkElements({ B: sh.S, Tq: sh.Ts, Hq }));
  }

  releaseForward(fwd: ForwardResult): void {
    const s = fwd.saved;
    if (!s) return;
    this.gpu.release(...s.xs, s.hf, s.rf, s.lmLse);
    for (const a of s.layers) this.releaseLayer(a);
    fwd.saved = undefined;
  }

  // ---- convenience -----------------------------------------------------------------------------

  /** Per-token log-probs of each sequence: out[b][i] = log p(seq[i] | seq[<i]), null for i = 0. */
  async score(sequences: readonly (readonly number[])[]): Promise<(number | null)[][]> {
    const batch = makeBatch(this.gpu, sequences);
    const fwd = this.forward(batch);
    const lp = await this.gpu.readF32(fwd.logprob);
    this.gpu.release(fwd.logprob, fwd.entropy);
    releaseBatch(this.gpu, batch);
    return sequences.map((s, b) => s.map((_, i) => (i === 0 ? null : lp[b * batch.T + i - 1]!)));
  }
}
