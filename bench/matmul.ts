/**
 * bench/matmul: GFLOP/s of the WGSL matmul on the current adapter, per shape, for the plan matmul() chooses and for
 * the portable kernel (timed alternately in the same run, with the median of their per-round ratio), beside OpenBLAS
 * sgemm (numpy, Debian's python3) on the same shapes in the same run. `--sweep` also times every subgroup tiling (A and
 * B read as vec4 or not, where the shape allows) and the portable tilings on a few shapes, to pick the adapter's best.
 * `--profile` times every dispatch on the GPU (timestamp-query) and prints, per shape, the GPU time per kernel family of
 * its timed rounds beside their wall time.
 *
 *   ./node_modules/.bin/bun bench/matmul.ts [--reps 5] [--sweep] [--profile]
 */
import { getGpu } from "../src/gpu/runtime.ts";
import { formatProfile } from "../src/gpu/profile_table.ts";
import { subgroupKernelsSupported } from "../src/gpu/shaders.ts";
import {
  matmul,
  choosePlan,
  chooseTiling,
  planName,
  vec4AAligned,
  vec4BAligned,
  SUBGROUP_MAX_TM,
  type MatmulOptions,
  type MatmulPlan,
} from "../src/ops/matmul.ts";
import { median, runPythonPeer } from "./peer.ts";

const argv = process.argv.slice(2);
const sweep = argv.includes("--sweep");
const reps = Number(argv[argv.indexOf("--reps") + 1] ?? 0) || 5;
const profile = argv.includes("--profile");

interface Case { name: string; M: number; N: number; K: number; transA?: boolean; transB?: boolean; offsetB?: number }
// Square shapes, then the products of a Qwen2.5-0.5B-sized model over 128 tokens (forward x·Wᵀ, backward dy·W and
// dyᵀ·x), an LM-head vocabulary slice read at an offset into the embedding, and decode steps (M = batch).
const CASES: Case[] = [
  { name: "square 256", M: 256, N: 256, K: 256 },
  { name: "square 512", M: 512, N: 512, K: 512 },
  { name: "square 1024", M: 1024, N: 1024, K: 1024 },
  { name: "fwd x·Wᵀ 128×896×896", M: 128, N: 896, K: 896, transB: true },
  { name: "fwd mlp 128×4864×896", M: 128, N: 4864, K: 896, transB: true },
  { name: "bwd dy·W 128×896×4864", M: 128, N: 896, K: 4864 },
  { name: "bwd dW=dyᵀ·x 896×896×128", M: 896, N: 896, K: 128, transA: true },
  { name: "lm head slice 128×8192×896", M: 128, N: 8192, K: 896, transB: true, offsetB: 16 * 896 },
  { name: "decode b1 1×4864×896", M: 1, N: 4864, K: 896, transB: true },
  { name: "decode b4 4×4864×896", M: 4, N: 4864, K: 896, transB: true },
  { name: "decode b16 16×4864×896", M: 16, N: 4864, K: 896, transB: true },
  { name: "decode head b1 1×32768×896", M: 1, N: 32768, K: 896, transB: true },
];

const gpu = await getGpu();
if (profile) gpu.startProfiling();
/** With --profile: each shape's GPU profile of its timed rounds, printed after the table. */
const profiles: string[] = [];
console.log(`adapter: ${gpu.handle.info.description} (${gpu.handle.info.backend}); subgroup kernel ${subgroupKernelsSupported(gpu) ? "available" : "unavailable"}`);

const gflops = (c: Case, s: number) => (2 * c.M * c.N * c.K) / s / 1e9;
const options = (c: Case, plan?: MatmulPlan): MatmulOptions => ({ transA: c.transA, transB: c.transB, offsetB: c.offsetB, plan });

/** Times the plans alternately (one run of each per round, after a warm-up that builds the pipelines). Seconds. */
async function timePlans(c: Case, plans: MatmulPlan[], rounds: number): Promise<number[][]> {
  const a = gpu.upload(new Float32Array(c.M * c.K).fill(0.5), [c.M * c.K]);
  const b = gpu.upload(new Float32Array((c.offsetB ?? 0) + c.K * c.N).fill(0.25), [(c.offsetB ?? 0) + c.K * c.N]);
  const out = gpu.empty([c.M * c.N]);
  const times = plans.map(() => [] as number[]);
  for (const plan of plans) matmul(gpu, a, b, out, c, options(c, plan));
  await gpu.sync();
  gpu.profiler?.reset();
  for (let r = 0; r < rounds; r++) {
    for (const [i, plan] of plans.entries()) {
      const t0 = performance.now();
      matmul(gpu, a, b, out, c, options(c, plan));
      await gpu.sync();
      times[i]!.push((performance.now() - t0) / 1000);
    }
  }
  gpu.release(a, b, out);
  if (gpu.profiler) {
    const wallMs = 1000 * times.flat().reduce((x, y) => x + y, 0);
    profiles.push(`\n${c.name}: ${plans.map(planName).join(", ")} × ${rounds} rounds\n${formatProfile(gpu.profiler.snapshot(), wallMs)}`);
  }
  return times;
}

const PEER = `
import json, sys, time
import numpy as np
cases, reps = json.load(sys.stdin)
out = []
for c in cases:
    a = np.full((c["K"], c["M"]) if c.get("transA") else (c["M"], c["K"]), 0.5, dtype=np.float32)
    b = np.full((c["N"], c["K"]) if c.get("transB") else (c["K"], c["N"]), 0.25, dtype=np.float32)
    f = lambda: (a.T if c.get("transA") else a) @ (b.T if c.get("transB") else b)
    f()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    ts.sort(); out.append(ts[len(ts)//2])
print(json.dumps(out))
`;
const peer = runPythonPeer(PEER, [CASES, reps]) as number[] | undefined;

console.log(`\nmedian of ${reps} rounds; "chosen" = the plan matmul() picks, "portable" = the fallback kernel with chooseTiling(M),`);
console.log(`timed alternately (speedup = median of per-round ratios); CPU = numpy float32 @ (OpenBLAS) on the same cores\n`);
console.log(
  "shape".padEnd(30) + "chosen plan".padEnd(20) + "chosen GF/s".padStart(12) + "portable GF/s".padStart(14) + "speedup".padStart(9) + "CPU GF/s".padStart(10) + "WGSL/CPU".padStart(10),
);
for (const [i, c] of CASES.entries()) {
  const chosen = choosePlan(gpu, c, options(c));
  const portable: MatmulPlan = { kernel: "portable", ...chooseTiling(c.M) };
  const [tc, tp] = await timePlans(c, [chosen, portable], reps);
  const g = gflops(c, median(tc!));
  const gp = gflops(c, median(tp!));
  const speedup = median(tc!.map((t, r) => tp![r]! / t));
  const p = peer ? gflops(c, peer[i]!) : NaN;
  console.log(
    c.name.padEnd(30) + planName(chosen).padEnd(20) + g.toFixed(2).padStart(12) + gp.toFixed(2).padStart(14) + `${speedup.toFixed(2)}×`.padStart(9) +
      (peer ? p.toFixed(1) : "n/a").padStart(10) + (peer ? (g / p).toFixed(3) : "n/a").padStart(10),
  );
}

for (const p of profiles.splice(0)) console.log(p);

if (sweep) {
  const probes = [CASES[4]!, CASES[5]!, CASES[6]!, CASES[8]!, CASES[10]!];
  const plans: MatmulPlan[] = [];
  if (subgroupKernelsSupported(gpu)) {
    for (let tm = 1; tm <= SUBGROUP_MAX_TM; tm *= 2) {
      for (const tn of [1, 2, 4]) for (const vec4B of [false, true]) for (const vec4A of [false, true]) plans.push({ kernel: "subgroup", tm, tn, vec4B, ...(vec4A ? { vec4A } : {}) });
    }
  }
  for (const tm of [1, 4, 8]) for (const [wgX, wgY] of [[16, 4], [64, 1]] as const) plans.push({ kernel: "portable", tm, wgX, wgY });
  console.log(`\nsweep (GFLOP/s, median of ${reps}): ${probes.map((c, i) => `[${i}] ${c.name}`).join(" | ")}`);
  console.log("plan".padEnd(26) + probes.map((_, i) => `[${i}]`.padStart(8)).join(""));
  const figs = new Map<MatmulPlan, string[]>(plans.map((p) => [p, []]));
  for (const c of probes) {
    const usable = plans.filter((p) => p.kernel === "portable" || ((!p.vec4B || vec4BAligned(c, options(c))) && (!p.vec4A || vec4AAligned(c, options(c), p.tm))));
    const times = await timePlans(c, usable, reps);
    for (const p of plans) {
      const k = usable.indexOf(p);
      figs.get(p)!.push(k < 0 ? "-" : gflops(c, median(times[k]!)).toFixed(2));
    }
  }
  for (const p of plans) console.log(planName(p).padEnd(26) + figs.get(p)!.map((f) => f.padStart(8)).join(""));
  for (const p of profiles) console.log(p);
}
