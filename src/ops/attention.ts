/**
 * Causal grouped-query attention on the GPU, for training, prefill into a KV cache, and decode.
 *
 *   q [B, Tq, Hq, hd]   k, v [B, Tk, Hkv, hd]   out [B, Tq, Hq, hd]   lse [B, Hq, Tq]
 *   qStart [B] (u32): absolute position of query row t = 0 of each sequence
 *   kvLen [B] (u32): number of valid keys of each sequence (≤ Tk)
 *
 * Query row t of sequence b (position qStart[b] + t) attends keys j ≤ position with j < kvLen[b]; a
 * row whose position is ≥ kvLen[b] is padding: output 0, lse 0, and no gradient in or out. Query
 * head h uses kv head h / (Hq / Hkv); scale is 1/√hd.
 *   training   Tq = Tk = T, qStart = 0, kvLen = valid length
 *   prefill    q are the new rows, k/v the cache (Tk = capacity) already holding them; qStart = first new position
 *   decode     Tq = 1, qStart = current position, kvLen = qStart + 1
 * Forward and backward use an online softmax and never hold a T×T matrix.
 */
import { RecallError } from "../errors.ts";
import { Params, type Gpu, type Kernel } from "../gpu/runtime.ts";
import { subgroupKernelsSupported, subgroupSources } from "../gpu/shaders.ts";
import { Tensor, shapeString } from "../gpu/tensor.ts";

const SOURCES = subgroupSources("attention");
const PORTABLE = { name: "attention-portable", code: SOURCES.portable };
const SUBGROUP = { name: "attention-subgroups", code: SOURCES.subgroup };
const FWD_STORAGE = ["read", "read", "read", "read", "read", "read_write", "read_write"] as const;
const DQ_STORAGE = ["read", "read", "read", "read", "read", "read_write"] as const;
const FWD: Kernel = { shader: PORTABLE, entry: "attn_fwd", storage: FWD_STORAGE, uniforms: true };
const PREP: Kernel = { shader: PORTABLE, entry: "attn_bwd_prep", storage: DQ_STORAGE, uniforms: true };
const DQ: Kernel = { shader: PORTABLE, entry: "attn_bwd_dq", storage: DQ_STORAGE, uniforms: true };
const DKV: Kernel = { shader: PORTABLE, entry: "attn_bwd_dkv", storage: FWD_STORAGE, uniforms: true };
const FWD_ROWS: Kernel = { shader: SUBGROUP, entry: "attn_fwd_rows_sg", storage: FWD_STORAGE, uniforms: true };
const FWD_DIMS: Kernel = { shader: SUBGROUP, entry: "attn_fwd_dims_sg", storage: FWD_STORAGE, uniforms: true };
const FWD_SG: Kernel = { shader: SUBGROUP, entry: "attn_fwd_sg", storage: FWD_STORAGE, uniforms: true };
const DQ_SG: Kernel = { shader: SUBGROUP, entry: "attn_bwd_dq_sg", storage: DQ_STORAGE, uniforms: true };
const DKV_SG: Kernel = { shader: SUBGROUP, entry: "attn_bwd_dkv_sg", storage: FWD_STORAGE, uniforms: true };

/** The largest head dimension the kernels hold in registers (shaders/attention.wgsl: GB·hd and KB·hd ≤ BLOCK = 512). */
export const ATTENTION_MAX_HEAD_DIM = 256;
const BLOCK = 512;
const MAX_GB = 8;
/** attn_fwd_dims_sg's per-lane register arrays: GB·ceil(hd/32) vec4 (DIMS_MAX in shaders/attention.wgsl). */
const DIMS_MAX = 16;
const KB_WANTED = 4;

export interface AttentionDims {
  B: number;
  Tq: number;
  Tk: number;
  Hq: number;
  Hkv: number;
  hd: number;
}

/**
 * Which kernels run: `subgroup` (shaders/attention.wgsl below its SUBGROUP line: one row per lane, the other side
 * shared through subgroup broadcasts) where the adapter has subgroups of ≥ 8 lanes, the head dimension is a multiple
 * of 4 up to 128 and the pass has at least a subgroup's worth of rows (prefill, training). For fewer rows (decode,
 * short prefills), with subgroups and a head dimension that is a multiple of 4 up to 256, a subgroup of 8 lanes per
 * query row: `dims` (attn_fwd_dims_sg: the lanes split the head dimension) from a head dimension of 64, `rows`
 * (attn_fwd_rows_sg: the lanes split the keys) below it. Both are forward only; the backward of such a pass runs the
 * portable kernels. Otherwise `portable`. All compute the same contract; results agree to rounding.
 */
export type AttentionKernel = "portable" | "subgroup" | "rows" | "dims";

const SG_ROWS = 64;
const SG_MAX_HEAD_DIM = 128;
const SG_MIN_ROWS = 8;

function subgroupFits(d: AttentionDims): boolean {
  return d.hd % 4 === 0 && d.hd <= SG_MAX_HEAD_DIM && d.Tq >= SG_MIN_ROWS;
}

function rowsFit(gpu: Gpu, d: Pick<AttentionDims, "hd">): boolean {
  return subgroupKernelsSupported(gpu) && d.hd % 4 === 0 && d.hd <= ATTENTION_MAX_HEAD_DIM;
}

/**
 * Fewest keys for which a software adapter runs the rows kernel: on lavapipe it beat the portable kernel from ~70 keys
 * (decode, alternated in one process: 1.48× at 150 keys with hd 16, 1.64× with the small preset's heads, 1.19× at 40
 * keys with them) and lost below (0.91× at 60 keys, 0.62× at 8, hd 16). A GPU always runs it: the portable kernel gives
 * a decode step one invocation per sequence and kv head, walking every key.
 */
const ROWS_MIN_KEYS_SOFTWARE = 64;

/**
 * Smallest head dimension the dims kernel takes: from 64 every lane owns at least two vec4 columns of each head. Below
 * it lanes sit idle (hd 16: half of them) and the rows kernel, whose per-lane rows are then short, was as fast or
 * faster on lavapipe (bench/attention.ts); from 64 the dims kernel was faster at every key count measured, by the most
 * where a block of query heads is long (GB·hd, the rows kernel's per-lane arrays).
 */
const DIMS_MIN_HEAD_DIM = 64;

/** `keys`: the most keys a row attends, when the caller knows it (else the dims' Tk). */
export function chooseAttentionKernel(gpu: Gpu, d: AttentionDims, keys = d.Tk): AttentionKernel {
  if (subgroupKernelsSupported(gpu) && subgroupFits(d)) return "subgroup";
  if (!rowsFit(gpu, d)) return "portable";
  if (d.hd >= DIMS_MIN_HEAD_DIM) return "dims";
  return !gpu.handle.info.software || keys >= ROWS_MIN_KEYS_SOFTWARE ? "rows" : "portable";
}

function kernelFor(gpu: Gpu, d: AttentionDims, forced: AttentionKernel | undefined, keys?: number): AttentionKernel {
  if (forced === "subgroup" && !(subgroupKernelsSupported(gpu) && d.hd % 4 === 0 && d.hd <= SG_MAX_HEAD_DIM)) {
    throw new Error(`attention: the subgroup kernels need subgroups of ≥ 8 lanes and a head dimension that is a multiple of 4 up to ${SG_MAX_HEAD_DIM}`);
  }
  if ((forced === "rows" || forced === "dims") && !rowsFit(gpu, d)) {
    throw new Error(`attention: the ${forced} kernel needs subgroups and a head dimension that is a multiple of 4 up to ${ATTENTION_MAX_HEAD_DIM}`);
  }
  return forced ?? chooseAttentionKernel(gpu, d, keys);
}

/**
 * The head dimension as a pipeline constant (HEAD_DIM in shaders/attention.wgsl), so the kernels' loops over a row
 * unroll. Measured on lavapipe (ad hoc, alternated in one process, bit-identical results): subgroup forward + backward
 * 1.33× at hd 16 (the demo's model), 1.05–1.07× at hd 64; the portable forward (decode) 1.46× at the small preset's
 * shape, 2.1× at hd 16, even at 14 heads.
 */
function headDimConstant(d: AttentionDims): { HEAD_DIM: number } {
  return { HEAD_DIM: d.hd };
}

/** Workgroups of 64 rows over (sequence, head, tile), as a 2-D grid. */
function tileGrid(gpu: Gpu, rows: number, pairs: number): { x: number; y: number } {
  return grid(gpu, Math.ceil(rows / SG_ROWS) * pairs, 1);
}

/** How the kernels block work per invocation, for these sizes. */
export interface AttentionBlocking {
  /** Query heads (of one kv head) per invocation in the forward and dQ kernels. */
  gb: number;
  /** Keys per invocation in the dK/dV kernel. */
  kb: number;
  /** Workgroup size: 64, or 8 when there are too few invocations to keep several CPU threads busy. */
  wgs: number;
}

export function attentionBlocking(d: AttentionDims): AttentionBlocking {
  const group = d.Hq / d.Hkv;
  const cap = Math.floor(BLOCK / d.hd);
  // With very few (sequence, token, kv head) triples (decode of one sequence), one head per lane keeps more lanes busy.
  const gb = d.B * d.Tq * d.Hkv < 16 ? 1 : Math.max(1, Math.min(group, MAX_GB, cap));
  const kb = Math.max(1, Math.min(KB_WANTED, cap));
  const lanes = Math.min(d.B * d.Tq * d.Hkv * Math.ceil(group / gb), d.B * Math.ceil(d.Tk / kb) * d.Hkv);
  return { gb, kb, wgs: lanes >= 64 * 16 ? 64 : 8 };
}

function check(gpu: Gpu, d: AttentionDims, named: Record<string, [Tensor, number]>): void {
  const { Hq, Hkv, hd } = d;
  for (const [k, v] of Object.entries(d)) {
    if (!Number.isInteger(v) || v < 1) throw new RecallError(`attention: ${k} must be a positive integer, got ${v}`);
  }
  if (Hq % Hkv !== 0) throw new RecallError(`attention: ${Hq} query heads are not a multiple of ${Hkv} key/value heads`);
  if (hd > ATTENTION_MAX_HEAD_DIM) throw new RecallError(`attention: head dimension ${hd} exceeds the supported ${ATTENTION_MAX_HEAD_DIM}`);
  const maxBinding = gpu.limits.maxStorageBufferBindingSize;
  for (const [name, [t, numel]] of Object.entries(named)) {
    if (t.numel < numel) throw new Error(`attention: ${name} ${shapeString(t.shape)} holds ${t.numel} elements, needs ${numel}`);
    if (numel * 4 > maxBinding) {
      throw new RecallError(`attention: ${name} needs ${numel * 4} bytes in one binding, over this adapter's maxStorageBufferBindingSize ${maxBinding}; use a smaller batch or cache`);
    }
  }
}

function grid(gpu: Gpu, invocations: number, wgs: number): { x: number; y: number } {
  const groups = Math.ceil(invocations / wgs);
  const x = Math.min(groups, gpu.limits.maxComputeWorkgroupsPerDimension);
  return { x, y: Math.ceil(groups / x) };
}

function params(d: AttentionDims, gridX: number, gb = 1): ArrayBuffer {
  const headBlocks = Math.ceil(d.Hq / d.Hkv / gb);
  return new Params().u32(d.B, d.Tq, d.Tk, d.Hq, d.Hkv, gridX, d.hd, headBlocks).f32(1 / Math.sqrt(d.hd)).bytes();
}

/**
 * Query heads per workgroup of the rows and dims kernels (GB): the whole group of a kv head when it fits their per-lane
 * arrays — GB·hd ≤ BLOCK values of q and of the output per lane (rows), GB·ceil(hd/32) ≤ DIMS_MAX vec4 (dims).
 */
export function queryHeadsPerBlock(d: Pick<AttentionDims, "Hq" | "Hkv" | "hd">, kernel: "rows" | "dims"): number {
  const fit = kernel === "dims" ? Math.floor(DIMS_MAX / Math.ceil(d.hd / 32)) : Math.floor(BLOCK / d.hd);
  return Math.max(1, Math.min(d.Hq / d.Hkv, MAX_GB, fit));
}

/** Forward: writes out [B, Tq, Hq, hd] and lse [B, Hq, Tq] (log-sum-exp of each row's scaled scores, saved for the backward). */
export function attention(
  gpu: Gpu,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  qStart: Tensor,
  kvLen: Tensor,
  out: Tensor,
  lse: Tensor,
  dims: AttentionDims,
  o: { kernel?: AttentionKernel; keys?: number } = {},
): void {
  const { B, Tq, Tk, Hq, Hkv, hd } = dims;
  check(gpu, dims, {
    q: [q, B * Tq * Hq * hd], k: [k, B * Tk * Hkv * hd], v: [v, B * Tk * Hkv * hd],
    qStart: [qStart, B], kvLen: [kvLen, B], out: [out, B * Tq * Hq * hd], lse: [lse, B * Hq * Tq],
  });
  const kernel = kernelFor(gpu, dims, o.kernel, o.keys);
  if (kernel === "subgroup") {
    const sg = tileGrid(gpu, Tq, B * Hq);
    gpu.dispatch({ kernel: FWD_SG, constants: headDimConstant(dims), params: params(dims, sg.x), bindings: [q, k, v, qStart, kvLen, out, lse], workgroups: [sg.x, sg.y] });
    return;
  }
  if (kernel === "rows" || kernel === "dims") {
    // A workgroup per (row, kv head, block of its query heads): every query head of a kv head in one block when they fit.
    const gb = queryHeadsPerBlock(dims, kernel);
    const w = grid(gpu, B * Tq * Hkv * Math.ceil(Hq / Hkv / gb), 1);
    gpu.dispatch({
      kernel: kernel === "dims" ? FWD_DIMS : FWD_ROWS,
      constants: { GB: gb, ...headDimConstant(dims) },
      params: params(dims, w.x, gb),
      bindings: [q, k, v, qStart, kvLen, out, lse],
      workgroups: [w.x, w.y],
    });
    return;
  }
  const bl = attentionBlocking(dims);
  const g = grid(gpu, B * Tq * Hkv * Math.ceil(Hq / Hkv / bl.gb), bl.wgs);
  gpu.dispatch({
    kernel: FWD,
    constants: { GB: bl.gb, WGS: bl.wgs, ...headDimConstant(dims) },
    params: params(dims, g.x, bl.gb),
    bindings: [q, k, v, qStart, kvLen, out, lse],
    workgroups: [g.x, g.y],
  });
}

/** Elements (u32) of the work tensor attentionBackward needs: lse and delta per query row, plus the windows. */
export function attentionBackwardWorkElements(d: Pick<AttentionDims, "B" | "Tq" | "Hq">): number {
  return 2 * d.B * d.Tq * d.Hq + 2 * d.B;
}

/**
 * Backward: from dout [B, Tq, Hq, hd] and the forward's out and lse, writes dq [B, Tq, Hq, hd] and
 * dk, dv [B, Tk, Hkv, hd] (each kv head's gradient summed over its query heads; keys ≥ kvLen and
 * padding query rows get 0). Gradients are written, not accumulated. `work` is a u32 scratch tensor
 * of attentionBackwardWorkElements(dims) elements. Three dispatches.
 */
export function attentionBackward(
  gpu: Gpu,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  qStart: Tensor,
  kvLen: Tensor,
  out: Tensor,
  lse: Tensor,
  dout: Tensor,
  dq: Tensor,
  dk: Tensor,
  dv: Tensor,
  work: Tensor,
  dims: AttentionDims,
  o: { kernel?: AttentionKernel } = {},
): void {
  const { B, Tq, Tk, Hq, Hkv, hd } = dims;
  const qn = B * Tq * Hq * hd, kn = B * Tk * Hkv * hd;
  check(gpu, dims, {
    q: [q, qn], k: [k, kn], v: [v, kn], qStart: [qStart, B], kvLen: [kvLen, B], out: [out, qn], lse: [lse, B * Hq * Tq],
    dout: [dout, qn], dq: [dq, qn], dk: [dk, kn], dv: [dv, kn], work: [work, attentionBackwardWorkElements(dims)],
  });
  const gp = grid(gpu, B * Tq * Hq, 64);
  gpu.dispatch({ kernel: PREP, constants: { WGS: 64 }, params: params(dims, gp.x), bindings: [out, dout, lse, qStart, kvLen, work], workgroups: [gp.x, gp.y] });
  if (kernelFor(gpu, dims, o.kernel) === "subgroup") {
    // (A pass whose forward ran the rows or dims kernel, forward only, takes the portable backward below.)
    const sq = tileGrid(gpu, Tq, B * Hq), sk = tileGrid(gpu, Tk, B * Hkv);
    gpu.dispatch({ kernel: DQ_SG, constants: headDimConstant(dims), params: params(dims, sq.x), bindings: [q, k, v, dout, work, dq], workgroups: [sq.x, sq.y] });
    gpu.dispatch({ kernel: DKV_SG, constants: headDimConstant(dims), params: params(dims, sk.x), bindings: [q, k, v, dout, work, dk, dv], workgroups: [sk.x, sk.y] });
    return;
  }
  const bl = attentionBlocking(dims);
  const gq = grid(gpu, B * Tq * Hkv * Math.ceil(Hq / Hkv / bl.gb), bl.wgs);
  const gk = grid(gpu, B * Math.ceil(Tk / bl.kb) * Hkv, bl.wgs);
  gpu.dispatch({ kernel: DQ, constants: { GB: bl.gb, WGS: bl.wgs }, params: params(dims, gq.x, bl.gb), bindings: [q, k, v, dout, work, dq], workgroups: [gq.x, gq.y] });
  gpu.dispatch({ kernel: DKV, constants: { KB: bl.kb, WGS: bl.wgs }, params: params(dims, gk.x), bindings: [q, k, v, dout, work, dk, dv], workgroups: [gk.x, gk.y] });
}
