/**
 * Fused LM head + log-softmax: per-token log p(target) and entropy from the final hidden states,
 * without ever holding [tokens × vocab] logits.
 *
 *   h [N, D] (normed hidden states)   W [V, D] (LM head, tied or untied embedding)   targets [N] (u32)
 *   → logprob [N], entropy [N], lse [N] (log-sum-exp of each row's logits, saved for the backward)
 *
 * Tokens are processed in chunks of `chunk` rows and the vocabulary in slices of `vocabSlice` ids, so
 * the only logits that exist are one [chunk, vocabSlice] scratch block and no binding is larger than
 * one W slice (Qwen's 151,936 × 896 f32 head is 545 MB; WebGPU guarantees only 128 MiB per binding).
 * Each slice's logits come from the matmul op; the softmax statistics are merged across slices
 * online (running max, Σe, Σe·z). Logits are divided by `temperature` (default 1) before the softmax.
 * Targets ≥ V mean "no target" (ignored rows): logprob 0 and no gradient from dlogprob.
 *
 * Backward: dh [N, D] is written (or accumulated with `accumulateDh`), dW [V, D] is accumulated, as
 * parameter gradients always are. Logits are recomputed per slice; per chunk and slice that is a
 * matmul, an in-place dlogits kernel, and two matmuls.
 */
import { RecallError } from "../errors.ts";
import { Params, type Gpu, type Kernel } from "../gpu/runtime.ts";
import { Tensor, shapeString } from "../gpu/tensor.ts";
import { bindWindow } from "./launch.ts";
import { matmul, type MatmulOptions } from "./matmul.ts";

const STATS: Kernel = { shader: "logprobs", entry: "lp_stats", storage: ["read_write", "read", "read_write", "read_write", "read_write"], uniforms: true };
const DLOGITS: Kernel = { shader: "logprobs", entry: "lp_dlogits", storage: ["read_write", "read", "read", "read", "read", "read"], uniforms: true };
const GATHER: Kernel = { shader: "logprobs", entry: "lp_gather_rows", storage: ["read", "read", "read_write"], uniforms: true };
const SCATTER: Kernel = { shader: "logprobs", entry: "lp_scatter_cols", storage: ["read", "read_write"], uniforms: true };

/** WebGPU's guaranteed maxStorageBufferBindingSize; default plans fit it so they hold on every adapter. */
export const PORTABLE_BINDING_BYTES = 128 * 1024 * 1024;
/** Slack for re-aligning a slice's binding offset down to the adapter's minStorageBufferOffsetAlignment. */
const ALIGN_SLACK_BYTES = 256;
export const DEFAULT_LOGPROBS_CHUNK = 128;
/**
 * Logits scratch a default plan may fill per chunk: at least DEFAULT_LOGPROBS_CHUNK rows, more when the slice is narrow
 * (a small vocabulary then takes one chunk, not N/128 of them, each four to five dispatches: the demo's tiny model's
 * whole SFT step measured ~25% faster, B=16 T≈214 on lavapipe). A 32768-wide slice still gets 128 rows.
 */
const LOGITS_SCRATCH_BYTES = 16 * 1024 * 1024;
export const DEFAULT_VOCAB_SLICE = 32768;

export interface LogprobsDims {
  /** Token rows. */
  N: number;
  /** Vocabulary size (rows of W). */
  V: number;
  /** Hidden size. */
  D: number;
}

export interface LogprobsOptions {
  /** Token rows per chunk (default: min(N, max(128, rows whose logits slice fills 16 MiB))). */
  chunk?: number;
  /** Vocabulary ids per slice (default: 32768, fewer when one W slice would not fit 128 MiB). */
  vocabSlice?: number;
  /** Logits are divided by this before the softmax (default 1). */
  temperature?: number;
  /** Lanes per token row of the softmax kernels, 8 to 64 (tests; default rowGroups'): results are the same bit for bit. */
  rowLanes?: number;
}

export interface LogprobsPlan {
  chunk: number;
  vocabSlice: number;
  chunks: number;
  slices: number;
  /** f32 elements of the scratch tensor: [chunk × vocabSlice] logits, then [chunk × 4] running statistics. */
  scratchElements: number;
  scratchBytes: number;
  /** Dispatches recorded by one forward / one backward call. */
  forwardDispatches: number;
  backwardDispatches: number;
}

function positiveInt(what: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new RecallError(`logprobs: ${what} must be a positive integer, got ${v}`);
}

/** How logprobs/logprobsBackward will tile a problem, and how much scratch they need. Independent of the adapter. */
export function logprobsPlan(dims: LogprobsDims, opts: LogprobsOptions = {}): LogprobsPlan {
  const { N, V, D } = dims;
  positiveInt("N", N);
  positiveInt("V", V);
  positiveInt("D", D);
  const maxSliceByW = Math.floor((PORTABLE_BINDING_BYTES - ALIGN_SLACK_BYTES) / (4 * D));
  const vocabSlice = Math.min(V, opts.vocabSlice ?? Math.min(DEFAULT_VOCAB_SLICE, maxSliceByW));
  const rowBytes = 4 * (vocabSlice + 4);
  const byScratch = Math.max(DEFAULT_LOGPROBS_CHUNK, Math.floor(LOGITS_SCRATCH_BYTES / rowBytes));
  const chunk = Math.min(N, opts.chunk ?? Math.min(byScratch, Math.floor(PORTABLE_BINDING_BYTES / rowBytes)));
  positiveInt("chunk", chunk);
  positiveInt("vocabSlice", vocabSlice);
  const chunks = Math.ceil(N / chunk);
  const slices = Math.ceil(V / vocabSlice);
  const scratchElements = chunk * vocabSlice + 4 * chunk;
  return {
    chunk,
    vocabSlice,
    chunks,
    slices,
    scratchElements,
    scratchBytes: scratchElements * 4,
    forwardDispatches: chunks * slices * 2,
    backwardDispatches: chunks * slices * 4,
  };
}

/** Bytes of scratch that logprobs and logprobsBackward need for these sizes (for the engine's memory report). */
export function logprobsScratchBytes(dims: LogprobsDims, opts: LogprobsOptions = {}): number {
  return logprobsPlan(dims, opts).scratchBytes;
}

function checkBinding(gpu: Gpu, what: string, elements: number): void {
  const bytes = elements * 4;
  const max = gpu.limits.maxStorageBufferBindingSize;
  if (bytes > max) throw new RecallError(`logprobs: ${what} needs a ${bytes}-byte binding, over this adapter's maxStorageBufferBindingSize ${max}; use a smaller chunk or vocabSlice`);
}

function needElements(what: string, t: Tensor, n: number): void {
  if (t.numel < n) throw new Error(`logprobs: ${what} ${shapeString(t.shape)} holds ${t.numel} elements, needs ${n}`);
}

function validate(gpu: Gpu, dims: LogprobsDims, plan: LogprobsPlan, h: Tensor, W: Tensor, targets: Tensor, scratch: Tensor, rowTensors: Record<string, Tensor>): void {
  const { N, V, D } = dims;
  needElements("h", h, N * D);
  needElements("W", W, V * D);
  needElements("targets", targets, N);
  needElements("scratch", scratch, plan.scratchElements);
  for (const [k, t] of Object.entries(rowTensors)) needElements(k, t, N);
  checkBinding(gpu, "a W slice", plan.vocabSlice * D + ALIGN_SLACK_BYTES / 4);
  checkBinding(gpu, "the scratch", plan.scratchElements);
  checkBinding(gpu, "targets", N);
}

/** Workgroup size of the log-prob kernels (shaders/logprobs.wgsl WG). */
const WG = 64;
/** Fewest lanes per row (shaders/logprobs.wgsl LP_MAX_PLAYED: a lane plays at most 8 of the one-row kernel's). */
const MIN_ROW_LANES = 8;

/**
 * Lanes per token row of lp_stats / lp_dlogits (override LP_LANES) and their grid: the fewest (a power of two, 8 to
 * 64) that read at most 64 logits each, so a narrow slice packs several rows into a workgroup. The demo model's
 * 5760 × 320-id step: lp_stats 23 → 7 ms on lavapipe; same results bit for bit (see the shader).
 */
function rowGroups(rows: number, width: number, forced?: number): { constants?: Record<string, number>; workgroups: [number] } {
  let lanes = MIN_ROW_LANES;
  while (lanes < WG && lanes * WG < width) lanes *= 2;
  if (forced !== undefined) {
    if (![8, 16, 32, 64].includes(forced)) throw new Error(`logprobs: rowLanes ${forced}: need 8, 16, 32 or 64`);
    lanes = forced;
  }
  return { ...(lanes === WG ? {} : { constants: { LP_LANES: lanes } }), workgroups: [Math.ceil(rows / (WG / lanes))] };
}

function statsParams(rows: number, width: number, v0: number, n0: number, V: number, statsOff: number, first: boolean, last: boolean): ArrayBuffer {
  return new Params().u32(rows, width, v0, n0, V, statsOff, first ? 1 : 0, last ? 1 : 0).bytes();
}

/** Records the logits of one (chunk, slice) block into scratch[0 : rows × width]. */
function sliceLogits(gpu: Gpu, h: Tensor, W: Tensor, scratch: Tensor, D: number, n0: number, rows: number, v0: number, width: number, alpha: number): void {
  const hw = bindWindow(gpu, h, n0 * D, rows * D);
  const ww = bindWindow(gpu, W, v0 * D, width * D);
  matmul(gpu, hw.view, ww.view, scratch, { M: rows, N: width, K: D }, { transB: true, alpha, offsetA: hw.base, offsetB: ww.base });
}

/** Forward: logprob [N], entropy [N], lse [N]. `scratch` is an f32 tensor of logprobsPlan(dims, opts).scratchElements. */
export function logprobs(
  gpu: Gpu,
  h: Tensor,
  W: Tensor,
  targets: Tensor,
  logprob: Tensor,
  entropy: Tensor,
  lse: Tensor,
  scratch: Tensor,
  dims: LogprobsDims,
  opts: LogprobsOptions = {},
): void {
  const plan = logprobsPlan(dims, opts);
  validate(gpu, dims, plan, h, W, targets, scratch, { logprob, entropy, lse });
  const { N, V, D } = dims;
  const alpha = 1 / (opts.temperature ?? 1);
  const statsOff = plan.chunk * plan.vocabSlice;
  for (let n0 = 0; n0 < N; n0 += plan.chunk) {
    const rows = Math.min(plan.chunk, N - n0);
    for (let v0 = 0; v0 < V; v0 += plan.vocabSlice) {
      const width = Math.min(plan.vocabSlice, V - v0);
      sliceLogits(gpu, h, W, scratch, D, n0, rows, v0, width, alpha);
      gpu.dispatch({
        kernel: STATS,
        params: statsParams(rows, width, v0, n0, V, statsOff, v0 === 0, v0 + width >= V),
        bindings: [scratch, targets, logprob, entropy, lse],
        ...rowGroups(rows, width, opts.rowLanes),
      });
    }
  }
}

export interface LogprobsBackwardOptions extends LogprobsOptions {
  /** dh += … instead of dh = … */
  accumulateDh?: boolean;
}

/**
 * Backward of logprobs: given dlogprob [N] and dentropy [N] (and the forward's lse and entropy),
 * writes dh [N, D] and accumulates dW [V, D] (the same W, h, targets, dims and options as the forward); dW null
 * skips the weight's gradient (a frozen LM head, e.g. under LoRA).
 */
export function logprobsBackward(
  gpu: Gpu,
  h: Tensor,
  W: Tensor,
  targets: Tensor,
  lse: Tensor,
  entropy: Tensor,
  dlogprob: Tensor,
  dentropy: Tensor,
  dh: Tensor,
  dW: Tensor | null,
  scratch: Tensor,
  dims: LogprobsDims,
  opts: LogprobsBackwardOptions = {},
): void {
  const plan = logprobsPlan(dims, opts);
  validate(gpu, dims, plan, h, W, targets, scratch, { lse, entropy, dlogprob, dentropy });
  const { N, V, D } = dims;
  needElements("dh", dh, N * D);
  if (dW) needElements("dW", dW, V * D);
  const alpha = 1 / (opts.temperature ?? 1);
  for (let n0 = 0; n0 < N; n0 += plan.chunk) {
    const rows = Math.min(plan.chunk, N - n0);
    const hw = bindWindow(gpu, h, n0 * D, rows * D);
    const dhw = bindWindow(gpu, dh, n0 * D, rows * D);
    for (let v0 = 0; v0 < V; v0 += plan.vocabSlice) {
      const width = Math.min(plan.vocabSlice, V - v0);
      const ww = bindWindow(gpu, W, v0 * D, width * D);
      const dww = dW ? bindWindow(gpu, dW, v0 * D, width * D) : undefined;
      matmul(gpu, hw.view, ww.view, scratch, { M: rows, N: width, K: D }, { transB: true, alpha, offsetA: hw.base, offsetB: ww.base });
      gpu.dispatch({
        kernel: DLOGITS,
        params: statsParams(rows, width, v0, n0, V, 0, false, false),
        bindings: [scratch, targets, lse, entropy, dlogprob, dentropy],
        ...rowGroups(rows, width, opts.rowLanes),
      });
      // dz is with respect to z = alpha·h·Wᵀ, so both products carry alpha.
      matmul(gpu, scratch, ww.view, dhw.view, { M: rows, N: D, K: width }, { alpha, offsetB: ww.base, offsetC: dhw.base, accumulate: v0 > 0 || !!opts.accumulateDh });
      if (dww) matmul(gpu, scratch, hw.view, dww.view, { M: width, N: D, K: rows }, { transA: true, alpha, offsetB: hw.base, offsetC: dww.base, accumulate: true });
    }
  }
}

// ---- generation --------------------------------------------------------------------------------

export interface LastLogitsDims {
  /** Sequences (rows of the result). */
  B: number;
  V: number;
  D: number;
  /** Rows of h when `rows` selects from it (default B: h is already [B, D]). */
  N?: number;
}

export interface LastLogitsOptions {
  /** u32 [B]: the row of h to take for each sequence (e.g. b·T + len_b − 1 after a prefill). Without it h is [B, D]. */
  rows?: Tensor;
  /** f32 [B, D] scratch for the selected rows (required with `rows`). */
  gathered?: Tensor;
  /** f32 [B, vocabSlice] scratch for one slice of logits (required when V spans several slices). */
  sliceScratch?: Tensor;
  vocabSlice?: number;
  /**
   * h is the residual stream and the product takes its RMSNorm (matmul's normA): only with one row per sequence and the
   * vocabulary in one slice.
   */
  normA?: MatmulOptions["normA"];
}

/** Scratch lastLogits needs (f32 elements; 0 = not needed): `gathered` with `rows`, `sliceScratch` when V spans several slices. */
export function lastLogitsScratch(dims: LastLogitsDims, opts: { rows?: boolean; vocabSlice?: number } = {}): { gathered: number; sliceScratch: number } {
  const plan = logprobsPlan({ N: dims.B, V: dims.V, D: dims.D }, { vocabSlice: opts.vocabSlice });
  return { gathered: opts.rows ? dims.B * dims.D : 0, sliceScratch: plan.slices > 1 ? dims.B * plan.vocabSlice : 0 };
}

/**
 * Logits of one row per sequence, out [B, V] = h[rows] · Wᵀ, for the sampler. W is read in vocabulary
 * slices; with one slice the matmul writes `out` directly, otherwise each slice goes through
 * `sliceScratch` and is copied into its columns of `out`.
 */
export function lastLogits(gpu: Gpu, h: Tensor, W: Tensor, out: Tensor, dims: LastLogitsDims, opts: LastLogitsOptions = {}): void {
  const { B, V, D } = dims;
  const N = dims.N ?? B;
  const plan = logprobsPlan({ N: B, V, D }, { vocabSlice: opts.vocabSlice });
  const need = lastLogitsScratch(dims, { rows: !!opts.rows, vocabSlice: opts.vocabSlice });
  needElements("h", h, N * D);
  needElements("W", W, V * D);
  needElements("out", out, B * V);
  checkBinding(gpu, "a W slice", plan.vocabSlice * D + ALIGN_SLACK_BYTES / 4);
  let x = h;
  if (opts.rows) {
    needElements("rows", opts.rows, B);
    if (!opts.gathered) throw new Error("lastLogits: `rows` needs a `gathered` scratch tensor of B·D elements");
    needElements("gathered", opts.gathered, need.gathered);
    checkBinding(gpu, "h", N * D);
    x = opts.gathered;
    gpu.dispatch({
      kernel: GATHER,
      params: new Params().u32(B, D, 0, 0, 0).bytes(),
      bindings: [h, opts.rows, x],
      workgroups: [Math.ceil(D / 64), B],
    });
  }
  if (opts.normA && (opts.rows || plan.slices !== 1)) throw new Error("lastLogits: normA needs one row per sequence and the vocabulary in one slice");
  if (plan.slices === 1) {
    checkBinding(gpu, "out", B * V);
    matmul(gpu, x, W, out, { M: B, N: V, K: D }, { transB: true, normA: opts.normA });
    return;
  }
  const block = opts.sliceScratch;
  if (!block) throw new Error(`lastLogits: V = ${V} spans ${plan.slices} slices and needs a \`sliceScratch\` tensor of ${need.sliceScratch} elements`);
  needElements("sliceScratch", block, need.sliceScratch);
  for (let v0 = 0; v0 < V; v0 += plan.vocabSlice) {
    const width = Math.min(plan.vocabSlice, V - v0);
    const ww = bindWindow(gpu, W, v0 * D, width * D);
    matmul(gpu, x, ww.view, block, { M: B, N: width, K: D }, { transB: true, offsetB: ww.base });
    const ow = bindWindow(gpu, out, v0, (B - 1) * V + width);
    gpu.dispatch({
      kernel: SCATTER,
      params: new Params().u32(B, width, V, 0, ow.base).bytes(),
      bindings: [block, ow.view],
      workgroups: [Math.ceil(width / 64), B],
    });
  }
}
