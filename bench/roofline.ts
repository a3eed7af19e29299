/**
 * bench/roofline: what the current adapter's compute shaders can do at best, and how close the matmul gets.
 * It times kernels that do nothing but one kind of operation, in one process:
 *   - FMA throughput: 32 independent fma chains per invocation (lane-FMAs per second, the arithmetic ceiling);
 *   - the cost of a per-invocation value read from memory, by addressing pattern: a different address per lane
 *     (scalar and vec4 storage reads, workgroup memory) and an address every lane shares but that changes in a loop;
 *   - the matmul (the plan matmul() chooses) on a training-sized product, against the model
 *       ns per lane-FMA ≈ F + (values read per lane-FMA) · L
 *     with F and L measured above. On lavapipe (llvmpipe) a read that is not at a compile-time-constant address
 *     costs 10–15 FMAs per lane (measured 2026-12-06), whatever the pattern (a loop over the SIMD lanes in the generated code), so the
 *     matmul's register tile is chosen to read as few values per FMA as the registers allow.
 *
 *   ./node_modules/.bin/bun bench/roofline.ts [--reps 5]
 */
import { getGpu, Params, type Kernel } from "../src/gpu/runtime.ts";
import { subgroupKernelsSupported } from "../src/gpu/shaders.ts";
import { choosePlan, matmul, planName } from "../src/ops/matmul.ts";
import { median } from "./peer.ts";

const argv = process.argv.slice(2);
const reps = Number(argv[argv.indexOf("--reps") + 1] ?? 0) || 5;

const WORKGROUPS = 256;
const LANES = 64;
const ROUNDS = 2048;
const CHAINS = 32;
const READS = 8; // values read per loop round in the load kernels

const fmaChains = Array.from({ length: CHAINS }, (_, i) => `a${i}`);
const CODE = `
struct Params { rounds: u32, mask: u32, stride: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(1) var<storage, read> src4: array<vec4f>;
var<workgroup> tile: array<f32, 1024>;

@compute @workgroup_size(${LANES})
fn fma_chains(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) w: vec3u) {
  ${fmaChains.map((a, i) => `var ${a} = f32(l) + ${i}.0;`).join(" ")}
  let x = f32(w.x) * 1e-3;
  for (var r = 0u; r < p.rounds; r++) { ${fmaChains.map((a) => `${a} = fma(${a}, x, 0.5);`).join(" ")} }
  dst[w.x * ${LANES}u + l] = ${fmaChains.join(" + ")};
}

// Each lane reads its own addresses (a stride apart), 8 a round.
@compute @workgroup_size(${LANES})
fn per_lane_scalar(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) w: vec3u) {
  var s = 0.0;
  for (var r = 0u; r < p.rounds; r++) {
    let o = (l * p.stride + r * 8u) & p.mask;
    s += src[o] + src[o + 1u] + src[o + 2u] + src[o + 3u] + src[o + 4u] + src[o + 5u] + src[o + 6u] + src[o + 7u];
  }
  dst[w.x * ${LANES}u + l] = s;
}

@compute @workgroup_size(${LANES})
fn per_lane_vec4(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) w: vec3u) {
  var s = vec4f(0.0);
  for (var r = 0u; r < p.rounds; r++) {
    let o = ((l * p.stride + r * 8u) & p.mask) / 4u;
    s += src4[o] + src4[o + 1u];
  }
  dst[w.x * ${LANES}u + l] = s.x + s.y + s.z + s.w;
}

// Every lane reads the same address, which changes with the loop round.
@compute @workgroup_size(${LANES})
fn shared_address(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) w: vec3u) {
  var s = f32(l);
  for (var r = 0u; r < p.rounds; r++) {
    let o = (r * 8u) & p.mask;
    s += src[o] + src[o + 1u] + src[o + 2u] + src[o + 3u] + src[o + 4u] + src[o + 5u] + src[o + 6u] + src[o + 7u];
  }
  dst[w.x * ${LANES}u + l] = s;
}

// Workgroup memory, a different address per lane.
@compute @workgroup_size(${LANES})
fn per_lane_workgroup(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) w: vec3u) {
  for (var i = l; i < 1024u; i += ${LANES}u) { tile[i] = src[i]; }
  workgroupBarrier();
  var s = 0.0;
  for (var r = 0u; r < p.rounds; r++) {
    let o = (l * 9u + r * 8u) & 1015u;
    s += tile[o] + tile[o + 1u] + tile[o + 2u] + tile[o + 3u] + tile[o + 4u] + tile[o + 5u] + tile[o + 6u] + tile[o + 7u];
  }
  dst[w.x * ${LANES}u + l] = s;
}
`;

const gpu = await getGpu();
console.log(`adapter: ${gpu.handle.info.description} (${gpu.handle.info.backend}); ${WORKGROUPS} workgroups of ${LANES} invocations, medians of ${reps}`);

const SRC_LEN = 1 << 20;
const src = gpu.upload(Float32Array.from({ length: SRC_LEN }, (_, i) => (i % 17) * 0.01), [SRC_LEN]);
const dst = gpu.empty([WORKGROUPS * LANES]);
const params = new Params().u32(ROUNDS, SRC_LEN - 16, 4099, 0).bytes();

/** Median seconds of one `record()` (recorded `perSync` times a round, after a warm-up round that builds the pipelines). */
async function medianSeconds(record: () => void, perSync = 1): Promise<number> {
  const round = async () => {
    const t = performance.now();
    for (let i = 0; i < perSync; i++) record();
    await gpu.sync();
    return (performance.now() - t) / 1e3 / perSync;
  };
  await round();
  const ts: number[] = [];
  for (let r = 0; r < reps; r++) ts.push(await round());
  return median(ts);
}

/** Median seconds of one dispatch of the kernel `entry`. */
function time(entry: string): Promise<number> {
  const kernel: Kernel = { shader: { name: "roofline", code: CODE }, entry, storage: ["read", "read_write"], uniforms: true };
  return medianSeconds(() => gpu.dispatch({ kernel, params, bindings: [src, dst], workgroups: [WORKGROUPS] }));
}

const laneOps = (perRound: number) => WORKGROUPS * LANES * ROUNDS * perRound;
const fmaS = await time("fma_chains");
const fmaNs = (fmaS * 1e9) / laneOps(CHAINS);
console.log(`\nFMA throughput: ${(laneOps(CHAINS) / fmaS / 1e9).toFixed(1)} G lane-FMA/s (${((2 * laneOps(CHAINS)) / fmaS / 1e9).toFixed(1)} GFLOP/s): ${fmaNs.toFixed(4)} ns per lane-FMA`);
console.log("values read per lane (each kernel adds them up; the adds cost about what FMAs do):");
const loads: Record<string, number> = {};
for (const [entry, what] of [
  ["per_lane_scalar", "storage, f32, an address per lane"],
  ["per_lane_vec4", "storage, vec4f, an address per lane"],
  ["shared_address", "storage, f32, one address for all lanes, changing each round"],
  ["per_lane_workgroup", "workgroup memory, f32, an address per lane"],
] as const) {
  const s = await time(entry);
  loads[entry] = (s * 1e9) / laneOps(READS);
  console.log(`  ${what.padEnd(62)} ${(laneOps(READS) / s / 1e9).toFixed(2)} G values/s  ${loads[entry]!.toFixed(4)} ns each (${(loads[entry]! / fmaNs).toFixed(1)} FMAs)`);
}

// The matmul on a product of the small preset's training step (x·Wᵀ over 2048 tokens), against the model above.
if (subgroupKernelsSupported(gpu)) {
  const dims = { M: 2048, N: 1024, K: 384 };
  const o = { transB: true };
  const plan = choosePlan(gpu, dims, o);
  const a = gpu.upload(Float32Array.from({ length: dims.M * dims.K }, (_, i) => ((i * 7) % 13) * 0.1 - 0.6), [dims.M * dims.K]);
  const b = gpu.upload(Float32Array.from({ length: dims.N * dims.K }, (_, i) => ((i * 5) % 11) * 0.1 - 0.5), [dims.N * dims.K]);
  const c = gpu.empty([dims.M * dims.N]);
  const s = await medianSeconds(() => matmul(gpu, a, b, c, dims, o), 5);
  const fmas = dims.M * dims.N * dims.K;
  console.log(`\nmatmul ${dims.M}×${dims.N}×${dims.K} (x·Wᵀ), ${planName(plan)}: ${((2 * fmas) / s / 1e9).toFixed(1)} GFLOP/s, ${((fmaS / laneOps(CHAINS)) * fmas / s * 100).toFixed(0)}% of the FMA throughput`);
  if (plan.kernel === "subgroup" && plan.vec4A && plan.vec4B) {
    // Per lane and block of 8 k: its tn columns' B (8·tn values) and its share of the tile's A (tm values, passed
    // around the subgroup by broadcasts), for 8·tm·tn FMAs.
    const perFma = (8 * plan.tn + plan.tm) / (8 * plan.tm * plan.tn);
    const modelNs = fmaNs + perFma * loads.per_lane_vec4!;
    console.log(
      `  model: ${perFma.toFixed(3)} values read per lane-FMA → ${modelNs.toFixed(4)} ns per lane-FMA (${(2 / modelNs).toFixed(1)} GFLOP/s); ` +
        `measured ${((s * 1e9) / fmas).toFixed(4)} ns`,
    );
  }
  gpu.release(a, b, c);
}
gpu.release(src, dst);
process.exit(0);
