/** The GPU runtime's own contract: buffer accounting, pipeline cache, batching, readback, readable errors. */
import { beforeAll, describe, expect, test } from "bun:test";
import { getGpu, Params, type Gpu, type Kernel } from "../src/gpu/runtime.ts";
import { sizeClass } from "../src/gpu/buffers.ts";
import { RecallError } from "../src/errors.ts";

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

const SCALE: Kernel = {
  shader: {
    name: "test-scale",
    code: `struct P { n: u32, s: f32, b: f32 }
override ADD: f32 = 0.0;
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x < p.n) { x[g.x] = x[g.x] * p.s + p.b + ADD; }
}`,
  },
  entry: "main",
  storage: ["read_write"],
  uniforms: true,
};

describe("GPU runtime", () => {
  test("many dispatches in one batch each see their own uniforms, in order", async () => {
    const n = 100;
    const t = gpu.upload(new Float32Array(n).fill(1), [n]);
    const before = gpu.submitCount;
    // x ← 0.5·x + i is order-sensitive: any mix-up of uniform slots or dispatch order changes the result.
    let want = 1;
    for (let i = 1; i <= 300; i++) {
      gpu.dispatch({ kernel: SCALE, params: new Params().u32(n).f32(0.5, i).bytes(), bindings: [t], workgroups: [2] });
      want = Math.fround(Math.fround(want * 0.5) + i);
    }
    gpu.dispatch({ kernel: SCALE, constants: { ADD: 3 }, params: new Params().u32(n).f32(1, 0).bytes(), bindings: [t], workgroups: [2] });
    want = Math.fround(want + 3);
    const out = await gpu.readF32(t);
    expect(out[0]).toBe(want);
    expect(out[n - 1]).toBe(want);
    // 301 dispatches fit in a few submits (the uniform arena spills at most a handful of times).
    expect(gpu.submitCount - before).toBeLessThan(10);
    gpu.release(t);
  });

  test("pipeline cache is keyed by shader, entry and constants", () => {
    const a = gpu.pipeline(SCALE, { ADD: 1 });
    expect(gpu.pipeline(SCALE, { ADD: 1 })).toBe(a);
    expect(gpu.pipeline(SCALE, { ADD: 2 })).not.toBe(a);
  });

  test("buffer pool reuses freed buffers and tracks bytes in use and peak", () => {
    const s0 = { ...gpu.pool.stats };
    const a = gpu.empty([1000]);
    const inUse = gpu.pool.stats.inUse;
    expect(inUse - s0.inUse).toBe(sizeClass(4000));
    gpu.release(a);
    expect(gpu.pool.stats.inUse).toBe(s0.inUse);
    const allocs = gpu.pool.stats.allocations;
    const b = gpu.empty([999]); // same size class → same buffer, no new allocation
    expect(gpu.pool.stats.allocations).toBe(allocs);
    expect(b.buffer).toBe(a.buffer);
    expect(gpu.pool.stats.peak).toBeGreaterThanOrEqual(inUse);
    gpu.release(b);
  });

  test("size classes are monotone and cover the request", () => {
    let prev = 0;
    for (const n of [1, 255, 256, 257, 65536, 65537, 1e6, 123456789]) {
      const c = sizeClass(n);
      expect(c).toBeGreaterThanOrEqual(n);
      expect(c).toBeGreaterThanOrEqual(prev);
      expect(c).toBeLessThanOrEqual(n * 1.125 + 256); // at most 1/8 waste above 64 KiB
      prev = c;
    }
  });

  test("a shader that does not compile is a RecallError naming the kernel", () => {
    const bad: Kernel = { shader: { name: "test-bad", code: "fn broken( {" }, entry: "main", storage: [], uniforms: false };
    expect(() => gpu.pipeline(bad)).toThrow(RecallError);
    expect(() => gpu.pipeline(bad)).toThrow(/test-bad/);
  });

  test("a grid beyond the adapter's limit is refused before it reaches the driver", () => {
    const t = gpu.empty([4]);
    expect(() => gpu.dispatch({ kernel: SCALE, params: new Params().u32(4).f32(1, 0).bytes(), bindings: [t], workgroups: [1 << 20] })).toThrow(/exceeds/);
    gpu.release(t);
  });

  test("readMany reads several tensors with one submit, values intact", async () => {
    const a = gpu.upload(Float32Array.from([1, 2, 3]), [3]);
    const b = gpu.upload(Uint32Array.from([7, 8]), [2]);
    const before = gpu.submitCount;
    const [ra, rb] = await gpu.readMany([a, b]);
    expect(gpu.submitCount - before).toBe(1);
    expect([...new Float32Array(ra!)]).toEqual([1, 2, 3]);
    expect([...new Uint32Array(rb!)]).toEqual([7, 8]);
    gpu.release(a, b);
  });
});
