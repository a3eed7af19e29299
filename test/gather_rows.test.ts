/**
 * The row gather and its backward (src/ops/gather_rows.ts) against the CPU reference: odd widths and row counts,
 * indices past the source (zero rows), empty and repeated lists, rows that accumulate and rows that are overwritten,
 * tensors that start inside a buffer.
 */
import { beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import { Tensor } from "../src/gpu/tensor.ts";
import { gatherRows, gatherRowsBackward, gatherRowsSegments } from "../src/ops/gather_rows.ts";
import { gatherRowsBackwardRef, gatherRowsRef } from "../src/ops/gather_rows.ref.ts";
import { randn, rng } from "./harness.ts";

setDefaultTimeout(60_000);

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

/** A tensor of `values` placed 256 bytes into a larger buffer (as a view of a shared-prefix block is). */
function inside(values: Float32Array | Uint32Array): Tensor {
  const pad = 64;
  const all = values instanceof Uint32Array ? new Uint32Array(values.length + pad) : new Float32Array(values.length + pad);
  all.set(values as never, pad);
  const t = gpu.upload(all, [all.length]);
  return new Tensor(t.buffer, [values.length], t.dtype, t.byteOffset + pad * 4);
}

describe("gatherRows", () => {
  for (const [rows, width, srcRows] of [[1, 1, 1], [7, 3, 5], [33, 5, 17], [100, 32, 64], [65, 37, 9], [3, 130, 4]] as const) {
    test(`${rows} rows of ${width} from ${srcRows}: equal the reference bit for bit, zero rows past the source`, async () => {
      const r = rng(rows * 1000 + width);
      const index = Uint32Array.from({ length: rows }, () => Math.floor(r() * (srcRows + 3)));
      const src = randn(srcRows * width, width);
      const dst = gpu.empty([rows * width]);
      const at = inside(index), s = inside(src);
      gatherRows(gpu, at, s, dst, { rows, width, srcRows });
      expect(Array.from(new Float32Array(await gpu.read(dst)))).toEqual(Array.from(gatherRowsRef(index, src, width, srcRows)));
    });
  }
});

describe("gatherRowsBackward", () => {
  for (const [rows, width, srcRows, accumulateRows] of [[1, 1, 1, 0], [9, 3, 14, 4], [40, 32, 100, 17], [23, 37, 61, 23], [5, 130, 8, 0]] as const) {
    test(`${rows} rows of ${width} from ${srcRows} gathered rows, ${accumulateRows} accumulating: equal the reference bit for bit`, async () => {
      const r = rng(rows * 77 + width);
      // Lists of 0–5 sources, some repeated (a row may be read by several gathered rows, and a list may hold one twice).
      const sources = Array.from({ length: rows }, () => Array.from({ length: Math.floor(r() * 6) }, () => Math.floor(r() * srcRows)));
      const src = randn(srcRows * width, width + 1);
      const before = randn(rows * width, width + 2);
      const dst = inside(before), s = inside(src);
      const seg = gpu.upload(gatherRowsSegments(sources), [gatherRowsSegments(sources).length], "u32");
      gatherRowsBackward(gpu, seg, s, dst, { rows, width, srcRows, accumulateRows });
      const want = gatherRowsBackwardRef(sources, src, before, width, accumulateRows);
      expect(Array.from(new Float32Array(await gpu.read(dst)))).toEqual(Array.from(want));
      // Rows with empty lists: kept (accumulating) or zeroed.
      sources.forEach((l, i) => {
        if (l.length === 0) expect(want[i * width]).toBe(i < accumulateRows ? before[i * width]! : 0);
      });
    });
  }

  test("is the gather's adjoint: <gather(x), y> = <x, backward(y)> for lists inverting the index", async () => {
    const rows = 50, width = 6, srcRows = 20;
    const r = rng(5);
    const index = Uint32Array.from({ length: rows }, () => Math.floor(r() * (srcRows + 2)));
    const sources = Array.from({ length: srcRows }, (_, k) => [...index.keys()].filter((i) => index[i] === k));
    const x = randn(srcRows * width, 1), y = randn(rows * width, 2);
    const gx = gpu.empty([rows * width]);
    gatherRows(gpu, gpu.upload(index, [rows], "u32"), gpu.upload(x, [x.length]), gx, { rows, width, srcRows });
    const by = gpu.zeros([srcRows * width]);
    const seg = gatherRowsSegments(sources);
    gatherRowsBackward(gpu, gpu.upload(seg, [seg.length], "u32"), gpu.upload(y, [y.length]), by, { rows: srcRows, width, srcRows: rows, accumulateRows: srcRows });
    const [a, b] = [new Float32Array(await gpu.read(gx)), new Float32Array(await gpu.read(by))];
    const dot = (u: Float32Array, v: Float32Array) => u.reduce((s, ui, i) => s + ui * v[i]!, 0);
    expect(Math.abs(dot(a, y) - dot(x, b))).toBeLessThan(1e-4 * Math.abs(dot(a, y)) + 1e-5);
  });
});
