/**
 * RMSNorm on the GPU over [rows, D] (row-major, contiguous): y = x / sqrt(mean(x²) + eps) · w.
 * Qwen3's per-head q/k norm is the same op with rows = tokens × heads and D = head_dim.
 *   forward   rmsnorm(x, w, y, rinv)          y written; rinv[rows] = 1/rms saved for the backward
 *   backward  rmsnormBackward(dy, x, w, rinv, dx, dw)
 *             dx written (or accumulated with accumulateDx), dw ACCUMULATED (dw += …)
 * Rows are processed in binding windows when a [rows, D] operand exceeds one storage binding.
 */
import { Params, type Gpu, type Kernel } from "../gpu/runtime.ts";
import { Tensor, shapeString } from "../gpu/tensor.ts";
import { bindWindow, chunksFitting, workgroupGrid, type WindowOptions } from "./launch.ts";

const WG = 64;
const FORWARD: Kernel = { shader: "rmsnorm", entry: "rmsnorm_forward", storage: ["read", "read", "read_write", "read_write"], uniforms: true };
const FORWARD_NOSAVE: Kernel = { shader: "rmsnorm", entry: "rmsnorm_forward_nosave", storage: ["read", "read", "read_write"], uniforms: true };
const BACKWARD_DX: Kernel = {
  shader: "rmsnorm",
  entry: "rmsnorm_backward_dx",
  storage: ["read", "read", "read", "read", "read_write"],
  uniforms: true,
};
const BACKWARD_DW: Kernel = { shader: "rmsnorm", entry: "rmsnorm_backward_dw", storage: ["read", "read", "read", "read_write"], uniforms: true };
const SUM_CHUNKS: Kernel = { shader: "rmsnorm", entry: "rmsnorm_sum_chunks", storage: ["read", "read_write"], uniforms: true };

export interface RmsnormDims {
  rows: number;
  D: number;
}

function check(op: string, t: Tensor, n: number, what: string) {
  if (t.numel < n) throw new Error(`${op}: ${what} ${shapeString(t.shape)} is smaller than the ${n} elements needed`);
}

// Params: rows, D, eps, baseX, baseW, baseY, baseR, baseOut, chunkRows, chunks.
function params(rows: number, D: number, eps: number, b: { x?: number; w?: number; y?: number; r?: number; out?: number }, chunkRows = 0, chunks = 0) {
  return new Params()
    .u32(rows, D)
    .f32(eps)
    .u32(b.x ?? 0, b.w ?? 0, b.y ?? 0, b.r ?? 0, b.out ?? 0, chunkRows, chunks)
    .bytes();
}

export interface RmsnormOptions extends WindowOptions {
  eps: number;
}

/**
 * y = x·r·w with r = 1/sqrt(mean(x²) + eps) per row; r is saved in rinv[rows] when rinv is given
 * (pass null for inference). y must not alias x.
 */
export function rmsnorm(gpu: Gpu, x: Tensor, w: Tensor, y: Tensor, rinv: Tensor | null, dims: RmsnormDims, o: RmsnormOptions): void {
  const { rows, D } = dims;
  check("rmsnorm", x, rows * D, "x");
  check("rmsnorm", y, rows * D, "y");
  check("rmsnorm", w, D, "w");
  if (rinv) check("rmsnorm", rinv, rows, "rinv");
  const ww = bindWindow(gpu, w, 0, D);
  for (const [r0, rc] of chunksFitting(gpu, rows, [D, D, 1], o)) {
    const wx = bindWindow(gpu, x, r0 * D, rc * D);
    const wy = bindWindow(gpu, y, r0 * D, rc * D);
    const wr = rinv ? bindWindow(gpu, rinv, r0, rc) : null;
    gpu.dispatch({
      kernel: wr ? FORWARD : FORWARD_NOSAVE,
      params: params(rc, D, o.eps, { x: wx.base, w: ww.base, y: wy.base, r: wr?.base ?? 0 }),
      bindings: wr ? [wx.view, ww.view, wy.view, wr.view] : [wx.view, ww.view, wy.view],
      workgroups: workgroupGrid(gpu, Math.ceil(rc / WG)),
    });
  }
}

export interface RmsnormBackwardOptions extends WindowOptions {
  /** dx += result instead of dx = result (e.g. straight into the residual stream's gradient). */
  accumulateDx?: boolean;
  /**
   * Scratch of at least 2·D floats lets the dw reduction split the rows into chunks (more parallel
   * work; worth it on GPUs when rows ≫ D). Without it one invocation per column sums all rows.
   */
  dwScratch?: Tensor;
}

/**
 * dx = r·w⊙dy − x·r³/D·Σ(dy⊙w⊙x) per row (written, or accumulated with accumulateDx);
 * dw += Σ_rows dy⊙x·r. Pass dx or dw as null to skip that gradient. dx must not alias dy or x.
 */
export function rmsnormBackward(
  gpu: Gpu,
  dy: Tensor,
  x: Tensor,
  w: Tensor,
  rinv: Tensor,
  dx: Tensor | null,
  dw: Tensor | null,
  dims: RmsnormDims,
  o: RmsnormBackwardOptions = {},
): void {
  const { rows, D } = dims;
  check("rmsnormBackward", dy, rows * D, "dy");
  check("rmsnormBackward", x, rows * D, "x");
  check("rmsnormBackward", w, D, "w");
  check("rmsnormBackward", rinv, rows, "rinv");
  if (dx) check("rmsnormBackward", dx, rows * D, "dx");
  if (dw) check("rmsnormBackward", dw, D, "dw");
  const ww = bindWindow(gpu, w, 0, D);
  const wdw = dw ? bindWindow(gpu, dw, 0, D) : null;
  const maxChunks = o.dwScratch ? Math.min(Math.floor(o.dwScratch.numel / D), gpu.limits.maxComputeWorkgroupsPerDimension) : 1;
  for (const [r0, rc] of chunksFitting(gpu, rows, [D, D, D, 1], o)) {
    const wdy = bindWindow(gpu, dy, r0 * D, rc * D);
    const wx = bindWindow(gpu, x, r0 * D, rc * D);
    const wr = bindWindow(gpu, rinv, r0, rc);
    if (dx) {
      const wdx = bindWindow(gpu, dx, r0 * D, rc * D);
      gpu.dispatch({
        kernel: BACKWARD_DX,
        constants: { ACCUMULATE: !!o.accumulateDx },
        params: params(rc, D, 0, { x: wx.base, w: ww.base, y: wdy.base, r: wr.base, out: wdx.base }),
        bindings: [wdy.view, wx.view, ww.view, wr.view, wdx.view],
        workgroups: workgroupGrid(gpu, Math.ceil(rc / WG)),
      });
    }
    if (!dw || !wdw) continue;
    // Chunks of at least 64 rows; a single chunk goes straight into dw.
    const chunks = Math.max(1, Math.min(maxChunks, Math.floor(rc / 64)));
    const chunkRows = Math.ceil(rc / chunks);
    const bases = { x: wx.base, y: wdy.base, r: wr.base };
    if (chunks === 1 || !o.dwScratch) {
      gpu.dispatch({
        kernel: BACKWARD_DW,
        constants: { ACCUMULATE: true },
        params: params(rc, D, 0, { ...bases, out: wdw.base }, rc, 1),
        bindings: [wdy.view, wx.view, wr.view, wdw.view],
        workgroups: [Math.ceil(D / WG), 1],
      });
    } else {
      const ws = bindWindow(gpu, o.dwScratch, 0, chunks * D);
      gpu.dispatch({
        kernel: BACKWARD_DW,
        constants: { ACCUMULATE: false },
        params: params(rc, D, 0, { ...bases, out: ws.base }, chunkRows, chunks),
        bindings: [wdy.view, wx.view, wr.view, ws.view],
        workgroups: [Math.ceil(D / WG), chunks],
      });
      gpu.dispatch({
        kernel: SUM_CHUNKS,
        params: params(rc, D, 0, { x: ws.base, out: wdw.base }, chunkRows, chunks),
        bindings: [ws.view, wdw.view],
        workgroups: [Math.ceil(D / WG)],
      });
    }
  }
}
