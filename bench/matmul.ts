/**
 * bench/matmul: GFLOP/s of the WGSL matmul on the current adapter beside OpenBLAS sgemm (numpy, Debian's python3) on the
 * same shapes in the same run, with the ratio. `--sweep` also times the kernel's tilings to pick the adapter's best.
 *
 *   ./node_modules/.bin/bun bench/matmul.ts [--sweep] [--reps 5]
 */
import { getGpu } from "../src/gpu/runtime.ts";
import { matmul, chooseTiling, type MatmulOptions, type MatmulTiling } from "../src/ops/matmul.ts";
import { median, runPythonPeer } from "./peer.ts";

const argv = process.argv.slice(2);
const sweep = argv.includes("--sweep");
const reps = Number(argv[argv.indexOf("--reps") + 1] ?? 0) || 5;

interface Case { name: string; M: number; N: number; K: number; transA?: boolean; transB?: boolean }
// Square shapes, then the products of a Qwen2.5-0.5B-sized layer over 128 tokens (forward x·Wᵀ, backward dy·W and dyᵀ·x).
const CASES: Case[] = [
  { name: "square 256", M: 256, N: 256, K: 256 },
  { name: "square 512", M: 512, N: 512, K: 512 },
  { name: "square 1024", M: 1024, N: 1024, K: 1024 },
  { name: "fwd x·Wᵀ 128×896×896", M: 128, N: 896, K: 896, transB: true },
  { name: "fwd mlp 128×4864×896", M: 128, N: 4864, K: 896, transB: true },
  { name: "bwd dy·W 128×896×4864", M: 128, N: 896, K: 4864 },
  { name: "bwd dW=dyᵀ·x 896×896×128", M: 896, N: 896, K: 128, transA: true },
  { name: "decode b1 1×4864×896", M: 1, N: 4864, K: 896, transB: true },
  { name: "decode b16 16×4864×896", M: 16, N: 4864, K: 896, transB: true },
];

const gpu = await getGpu();
console.log(`adapter: ${gpu.handle.info.description} (${gpu.handle.info.backend})`);

async function timeGpu(c: Case, tiling: MatmulTiling | undefined): Promise<number> {
  const a = gpu.upload(new Float32Array(c.M * c.K).fill(0.5), [c.M * c.K]);
  const b = gpu.upload(new Float32Array(c.K * c.N).fill(0.25), [c.K * c.N]);
  const out = gpu.empty([c.M * c.N]);
  const o: MatmulOptions = { transA: c.transA, transB: c.transB, tiling };
  matmul(gpu, a, b, out, c, o); // warm-up (pipeline build)
  await gpu.sync();
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    matmul(gpu, a, b, out, c, o);
    await gpu.sync();
    times.push((performance.now() - t0) / 1000);
  }
  gpu.release(a, b, out);
  return median(times);
}

const gflops = (c: Case, s: number) => (2 * c.M * c.N * c.K) / s / 1e9;

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

console.log(`\nmedian of ${reps}; tiling from chooseTiling(M); peer = numpy float32 @ (OpenBLAS) on the same cores\n`);
console.log("shape [tiling]".padEnd(40) + "WGSL GFLOP/s".padStart(14) + "CPU GFLOP/s".padStart(14) + "WGSL/CPU".padStart(10));
for (const [i, c] of CASES.entries()) {
  const s = await timeGpu(c, undefined);
  const g = gflops(c, s);
  const p = peer ? gflops(c, peer[i]!) : NaN;
  const t = chooseTiling(c.M);
  console.log(`${c.name} [tm${t.tm} ${t.wgX}x${t.wgY}]`.padEnd(40) + g.toFixed(2).padStart(14) + (peer ? p.toFixed(1) : "n/a").padStart(14) + (peer ? (g / p).toFixed(3) : "n/a").padStart(10));
}

if (sweep) {
  const tilings: MatmulTiling[] = [];
  for (const tm of [1, 2, 4, 8]) for (const [wgX, wgY] of [[8, 8], [16, 4], [4, 16], [16, 16], [32, 2], [64, 1]] as const) tilings.push({ tm, wgX, wgY });
  const probe = [CASES[2]!, CASES[4]!, CASES[6]!];
  console.log(`\ntiling sweep (GFLOP/s): ${probe.map((c) => c.name).join(" | ")}`);
  for (const t of tilings) {
    const figs: string[] = [];
    for (const c of probe) figs.push(gflops(c, await timeGpu(c, t)).toFixed(2).padStart(8));
    console.log(`tm=${t.tm} wg=${t.wgX}x${t.wgY}`.padEnd(20) + figs.join(""));
  }
}
