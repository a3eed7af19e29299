import { describe, test, beforeAll, expect, setDefaultTimeout } from "bun:test";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import { add, axpy, scale, swiglu, swigluBackward } from "../src/ops/elementwise.ts";
import { addRef, axpyRef, scaleRef, swigluRef, swigluBackwardRef } from "../src/ops/elementwise.ref.ts";
import { randn, expectClose, TOLERANCE, numericGradient, sampleIndices, dot } from "./harness.ts";

// Cold lavapipe pipeline compiles on a busy machine can take seconds; the 5 s default is too tight.
setDefaultTimeout(60_000);

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

const SIZES = [1, 37, 1031, 5003];
const tol = TOLERANCE.f32;

describe("flat elementwise ops vs CPU reference", () => {
  test("add", async () => {
    let seed = 1;
    for (const n of SIZES) {
      const a = randn(n, seed++), b = randn(n, seed++);
      const ta = gpu.upload(a, [n]), tb = gpu.upload(b, [n]), to = gpu.empty([n]);
      add(gpu, ta, tb, to);
      const want = new Float32Array(n);
      addRef(a, b, want);
      expectClose(await gpu.readF32(to), want, tol, `add n=${n}`);
      gpu.release(ta, tb, to);
    }
  });

  test("axpy and scale", async () => {
    let seed = 50;
    for (const n of SIZES) {
      const x = randn(n, seed++), y = randn(n, seed++);
      const tx = gpu.upload(x, [n]), ty = gpu.upload(y, [n]);
      axpy(gpu, tx, ty, -0.37);
      scale(gpu, tx, 2.5);
      const wantY = y.slice(), wantX = x.slice();
      axpyRef(x, wantY, -0.37);
      scaleRef(wantX, 2.5);
      const [gy, gx] = await gpu.readMany([ty, tx]);
      expectClose(new Float32Array(gy!), wantY, tol, `axpy n=${n}`);
      expectClose(new Float32Array(gx!), wantX, tol, `scale n=${n}`);
      gpu.release(tx, ty);
    }
  });

  test("offsets and binding windows (forced small binding limit, unaligned offsets)", async () => {
    const n = 5003, pad = 19;
    const a = randn(n + pad, 7), b = randn(n + 2 * pad, 8), out0 = randn(n + 3, 9);
    const ta = gpu.upload(a, [a.length]), tb = gpu.upload(b, [b.length]), to = gpu.upload(out0, [out0.length]);
    const o = { n, offsetA: pad, offsetB: 2 * pad - 1, offsetOut: 3, maxBindingBytes: 4096 };
    const before = gpu.dispatchCount;
    add(gpu, ta, tb, to, o);
    expect(gpu.dispatchCount - before).toBeGreaterThan(4); // 5003 floats in windows of < 4096 bytes
    const want = out0.slice();
    addRef(a.subarray(pad), b.subarray(2 * pad - 1), want.subarray(3), n);
    expectClose(await gpu.readF32(to), want, tol, "add windows");

    axpy(gpu, ta, to, 0.5, { n, offsetA: pad, offsetOut: 3, maxBindingBytes: 2000 });
    axpyRef(a.subarray(pad), want.subarray(3), 0.5, n);
    scale(gpu, to, -3, { n: n - 10, offsetOut: 5, maxBindingBytes: 1024 });
    scaleRef(want.subarray(5), -3, n - 10);
    expectClose(await gpu.readF32(to), want, tol, "axpy/scale windows");
    gpu.release(ta, tb, to);
  });
});

describe("swiglu", () => {
  const SHAPES: [number, number][] = [
    [1, 1],
    [13, 37],
    [5, 1030],
    [70, 3],
    // Narrow rows packed several to a workgroup (GLU_LANES < 256), and rows of exactly one block.
    [600, 128],
    [257, 33],
    [9, 1024],
    [3, 2049],
  ];

  test("forward vs CPU reference", async () => {
    let seed = 100;
    for (const [rows, I] of SHAPES) {
      const g = randn(rows * I, seed++, 3), u = randn(rows * I, seed++);
      const tg = gpu.upload(g, [rows, I]), tu = gpu.upload(u, [rows, I]), th = gpu.empty([rows, I]);
      swiglu(gpu, tg, tu, th, { rows, I });
      const want = new Float32Array(rows * I);
      swigluRef(g, u, want, rows, I);
      expectClose(await gpu.readF32(th), want, tol, `swiglu ${rows}x${I}`);
      gpu.release(tg, tu, th);
    }
  });

  test("extreme gate values stay finite", async () => {
    const g = new Float32Array([-1000, -90, -20, 0, 20, 90, 1000]), u = new Float32Array([2, 2, 2, 2, 2, 2, 2]);
    const tg = gpu.upload(g, [1, 7]), tu = gpu.upload(u, [1, 7]), th = gpu.empty([1, 7]);
    const tdg = gpu.empty([1, 7]), tdu = gpu.empty([1, 7]), tdh = gpu.upload(new Float32Array(7).fill(1), [1, 7]);
    swiglu(gpu, tg, tu, th, { rows: 1, I: 7 });
    swigluBackward(gpu, tdh, tg, tu, tdg, tdu, { rows: 1, I: 7 });
    const [h, dg, du] = (await gpu.readMany([th, tdg, tdu])).map((b) => new Float32Array(b));
    const wantH = new Float32Array(7), wantDG = new Float32Array(7), wantDU = new Float32Array(7);
    swigluRef(g, u, wantH, 1, 7);
    swigluBackwardRef(new Float32Array(7).fill(1), g, u, wantDG, wantDU, 1, 7);
    for (const arr of [h!, dg!, du!]) expect(arr.every(Number.isFinite)).toBe(true);
    expectClose(h!, wantH, tol, "h");
    expectClose(dg!, wantDG, tol, "dg");
    expectClose(du!, wantDU, tol, "du");
    gpu.release(tg, tu, th, tdg, tdu, tdh);
  });

  test("finite differences: reference backward vs reference forward (float64)", () => {
    const rows = 3, I = 7;
    const g = randn(rows * I, 5, 2), u = randn(rows * I, 6), w = randn(rows * I, 7);
    const dg = new Float64Array(rows * I), du = new Float64Array(rows * I);
    swigluBackwardRef(w, g, u, dg, du, rows, I);
    const fG = (x: Float64Array) => {
      const h = new Float64Array(rows * I);
      swigluRef(x, u, h, rows, I);
      return dot(h, w);
    };
    const fU = (x: Float64Array) => {
      const h = new Float64Array(rows * I);
      swigluRef(g, x, h, rows, I);
      return dot(h, w);
    };
    const idx = sampleIndices(rows * I, 10, 3);
    for (const [i, v] of numericGradient(fG, g, idx)) expect(Math.abs(v - dg[i]!)).toBeLessThan(1e-6 * (1 + Math.abs(v)));
    for (const [i, v] of numericGradient(fU, u, idx)) expect(Math.abs(v - du[i]!)).toBeLessThan(1e-6 * (1 + Math.abs(v)));
  });

  test("backward vs CPU reference", async () => {
    let seed = 200;
    for (const [rows, I] of SHAPES) {
      const g = randn(rows * I, seed++, 3), u = randn(rows * I, seed++), dh = randn(rows * I, seed++);
      const tg = gpu.upload(g, [rows, I]), tu = gpu.upload(u, [rows, I]), tdh = gpu.upload(dh, [rows, I]);
      const tdg = gpu.empty([rows, I]), tdu = gpu.empty([rows, I]);
      swigluBackward(gpu, tdh, tg, tu, tdg, tdu, { rows, I });
      const wantG = new Float32Array(rows * I), wantU = new Float32Array(rows * I);
      swigluBackwardRef(dh, g, u, wantG, wantU, rows, I);
      const [gg, gu] = await gpu.readMany([tdg, tdu]);
      expectClose(new Float32Array(gg!), wantG, tol, `dgate ${rows}x${I}`);
      expectClose(new Float32Array(gu!), wantU, tol, `dup ${rows}x${I}`);
      gpu.release(tg, tu, tdh, tdg, tdu);
    }
  });

  test("fused gate_up layout, forward and backward, with row windows", async () => {
    const rows = 29, I = 37;
    const gu = randn(rows * 2 * I, 31, 2), dh = randn(rows * I, 32);
    const g = new Float32Array(rows * I), u = new Float32Array(rows * I);
    for (let r = 0; r < rows; r++) {
      g.set(gu.subarray(r * 2 * I, r * 2 * I + I), r * I);
      u.set(gu.subarray(r * 2 * I + I, (r + 1) * 2 * I), r * I);
    }
    const tgu = gpu.upload(gu, [rows, 2 * I]), tdh = gpu.upload(dh, [rows, I]), th = gpu.empty([rows, I]), tdgu = gpu.empty([rows, 2 * I]);
    const layout = { offsetGate: 0, strideGate: 2 * I, offsetUp: I, strideUp: 2 * I, maxBindingBytes: 1200 };
    swiglu(gpu, tgu, tgu, th, { rows, I }, layout);
    swigluBackward(gpu, tdh, tgu, tgu, tdgu, tdgu, { rows, I }, { ...layout, offsetDGate: 0, strideDGate: 2 * I, offsetDUp: I, strideDUp: 2 * I });
    const wantH = new Float32Array(rows * I), wantG = new Float32Array(rows * I), wantU = new Float32Array(rows * I);
    swigluRef(g, u, wantH, rows, I);
    swigluBackwardRef(dh, g, u, wantG, wantU, rows, I);
    const wantGU = new Float32Array(rows * 2 * I);
    for (let r = 0; r < rows; r++) {
      wantGU.set(wantG.subarray(r * I, (r + 1) * I), r * 2 * I);
      wantGU.set(wantU.subarray(r * I, (r + 1) * I), r * 2 * I + I);
    }
    const [h, dgu] = await gpu.readMany([th, tdgu]);
    expectClose(new Float32Array(h!), wantH, tol, "fused h");
    expectClose(new Float32Array(dgu!), wantGU, tol, "fused dgate_up");
    gpu.release(tgu, tdh, th, tdgu);
  });

  test("row windows with separate tensors", async () => {
    const rows = 41, I = 23;
    const g = randn(rows * I, 61), u = randn(rows * I, 62), dh = randn(rows * I, 63);
    const tg = gpu.upload(g, [rows, I]), tu = gpu.upload(u, [rows, I]), tdh = gpu.upload(dh, [rows, I]);
    const th = gpu.empty([rows, I]), tdg = gpu.empty([rows, I]), tdu = gpu.empty([rows, I]);
    swiglu(gpu, tg, tu, th, { rows, I }, { maxBindingBytes: 500 });
    swigluBackward(gpu, tdh, tg, tu, tdg, tdu, { rows, I }, { maxBindingBytes: 500 });
    const wantH = new Float32Array(rows * I), wantG = new Float32Array(rows * I), wantU = new Float32Array(rows * I);
    swigluRef(g, u, wantH, rows, I);
    swigluBackwardRef(dh, g, u, wantG, wantU, rows, I);
    const [h, dg, du] = (await gpu.readMany([th, tdg, tdu])).map((b) => new Float32Array(b));
    expectClose(h!, wantH, tol, "h");
    expectClose(dg!, wantG, tol, "dg");
    expectClose(du!, wantU, tol, "du");
    gpu.release(tg, tu, tdh, th, tdg, tdu);
  });
});
