import { describe, test, beforeAll, expect, setDefaultTimeout } from "bun:test";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import { embedding, embeddingBackward, embeddingScratchSize } from "../src/ops/embedding.ts";
import { embeddingRef, embeddingBackwardRef } from "../src/ops/embedding.ref.ts";
import { randn, rng, expectClose, numericGradient, sampleIndices, dot, forReduction } from "./harness.ts";

// Cold lavapipe pipeline compiles on a busy machine can take seconds; the 5 s default is too tight.
setDefaultTimeout(60_000);

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

/** Ids drawn from [0, range), with a few padding ids (V and 0xffffffff) sprinkled in. */
function idsFor(N: number, range: number, V: number, seed: number): Uint32Array {
  const r = rng(seed);
  const ids = new Uint32Array(N);
  for (let n = 0; n < N; n++) {
    const u = r();
    ids[n] = u < 0.05 ? V : u < 0.08 ? 0xffffffff : Math.floor(r() * range);
  }
  return ids;
}

function bitsEqual(got: Float32Array, want: Float32Array, label: string) {
  let first = -1;
  for (let i = 0; i < want.length; i++) if (!Object.is(got[i], want[i])) { first = i; break; }
  expect(first < 0 ? "bitwise equal" : `${label}: element ${first} got ${got[first]} want ${want[first]}`).toBe("bitwise equal");
}

describe("embedding forward", () => {
  test("gathers rows; padding ids give zero rows", async () => {
    for (const [N, V, D, seed] of [[1, 1, 1, 1], [13, 50, 37, 2], [300, 7, 64, 3], [70, 1000, 10, 4]] as const) {
      const ids = idsFor(N, V, V, seed), table = randn(V * D, seed + 10);
      const ti = gpu.upload(ids, [N]), tt = gpu.upload(table, [V, D]), to = gpu.upload(randn(N * D, 5), [N, D]);
      embedding(gpu, ti, tt, to, { N, V, D });
      const want = new Float32Array(N * D);
      embeddingRef(ids, table, want, N, V, D);
      bitsEqual(await gpu.readF32(to), want, `N=${N} V=${V} D=${D}`);
      gpu.release(ti, tt, to);
    }
  });

  test("table bound in vocab slices and output in token windows", async () => {
    const N = 57, V = 203, D = 7;
    const ids = idsFor(N, V, V, 8), table = randn(V * D, 9);
    ids[0] = V - 1; // the last row lives in the last slice
    const ti = gpu.upload(ids, [N]), tt = gpu.upload(table, [V, D]), to = gpu.upload(randn(N * D, 10), [N, D]);
    const before = gpu.dispatchCount;
    embedding(gpu, ti, tt, to, { N, V, D }, { maxBindingBytes: 300 });
    expect(gpu.dispatchCount - before).toBeGreaterThan(20 * 5); // ≥ 20 vocab slices × ≥ 5 token windows
    const want = new Float32Array(N * D);
    embeddingRef(ids, table, want, N, V, D);
    bitsEqual(await gpu.readF32(to), want, "slices");
    gpu.release(ti, tt, to);
  });
});

describe("embedding backward", () => {
  test("finite differences: reference backward vs reference forward (float64)", () => {
    const N = 9, V = 5, D = 3;
    const ids = [0, 3, 3, 1, 5, 3, 0, 4, 2], table = randn(V * D, 1), cot = randn(N * D, 2);
    const grad = new Float64Array(V * D);
    embeddingBackwardRef(ids, cot, grad, N, V, D);
    const f = (t: Float64Array) => {
      const out = new Float64Array(N * D);
      embeddingRef(ids, t, out, N, V, D);
      return dot(out, cot);
    };
    for (const [i, v] of numericGradient(f, table, sampleIndices(V * D, 15, 3))) expect(Math.abs(v - grad[i]!)).toBeLessThan(1e-8);
  });

  async function run(N: number, V: number, D: number, range: number, seed: number, o: { maxBindingBytes?: number } = {}) {
    const ids = idsFor(N, range, V, seed), dOut = randn(N * D, seed + 1), dTable0 = randn(V * D, seed + 2);
    const ti = gpu.upload(ids, [N]), td = gpu.upload(dOut, [N, D]), tt = gpu.upload(dTable0, [V, D]);
    const scratch = gpu.empty([embeddingScratchSize({ N, V })], "u32");
    embeddingBackward(gpu, ti, td, tt, scratch, { N, V, D }, o);
    const got = await gpu.readF32(tt);
    gpu.release(ti, td, tt, scratch);
    return { ids, dOut, dTable0, got };
  }

  test("matches the reference bit for bit (sums in increasing position), repeated ids and padding", async () => {
    for (const [N, V, D, range, seed] of [
      [1, 1, 1, 1, 1],
      [13, 50, 37, 50, 2],
      [300, 40, 10, 4, 3], // heavy repeats
      [1000, 151, 66, 151, 4],
    ] as const) {
      const { ids, dOut, dTable0, got } = await run(N, V, D, range, seed);
      const want = dTable0.slice();
      embeddingBackwardRef(ids, dOut, want, N, V, D, { f32: true });
      bitsEqual(got, want, `N=${N} V=${V} D=${D}`);
    }
  });

  test("one id repeated at every position", async () => {
    const N = 3000, V = 3, D = 5;
    const ids = new Uint32Array(N).fill(1), dOut = randn(N * D, 5);
    const ti = gpu.upload(ids, [N]), td = gpu.upload(dOut, [N, D]), tt = gpu.zeros([V, D]);
    const scratch = gpu.empty([embeddingScratchSize({ N, V })], "u32");
    embeddingBackward(gpu, ti, td, tt, scratch, { N, V, D });
    const want = new Float32Array(V * D);
    embeddingBackwardRef(ids, dOut, want, N, V, D, { f32: true });
    bitsEqual(await gpu.readF32(tt), want, "all same id");
    gpu.release(ti, td, tt, scratch);
  });

  test("vocab slices and token windows", async () => {
    const N = 120, V = 203, D = 7;
    const { ids, dOut, dTable0, got } = await run(N, V, D, 30, 6, { maxBindingBytes: 400 });
    const want = dTable0.slice();
    embeddingBackwardRef(ids, dOut, want, N, V, D);
    // Token windows add per-window partial sums, so the order differs from one pass: compare with a tolerance.
    expectClose(got, want, forReduction("f32", N), "windows");
  });

  test("scratch is reusable across calls and gradients accumulate", async () => {
    const N = 40, V = 17, D = 9;
    const ids1 = idsFor(N, V, V, 11), ids2 = idsFor(N, 5, V, 12), d1 = randn(N * D, 13), d2 = randn(N * D, 14);
    const tt = gpu.zeros([V, D]), scratch = gpu.empty([embeddingScratchSize({ N, V })], "u32");
    const t1 = gpu.upload(ids1, [N]), t2 = gpu.upload(ids2, [N]), td1 = gpu.upload(d1, [N, D]), td2 = gpu.upload(d2, [N, D]);
    embeddingBackward(gpu, t1, td1, tt, scratch, { N, V, D });
    embeddingBackward(gpu, t2, td2, tt, scratch, { N, V, D });
    const want = new Float32Array(V * D);
    embeddingBackwardRef(ids1, d1, want, N, V, D, { f32: true });
    embeddingBackwardRef(ids2, d2, want, N, V, D, { f32: true });
    bitsEqual(await gpu.readF32(tt), want, "two calls");
    gpu.release(tt, scratch, t1, t2, td1, td2);
  });
});
