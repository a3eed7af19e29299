import { describe, test, beforeAll, expect, setDefaultTimeout } from "bun:test";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import { rope, ropeInvFreq } from "../src/ops/rope.ts";
import { ropeRef } from "../src/ops/rope.ref.ts";
import { randn, rng, expectClose, numericGradient, sampleIndices, dot } from "./harness.ts";

// Cold lavapipe pipeline compiles on a busy machine can take seconds; the 5 s default is too tight.
setDefaultTimeout(60_000);

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

// Rotations keep magnitudes; the error budget is dominated by cos/sin of angles up to ~4·10⁴ rad.
const TOL = { rtol: 1e-5, atol: 2e-5 };

function positionsFor(rows: number, seed: number, max: number): Uint32Array {
  const r = rng(seed);
  const p = new Uint32Array(rows);
  for (let i = 0; i < rows; i++) p[i] = i === 0 ? 0 : i === 1 ? max - 1 : Math.floor(r() * max);
  return p;
}

describe("rope", () => {
  test("inv_freq follows theta^(-2i/hd)", () => {
    const f = ropeInvFreq(10000, 4);
    expect(f[0]).toBe(1);
    expect(f[1]).toBeCloseTo(0.01, 7);
    const g = ropeInvFreq(1e6, 128);
    for (let i = 0; i < 64; i++) expect(Math.abs(g[i]! - 1e6 ** (-(2 * i) / 128)) / g[i]!).toBeLessThan(3e-7);
  });

  test("reference uses the HF rotate_half layout (hand-computed case)", () => {
    const x = new Float64Array([1, 2, 3, 4]);
    ropeRef(x, [1], new Float32Array([1, 0.01]), 1, 1, 4);
    const a = 1, b = Math.fround(0.01);
    const want = [1 * Math.cos(a) - 3 * Math.sin(a), 2 * Math.cos(b) - 4 * Math.sin(b), 3 * Math.cos(a) + 1 * Math.sin(a), 4 * Math.cos(b) + 2 * Math.sin(b)];
    for (let i = 0; i < 4; i++) expect(x[i]).toBeCloseTo(want[i]!, 12);
  });

  const CASES: { rows: number; Hq: number; Hkv: number; hd: number; theta: number; maxPos: number }[] = [
    { rows: 1, Hq: 1, Hkv: 1, hd: 2, theta: 10000, maxPos: 5 },
    { rows: 13, Hq: 3, Hkv: 1, hd: 10, theta: 10000, maxPos: 300 },
    { rows: 37, Hq: 4, Hkv: 2, hd: 64, theta: 1e6, maxPos: 40000 },
    { rows: 70, Hq: 2, Hkv: 2, hd: 6, theta: 500000, maxPos: 131072 },
  ];

  test("forward and inverse: GPU vs CPU reference (q and k in one dispatch)", async () => {
    let seed = 1;
    for (const c of CASES) {
      const { rows, Hq, Hkv, hd } = c;
      const q = randn(rows * Hq * hd, seed++), k = randn(rows * Hkv * hd, seed++);
      const pos = positionsFor(rows, seed++, c.maxPos), inv = ropeInvFreq(c.theta, hd);
      const tq = gpu.upload(q, [rows, Hq * hd]), tk = gpu.upload(k, [rows, Hkv * hd]);
      const tp = gpu.upload(pos, [rows]), ti = gpu.upload(inv, [hd / 2]);
      const dims = { rows, Hq, Hkv, headDim: hd };
      rope(gpu, tq, tk, tp, ti, dims);
      const wantQ = q.slice(), wantK = k.slice();
      ropeRef(wantQ, pos, inv, rows, Hq, hd);
      ropeRef(wantK, pos, inv, rows, Hkv, hd);
      const [gq, gk] = (await gpu.readMany([tq, tk])).map((b) => new Float32Array(b));
      expectClose(gq!, wantQ, TOL, `q ${JSON.stringify(c)}`);
      expectClose(gk!, wantK, TOL, `k ${JSON.stringify(c)}`);
      // The inverse (backward) undoes the rotation.
      rope(gpu, tq, tk, tp, ti, dims, { inverse: true });
      const [bq, bk] = (await gpu.readMany([tq, tk])).map((b) => new Float32Array(b));
      expectClose(bq!, q, TOL, `q round trip ${JSON.stringify(c)}`);
      expectClose(bk!, k, TOL, `k round trip ${JSON.stringify(c)}`);
      gpu.release(tq, tk, tp, ti);
    }
  });

  test("backward: GPU inverse rotation of a gradient vs CPU reference", async () => {
    const rows = 29, H = 5, hd = 12;
    const dy = randn(rows * H * hd, 77), pos = positionsFor(rows, 78, 9000), inv = ropeInvFreq(10000, hd);
    const td = gpu.upload(dy, [rows, H * hd]), tp = gpu.upload(pos, [rows]), ti = gpu.upload(inv, [hd / 2]);
    rope(gpu, td, null, tp, ti, { rows, Hq: H, Hkv: 0, headDim: hd }, { inverse: true });
    const want = dy.slice();
    ropeRef(want, pos, inv, rows, H, hd, true);
    expectClose(await gpu.readF32(td), want, TOL, "inverse single tensor");
    gpu.release(td, tp, ti);
  });

  test("finite differences: reference backward (inverse rotation) vs reference forward (float64)", () => {
    const rows = 3, H = 2, hd = 6;
    const x = randn(rows * H * hd, 5), cot = randn(rows * H * hd, 6), pos = [0, 7, 123], inv = ropeInvFreq(10000, hd);
    const grad = Float64Array.from(cot);
    ropeRef(grad, pos, inv, rows, H, hd, true);
    const f = (xs: Float64Array) => {
      const y = Float64Array.from(xs);
      ropeRef(y, pos, inv, rows, H, hd);
      return dot(y, cot);
    };
    for (const [i, v] of numericGradient(f, x, sampleIndices(x.length, 15, 2))) expect(Math.abs(v - grad[i]!)).toBeLessThan(1e-7);
  });

  test("row windows (forced small binding limit)", async () => {
    const rows = 41, Hq = 3, Hkv = 1, hd = 8;
    const q = randn(rows * Hq * hd, 91), k = randn(rows * Hkv * hd, 92), pos = positionsFor(rows, 93, 2048), inv = ropeInvFreq(10000, hd);
    const tq = gpu.upload(q, [rows, Hq * hd]), tk = gpu.upload(k, [rows, Hkv * hd]), tp = gpu.upload(pos, [rows]), ti = gpu.upload(inv, [hd / 2]);
    const before = gpu.dispatchCount;
    rope(gpu, tq, tk, tp, ti, { rows, Hq, Hkv, headDim: hd }, { maxBindingBytes: 600 });
    expect(gpu.dispatchCount - before).toBeGreaterThan(3);
    const wantQ = q.slice(), wantK = k.slice();
    ropeRef(wantQ, pos, inv, rows, Hq, hd);
    ropeRef(wantK, pos, inv, rows, Hkv, hd);
    const [gq, gk] = (await gpu.readMany([tq, tk])).map((b) => new Float32Array(b));
    expectClose(gq!, wantQ, TOL, "q windows");
    expectClose(gk!, wantK, TOL, "k windows");
    gpu.release(tq, tk, tp, ti);
  });
});
