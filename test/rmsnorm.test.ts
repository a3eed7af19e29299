import { describe, test, beforeAll, expect, setDefaultTimeout } from "bun:test";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import { rmsnorm, rmsnormBackward, type RmsnormBackwardOptions } from "../src/ops/rmsnorm.ts";
import { rmsnormRef, rmsnormBackwardRef } from "../src/ops/rmsnorm.ref.ts";
import { randn, expectClose, forReduction, numericGradient, sampleIndices, dot } from "./harness.ts";

// Cold lavapipe pipeline compiles on a busy machine can take seconds; the 5 s default is too tight.
setDefaultTimeout(60_000);

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

const SHAPES: [number, number][] = [
  [1, 1],
  [13, 37],
  [70, 10],
  [3, 896],
  [130, 64],
];
const EPS = 1e-6;

describe("rmsnorm forward vs CPU reference", () => {
  test("y and saved 1/rms", async () => {
    let seed = 1;
    for (const [rows, D] of SHAPES) {
      const x = randn(rows * D, seed++, 2), w = randn(D, seed++);
      const tx = gpu.upload(x, [rows, D]), tw = gpu.upload(w, [D]), ty = gpu.empty([rows, D]), tr = gpu.empty([rows]);
      rmsnorm(gpu, tx, tw, ty, tr, { rows, D }, { eps: EPS });
      const wantY = new Float32Array(rows * D), wantR = new Float32Array(rows);
      rmsnormRef(x, w, wantY, wantR, rows, D, EPS);
      const [gy, gr] = (await gpu.readMany([ty, tr])).map((b) => new Float32Array(b));
      expectClose(gy!, wantY, forReduction("f32", D), `y ${rows}x${D}`);
      expectClose(gr!, wantR, forReduction("f32", D), `rinv ${rows}x${D}`);
      gpu.release(tx, tw, ty, tr);
    }
  });

  test("without saving rinv, eps dominating a zero row, and row windows", async () => {
    const rows = 45, D = 19;
    const x = randn(rows * D, 9);
    x.fill(0, 0, D); // an all-zero row: r = 1/sqrt(eps), y = 0
    const w = randn(D, 10);
    const tx = gpu.upload(x, [rows, D]), tw = gpu.upload(w, [D]), ty = gpu.empty([rows, D]), ty2 = gpu.empty([rows, D]), tr = gpu.empty([rows]);
    rmsnorm(gpu, tx, tw, ty, null, { rows, D }, { eps: 1e-5 });
    const before = gpu.dispatchCount;
    rmsnorm(gpu, tx, tw, ty2, tr, { rows, D }, { eps: 1e-5, maxBindingBytes: 300 });
    expect(gpu.dispatchCount - before).toBeGreaterThan(5); // 45 rows of 76 bytes in windows of < 300 bytes
    const want = new Float32Array(rows * D), wantR = new Float32Array(rows);
    rmsnormRef(x, w, want, wantR, rows, D, 1e-5);
    const [gy, gy2, gr] = (await gpu.readMany([ty, ty2, tr])).map((b) => new Float32Array(b));
    expectClose(gy!, want, forReduction("f32", D), "no rinv");
    expectClose(gy2!, want, forReduction("f32", D), "windows");
    expectClose(gr!, wantR, forReduction("f32", D), "windows rinv");
    expect(gr![0]).toBeCloseTo(1 / Math.sqrt(1e-5), 0);
    gpu.release(tx, tw, ty, ty2, tr);
  });
});

describe("rmsnorm backward", () => {
  test("finite differences: reference backward vs reference forward (float64)", () => {
    const rows = 4, D = 7;
    const x = randn(rows * D, 21, 1.5), w = randn(D, 22), cot = randn(rows * D, 23);
    const rinv = new Float64Array(rows), y = new Float64Array(rows * D);
    rmsnormRef(x, w, y, rinv, rows, D, EPS);
    const dx = new Float64Array(rows * D), dw = new Float64Array(D);
    rmsnormBackwardRef(cot, x, w, rinv, dx, dw, rows, D);
    const fX = (xs: Float64Array) => {
      const out = new Float64Array(rows * D);
      rmsnormRef(xs, w, out, null, rows, D, EPS);
      return dot(out, cot);
    };
    const fW = (ws: Float64Array) => {
      const out = new Float64Array(rows * D);
      rmsnormRef(x, ws, out, null, rows, D, EPS);
      return dot(out, cot);
    };
    for (const [i, v] of numericGradient(fX, x, sampleIndices(rows * D, 12, 5))) expect(Math.abs(v - dx[i]!)).toBeLessThan(1e-6 * (1 + Math.abs(v)));
    for (const [i, v] of numericGradient(fW, w)) expect(Math.abs(v - dw[i]!)).toBeLessThan(1e-6 * (1 + Math.abs(v)));
  });

  async function checkBackward(rows: number, D: number, seed: number, o: RmsnormBackwardOptions & { scratch?: number } = {}) {
    const x = randn(rows * D, seed, 2), w = randn(D, seed + 1), dy = randn(rows * D, seed + 2);
    const dx0 = randn(rows * D, seed + 3), dw0 = randn(D, seed + 4);
    const rinv = new Float32Array(rows), y = new Float32Array(rows * D);
    rmsnormRef(x, w, y, rinv, rows, D, EPS);
    const tx = gpu.upload(x, [rows, D]), tw = gpu.upload(w, [D]), tdy = gpu.upload(dy, [rows, D]), tr = gpu.upload(rinv, [rows]);
    const tdx = gpu.upload(dx0, [rows, D]), tdw = gpu.upload(dw0, [D]);
    const scratch = o.scratch ? gpu.empty([o.scratch]) : undefined;
    rmsnormBackward(gpu, tdy, tx, tw, tr, tdx, tdw, { rows, D }, { ...o, dwScratch: scratch });
    const wantDx = dx0.slice(), wantDw = dw0.slice();
    rmsnormBackwardRef(dy, x, w, rinv, wantDx, wantDw, rows, D, o.accumulateDx);
    const [gdx, gdw] = (await gpu.readMany([tdx, tdw])).map((b) => new Float32Array(b));
    const label = `${rows}x${D} ${JSON.stringify(o)}`;
    expectClose(gdx!, wantDx, forReduction("f32", D), `dx ${label}`);
    expectClose(gdw!, wantDw, forReduction("f32", rows), `dw ${label}`);
    gpu.release(tx, tw, tdy, tr, tdx, tdw, ...(scratch ? [scratch] : []));
  }

  test("GPU vs CPU reference: dx written, dw accumulated", async () => {
    let seed = 100;
    for (const [rows, D] of SHAPES) await checkBackward(rows, D, (seed += 10));
  });

  test("dx accumulated, dw reduced in row chunks through a scratch", async () => {
    await checkBackward(300, 37, 7, { accumulateDx: true });
    await checkBackward(300, 37, 8, { scratch: 37 * 3 });
    await checkBackward(1000, 10, 9, { scratch: 10 * 64, accumulateDx: true });
  });

  test("row windows", async () => {
    await checkBackward(77, 13, 11, { maxBindingBytes: 400 });
    await checkBackward(200, 13, 12, { maxBindingBytes: 4000, scratch: 13 * 4 });
  });

  test("dx or dw may be skipped", async () => {
    const rows = 9, D = 11;
    const x = randn(rows * D, 1), w = randn(D, 2), dy = randn(rows * D, 3);
    const rinv = new Float32Array(rows), y = new Float32Array(rows * D);
    rmsnormRef(x, w, y, rinv, rows, D, EPS);
    const tx = gpu.upload(x, [rows, D]), tw = gpu.upload(w, [D]), tdy = gpu.upload(dy, [rows, D]), tr = gpu.upload(rinv, [rows]);
    const tdx = gpu.zeros([rows, D]), tdw = gpu.zeros([D]);
    rmsnormBackward(gpu, tdy, tx, tw, tr, null, tdw, { rows, D });
    rmsnormBackward(gpu, tdy, tx, tw, tr, tdx, null, { rows, D });
    const wantDx = new Float32Array(rows * D), wantDw = new Float32Array(D);
    rmsnormBackwardRef(dy, x, w, rinv, wantDx, wantDw, rows, D);
    const [gdx, gdw] = (await gpu.readMany([tdx, tdw])).map((b) => new Float32Array(b));
    expectClose(gdx!, wantDx, forReduction("f32", D), "dx only");
    expectClose(gdw!, wantDw, forReduction("f32", rows), "dw only");
    gpu.release(tx, tw, tdy, tr, tdx, tdw);
  });
});
