/**
 * bench/attention: the decode attention kernels side by side — a generation step's attention (one query row per
 * sequence against its KV cache) for the head shapes of the presets and of the Qwen2.5 models a user trains, at
 * several context lengths. Each kernel that can take the shape (`portable`; with subgroups `rows`, the keys split over a
 * subgroup, and `dims`, the head dimension split over it) runs in the same process, alternated round by round;
 * medians of the rounds, per dispatch. The column `chosen` is what chooseAttentionKernel picks for the shape (what a
 * rollout runs). Values are checked against the portable kernel before timing.
 *
 *   ./node_modules/.bin/bun bench/attention.ts [--keys 16,150,1000] [--batch 32] [--reps 7]
 */
import { getGpu } from "../src/gpu/runtime.ts";
import { subgroupKernelsSupported } from "../src/gpu/shaders.ts";
import { attention, chooseAttentionKernel, type AttentionDims, type AttentionKernel } from "../src/ops/attention.ts";
import { median } from "./peer.ts";

function flag(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
}
const keyCounts = flag("keys", "16,150,1000").split(",").map(Number);
const batch = Number(flag("batch", "32"));
const reps = Number(flag("reps", "7"));

// [name, query heads, kv heads, head dimension]
const SHAPES: [string, number, number, number][] = [
  ["tiny preset", 4, 2, 16],
  ["small preset", 6, 2, 64],
  ["Qwen2.5-0.5B", 14, 2, 64],
  ["Qwen2.5-3B", 16, 2, 128],
  ["Qwen2.5-7B", 28, 4, 128],
];

const gpu = await getGpu();
const kernels: AttentionKernel[] = subgroupKernelsSupported(gpu) ? ["portable", "rows", "dims"] : ["portable"];
console.log(`adapter: ${gpu.handle.info.description}; decode attention, ${batch} sequences (fewer past 150 keys: same keys read per step), µs per dispatch, medians of ${reps} alternated rounds`);
console.log(`${"heads".padEnd(14)} ${"q/kv×hd".padEnd(9)} ${"keys".padStart(5)} ${"B".padStart(3)}  ${kernels.map((k) => k.padStart(9)).join(" ")}  ${"chosen".padStart(8)}  vs portable`);

const wave = (i: number, f: (i: number) => number) => Float32Array.from({ length: i }, (_, j) => f(j));
for (const [name, Hq, Hkv, hd] of SHAPES) {
  for (const keys of keyCounts) {
    // Long contexts with fewer sequences, so every case reads about as many cache bytes.
    const B = Math.max(1, Math.round((batch * Math.min(keys, 150)) / keys));
    const d: AttentionDims = { B, Tq: 1, Tk: keys, Hq, Hkv, hd };
    const q = gpu.upload(wave(B * Hq * hd, (j) => Math.sin(j)), [B * Hq * hd]);
    const k = gpu.upload(wave(B * keys * Hkv * hd, (j) => Math.cos(j * 0.7)), [B * keys * Hkv * hd]);
    const v = gpu.upload(wave(B * keys * Hkv * hd, (j) => Math.sin(j * 0.3)), [B * keys * Hkv * hd]);
    // Sequences end a little apart, as in a rollout; the longest attends `keys` keys.
    const lens = Array.from({ length: B }, (_, b) => Math.max(1, keys - (b % 5)));
    const qStart = gpu.upload(Uint32Array.from(lens, (l) => l - 1), [B], "u32");
    const kvLen = gpu.upload(Uint32Array.from(lens), [B], "u32");
    const out = gpu.empty([B * Hq * hd]), lse = gpu.empty([B * Hq]);
    let ref: Float32Array | undefined;
    for (const kernel of kernels) {
      attention(gpu, q, k, v, qStart, kvLen, out, lse, d, { kernel });
      const got = await gpu.readF32(out);
      ref ??= got;
      const err = got.reduce((m, x, i) => Math.max(m, Math.abs(x - ref![i]!)), 0);
      if (!(err < 1e-4)) throw new Error(`${name} ${keys} keys: the ${kernel} kernel differs from the portable one by ${err}`);
    }
    const per = 10;
    const times = new Map<AttentionKernel, number[]>(kernels.map((kd) => [kd, []]));
    for (let r = 0; r < reps + 1; r++) {
      for (const kernel of kernels) {
        const t = performance.now();
        for (let i = 0; i < per; i++) attention(gpu, q, k, v, qStart, kvLen, out, lse, d, { kernel });
        await gpu.sync();
        if (r > 0) times.get(kernel)!.push(((performance.now() - t) * 1000) / per);
      }
    }
    const med = new Map(kernels.map((kd) => [kd, median(times.get(kd)!)]));
    const chosen = chooseAttentionKernel(gpu, d, keys);
    console.log(
      `${name.padEnd(14)} ${`${Hq}/${Hkv}×${hd}`.padEnd(9)} ${String(keys).padStart(5)} ${String(B).padStart(3)}  ${kernels.map((kd) => med.get(kd)!.toFixed(0).padStart(9)).join(" ")}  ${chosen.padStart(8)}  ${(med.get("portable")! / med.get(chosen)!).toFixed(2)}×`,
    );
    gpu.release(q, k, v, qStart, kvLen, out, lse);
  }
}
process.exit(0);
