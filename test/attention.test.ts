import { describe, test, expect, beforeAll, setDefaultTimeout } from "bun:test";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import { attention, attentionBackward, attentionBackwardWorkElements, attentionBlocking, chooseAttentionKernel, queryHeadsPerBlock, type AttentionDims, type AttentionKernel } from "../src/ops/attention.ts";
import { subgroupKernelsSupported } from "../src/gpu/shaders.ts";
import { attentionRef, attentionBackwardRef } from "../src/ops/attention.ref.ts";
import { randn, expectClose, forReduction, numericGradient, sampleIndices, dot } from "./harness.ts";

// First use compiles pipelines (seconds each on lavapipe with a cold Mesa shader cache), beyond Bun's 5 s default.
setDefaultTimeout(60_000);

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

interface Case {
  d: AttentionDims;
  qStart: number[];
  kvLen: number[];
}

interface Inputs {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  dout: Float32Array;
}

function inputs(d: AttentionDims, seed: number): Inputs {
  return {
    q: randn(d.B * d.Tq * d.Hq * d.hd, seed),
    k: randn(d.B * d.Tk * d.Hkv * d.hd, seed + 1),
    v: randn(d.B * d.Tk * d.Hkv * d.hd, seed + 2),
    dout: randn(d.B * d.Tq * d.Hq * d.hd, seed + 3),
  };
}

async function gpuForward(c: Case, x: Inputs, kernel?: AttentionKernel) {
  const { d } = c;
  const q = gpu.upload(x.q, [x.q.length]), k = gpu.upload(x.k, [x.k.length]), v = gpu.upload(x.v, [x.v.length]);
  const qs = gpu.upload(Uint32Array.from(c.qStart), [d.B]), kl = gpu.upload(Uint32Array.from(c.kvLen), [d.B]);
  const out = gpu.empty([d.B * d.Tq * d.Hq * d.hd]), lse = gpu.empty([d.B * d.Hq * d.Tq]);
  attention(gpu, q, k, v, qs, kl, out, lse, d, { kernel });
  const [o, l] = await gpu.readMany([out, lse]);
  gpu.release(q, k, v, qs, kl, out, lse);
  return { out: new Float32Array(o!), lse: new Float32Array(l!) };
}

async function gpuBackward(c: Case, x: Inputs, kernel?: AttentionKernel) {
  const { d } = c;
  const qn = d.B * d.Tq * d.Hq * d.hd, kn = d.B * d.Tk * d.Hkv * d.hd;
  const q = gpu.upload(x.q, [qn]), k = gpu.upload(x.k, [kn]), v = gpu.upload(x.v, [kn]), dout = gpu.upload(x.dout, [qn]);
  const qs = gpu.upload(Uint32Array.from(c.qStart), [d.B]), kl = gpu.upload(Uint32Array.from(c.kvLen), [d.B]);
  const out = gpu.empty([qn]), lse = gpu.empty([d.B * d.Hq * d.Tq]);
  // Gradient outputs start as NaN so anything the kernels fail to write shows up.
  const dq = gpu.upload(new Float32Array(qn).fill(NaN), [qn]);
  const dk = gpu.upload(new Float32Array(kn).fill(NaN), [kn]), dv = gpu.upload(new Float32Array(kn).fill(NaN), [kn]);
  const work = gpu.empty([attentionBackwardWorkElements(d)], "u32");
  attention(gpu, q, k, v, qs, kl, out, lse, d, { kernel });
  attentionBackward(gpu, q, k, v, qs, kl, out, lse, dout, dq, dk, dv, work, d, { kernel });
  const [a, b, e] = await gpu.readMany([dq, dk, dv]);
  gpu.release(q, k, v, dout, qs, kl, out, lse, dq, dk, dv, work);
  return { dq: new Float32Array(a!), dk: new Float32Array(b!), dv: new Float32Array(e!) };
}

const CASES: [string, Case][] = [
  ["GQA Hq=6 Hkv=2 hd=10 T=13, one padded sequence", { d: { B: 2, Tq: 13, Tk: 13, Hq: 6, Hkv: 2, hd: 10 }, qStart: [0, 0], kvLen: [13, 9] }],
  ["MHA Hq=Hkv=3 hd=24 T=13", { d: { B: 1, Tq: 13, Tk: 13, Hq: 3, Hkv: 3, hd: 24 }, qStart: [0], kvLen: [13] }],
  ["MQA Hq=4 Hkv=1 hd=64 T=7, lengths 7/1/4", { d: { B: 3, Tq: 7, Tk: 7, Hq: 4, Hkv: 1, hd: 64 }, qStart: [0, 0, 0], kvLen: [7, 1, 4] }],
  ["prefill into a larger cache (qStart > 0, Tk > Tq)", { d: { B: 2, Tq: 5, Tk: 17, Hq: 6, Hkv: 2, hd: 24 }, qStart: [3, 9], kvLen: [8, 12] }],
  ["hd=128 T=40", { d: { B: 1, Tq: 40, Tk: 40, Hq: 2, Hkv: 1, hd: 128 }, qStart: [0], kvLen: [40] }],
  ["hd=256 (two blocks of two heads per kv head) T=9", { d: { B: 1, Tq: 9, Tk: 9, Hq: 4, Hkv: 1, hd: 256 }, qStart: [0], kvLen: [9] }],
  ["one sequence decoding (one head per invocation)", { d: { B: 1, Tq: 1, Tk: 21, Hq: 6, Hkv: 2, hd: 24 }, qStart: [17], kvLen: [18] }],
  // Beyond one 64-row tile and many 8-key blocks, odd lengths (the demo's shape: Hq=4 Hkv=2 hd=16).
  ["several tiles, T=150, lengths 150/67/1/129", { d: { B: 4, Tq: 150, Tk: 150, Hq: 4, Hkv: 2, hd: 16 }, qStart: [0, 0, 0, 0], kvLen: [150, 67, 1, 129] }],
  ["prefill of 71 rows into a cache of 97 (qStart 13/26)", { d: { B: 2, Tq: 71, Tk: 97, Hq: 6, Hkv: 3, hd: 12 }, qStart: [13, 26], kvLen: [84, 90] }],
  // Decode steps as a rollout runs them (the rows kernel's shapes): keys over several 64-key chunks, a padding row
  // (position past its length), a group split into head blocks, a few query rows into a cache.
  ["decode of 5 sequences, 1–150 keys (the small preset's heads)", { d: { B: 5, Tq: 1, Tk: 160, Hq: 6, Hkv: 2, hd: 64 }, qStart: [149, 0, 63, 64, 127], kvLen: [150, 1, 64, 65, 120] }],
  ["decode, 16 query heads of one kv head (two blocks), hd=32", { d: { B: 2, Tq: 1, Tk: 70, Hq: 16, Hkv: 1, hd: 32 }, qStart: [69, 30], kvLen: [70, 31] }],
  ["3 rows into a cache of 200, hd=16", { d: { B: 3, Tq: 3, Tk: 200, Hq: 4, Hkv: 2, hd: 16 }, qStart: [150, 7, 196], kvLen: [153, 10, 198] }],
  // The dims kernel's shapes: Qwen2.5-0.5B's 7 query heads of 64 per kv head in one block, hd=128 (4 vec4 columns a
  // lane, two blocks of 4 and 3 heads), hd=100 (25 vec4: the last lanes' fourth column is past the head), keys not a
  // multiple of 8, 1 key, a padding row.
  ["decode, Qwen2.5-0.5B's heads (14/2, hd=64), 1–97 keys", { d: { B: 4, Tq: 1, Tk: 100, Hq: 14, Hkv: 2, hd: 64 }, qStart: [96, 0, 7, 40], kvLen: [97, 1, 8, 39] }],
  ["decode, hd=128, 7 query heads per kv head (blocks of 4 and 3)", { d: { B: 2, Tq: 1, Tk: 90, Hq: 14, Hkv: 2, hd: 128 }, qStart: [88, 13], kvLen: [89, 14] }],
  ["2 rows into a cache of 80, hd=100", { d: { B: 2, Tq: 2, Tk: 80, Hq: 6, Hkv: 3, hd: 100 }, qStart: [70, 9], kvLen: [72, 11] }],
];

// The subgroup kernels run where the adapter has them and the head dimension is a multiple of 4 up to 128; each
// case runs on every kernel that can take it (forced), whatever chooseAttentionKernel would pick for its size.
// The rows and dims kernels (forward only; their backward is the portable one) take head dimensions that are
// multiples of 4 up to 256, with subgroups.
function kernelsFor(d: AttentionDims): AttentionKernel[] {
  const out: AttentionKernel[] = ["portable"];
  if (subgroupKernelsSupported(gpu) && d.hd % 4 === 0 && d.hd <= 128) out.push("subgroup");
  if (subgroupKernelsSupported(gpu) && d.hd % 4 === 0) out.push("rows", "dims");
  return out;
}

describe("attention forward vs CPU reference", () => {
  let seed = 1000;
  for (const [name, c] of CASES) {
    const s = (seed += 10);
    test(name, async () => {
      const x = inputs(c.d, s);
      const want = attentionRef(x.q, x.k, x.v, c.qStart, c.kvLen, c.d);
      for (const kernel of kernelsFor(c.d)) {
        const got = await gpuForward(c, x, kernel);
        expectClose(got.out, want.out, forReduction("f32", c.d.Tk), `${name} out (${kernel})`);
        expectClose(got.lse, want.lse, forReduction("f32", c.d.Tk), `${name} lse (${kernel})`);
      }
    });
  }
});

describe("attention backward", () => {
  let seed = 2000;
  for (const [name, c] of CASES) {
    const s = (seed += 10);
    test(`GPU vs reference: ${name}`, async () => {
      const x = inputs(c.d, s);
      const want = attentionBackwardRef(x.q, x.k, x.v, c.qStart, c.kvLen, x.dout, c.d);
      const tol = forReduction("f32", c.d.Tq * (c.d.Hq / c.d.Hkv));
      for (const kernel of kernelsFor(c.d)) {
        const got = await gpuBackward(c, x, kernel);
        expectClose(got.dq, want.dq, tol, `${name} dq (${kernel})`);
        expectClose(got.dk, want.dk, tol, `${name} dk (${kernel})`);
        expectClose(got.dv, want.dv, tol, `${name} dv (${kernel})`);
      }
    });
  }

  test("reference backward matches finite differences (GQA, padding, qStart > 0)", () => {
    const cases: Case[] = [
      { d: { B: 2, Tq: 5, Tk: 5, Hq: 4, Hkv: 2, hd: 6 }, qStart: [0, 0], kvLen: [5, 3] },
      { d: { B: 1, Tq: 3, Tk: 8, Hq: 3, Hkv: 1, hd: 5 }, qStart: [4], kvLen: [7] },
    ];
    let seed = 3000;
    for (const c of cases) {
      const x = inputs(c.d, (seed += 10));
      const g = attentionBackwardRef(x.q, x.k, x.v, c.qStart, c.kvLen, x.dout, c.d);
      const loss = (q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>) => dot(attentionRef(q, k, v, c.qStart, c.kvLen, c.d).out, x.dout);
      const checks: [string, Float32Array, Float64Array, (t: Float64Array) => number][] = [
        ["dq", x.q, g.dq, (t) => loss(t, x.k, x.v)],
        ["dk", x.k, g.dk, (t) => loss(x.q, t, x.v)],
        ["dv", x.v, g.dv, (t) => loss(x.q, x.k, t)],
      ];
      for (const [name, arr, analytic, f] of checks) {
        // Every element: the arrays are small, and the zero gradients of padding rows are part of the check.
        const numeric = numericGradient(f, arr, sampleIndices(arr.length, arr.length, 1));
        const idx = [...numeric.keys()];
        expectClose(idx.map((i) => analytic[i]!), idx.map((i) => numeric.get(i)!), { rtol: 1e-5, atol: 1e-7 }, name);
      }
    }
  });
});

describe("attention masks and caches", () => {
  for (const kernel of ["portable", "subgroup", "rows", "dims"] as const) {
  const d0 = { Hq: 6, Hkv: 2, hd: 12 };
  const rowSize = d0.Hq * d0.hd, kvRowSize = d0.Hkv * d0.hd;
  test(`${kernel}: a padded batch equals each sequence alone, and padding leaks nothing (even NaN)`, async () => {
    if (!kernelsFor({ B: 1, Tq: 1, Tk: 1, ...d0 }).includes(kernel)) return;
    const T = 13, lens = [13, 8, 3];
    const c: Case = { d: { B: 3, Tq: T, Tk: T, ...d0 }, qStart: [0, 0, 0], kvLen: lens };
    const x = inputs(c.d, 4000);
    // Poison every padding position of every input.
    for (let b = 0; b < c.d.B; b++) {
      for (let t = lens[b]!; t < T; t++) {
        x.q.fill(NaN, (b * T + t) * rowSize, (b * T + t + 1) * rowSize);
        x.dout.fill(NaN, (b * T + t) * rowSize, (b * T + t + 1) * rowSize);
        x.k.fill(NaN, (b * T + t) * kvRowSize, (b * T + t + 1) * kvRowSize);
        x.v.fill(NaN, (b * T + t) * kvRowSize, (b * T + t + 1) * kvRowSize);
      }
    }
    const fwd = await gpuForward(c, x, kernel);
    const bwd = await gpuBackward(c, x, kernel);
    for (let b = 0; b < c.d.B; b++) {
      const L = lens[b]!;
      const one: Case = { d: { B: 1, Tq: L, Tk: L, ...d0 }, qStart: [0], kvLen: [L] };
      const q0 = (b * T) * rowSize, k0 = (b * T) * kvRowSize;
      const xs: Inputs = {
        q: x.q.slice(q0, q0 + L * rowSize), k: x.k.slice(k0, k0 + L * kvRowSize),
        v: x.v.slice(k0, k0 + L * kvRowSize), dout: x.dout.slice(q0, q0 + L * rowSize),
      };
      const f1 = await gpuForward(one, xs, kernel);
      const b1 = await gpuBackward(one, xs, kernel);
      const tol = { rtol: 1e-6, atol: 1e-6 };
      expectClose(fwd.out.subarray(q0, q0 + L * rowSize), f1.out, tol, `seq ${b} out`);
      expectClose(bwd.dq.subarray(q0, q0 + L * rowSize), b1.dq, tol, `seq ${b} dq`);
      expectClose(bwd.dk.subarray(k0, k0 + L * kvRowSize), b1.dk, tol, `seq ${b} dk`);
      expectClose(bwd.dv.subarray(k0, k0 + L * kvRowSize), b1.dv, tol, `seq ${b} dv`);
      for (let h = 0; h < d0.Hq; h++) {
        const lseRow = fwd.lse.subarray((b * d0.Hq + h) * T, (b * d0.Hq + h) * T + L);
        expectClose(lseRow, f1.lse.subarray(h * L, (h + 1) * L), tol, `seq ${b} head ${h} lse`);
        expect([...fwd.lse.subarray((b * d0.Hq + h) * T + L, (b * d0.Hq + h + 1) * T)].every((z) => z === 0)).toBe(true);
      }
      const zeroFrom = (a: Float32Array, from: number, to: number) => [...a.subarray(from, to)].every((z) => z === 0);
      expect(zeroFrom(fwd.out, q0 + L * rowSize, q0 + T * rowSize)).toBe(true);
      expect(zeroFrom(bwd.dq, q0 + L * rowSize, q0 + T * rowSize)).toBe(true);
      expect(zeroFrom(bwd.dk, k0 + L * kvRowSize, k0 + T * kvRowSize)).toBe(true);
      expect(zeroFrom(bwd.dv, k0 + L * kvRowSize, k0 + T * kvRowSize)).toBe(true);
    }
  });

  test(`${kernel}: decode and chunked prefill against a cache equal the full-sequence rows`, async () => {
    if (!kernelsFor({ B: 1, Tq: 1, Tk: 1, ...d0 }).includes(kernel)) return;
    const Tmax = 16, lens = [11, 6];
    const full: Case = { d: { B: 2, Tq: Tmax, Tk: Tmax, ...d0 }, qStart: [0, 0], kvLen: lens };
    const x = inputs(full.d, 5000);
    for (let b = 0; b < 2; b++) {
      // The cache beyond each sequence's length is uninitialised memory: make it NaN.
      x.k.fill(NaN, (b * Tmax + lens[b]!) * kvRowSize, (b + 1) * Tmax * kvRowSize);
      x.v.fill(NaN, (b * Tmax + lens[b]!) * kvRowSize, (b + 1) * Tmax * kvRowSize);
    }
    const ref = await gpuForward(full, x, kernel);
    const rowsOf = (src: Float32Array, b: number, from: number, n: number) => src.slice((b * Tmax + from) * rowSize, (b * Tmax + from + n) * rowSize);

    // Decode: one new query row per sequence, keys from the cache of capacity Tmax.
    const dec: Case = { d: { B: 2, Tq: 1, Tk: Tmax, ...d0 }, qStart: lens.map((l) => l - 1), kvLen: lens };
    const xq = new Float32Array(2 * rowSize);
    lens.forEach((l, b) => xq.set(rowsOf(x.q, b, l - 1, 1), b * rowSize));
    const got = await gpuForward(dec, { ...x, q: xq, dout: xq }, kernel);
    const tol = { rtol: 1e-6, atol: 1e-6 };
    lens.forEach((l, b) => expectClose(got.out.subarray(b * rowSize, (b + 1) * rowSize), rowsOf(ref.out, b, l - 1, 1), tol, `decode seq ${b}`));

    // Prefill of the last 4 positions (the cache already holds them).
    const n = 4;
    const pre: Case = { d: { B: 2, Tq: n, Tk: Tmax, ...d0 }, qStart: lens.map((l) => l - n), kvLen: lens };
    const xp = new Float32Array(2 * n * rowSize);
    lens.forEach((l, b) => xp.set(rowsOf(x.q, b, l - n, n), b * n * rowSize));
    const gotP = await gpuForward(pre, { ...x, q: xp, dout: xp }, kernel);
    lens.forEach((l, b) => expectClose(gotP.out.subarray(b * n * rowSize, (b + 1) * n * rowSize), rowsOf(ref.out, b, l - n, n), tol, `prefill seq ${b}`));
  });
  }

  test("the subgroup kernels are chosen for training and prefill shapes, the dims or rows kernel for decode, portable for odd head sizes", () => {
    if (!subgroupKernelsSupported(gpu)) return;
    expect(chooseAttentionKernel(gpu, { B: 16, Tq: 214, Tk: 214, Hq: 4, Hkv: 2, hd: 16 })).toBe("subgroup");
    expect(chooseAttentionKernel(gpu, { B: 16, Tq: 1, Tk: 300, Hq: 4, Hkv: 2, hd: 16 })).toBe("rows");
    expect(chooseAttentionKernel(gpu, { B: 16, Tq: 1, Tk: 300, Hq: 4, Hkv: 2, hd: 16 }, 120)).toBe("rows");
    expect(chooseAttentionKernel(gpu, { B: 16, Tq: 1, Tk: 300, Hq: 4, Hkv: 2, hd: 22 })).toBe("portable");
    expect(chooseAttentionKernel(gpu, { B: 2, Tq: 40, Tk: 40, Hq: 4, Hkv: 2, hd: 10 })).toBe("portable");
    // Few keys: the portable kernel on a software adapter (lavapipe), the rows kernel on a GPU.
    const few = gpu.handle.info.software ? "portable" : "rows";
    expect(chooseAttentionKernel(gpu, { B: 16, Tq: 1, Tk: 300, Hq: 4, Hkv: 2, hd: 16 }, 30)).toBe(few);
    // From a head dimension of 64 the dims kernel, at any key count.
    for (const hd of [64, 128, 256]) {
      expect(chooseAttentionKernel(gpu, { B: 16, Tq: 1, Tk: 300, Hq: 14, Hkv: 2, hd }, 9)).toBe("dims");
      expect(chooseAttentionKernel(gpu, { B: 2, Tq: 4, Tk: 40, Hq: 4, Hkv: 2, hd })).toBe("dims");
    }
    expect(chooseAttentionKernel(gpu, { B: 16, Tq: 1, Tk: 300, Hq: 4, Hkv: 2, hd: 32 }, 120)).toBe("rows");
  });

  test("blocking stays within the kernels' register arrays", () => {
    for (const hd of [1, 10, 24, 64, 100, 128, 200, 256]) {
      for (const [Hq, Hkv] of [[1, 1], [14, 2], [32, 8], [16, 1], [64, 1]]) {
        for (const [B, Tq] of [[1, 1], [16, 1], [4, 512]]) {
          const bl = attentionBlocking({ B, Tq, Tk: 1024, Hq: Hq!, Hkv: Hkv!, hd });
          expect(bl.gb * hd).toBeLessThanOrEqual(512);
          expect(bl.kb * hd).toBeLessThanOrEqual(512);
          expect(bl.gb).toBeLessThanOrEqual(Math.min(8, Hq! / Hkv!));
          expect(bl.kb).toBeLessThanOrEqual(8);
        }
        // The decode kernels' blocks: GB·hd values (rows), GB·ceil(hd/32) vec4 (dims) per lane.
        const rows = queryHeadsPerBlock({ Hq: Hq!, Hkv: Hkv!, hd }, "rows"), dims = queryHeadsPerBlock({ Hq: Hq!, Hkv: Hkv!, hd }, "dims");
        expect(rows * hd).toBeLessThanOrEqual(512);
        expect(dims * Math.ceil(hd / 32)).toBeLessThanOrEqual(16);
        for (const gb of [rows, dims]) expect(gb).toBeLessThanOrEqual(Math.min(8, Hq! / Hkv!));
      }
    }
    // Where the arrays allow, the whole group of a kv head is one block (its keys and values read once per row).
    expect(queryHeadsPerBlock({ Hq: 14, Hkv: 2, hd: 64 }, "dims")).toBe(7);
    expect(queryHeadsPerBlock({ Hq: 28, Hkv: 4, hd: 128 }, "dims")).toBe(4);
  });

  test("rejects head counts that do not group and oversized heads", () => {
    const t = gpu.empty([4]);
    expect(() => attention(gpu, t, t, t, t, t, t, t, { B: 1, Tq: 1, Tk: 1, Hq: 3, Hkv: 2, hd: 1 })).toThrow(/not a multiple/);
    expect(() => attention(gpu, t, t, t, t, t, t, t, { B: 1, Tq: 1, Tk: 1, Hq: 1, Hkv: 1, hd: 300 })).toThrow(/head dimension 300/);
    gpu.release(t);
  });
});
