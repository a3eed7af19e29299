/**
 * Rows gathered by index on the GPU, and the backward that sums them back (shaders/gather_rows.wgsl): a shared-prefix
 * pass (src/model/shared_prefix.ts) lays each sample's keys and values out as its prompt's rows then its own, and
 * sums the gathered rows' gradients into the rows they came from. Tensors are bound whole (the caller keeps them
 * within one binding). CPU reference: gather_rows.ref.ts.
 */
import { Params, type Gpu, type Kernel } from "../gpu/runtime.ts";
import { shapeString, type Tensor } from "../gpu/tensor.ts";
import { workgroupGrid } from "./launch.ts";

const GATHER: Kernel = { shader: "gather_rows", entry: "gather_rows", storage: ["read", "read", "read_write"], uniforms: true };
const BACKWARD: Kernel = { shader: "gather_rows", entry: "gather_rows_backward", storage: ["read", "read", "read_write"], uniforms: true };
const WG = 64;
const PER = 4;

export interface GatherRowsDims {
  /** Rows of the gathered tensor (gather) or of the destination (backward). */
  rows: number;
  /** Values per row. */
  width: number;
  /** Rows of the source (gather) or of the gathered tensor (backward). */
  srcRows: number;
}

function check(op: string, src: Tensor, dst: Tensor, d: GatherRowsDims): void {
  for (const [name, t, rows] of [["src", src, d.srcRows], ["dst", dst, d.rows]] as const) {
    if (t.dtype !== "f32" || t.numel < rows * d.width) throw new Error(`${op}: ${name} must be f32 with ${rows} × ${d.width} values, got ${t.dtype} ${shapeString(t.shape)}`);
  }
}

function dispatchRows(gpu: Gpu, kernel: Kernel, d: GatherRowsDims, accumulateRows: number, bindings: Tensor[]): void {
  if (d.rows === 0 || d.width === 0) return;
  const invocations = d.rows * Math.ceil(d.width / PER);
  gpu.dispatch({
    kernel,
    params: new Params().u32(d.rows, d.width, Math.max(1, d.srcRows), accumulateRows).bytes(),
    bindings,
    workgroups: workgroupGrid(gpu, Math.ceil(invocations / WG)),
  });
}

/** dst[r] = src[index[r]] (index u32 [rows]); a zero row where index[r] ≥ srcRows. Records GPU work only. */
export function gatherRows(gpu: Gpu, index: Tensor, src: Tensor, dst: Tensor, d: GatherRowsDims): void {
  if (index.dtype !== "u32" || index.numel < d.rows) throw new Error(`gatherRows: index must be u32 with ${d.rows} entries, got ${index.dtype} ${shapeString(index.shape)}`);
  check("gatherRows", src, dst, d);
  dispatchRows(gpu, GATHER, d, 0, [index, src, dst]);
}

/**
 * The lists gatherRowsBackward reads: row r of the destination sums the gathered rows sources[r] (in that order).
 * Host side; upload the result as u32.
 */
export function gatherRowsSegments(sources: readonly (readonly number[])[]): Uint32Array {
  const total = sources.reduce((n, l) => n + l.length, 0);
  const out = new Uint32Array(sources.length + 1 + total);
  let at = 0;
  sources.forEach((list, r) => {
    out[r] = at;
    for (const k of list) out[sources.length + 1 + at++] = k;
  });
  out[sources.length] = at;
  return out;
}

/**
 * dst[r] (+)= Σ src[k] for k in r's list (gatherRowsSegments), summed in list order: rows below `accumulateRows` add
 * the sum to what they hold, the others are overwritten with it (0 for an empty list). Records GPU work only.
 */
export function gatherRowsBackward(gpu: Gpu, segments: Tensor, src: Tensor, dst: Tensor, d: GatherRowsDims & { accumulateRows: number }): void {
  if (segments.dtype !== "u32" || segments.numel < d.rows + 1) throw new Error(`gatherRowsBackward: segments must be u32 from gatherRowsSegments, got ${segments.dtype} ${shapeString(segments.shape)}`);
  check("gatherRowsBackward", src, dst, d);
  dispatchRows(gpu, BACKWARD, d, d.accumulateRows, [segments, src, dst]);
}
