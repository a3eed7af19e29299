/**
 * The keyed dropout kernel (src/ops/dropout.ts) against its CPU reference at odd sizes and through binding windows;
 * its statistics (kept share 1−p, kept values scaled by exactly 1/(1−p), streams independent); and the LoRA mask keys.
 */
import { beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import { dropout } from "../src/ops/dropout.ts";
import { dropoutRef, dropoutScale, dropoutThreshold } from "../src/ops/dropout.ref.ts";
import { loraDropoutKey, loraDropoutSeed } from "../src/model/lora_dropout.ts";
import { LORA_MODULES } from "../src/model/lora.ts";
import { expectClose, randn } from "./harness.ts";

setDefaultTimeout(60_000);

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

describe("dropout kernel vs CPU reference", () => {
  const CASES: [number, number, number, number][] = [
    // n, p, key0, key1
    [1, 0.5, 1, 2],
    [37, 0.1, 0xdeadbeef, 7],
    [1031, 0.3, 12345, 0xffffffff],
    [5003, 0.9, 0, 0],
    [4099, 0.05, 0x9e3779b9, 0x85ebca6b],
  ];

  test("y = mask ⊙ x / (1−p): the same mask bit for bit and the same f32 products", async () => {
    let seed = 300;
    for (const [n, p, key0, key1] of CASES) {
      const x = randn(n, seed++);
      const tx = gpu.upload(x, [n]), ty = gpu.upload(randn(n, seed++), [n]);
      dropout(gpu, tx, ty, p, { key0, key1 });
      const want = new Float32Array(n);
      dropoutRef(x, want, p, { key0, key1 });
      expect(await gpu.readF32(ty)).toEqual(want);
      gpu.release(tx, ty);
    }
  });

  test("accumulate: y += mask ⊙ x / (1−p), dropped elements untouched", async () => {
    let seed = 400;
    for (const [n, p, key0, key1] of CASES) {
      const x = randn(n, seed++), y = randn(n, seed++);
      const tx = gpu.upload(x, [n]), ty = gpu.upload(y, [n]);
      dropout(gpu, tx, ty, p, { key0, key1 }, { accumulate: true });
      const want = y.slice();
      dropoutRef(x, want, p, { key0, key1 }, { accumulate: true });
      const got = await gpu.readF32(ty);
      // A fused multiply-add may round once instead of twice.
      expectClose(got, want, { atol: 1e-6, rtol: 1e-6 }, `accumulate n=${n}`);
      for (let i = 0; i < n; i++) if (want[i] === y[i]) expect(got[i]).toBe(y[i]!);
      gpu.release(tx, ty);
    }
  });

  test("binding windows: the mask follows the element index, not the window", async () => {
    const n = 5003, p = 0.4, key = { key0: 99, key1: 1234567 };
    const x = randn(n, 7);
    const tx = gpu.upload(x, [n]), ty = gpu.zeros([n]);
    const before = gpu.dispatchCount;
    dropout(gpu, tx, ty, p, key, { maxBindingBytes: 4096 });
    expect(gpu.dispatchCount - before).toBeGreaterThan(4);
    const want = new Float32Array(n);
    dropoutRef(x, want, p, key);
    expect(await gpu.readF32(ty)).toEqual(want);
    // A window of the reference starting mid-stream is the same slice.
    const part = new Float32Array(1000);
    dropoutRef(x.subarray(2000), part, p, key, { n: 1000, first: 2000 });
    expect(part).toEqual(want.subarray(2000, 3000));
    gpu.release(tx, ty);
  });
});

describe("dropout statistics", () => {
  test("over 2^20 elements the kept share is 1−p (within 5σ) and every kept value is exactly 1/(1−p)", async () => {
    const n = 1 << 20;
    const ones = gpu.upload(new Float32Array(n).fill(1), [n]);
    const y = gpu.empty([n]);
    for (const p of [0.05, 0.1, 0.5, 0.9]) {
      dropout(gpu, ones, y, p, loraDropoutKey(loraDropoutSeed(1, 3, 0), 0, "q_proj"));
      const got = await gpu.readF32(y);
      let kept = 0;
      for (const v of got) {
        if (v !== 0) {
          kept++;
          if (v !== dropoutScale(p)) throw new Error(`kept value ${v} is not 1/(1-${p}) = ${dropoutScale(p)}`);
        }
      }
      const sigma = Math.sqrt(n * p * (1 - p));
      expect(Math.abs(kept - n * (1 - p))).toBeLessThan(5 * sigma);
      // The mean is preserved: E[mask/(1−p)] = 1.
      expect(Math.abs((kept * dropoutScale(p)) / n - 1)).toBeLessThan((5 * sigma * dropoutScale(p)) / n);
    }
    gpu.release(ones, y);
  });

  test("each projection, layer, pass and step draws its own mask; the same key draws the same one", () => {
    const n = 1 << 16, p = 0.5, thr = dropoutThreshold(p);
    const bits = (k: ReturnType<typeof loraDropoutKey>) => {
      const out = new Float32Array(n);
      dropoutRef(new Float32Array(n).fill(1), out, p, k);
      return out.map((v) => (v !== 0 ? 1 : 0));
    };
    expect(thr).toBe(1 << 23);
    const seeds = [loraDropoutSeed(1, 1, 0), loraDropoutSeed(1, 1, 1), loraDropoutSeed(1, 2, 0), loraDropoutSeed(2, 1, 0)];
    expect(new Set(seeds).size).toBe(4);
    const streams = [
      ...LORA_MODULES.map((m) => bits(loraDropoutKey(seeds[0]!, 0, m))),
      bits(loraDropoutKey(seeds[0]!, 1, "q_proj")),
      ...seeds.slice(1).map((s) => bits(loraDropoutKey(s, 0, "q_proj"))),
    ];
    expect(bits(loraDropoutKey(seeds[0]!, 0, "q_proj"))).toEqual(streams[0]!);
    // Pairwise: both kept in about (1−p)² of the elements, as independent masks would be (5σ).
    const sigma = Math.sqrt(n * 0.25 * 0.75);
    for (let a = 0; a < streams.length; a++) {
      for (let b = a + 1; b < streams.length; b++) {
        let both = 0;
        for (let i = 0; i < n; i++) both += streams[a]![i]! & streams[b]![i]!;
        expect([a, b, Math.abs(both - n * 0.25) < 5 * sigma]).toEqual([a, b, true]);
      }
    }
  });

  test("a probability outside [0, 1) is refused", () => {
    expect(() => dropoutThreshold(1)).toThrow("must be in [0, 1)");
    expect(() => dropoutThreshold(-0.1)).toThrow("must be in [0, 1)");
    expect(() => dropoutThreshold(NaN)).toThrow("must be in [0, 1)");
  });
});
