/**
 * Child of test/gpu_lifetime.test.ts, run under BUN_JSC_collectContinuously=1 so a garbage collection can land
 * between bun-webgpu packing a descriptor and Dawn reading it: opens the device (feature list, limits), builds
 * pipelines with override constants (layout entries, WGSL, constant names), and checks every dispatch's result.
 * Prints `ok <pipelines>` and exits 0, or throws.
 */
import { getGpu, Params, type Kernel } from "../src/gpu/runtime.ts";

const PIPELINES = Number(process.argv[2] ?? 80);
const N = 64;

function kernel(variant: number): Kernel {
  return {
    shader: {
      name: `gc-stress-${variant}`,
      code: `struct P { n: u32 }
override FIRST_OVERRIDE_CONSTANT_${variant}: f32 = 0.0;
override SECOND_OVERRIDE_CONSTANT_WITH_A_LONG_NAME: f32 = 0.0;
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x < p.n) { c[g.x] = a[g.x] + FIRST_OVERRIDE_CONSTANT_${variant} + SECOND_OVERRIDE_CONSTANT_WITH_A_LONG_NAME; }
}`,
    },
    entry: "main",
    storage: ["read", "read_write"],
    uniforms: true,
  };
}

const gpu = await getGpu();
const a = gpu.upload(new Float32Array(N).fill(1), [N]);
for (let i = 0; i < PIPELINES; i++) {
  const variant = i % 4;
  const c = gpu.empty([N]);
  gpu.dispatch({
    kernel: kernel(variant),
    constants: { [`FIRST_OVERRIDE_CONSTANT_${variant}`]: i, SECOND_OVERRIDE_CONSTANT_WITH_A_LONG_NAME: 0.5 },
    params: new Params().u32(N).bytes(),
    bindings: [a, c],
    workgroups: [1],
  });
  const out = new Float32Array(await gpu.read(c));
  if (out[0] !== i + 1.5 || out[N - 1] !== i + 1.5) throw new Error(`pipeline ${i}: got ${out[0]}, ${out[N - 1]}; want ${i + 1.5}`);
  gpu.release(c);
}
console.log(`ok ${PIPELINES}`);
