import { beforeAll, expect, test } from "bun:test";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import { kvAppend } from "../src/ops/kvcache.ts";
import { kvAppendRef } from "../src/ops/kvcache.ref.ts";
import { randn } from "./harness.ts";

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

test("kvAppend writes each sequence's new rows at its own position and nothing else", async () => {
  const d = { B: 3, Tq: 5, Tmax: 13, F: 7 };
  const k = randn(d.B * d.Tq * d.F, 1), v = randn(d.B * d.Tq * d.F, 2);
  const kc = randn(d.B * d.Tmax * d.F, 3), vc = randn(d.B * d.Tmax * d.F, 4);
  const start = Uint32Array.from([0, 4, 10]);
  const newLen = Uint32Array.from([5, 2, 5]); // the last runs past Tmax: rows beyond capacity are dropped
  const tk = gpu.upload(k, [k.length]), tv = gpu.upload(v, [v.length]);
  const tkc = gpu.upload(kc, [kc.length]), tvc = gpu.upload(vc, [vc.length]);
  const ts = gpu.upload(start, [3]), tn = gpu.upload(newLen, [3]);
  kvAppend(gpu, tk, tv, ts, tn, tkc, tvc, d);
  const [gk, gv] = await gpu.readMany([tkc, tvc]);
  const wk = kc.slice(), wv = vc.slice();
  kvAppendRef(k, v, start, newLen, wk, wv, d);
  expect([...new Float32Array(gk!)]).toEqual([...wk]);
  expect([...new Float32Array(gv!)]).toEqual([...wv]);
  // and the reference really changed something (and left the rest)
  expect(wk[(1 * d.Tmax + 4) * d.F]).toBe(k[(1 * d.Tq + 0) * d.F]!);
  expect(wk[(1 * d.Tmax + 6) * d.F]).toBe(kc[(1 * d.Tmax + 6) * d.F]!);
  gpu.release(tk, tv, tkc, tvc, ts, tn);
});
