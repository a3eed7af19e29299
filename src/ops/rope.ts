/**
 * Rotary position embedding on the GPU (Hugging Face rotate_half layout), applied IN PLACE to the
 * q and k projection outputs: q [rows, Hq·hd], k [rows, Hkv·hd], row r rotated by positions[r].
 *   forward   rope(q, k, positions, invFreq, dims)
 *   backward  rope(dq, dk, positions, invFreq, dims, { inverse: true })   (rotation by −angle)
 * One dispatch rotates both tensors; k may be null (then Hkv is ignored).
 */
import { Params, type Gpu, type Kernel } from "../gpu/runtime.ts";
import { Tensor, shapeString } from "../gpu/tensor.ts";
import { bindWindow, chunksFitting, workgroupGrid, type WindowOptions } from "./launch.ts";

const WG = 64;
const ROPE_QK: Kernel = { shader: "rope", entry: "rope_qk", storage: ["read_write", "read", "read", "read_write"], uniforms: true };
const ROPE_X: Kernel = { shader: "rope", entry: "rope_x", storage: ["read_write", "read", "read"], uniforms: true };

/**
 * inv_freq[i] = 1 / theta^(2i/hd) for i < hd/2, rounded to f32 at each step the way transformers'
 * default rotary init computes it in float32.
 */
export function ropeInvFreq(theta: number, headDim: number): Float32Array {
  if (headDim % 2 !== 0) throw new Error(`ropeInvFreq: head_dim ${headDim} must be even`);
  const out = new Float32Array(headDim / 2);
  for (let i = 0; i < headDim / 2; i++) {
    const e = Math.fround((2 * i) / headDim);
    out[i] = Math.fround(1 / Math.fround(Math.pow(theta, e)));
  }
  return out;
}

export interface RopeDims {
  rows: number;
  Hq: number;
  Hkv: number;
  headDim: number;
}

export interface RopeOptions extends WindowOptions {
  /** Rotate by the negative angle: the backward (gradients dq, dk in place). */
  inverse?: boolean;
}

/** Rotates q (and k) in place. positions is u32 [rows]; invFreq is f32 [headDim/2] (see ropeInvFreq). */
export function rope(gpu: Gpu, q: Tensor, k: Tensor | null, positions: Tensor, invFreq: Tensor, dims: RopeDims, o: RopeOptions = {}): void {
  const { rows, Hq, headDim: hd } = dims;
  const Hkv = k ? dims.Hkv : 0;
  if (hd % 2 !== 0) throw new Error(`rope: head_dim ${hd} must be even`);
  if (q.numel < rows * Hq * hd) throw new Error(`rope: q ${shapeString(q.shape)} smaller than rows=${rows} × Hq=${Hq} × hd=${hd}`);
  if (k && k.numel < rows * Hkv * hd) throw new Error(`rope: k ${shapeString(k.shape)} smaller than rows=${rows} × Hkv=${Hkv} × hd=${hd}`);
  if (positions.dtype !== "u32" || positions.numel < rows) throw new Error(`rope: positions must be u32 with ${rows} entries`);
  if (invFreq.numel < hd / 2) throw new Error(`rope: invFreq ${shapeString(invFreq.shape)} shorter than head_dim/2 = ${hd / 2}`);
  if (k && k.buffer === q.buffer) throw new Error("rope: q and k must be different buffers (both are written in place)");
  const wi = bindWindow(gpu, invFreq, 0, hd / 2);
  for (const [r0, rc] of chunksFitting(gpu, rows, [Hq * hd, Hkv * hd, 1], o)) {
    const wq = bindWindow(gpu, q, r0 * Hq * hd, rc * Hq * hd);
    const wp = bindWindow(gpu, positions, r0, rc);
    const wk = k ? bindWindow(gpu, k, r0 * Hkv * hd, rc * Hkv * hd) : null;
    gpu.dispatch({
      kernel: wk ? ROPE_QK : ROPE_X,
      params: new Params()
        .u32(rc, Hq, Hkv, hd, wq.base, wk?.base ?? 0, wp.base, wi.base)
        .f32(o.inverse ? -1 : 1)
        .bytes(),
      bindings: wk ? [wq.view, wp.view, wi.view, wk.view] : [wq.view, wp.view, wi.view],
      workgroups: workgroupGrid(gpu, Math.ceil((rc * hd) / 2 / WG)),
    });
  }
}
