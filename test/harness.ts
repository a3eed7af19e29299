/**
 * Kernel test harness: a seeded PRNG for reproducible random inputs, per-dtype tolerances, and a
 * closeness check that reports the worst element (index, got, want) when it fails.
 */
import { expect } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { mulberry32 } from "../src/util/prng.ts";

/** The seeded PRNG for test data (same seed → same data on every machine). */
export const rng = mulberry32;

/** Uniform values in [lo, hi). */
export function randomArray(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * r();
  return out;
}

/** Standard-normal values (Box–Muller). */
export function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(r(), 1e-12), v = r();
    const m = Math.sqrt(-2 * Math.log(u)) * scale;
    out[i] = m * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = m * Math.sin(2 * Math.PI * v);
  }
  return out;
}

/**
 * Tolerances per dtype, stated once: |got − want| ≤ atol + rtol·|want|. f32 kernels reorder sums, so
 * rtol scales with the reduction length K through `forReduction`.
 */
export const TOLERANCE = {
  f32: { rtol: 1e-5, atol: 1e-5 },
  f16: { rtol: 2e-3, atol: 1e-3 },
  bf16: { rtol: 1.6e-2, atol: 1e-2 },
} as const;

export function forReduction(dtype: keyof typeof TOLERANCE, k: number): { rtol: number; atol: number } {
  const t = TOLERANCE[dtype];
  const grow = Math.sqrt(Math.max(1, k));
  return { rtol: t.rtol * grow, atol: t.atol * grow };
}

export function worstMismatch(got: ArrayLike<number>, want: ArrayLike<number>, tol: { rtol: number; atol: number }) {
  if (got.length !== want.length) return { index: -1, got: got.length, want: want.length, excess: Infinity };
  let worst = { index: -1, got: 0, want: 0, excess: 0 };
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!, w = want[i]!;
    const err = Math.abs(g - w) - (tol.atol + tol.rtol * Math.abs(w));
    if (Number.isNaN(g) !== Number.isNaN(w) || err > worst.excess) worst = { index: i, got: g, want: w, excess: Number.isNaN(g) ? Infinity : err };
  }
  return worst;
}

export function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: { rtol: number; atol: number }, label = ""): void {
  const w = worstMismatch(got, want, tol);
  const msg = w.index < 0 ? "ok" : `${label} element ${w.index}: got ${w.got}, want ${w.want} (tol atol=${tol.atol} rtol=${tol.rtol})`;
  expect(msg).toBe("ok");
}

/** Runs the CLI (`./recall` from source, or a given binary) and captures its output. */
/** The repository root. */
export const PROJECT_ROOT = new URL("..", import.meta.url).pathname;
const root = PROJECT_ROOT;

export function runRecall(args: string[], opts: { cwd?: string; bin?: string; input?: string } = {}) {
  const cmd = opts.bin ? [opts.bin, ...args] : [`${root}/recall`, ...args];
  const p = Bun.spawnSync(cmd, { cwd: opts.cwd ?? root, stdin: opts.input ? Buffer.from(opts.input) : "ignore", env: { ...process.env, NO_COLOR: "1" } });
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

/**
 * Central finite differences of a scalar function at selected coordinates of x:
 * (f(x + h·eᵢ) − f(x − h·eᵢ)) / 2h. Pass an f computed in float64 (e.g. a CPU reference forward
 * followed by a dot product with a fixed random cotangent) so the check measures the backward
 * kernel, not float32 noise. `indices` limits the cost on large inputs.
 */
export function numericGradient(f: (x: Float64Array) => number, x: ArrayLike<number>, indices?: number[], h = 1e-4): Map<number, number> {
  const xs = Float64Array.from(x);
  const out = new Map<number, number>();
  for (const i of indices ?? xs.keys()) {
    const orig = xs[i]!;
    xs[i] = orig + h;
    const up = f(xs);
    xs[i] = orig - h;
    const down = f(xs);
    xs[i] = orig;
    out.set(i, (up - down) / (2 * h));
  }
  return out;
}

/** A few spread-out indices of an array of length n (first, last, and seeded random ones). */
export function sampleIndices(n: number, count: number, seed: number): number[] {
  const r = rng(seed);
  const set = new Set<number>([0, n - 1]);
  while (set.size < Math.min(n, count)) set.add(Math.floor(r() * n));
  return [...set];
}

/** Σ a·b in float64. */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

let built: string | undefined;
/** Builds dist/recall once per test process (several suites test the single binary) and returns its path. */
export function compiledBinary(): string {
  if (!built) {
    const build = Bun.spawnSync([process.execPath, "scripts/build.ts"], { cwd: PROJECT_ROOT, stderr: "pipe" });
    if (build.exitCode !== 0) throw new Error(`scripts/build.ts failed: ${build.stderr.toString()}`);
    built = `${PROJECT_ROOT}/dist/recall`;
  }
  return built;
}

/** A python3 that has torch (Debian's python3-torch, which CI installs, or the developers' venv), for the PyTorch cross-checks. */
export function torchPython(): string | undefined {
  for (const py of ["/usr/bin/python3", "/work/venv/bin/python"]) {
    if (existsSync(py) && Bun.spawnSync([py, "-c", "import torch"], { stdout: "ignore", stderr: "ignore" }).exitCode === 0) return py;
  }
  return undefined;
}

/** fixtures/golden/<case>/inputs.json, written by scripts/golden.py: the padded batch and its masks, loss and entropy. */
export interface GoldenInputs {
  batch: number;
  seq_len: number;
  pad_id: number;
  ids: number[][];
  lengths: number[];
  positions: number[][];
  targets: number[][];
  logprob_mask: number[][];
  entropy_mask: number[][];
  loss_weights: number[][];
  entropy_weights: number[][];
  loss: number;
  entropy_loss: number;
}

export function goldenInputs(goldenCase: string): GoldenInputs {
  return JSON.parse(readFileSync(join(PROJECT_ROOT, "fixtures/golden", goldenCase, "inputs.json"), "utf8")) as GoldenInputs;
}

/**
 * A freshly initialised tiny model on the GPU (the `tiny` preset), and the engine's batch helpers. Imported lazily, so
 * suites whose other tests need no GPU can still use it.
 */
export async function tinyModelOnGpu(arch: "qwen2" | "qwen3" | "llama", seed: number) {
  const { getGpu } = await import("../src/gpu/runtime.ts");
  const { Transformer, makeBatch, releaseBatch } = await import("../src/model/transformer.ts");
  const { initModel } = await import("../src/model/init.ts");
  const { mkdtempSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const gpu = await getGpu();
  const dir = join(mkdtempSync(join(tmpdir(), "recall-tiny-")), "m");
  await initModel({ arch, preset: "tiny", outDir: dir, seed });
  return { gpu, model: await Transformer.load(gpu, dir), makeBatch, releaseBatch };
}
