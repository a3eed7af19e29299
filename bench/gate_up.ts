/**
 * bench/gate_up: fused vs separate gate/up projections on the same weights, in one process, alternating repetitions
 * (robust to load drift on a shared machine): training forward + backward tokens/s at B×T, and decode tokens/s with
 * dispatches per step.
 *
 *   ./node_modules/.bin/bun bench/gate_up.ts [--preset small] [--B 16] [--T 128] [--new 32] [--reps 5]
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getGpu } from "../src/gpu/runtime.ts";
import { initModel } from "../src/model/init.ts";
import { Transformer, makeBatch, releaseBatch } from "../src/model/transformer.ts";
import { GenerationSession } from "../src/model/generate.ts";
import { median } from "./peer.ts";

function flag(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
}
const preset = flag("preset", "small");
const B = Number(flag("B", "16")), T = Number(flag("T", "128")), newTokens = Number(flag("new", "32")), reps = Number(flag("reps", "5"));
const gpu = await getGpu();
const dir = join(mkdtempSync(join(tmpdir(), "recall-bench-gateup-")), preset);
await initModel({ arch: "qwen2", preset, outDir: dir, seed: 0 });
const fused = await Transformer.load(gpu, dir);
if (!fused.fusedGateUp) throw new Error("this adapter/config does not fuse gate/up");
// The same weights with gate and up in buffers of their own.
const separate = fused.withSeparateBuffers();
const seqs = Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => 1 + ((b * 31 + t * 7) % (fused.V - 1))));

async function train(model: Transformer): Promise<number> {
  const grads = model.newGradients();
  const w = gpu.upload(new Float32Array(B * T).fill(1), [B * T]);
  const batch = makeBatch(gpu, seqs);
  const t0 = performance.now();
  const fwd = model.forward(batch, { train: true });
  model.backward(fwd, w, null, grads);
  await gpu.sync();
  const s = (performance.now() - t0) / 1000;
  gpu.release(fwd.logprob, fwd.entropy, w);
  releaseBatch(gpu, batch);
  grads.release();
  return (B * T) / s;
}
async function decode(model: Transformer): Promise<[number, number]> {
  const s = new GenerationSession(model, B, 16 + newTokens);
  s.append(seqs.map((q) => q.slice(0, 16)));
  await gpu.sync();
  const d0 = gpu.dispatchCount;
  const t0 = performance.now();
  await s.generate({ maxNewTokens: newTokens, sampling: { temperature: 0, topP: 1, topK: 0, seed: 0 } });
  const secs = (performance.now() - t0) / 1000;
  const per = (gpu.dispatchCount - d0) / s.steps / model.config.numLayers;
  s.release();
  return [(B * newTokens) / secs, per];
}
const r = { fused: { train: [] as number[], decode: [] as number[], disp: 0 }, separate: { train: [] as number[], decode: [] as number[], disp: 0 } };
for (const m of [fused, separate]) { await train(m); await decode(m); }
for (let i = 0; i < reps; i++) {
  for (const [k, m] of [["fused", fused], ["separate", separate]] as const) {
    r[k].train.push(await train(m));
    const [tps, per] = await decode(m);
    r[k].decode.push(tps);
    r[k].disp = per;
  }
}
console.log(`${preset}, B=${B}, T=${T}, decode ${newTokens} tokens; medians of ${reps} alternating repetitions`);
for (const k of ["separate", "fused"] as const) {
  console.log(`${k.padEnd(9)} train ${median(r[k].train).toFixed(1).padStart(7)} tok/s   decode ${median(r[k].decode).toFixed(1).padStart(7)} tok/s   ${r[k].disp.toFixed(1)} dispatches per layer per decode step`);
}
console.log(`fused / separate: train ${(median(r.fused.train) / median(r.separate.train)).toFixed(3)}×, decode ${(median(r.fused.decode) / median(r.separate.decode)).toFixed(3)}×`);
