/**
 * Lifetimes across the bun-webgpu FFI boundary: the two causes of the segfaults seen in long `recall sft` / `recall train`
 * runs (see src/gpu/binding.ts and src/gpu/packed_struct_lifetime.ts).
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { getGpu, Params, type Gpu, type Kernel } from "../src/gpu/runtime.ts";
import { heldCount, holdingPackedStructs } from "../src/gpu/packed_struct_lifetime.ts";
import { PROJECT_ROOT } from "./harness.ts";

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

const ACCUMULATE: Kernel = {
  shader: {
    name: "lifetime-accumulate",
    code: `struct P { n: u32, s: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x < p.n) { c[g.x] = c[g.x] + a[g.x] * p.s; }
}`,
  },
  entry: "main",
  storage: ["read", "read_write"],
  uniforms: true,
};

function mappingCount(): number {
  return readFileSync("/proc/self/maps", "utf8").split("\n").length;
}

describe("GPU object lifetimes", () => {
  // Before the fix every dispatch leaked its bind group, and lavapipe gave each one's descriptor pool a memfd
  // mapping of its own: +1 mapping per dispatch (measured: +20,063 after 20,000), so a process died at the kernel's
  // vm.max_map_count (65,530) — SIGSEGV inside vkCreateDescriptorPool after ~65k dispatches, ~200 SFT steps.
  test.skipIf(!existsSync("/proc/self/maps"))("20,000 dispatches leave the process's memory mappings flat (bind groups are released)", async () => {
    const n = 64;
    const a = gpu.upload(new Float32Array(n).fill(1), [n]);
    const c = gpu.zeros([n]);
    await gpu.sync();
    const before = mappingCount();
    const dispatches = 20_000;
    for (let i = 0; i < dispatches; i++) {
      gpu.dispatch({ kernel: ACCUMULATE, params: new Params().u32(n).f32(1).bytes(), bindings: [a, c], workgroups: [1] });
      if (i % 500 === 499) await gpu.sync();
    }
    const out = new Float32Array(await gpu.read(c));
    const grown = mappingCount() - before;
    gpu.release(a, c);
    expect(out[0]).toBe(dispatches);
    expect(out[n - 1]).toBe(dispatches);
    // What stays is Dawn's pool of descriptor sets for work in flight (measured ~1,000–1,500), not one per dispatch.
    expect(grown).toBeLessThan(4000);
  }, 120_000);

  // Before the fix bun-webgpu's nested descriptor buffers could be freed between packing and the FFI call; under
  // continuous collection 9 of 11 single runs failed (garbage feature ids or limits in requestDevice, a garbage
  // chained struct in a bind group layout).
  test("descriptors survive a garbage collection between packing and the FFI call (continuous GC, 4 processes)", async () => {
    for (let run = 0; run < 4; run++) {
      const child = Bun.spawn([process.execPath, join(PROJECT_ROOT, "test/gpu_gc_stress_child.ts"), "24"], {
        env: { ...process.env, BUN_JSC_collectContinuously: "1" },
        stdout: "pipe",
        stderr: "pipe",
      });
      const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
      if (code !== 0) throw new Error(`run ${run}: exit ${code}\n${stderr.split("\n").slice(-12).join("\n")}`);
      expect(stdout.trim()).toBe("ok 24");
    }
  }, 240_000);

  test("holdingPackedStructs keeps what a call allocates until it returns, then restores the globals", () => {
    const NativeArrayBuffer = ArrayBuffer;
    const nativeEncode = TextEncoder.prototype.encode;
    const encoder = new TextEncoder();
    const seen = holdingPackedStructs(() => {
      const outer = new ArrayBuffer(16);
      encoder.encode("label");
      const inner = holdingPackedStructs(() => {
        new ArrayBuffer(8);
        return heldCount();
      });
      expect(outer).toBeInstanceOf(NativeArrayBuffer);
      expect(new DataView(outer).byteLength).toBe(16);
      return { inner, afterInner: heldCount() };
    });
    // A nested call adds to the outer call's list; nothing is dropped before the outermost call returns.
    expect(seen).toEqual({ inner: 3, afterInner: 3 });
    expect(heldCount()).toBe(0);
    expect(globalThis.ArrayBuffer).toBe(NativeArrayBuffer);
    expect(TextEncoder.prototype.encode).toBe(nativeEncode);
    expect(() =>
      holdingPackedStructs(() => {
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(globalThis.ArrayBuffer).toBe(NativeArrayBuffer);
    expect(heldCount()).toBe(0);
  });
});
