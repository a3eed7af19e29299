/**
 * The q/k/v epilogue of a generation step in one dispatch (shaders/rope_append.wgsl): the step's q gets Qwen3's
 * per-head q_norm (when given) and RoPE into `qOut`; its k gets k_norm and RoPE and, with v, goes straight into
 * the KV cache. Row b·T + t has position qStart[b] + t; rows at or past kvLen[b] (padding) append nothing.
 *
 * What it replaces on that path: the q/k norms, `rope` and `kvAppend` (up to four dispatches), and the separate
 * q, k, v tensors (it reads the three as column ranges of one buffer, e.g. one fused projection's output).
 */
import { RecallError } from "../errors.ts";
import { Params, type Gpu, type Kernel } from "../gpu/runtime.ts";
import { shapeString, type Tensor } from "../gpu/tensor.ts";
import { workgroupGrid } from "./launch.ts";

const WG = 64;
const KERNEL: Kernel = {
  shader: "rope_append",
  entry: "rope_append",
  storage: ["read", "read", "read", "read", "read", "read_write", "read_write", "read_write"],
  uniforms: true,
};

export interface RopeAppendDims {
  /** Sequences, and rows per sequence in this step. */
  B: number;
  T: number;
  Hq: number;
  Hkv: number;
  hd: number;
  /** Positions each sequence's cache holds. */
  Tmax: number;
}

/** Where q, k or v of row r starts in the source buffer: element offset + r · stride. */
export interface ColumnRange {
  offset: number;
  stride: number;
}

export interface RopeAppendLayout {
  q: ColumnRange;
  k: ColumnRange;
  v: ColumnRange;
}

export interface RopeAppendNorm {
  /** q_norm's hd weights from element `q`, k_norm's from element `k`. */
  weight: Tensor;
  q: number;
  k: number;
  eps: number;
}

/**
 * qkv: f32 source of the three ranges; invFreq f32 [hd/2]; qStart, kvLen u32 [B]; qOut f32 [B·T, Hq·hd];
 * kCache, vCache f32 [B, Tmax, Hkv·hd].
 */
export function ropeAppend(
  gpu: Gpu,
  qkv: Tensor,
  layout: RopeAppendLayout,
  invFreq: Tensor,
  qStart: Tensor,
  kvLen: Tensor,
  qOut: Tensor,
  kCache: Tensor,
  vCache: Tensor,
  dims: RopeAppendDims,
  norm?: RopeAppendNorm,
): void {
  const { B, T, Hq, Hkv, hd, Tmax } = dims;
  const rows = B * T;
  if (hd % 2 !== 0) throw new Error(`ropeAppend: head_dim ${hd} must be even`);
  const last = (r: ColumnRange, H: number) => r.offset + (rows - 1) * r.stride + H * hd;
  for (const [name, r, H] of [["q", layout.q, Hq], ["k", layout.k, Hkv], ["v", layout.v, Hkv]] as const) {
    if (r.stride < H * hd && rows > 1) throw new Error(`ropeAppend: ${name} row stride ${r.stride} is shorter than its ${H * hd} columns`);
    if (last(r, H) > qkv.numel) throw new Error(`ropeAppend: source ${shapeString(qkv.shape)} too small for ${name} (offset ${r.offset}, stride ${r.stride}, ${rows} rows)`);
  }
  if (qOut.numel < rows * Hq * hd) throw new Error(`ropeAppend: qOut ${shapeString(qOut.shape)} smaller than ${rows} × ${Hq * hd}`);
  if (kCache.numel < B * Tmax * Hkv * hd || vCache.numel < B * Tmax * Hkv * hd) throw new Error(`ropeAppend: caches need ${B * Tmax * Hkv * hd} elements`);
  if (qStart.dtype !== "u32" || kvLen.dtype !== "u32" || qStart.numel < B || kvLen.numel < B) throw new Error(`ropeAppend: qStart and kvLen must be u32 with ${B} entries`);
  if (invFreq.numel < hd / 2) throw new Error(`ropeAppend: invFreq ${shapeString(invFreq.shape)} shorter than head_dim/2 = ${hd / 2}`);
  if (norm && (norm.weight.numel < norm.q + hd || norm.weight.numel < norm.k + hd)) throw new Error(`ropeAppend: norm weights ${shapeString(norm.weight.shape)} too short`);
  if (B * Tmax * Hkv * hd * 4 > gpu.limits.maxStorageBufferBindingSize) {
    throw new RecallError(`KV cache of ${B} sequences × ${Tmax} tokens × ${Hkv * hd} needs more than one storage binding (${gpu.limits.maxStorageBufferBindingSize} bytes); lower the batch size or the maximum length`);
  }
  gpu.dispatch({
    kernel: KERNEL,
    constants: { NORM: !!norm },
    params: new Params()
      .u32(B, T, Hq, Hkv, hd, Tmax, layout.q.offset, layout.q.stride, layout.k.offset, layout.k.stride, layout.v.offset, layout.v.stride, norm?.q ?? 0, norm?.k ?? 0)
      .f32(norm?.eps ?? 0)
      .u32(0)
      .bytes(),
    bindings: [qkv, invFreq, qStart, kvLen, norm?.weight ?? invFreq, qOut, kCache, vCache],
    workgroups: workgroupGrid(gpu, Math.ceil((rows * (Hq + 2 * Hkv)) / WG)),
  });
}
