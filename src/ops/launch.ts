/**
 * Launch helpers shared by the elementwise, normalisation, embedding, RoPE, optimizer and sampling
 * kernels: binding windows for tensors bigger than one storage binding (128 MiB on lavapipe), and
 * workgroup grids for more workgroups than one grid dimension allows (65,535).
 *
 * A window binds [start, start + count) of a tensor: the bound view starts at the aligned offset at
 * or below `start` (minStorageBufferOffsetAlignment), and `base` is where `start` lies inside the
 * view, in elements. Kernels add `base` (passed in their Params) to every index.
 */
import type { Gpu } from "../gpu/runtime.ts";
import { Tensor, DTYPE_BYTES } from "../gpu/tensor.ts";

export interface BoundWindow {
  /** The view to bind (covers exactly base + count elements). */
  view: Tensor;
  /** Element index of the window's first element inside `view`. */
  base: number;
}

/** Tests pass a smaller limit to exercise slicing on small tensors. */
export interface WindowOptions {
  maxBindingBytes?: number;
}

export function maxBindingBytes(gpu: Gpu, o: WindowOptions = {}): number {
  return Math.min(gpu.limits.maxStorageBufferBindingSize, o.maxBindingBytes ?? Infinity);
}

/** Binds elements [start, start + count) of t. */
export function bindWindow(gpu: Gpu, t: Tensor, start: number, count: number): BoundWindow {
  if (start < 0 || count < 0 || start + count > t.numel) {
    throw new Error(`bindWindow: elements [${start}, ${start + count}) outside a tensor of ${t.numel}`);
  }
  const esize = DTYPE_BYTES[t.dtype];
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  const byteStart = t.byteOffset + start * esize;
  const viewOffset = Math.floor(byteStart / align) * align;
  const base = (byteStart - viewOffset) / esize;
  if (!Number.isInteger(base)) throw new Error(`bindWindow: tensor offset ${t.byteOffset} is not a multiple of its element size`);
  return { view: new Tensor(t.buffer, [Math.max(1, base + count)], t.dtype, viewOffset), base };
}

/**
 * Splits `total` items into consecutive chunks whose windows fit one binding: an item spans
 * `elemsPerItem[i]` elements of tensor i (for a row-wise op, the row length of each operand).
 */
export function chunksFitting(gpu: Gpu, total: number, elemsPerItem: readonly number[], o: WindowOptions = {}): [number, number][] {
  const limit = maxBindingBytes(gpu, o);
  // Leave room for the alignment slack a window may add in front of its first element.
  const slack = gpu.limits.minStorageBufferOffsetAlignment;
  let per = total;
  for (const e of elemsPerItem) {
    if (e > 0) per = Math.min(per, Math.floor((limit - slack) / (e * 4)));
  }
  if (per < 1) throw new Error(`chunksFitting: one item of ${Math.max(...elemsPerItem)} elements exceeds the ${limit}-byte binding limit`);
  const out: [number, number][] = [];
  for (let s = 0; s < total; s += per) out.push([s, Math.min(per, total - s)]);
  return out;
}

/**
 * A grid of `count` workgroups laid out over x and y so neither exceeds the per-dimension limit.
 * Kernels recover the linear workgroup id as `wid.x + wid.y * nwg.x` and skip ids ≥ count.
 */
export function workgroupGrid(gpu: Gpu, count: number): [number, number] {
  const max = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (count <= max) return [count, 1];
  const y = Math.ceil(count / max);
  return [Math.ceil(count / y), y];
}
