/**
 * ops/rope_append (the q/k/v epilogue of a generation step: q/k norm, RoPE, KV-cache append in one dispatch)
 * against its CPU reference, over odd sizes, both source layouts (one fused projection's columns with gaps; three
 * products one after another), with and without Qwen3's q/k norm, padding rows and positions past the cache.
 */
import { beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import { ropeInvFreq } from "../src/ops/rope.ts";
import { ropeAppend, type RopeAppendDims, type RopeAppendLayout } from "../src/ops/rope_append.ts";
import { ropeAppendRef } from "../src/ops/rope_append.ref.ts";
import { randn, rng, expectClose } from "./harness.ts";

setDefaultTimeout(60_000);

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

// cos/sin of angles up to ~10⁴ rad and the norm's reduction over hd.
const TOL = { rtol: 2e-5, atol: 3e-5 };

interface Case extends RopeAppendDims {
  norm: boolean;
  fused: boolean;
  seed: number;
}

async function check(c: Case): Promise<void> {
  const { B, T, Hq, Hkv, hd, Tmax } = c;
  const rows = B * T;
  const r = rng(c.seed);
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  // Fused: one [rows, W] projection output with q, k, v at column offsets (gaps between, as a padded weight gives);
  // separate: three [rows, H·hd] blocks one after another. Both start a few elements into the buffer.
  let layout: RopeAppendLayout, size: number;
  const lead = int(0, 5);
  if (c.fused) {
    const kAt = Hq * hd + int(0, 3), vAt = kAt + Hkv * hd + int(0, 3), W = vAt + Hkv * hd + int(0, 2);
    layout = { q: { offset: lead, stride: W }, k: { offset: lead + kAt, stride: W }, v: { offset: lead + vAt, stride: W } };
    size = lead + rows * W;
  } else {
    const kAt = lead + rows * Hq * hd, vAt = kAt + rows * Hkv * hd;
    layout = { q: { offset: lead, stride: Hq * hd }, k: { offset: kAt, stride: Hkv * hd }, v: { offset: vAt, stride: Hkv * hd } };
    size = vAt + rows * Hkv * hd;
  }
  const qkv = randn(size, c.seed + 1);
  const invFreq = ropeInvFreq(r() < 0.5 ? 10000 : 1e6, hd);
  // Each sequence: a cache length and 0..T new rows (0: the sequence sits this step out); some run past Tmax.
  const qStart = Uint32Array.from({ length: B }, () => int(0, Tmax));
  const kvLen = qStart.map((s) => s + int(0, T));
  const normW = c.norm ? randn(2 * hd + 7, c.seed + 2, 0.5).map((x) => 1 + x) : undefined;
  const norm = normW ? { weight: normW, q: int(0, 3), k: hd + int(3, 7), eps: 1e-6 } : undefined;
  const F = Hkv * hd;
  const kCache0 = randn(B * Tmax * F, c.seed + 3), vCache0 = randn(B * Tmax * F, c.seed + 4);

  const t = {
    qkv: gpu.upload(qkv, [size]),
    inv: gpu.upload(invFreq, [hd / 2]),
    qStart: gpu.upload(qStart, [B]),
    kvLen: gpu.upload(kvLen, [B]),
    norm: normW ? gpu.upload(normW, [normW.length]) : undefined,
    q: gpu.empty([rows, Hq * hd]),
    k: gpu.upload(kCache0, [B, Tmax, F]),
    v: gpu.upload(vCache0, [B, Tmax, F]),
  };
  const dims = { B, T, Hq, Hkv, hd, Tmax };
  ropeAppend(gpu, t.qkv, layout, t.inv, t.qStart, t.kvLen, t.q, t.k, t.v, dims, norm && { ...norm, weight: t.norm! });
  const [q, k, v] = await Promise.all([gpu.readF32(t.q), gpu.readF32(t.k), gpu.readF32(t.v)]);
  const wantQ = new Float32Array(rows * Hq * hd), wantK = kCache0.slice(), wantV = vCache0.slice();
  ropeAppendRef(qkv, layout, invFreq, qStart, kvLen, wantQ, wantK, wantV, dims, norm && { ...norm, weight: normW! });
  const label = JSON.stringify(c);
  expectClose(q, wantQ, TOL, `q ${label}`);
  expectClose(k, wantK, TOL, `k cache ${label}`);
  // v is copied, untouched rows stay: exact.
  expect(Buffer.from(v.buffer).equals(Buffer.from(wantV.buffer))).toBe(true);
  gpu.release(...(Object.values(t).filter(Boolean) as typeof t.q[]));
}

describe("ropeAppend vs its CPU reference", () => {
  test("decode steps (one row per sequence) and prefills (padding rows), both layouts, with and without q/k norm", async () => {
    let seed = 10;
    const shapes: Omit<Case, "norm" | "fused" | "seed">[] = [
      { B: 1, T: 1, Hq: 1, Hkv: 1, hd: 2, Tmax: 3 },
      { B: 3, T: 1, Hq: 3, Hkv: 1, hd: 6, Tmax: 9 },
      { B: 5, T: 1, Hq: 6, Hkv: 2, hd: 10, Tmax: 33 },
      { B: 2, T: 7, Hq: 4, Hkv: 4, hd: 6, Tmax: 11 },
      { B: 3, T: 5, Hq: 14, Hkv: 2, hd: 64, Tmax: 40 },
      { B: 17, T: 1, Hq: 6, Hkv: 2, hd: 128, Tmax: 5 },
    ];
    for (const s of shapes) for (const norm of [false, true]) for (const fused of [true, false]) await check({ ...s, norm, fused, seed: (seed += 10) });
  });

  test("randomized sizes", async () => {
    const r = rng(77);
    const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
    for (let i = 0; i < 10; i++) {
      const Hkv = int(1, 3);
      await check({ B: int(1, 9), T: int(1, 6), Hq: Hkv * int(1, 4), Hkv, hd: 2 * int(1, 20), Tmax: int(1, 30), norm: r() < 0.5, fused: r() < 0.5, seed: 500 + i });
    }
  });

  test("a row stride shorter than its columns and a source too small are refused", () => {
    const src = gpu.empty([40]), inv = gpu.empty([2]), u = gpu.empty([2], "u32"), q = gpu.empty([16]), kc = gpu.empty([64]), vc = gpu.empty([64]);
    const dims = { B: 2, T: 1, Hq: 1, Hkv: 1, hd: 4, Tmax: 8 };
    const ok: RopeAppendLayout = { q: { offset: 0, stride: 12 }, k: { offset: 4, stride: 12 }, v: { offset: 8, stride: 12 } };
    expect(() => ropeAppend(gpu, src, { ...ok, k: { offset: 4, stride: 3 } }, inv, u, u, q, kc, vc, dims)).toThrow(/k row stride 3/);
    expect(() => ropeAppend(gpu, src, { ...ok, v: { offset: 30, stride: 12 } }, inv, u, u, q, kc, vc, dims)).toThrow(/too small for v/);
    gpu.release(src, inv, u, q, kc, vc);
  });
});
