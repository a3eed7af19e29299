/** The GPU profiler (src/gpu/profiler.ts): GPU time per kernel family from timestamp queries, and its cost when off. */
import { afterEach, beforeAll, describe, expect, test } from "bun:test";
import { getGpu, Params, type Gpu, type Kernel } from "../src/gpu/runtime.ts";
import { requireTimestampQuery, type ProfileSnapshot } from "../src/gpu/profiler.ts";
import { formatProfile, profileMetrics } from "../src/gpu/profile_table.ts";
import type { Tensor } from "../src/gpu/tensor.ts";
import { RecallError } from "../src/errors.ts";

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});
afterEach(async () => {
  await gpu.stopProfiling();
});

const LOOP = `struct P { n: u32, iters: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(64) fn spin(@builtin(global_invocation_id) g: vec3u) {
  if (g.x >= p.n) { return; }
  var v = x[g.x];
  for (var i = 0u; i < p.iters; i++) { v = v * 0.999 + 0.001; }
  x[g.x] = v;
}`;
// One shader under two names: two kernel families.
const HEAVY: Kernel = { shader: { name: "test-profile-heavy", code: LOOP }, entry: "spin", storage: ["read_write"], uniforms: true };
const LIGHT: Kernel = { shader: { name: "test-profile-light", code: LOOP }, entry: "spin", storage: ["read_write"], uniforms: true };

function spin(kernel: Kernel, x: Tensor, n: number, iters: number): void {
  gpu.dispatch({ kernel, params: new Params().u32(n, iters).bytes(), bindings: [x], workgroups: [Math.ceil(n / 64)] });
}

const family = (p: ProfileSnapshot, name: string) => p.families.find(([k]) => k === name)?.[1];

function expectConsistent(p: ProfileSnapshot): void {
  for (const [, f] of p.families) {
    expect(Number.isFinite(f.ms)).toBe(true);
    expect(f.ms).toBeGreaterThanOrEqual(0);
  }
  expect(p.dispatches).toBe(p.families.reduce((a, [, f]) => a + f.dispatches, 0));
  expect(p.ms).toBeCloseTo(p.families.reduce((a, [, f]) => a + f.ms, 0), 9);
}

/** Counts compute passes and query resolves of every command encoder the runtime creates while `f` runs. */
async function countEncoding(f: () => Promise<void>): Promise<{ passes: number; resolves: number }> {
  const counts = { passes: 0, resolves: 0 };
  const device = gpu.device as GPUDevice & { createCommandEncoder: GPUDevice["createCommandEncoder"] };
  const original = device.createCommandEncoder;
  device.createCommandEncoder = function (this: GPUDevice, d?: GPUCommandEncoderDescriptor) {
    const enc = original.call(this, d);
    const begin = enc.beginComputePass.bind(enc);
    const resolve = enc.resolveQuerySet.bind(enc);
    enc.beginComputePass = (pd?: GPUComputePassDescriptor) => (counts.passes++, begin(pd));
    enc.resolveQuerySet = (...a: Parameters<GPUCommandEncoder["resolveQuerySet"]>) => (counts.resolves++, resolve(...a));
    return enc;
  };
  try {
    await f();
  } finally {
    delete (device as unknown as Record<string, unknown>).createCommandEncoder;
    if (device.createCommandEncoder !== original) device.createCommandEncoder = original;
  }
  return counts;
}

describe("GPU profiler", () => {
  test("each dispatch's GPU time goes to its kernel family, with the right counts", async () => {
    const x = gpu.upload(new Float32Array(16384).fill(1), [16384]);
    spin(HEAVY, x, 16384, 1); // builds both pipelines before timing
    spin(LIGHT, x, 64, 1);
    await gpu.sync();
    const p = gpu.startProfiling();
    const d0 = gpu.dispatchCount;
    for (let i = 0; i < 3; i++) spin(HEAVY, x, 16384, 2000);
    for (let i = 0; i < 5; i++) spin(LIGHT, x, 64, 1);
    await gpu.sync();
    expect(gpu.dispatchCount - d0).toBe(8);
    const snap = p.snapshot();
    expectConsistent(snap);
    expect(family(snap, "test-profile-heavy:spin")?.dispatches).toBe(3);
    expect(family(snap, "test-profile-light:spin")?.dispatches).toBe(5);
    // 16384 × 2000 loop trips take GPU time on any adapter; no claim about how much, or against the light one.
    expect(family(snap, "test-profile-heavy:spin")!.ms).toBeGreaterThan(0);
    expect(snap.dispatches).toBe(8);
    gpu.release(x);
  });

  test("a readback collects the timestamps too; snapshot is a copy; reset forgets the totals", async () => {
    const x = gpu.upload(new Float32Array(256).fill(1), [256]);
    const p = gpu.startProfiling();
    spin(LIGHT, x, 256, 10);
    await gpu.readF32(x);
    const a = p.snapshot();
    expect(family(a, "test-profile-light:spin")?.dispatches).toBe(1);
    a.families[0]![1].dispatches = 99;
    expect(family(p.snapshot(), "test-profile-light:spin")?.dispatches).toBe(1);
    p.reset();
    expect(p.snapshot()).toEqual({ families: [], dispatches: 0, ms: 0 });
    spin(LIGHT, x, 256, 10);
    spin(LIGHT, x, 256, 10);
    const b = await gpu.profileSnapshot();
    expect(family(b!, "test-profile-light:spin")?.dispatches).toBe(2);
    expectConsistent(b!);
    gpu.release(x);
  });

  test("more dispatches than the query set holds: the batch is submitted early and every dispatch is counted", async () => {
    const x = gpu.upload(new Float32Array(256).fill(1), [256]);
    const p = gpu.startProfiling({ passesPerSet: 4 });
    const s0 = gpu.submitCount;
    const counts = await countEncoding(async () => {
      for (let i = 0; i < 11; i++) spin(i % 2 ? HEAVY : LIGHT, x, 256, 10);
      await gpu.sync();
    });
    // 4 + 4 + 3 passes: two early submits, then sync's.
    expect(gpu.submitCount - s0).toBe(3);
    expect(counts).toEqual({ passes: 11, resolves: 3 });
    const snap = p.snapshot();
    expect(family(snap, "test-profile-light:spin")?.dispatches).toBe(6);
    expect(family(snap, "test-profile-heavy:spin")?.dispatches).toBe(5);
    expectConsistent(snap);
    // The values of the dispatches are right after all the early submits: x ← x·0.999^10 + … eleven times.
    const want = (() => {
      let v = 1;
      for (let i = 0; i < 110; i++) v = Math.fround(Math.fround(v * Math.fround(0.999)) + Math.fround(0.001));
      return v;
    })();
    expect((await gpu.readF32(x))[0]).toBeCloseTo(want, 5);
    gpu.release(x);
  });

  test("off: one pass for a batch, no queries, same dispatch count as on", async () => {
    const x = gpu.upload(new Float32Array(256).fill(1), [256]);
    await gpu.sync();
    const run = async () => {
      const d0 = gpu.dispatchCount;
      for (let i = 0; i < 20; i++) spin(LIGHT, x, 256, 1);
      await gpu.sync();
      return gpu.dispatchCount - d0;
    };
    let offDispatches = 0;
    const off = await countEncoding(async () => {
      offDispatches = await run();
    });
    expect(gpu.profiler).toBeNull();
    expect(off).toEqual({ passes: 1, resolves: 0 });
    gpu.startProfiling();
    let onDispatches = 0;
    const on = await countEncoding(async () => {
      onDispatches = await run();
    });
    expect(on).toEqual({ passes: 20, resolves: 1 });
    expect(onDispatches).toBe(offDispatches);
    expect(offDispatches).toBe(20);
    const last = await gpu.stopProfiling();
    expect(last?.dispatches).toBe(20);
    expect(gpu.profiler).toBeNull();
    gpu.release(x);
  });

  test("an adapter without timestamp-query: one clear error naming the flag and the feature", () => {
    const err = (() => {
      try {
        requireTimestampQuery(new Set(["shader-f16", "subgroups"]), "--profile", "some adapter");
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(RecallError);
    expect((err as Error).message).toBe("--profile needs the WebGPU feature 'timestamp-query', which this adapter (some adapter) does not offer");
    expect(() => requireTimestampQuery(new Set(["timestamp-query"]), "--profile", "x")).not.toThrow();
  });

  test("table and metrics of a profile", () => {
    const p: ProfileSnapshot = { families: [["a:x", { dispatches: 3, ms: 3 }], ["b:y", { dispatches: 1, ms: 1 }]], dispatches: 4, ms: 4 };
    const table = formatProfile(p, 8).split("\n");
    expect(table[1]).toMatch(/^a:x\s+3\s+3\.00\s+75\.0%$/);
    expect(table[3]).toMatch(/^GPU total\s+4\s+4\.00\s+100\.0%$/);
    expect(table[4]).toContain("(GPU busy 50% of it)");
    expect(formatProfile(p, 8, 1).split("\n")[2]).toMatch(/^\(1 more families\)\s+1\s+1\.00\s+25\.0%$/);
    expect(profileMetrics(p)).toEqual({ "profile/gpu_ms": 4, "profile/dispatches": 4, "profile/a:x_ms": 3, "profile/b:y_ms": 1 });
  });
});
