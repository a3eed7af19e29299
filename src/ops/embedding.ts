/**
 * Token embedding on the GPU: out[n] = table[ids[n]] (table [V, D], ids u32 [N], out [N, D]) and
 * its backward dTable[v] += Σ_{n: ids[n] = v} dOut[n], deterministic (each row's sum runs in
 * increasing n; no float atomics). Ids ≥ V mark padding: zero rows forward, no gradient backward.
 * Tables bigger than one storage binding are bound in vocab slices (one dispatch per slice).
 */
import { Params, type Gpu, type Kernel } from "../gpu/runtime.ts";
import { Tensor, shapeString } from "../gpu/tensor.ts";
import { bindWindow, chunksFitting, workgroupGrid, type WindowOptions } from "./launch.ts";

const WG = 64;
const FORWARD: Kernel = { shader: "embedding", entry: "embedding_forward", storage: ["read", "read", "read_write"], uniforms: true };
const COUNT: Kernel = { shader: "embedding", entry: "embedding_count", storage: ["read", "read_write"], uniforms: true };
const ALLOC: Kernel = { shader: "embedding", entry: "embedding_alloc", storage: ["read", "read_write"], uniforms: true };
const FILL: Kernel = { shader: "embedding", entry: "embedding_fill", storage: ["read", "read_write"], uniforms: true };
const RANK: Kernel = { shader: "embedding", entry: "embedding_rank", storage: ["read", "read_write"], uniforms: true };
const SCATTER: Kernel = { shader: "embedding", entry: "embedding_scatter", storage: ["read", "read", "read", "read_write"], uniforms: true };

export interface EmbeddingDims {
  /** Number of tokens. */
  N: number;
  /** Vocabulary rows of the table. */
  V: number;
  /** Embedding width. */
  D: number;
}

function check(op: string, ids: Tensor, table: Tensor, other: Tensor, { N, V, D }: EmbeddingDims) {
  if (ids.dtype !== "u32" || ids.numel < N) throw new Error(`${op}: ids must be u32 with at least ${N} entries, got ${ids.dtype} ${shapeString(ids.shape)}`);
  if (table.numel < V * D) throw new Error(`${op}: table ${shapeString(table.shape)} smaller than V=${V} × D=${D}`);
  if (other.numel < N * D) throw new Error(`${op}: ${shapeString(other.shape)} smaller than N=${N} × D=${D}`);
}

// Params: N, D, V, vStart, vCount, baseIds, baseTable, baseOut, tStart, tCount, zeroPadding.
function params(d: EmbeddingDims, v: [number, number], bases: [number, number, number], t: [number, number], zeroPadding: boolean) {
  return new Params()
    .u32(d.N, d.D, d.V, v[0], v[1], ...bases, t[0], t[1], zeroPadding ? 1 : 0, 0)
    .bytes();
}

/** out[n, :] = table[ids[n], :]; a zero row where ids[n] ≥ V. */
export function embedding(gpu: Gpu, ids: Tensor, table: Tensor, out: Tensor, dims: EmbeddingDims, o: WindowOptions = {}): void {
  const { N, V, D } = dims;
  check("embedding", ids, table, out, dims);
  const wids = bindWindow(gpu, ids, 0, N);
  const slices = chunksFitting(gpu, V, [D], o);
  for (const [t0, tc] of chunksFitting(gpu, N, [D], o)) {
    const wout = bindWindow(gpu, out, t0 * D, tc * D);
    slices.forEach(([v0, vc], s) => {
      const wt = bindWindow(gpu, table, v0 * D, vc * D);
      gpu.dispatch({
        kernel: FORWARD,
        params: params(dims, [v0, vc], [wids.base, wt.base, wout.base], [t0, tc], s === 0),
        bindings: [wids.view, wt.view, wout.view],
        workgroups: workgroupGrid(gpu, tc),
      });
    });
  }
}

/** u32 words of scratch embeddingBackward needs: 4·V + 1 + 2·N. */
export function embeddingScratchSize(dims: { N: number; V: number }): number {
  return 4 * dims.V + 1 + 2 * dims.N;
}

/**
 * dTable[v, :] += Σ_{n: ids[n] = v} dOut[n, :] in increasing n. `scratch` is a u32 tensor of at
 * least embeddingScratchSize(dims) words (its contents are overwritten; the op records a clear of it).
 */
export function embeddingBackward(gpu: Gpu, ids: Tensor, dOut: Tensor, dTable: Tensor, scratch: Tensor, dims: EmbeddingDims, o: WindowOptions = {}): void {
  const { N, V, D } = dims;
  check("embeddingBackward", ids, dTable, dOut, dims);
  const words = embeddingScratchSize(dims);
  if (scratch.dtype !== "u32" || scratch.numel < words) {
    throw new Error(`embeddingBackward: scratch must be u32 with at least ${words} words, got ${scratch.dtype} ${shapeString(scratch.shape)}`);
  }
  if (N === 0) return;
  const ws = bindWindow(gpu, scratch, 0, words);
  if (ws.base !== 0) throw new Error("embeddingBackward: scratch must start at an aligned offset");
  // count, first and the cursors start at zero (the segment arrays are fully rewritten).
  gpu.clear(new Tensor(scratch.buffer, [4 * V + 1], "u32", scratch.byteOffset));
  const wids = bindWindow(gpu, ids, 0, N);
  const perPosition = workgroupGrid(gpu, Math.ceil(N / WG));
  const setup = params(dims, [0, V], [wids.base, 0, 0], [0, N], false);
  for (const kernel of [COUNT, ALLOC, FILL, RANK]) {
    gpu.dispatch({ kernel, params: setup, bindings: [wids.view, ws.view], workgroups: perPosition });
  }
  const slices = chunksFitting(gpu, V, [D], o);
  for (const [t0, tc] of chunksFitting(gpu, N, [D], o)) {
    const wd = bindWindow(gpu, dOut, t0 * D, tc * D);
    for (const [v0, vc] of slices) {
      const wt = bindWindow(gpu, dTable, v0 * D, vc * D);
      gpu.dispatch({
        kernel: SCATTER,
        params: params(dims, [v0, vc], [wids.base, wt.base, wd.base], [t0, tc], false),
        bindings: [wids.view, ws.view, wd.view, wt.view],
        workgroups: workgroupGrid(gpu, N),
      });
    }
  }
}
