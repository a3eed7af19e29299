/**
 * bench/model: the transformer engine's throughput on the current adapter beside PyTorch (CPU, float32, Debian's
 * python3-torch with OpenBLAS) doing the same work on the same weights in the same run.
 *   - training step: forward + backward over B sequences of T tokens → tokens/s
 *   - decode: batched greedy generation with a KV cache → tokens/s, dispatches per step, and what decoding ahead gains
 *     (stepping one at a time alternated with it in the same run), and what a bf16 copy of the projection weights gains
 *     (`recall train --rollout_dtype bf16`; alternated with the f32 weights)
 * and the GPU memory peak of each. Presets: tiny (~0.1M) and small (~19M) from `recall init`.
 * `--profile` times every dispatch on the GPU (timestamp-query) and prints, per preset and batch, the GPU time per
 * kernel family of the timed training steps and decode steps beside their wall time (the throughput figures are then
 * measured with profiling on: a compute pass per dispatch).
 *
 *   ./node_modules/.bin/bun bench/model.ts [--presets tiny,small] [--batches 1,16] [--T 128] [--prompt 16] [--new 32] [--reps 3] [--profile]
 * (`--prompt 117` decodes after a prompt as long as bench/train.ts's, where a step's attention reads 117+ keys.)
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getGpu } from "../src/gpu/runtime.ts";
import { sumProfiles, type ProfileSnapshot } from "../src/gpu/profiler.ts";
import { formatProfile } from "../src/gpu/profile_table.ts";
import { initModel } from "../src/model/init.ts";
import { Transformer, makeBatch, releaseBatch } from "../src/model/transformer.ts";
import { GenerationSession } from "../src/model/generate.ts";
import { Bf16RolloutWeights } from "../src/train/rollout.ts";
import { median, runPythonPeer } from "./peer.ts";

function flag(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
}
const presets = flag("presets", "tiny,small").split(",");
const batches = flag("batches", "1,16").split(",").map(Number);
const T = Number(flag("T", "128"));
const newTokens = Number(flag("new", "32"));
const promptLen = Number(flag("prompt", "16"));
if (promptLen > T) throw new Error(`--prompt ${promptLen} is longer than --T ${T}`);
const reps = Number(flag("reps", "3"));
const profile = process.argv.includes("--profile");

const gpu = await getGpu();
if (profile) gpu.startProfiling();
const profiles: string[] = [];
console.log(`adapter: ${gpu.handle.info.description}; T=${T}, decode ${newTokens} tokens after a ${promptLen}-token prompt, median of ${reps}`);

const PEER = `
import json, sys, time, math
sys.path.insert(0, "scripts")
import torch, golden
torch.manual_seed(0)
job = json.load(sys.stdin)
cfg = json.load(open(job["dir"] + "/config.json"))
d = golden.derived(cfg)
params = golden.st_read(job["dir"] + "/model.safetensors")
for p in params.values(): p.requires_grad_(True)
out = {}
def med(f, reps):
    f(); ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    ts.sort(); return ts[len(ts) // 2]
for B in job["batches"]:
    T = job["T"]
    ids = torch.randint(1, d["V"], (B, T))
    def train():
        logits = golden.forward(params, d, ids, [T] * B)
        lp, ent = golden.token_stats(logits[:, :-1], ids[:, 1:])
        lp.sum().backward()
    out[f"train{B}"] = med(train, job["reps"])
    # Decode with a KV cache, greedy, as a fair peer to the GPU engine.
    P = {k: v.detach() for k, v in params.items()}
    nh, nkv, hd, L = d["nh"], d["nkv"], d["hd"], d["L"]
    inv = 1.0 / (d["theta"] ** (torch.arange(0, hd, 2).float() / hd))
    def rope(x, pos):
        f = pos.float()[:, None] * inv; e = torch.cat((f, f), -1)
        return x * e.cos()[:, None] + golden.rotate_half(x) * e.sin()[:, None]
    def step(tok, pos, kc, vc):
        x = P["model.embed_tokens.weight"][tok]
        for l in range(L):
            p = f"model.layers.{l}"
            lin = lambda n, h: h @ P[f"{p}.{n}.weight"].T + (P[f"{p}.{n}.bias"] if f"{p}.{n}.bias" in P else 0)
            h = golden.rms_norm(x, P[f"{p}.input_layernorm.weight"], d["eps"])
            q = lin("self_attn.q_proj", h).view(-1, nh, hd); k = lin("self_attn.k_proj", h).view(-1, nkv, hd); v = lin("self_attn.v_proj", h).view(-1, nkv, hd)
            if d["qk_norm"]:
                q = golden.rms_norm(q, P[f"{p}.self_attn.q_norm.weight"], d["eps"]); k = golden.rms_norm(k, P[f"{p}.self_attn.k_norm.weight"], d["eps"])
            q, k = rope(q, pos), rope(k, pos)
            kc[l][:, pos[0]] = k; vc[l][:, pos[0]] = v
            n = int(pos[0]) + 1
            kk = kc[l][:, :n].repeat_interleave(nh // nkv, 2); vv = vc[l][:, :n].repeat_interleave(nh // nkv, 2)
            s = torch.einsum("bhd,bthd->bht", q, kk) * hd ** -0.5
            a = torch.einsum("bht,bthd->bhd", torch.softmax(s, -1), vv).reshape(-1, nh * hd)
            x = x + lin("self_attn.o_proj", a)
            h = golden.rms_norm(x, P[f"{p}.post_attention_layernorm.weight"], d["eps"])
            x = x + lin("mlp.down_proj", torch.nn.functional.silu(lin("mlp.gate_proj", h)) * lin("mlp.up_proj", h))
        x = golden.rms_norm(x, P["model.norm.weight"], d["eps"])
        head = P["model.embed_tokens.weight"] if d["tied"] else P["lm_head.weight"]
        return (x @ head.T).argmax(-1)
    def decode():
        """Seconds for the new tokens only (the prompt goes through the cache first, untimed)."""
        with torch.no_grad():
            cap = job["prompt"] + job["new"]
            kc = [torch.zeros(B, cap, nkv, hd) for _ in range(L)]; vc = [torch.zeros(B, cap, nkv, hd) for _ in range(L)]
            tok = torch.randint(1, d["V"], (B,))
            for t in range(job["prompt"]):
                tok = step(tok, torch.full((B,), t), kc, vc)
            t0 = time.perf_counter()
            for t in range(job["prompt"], cap):
                tok = step(tok, torch.full((B,), t - 1), kc, vc)
            return time.perf_counter() - t0
    ts = sorted(decode() for _ in range(job["reps"] + 1))
    out[f"decode{B}"] = ts[len(ts) // 2]
print(json.dumps(out))
`;

const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
console.log("\n" + "preset".padEnd(8) + "B".padStart(4) + "train tok/s".padStart(13) + "torch".padStart(9) + "ratio".padStart(8) + "decode tok/s".padStart(14) + "torch".padStart(9) + "ratio".padStart(8) + "disp/step".padStart(11) + "GPU peak MiB".padStart(14) + "ahead".padStart(8) + "bf16".padStart(7));
for (const preset of presets) {
  const dir = join(mkdtempSync(join(tmpdir(), "recall-bench-")), preset);
  await initModel({ arch: "qwen2", preset, outDir: dir, seed: 0 });
  const model = await Transformer.load(gpu, dir);
  const peer = runPythonPeer(PEER, { dir, batches, T, reps, prompt: promptLen, new: newTokens }) as Record<string, number> | undefined;
  for (const B of batches) {
    const seqs = Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => 1 + ((b * 31 + t * 7) % (model.V - 1))));
    const peakBefore = gpu.pool.stats.peak;
    gpu.pool.stats.peak = gpu.pool.stats.inUse;
    const grads = model.newGradients();
    const w = gpu.upload(new Float32Array(B * T).fill(1), [B * T]);
    const train = async () => {
      const batch = makeBatch(gpu, seqs);
      const fwd = model.forward(batch, { train: true });
      model.backward(fwd, w, null, grads);
      await gpu.sync();
      gpu.release(fwd.logprob, fwd.entropy);
      releaseBatch(gpu, batch);
    };
    await train();
    gpu.profiler?.reset();
    const tt: number[] = [];
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      await train();
      tt.push((performance.now() - t0) / 1000);
    }
    // train() ends with a sync, which collects the timestamps of its dispatches.
    const trainProfile = gpu.profiler?.snapshot();
    const trainPeak = gpu.pool.stats.peak;
    grads.release();
    gpu.release(w);

    /**
     * Seconds for the new tokens only (after a batched prefill of the prompt), dispatches per decode step, decode steps,
     * and their GPU profile; `ahead` false steps one at a time (what decoding ahead saves).
     */
    const decode = async (ahead = true, m = model): Promise<[number, number, number, ProfileSnapshot | undefined]> => {
      const s = new GenerationSession(m, B, promptLen + newTokens);
      s.append(seqs.map((q) => q.slice(0, promptLen)));
      await gpu.sync();
      gpu.profiler?.reset();
      const d0 = gpu.dispatchCount;
      const t0 = performance.now();
      await s.generate({ maxNewTokens: newTokens, sampling: { temperature: 0, topP: 1, topK: 0, seed: 0 }, decodeAhead: ahead });
      const secs = (performance.now() - t0) / 1000;
      const perStep = (gpu.dispatchCount - d0) / Math.max(1, s.steps);
      const steps = s.steps;
      s.release();
      return [secs, perStep, steps, await gpu.profileSnapshot()];
    };
    await decode();
    // The same decode with a bf16 rollout copy of the weights (recall train --rollout_dtype bf16).
    const bf16 = profile ? undefined : new Bf16RolloutWeights(model);
    if (bf16) await decode(true, bf16.model);
    const dt: number[] = [];
    const stepwise: number[] = [];
    const bf16Times: number[] = [];
    const decodeProfiles: ProfileSnapshot[] = [];
    let perStep = 0;
    let decodeSteps = 0;
    for (let r = 0; r < reps; r++) {
      if (!profile) stepwise.push((await decode(false))[0]);
      if (bf16) bf16Times.push((await decode(true, bf16.model))[0]);
      const [secs, ps, steps, prof] = await decode();
      dt.push(secs);
      perStep = ps;
      decodeSteps += steps;
      if (prof) decodeProfiles.push(prof);
    }
    if (trainProfile) {
      const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
      profiles.push(`\n${preset} B=${B}: training step (forward + backward, ${B}×${T} tokens), ${reps} reps\n${formatProfile(trainProfile, 1000 * sum(tt))}`);
      profiles.push(`\n${preset} B=${B}: decode, ${reps} reps × ${decodeSteps / reps} steps (prefill not included)\n${formatProfile(sumProfiles(decodeProfiles), 1000 * sum(dt))}`);
    }
    const trainTps = (B * T) / median(tt);
    const decodeTps = (B * newTokens) / median(dt);
    const peerTrain = peer ? (B * T) / peer[`train${B}`]! : NaN;
    const peerDecode = peer ? (B * newTokens) / peer[`decode${B}`]! : NaN;
    console.log(
      preset.padEnd(8) + String(B).padStart(4) + fmt(trainTps).padStart(13) + (peer ? fmt(peerTrain) : "n/a").padStart(9) + (peer ? (trainTps / peerTrain).toFixed(3) : "n/a").padStart(8) +
        fmt(decodeTps).padStart(14) + (peer ? fmt(peerDecode) : "n/a").padStart(9) + (peer ? (decodeTps / peerDecode).toFixed(3) : "n/a").padStart(8) +
        perStep.toFixed(0).padStart(11) + (Math.max(trainPeak, gpu.pool.stats.peak) / 2 ** 20).toFixed(1).padStart(14) +
        (stepwise.length ? `${(median(stepwise) / median(dt)).toFixed(2)}×` : "n/a").padStart(8) +
        (bf16Times.length ? `${(median(dt) / median(bf16Times)).toFixed(2)}×` : "n/a").padStart(7),
    );
    bf16?.release();
    gpu.pool.stats.peak = Math.max(peakBefore, gpu.pool.stats.peak);
  }
  model.params.release();
}
for (const p of profiles) console.log(p);
console.log("\ndecode tok/s: new tokens per second after the prompt is in the cache (both engines); train tok/s: B·T tokens per forward+backward.");
console.log("ahead: decode time stepping one at a time / decoding ahead (recall's default), alternated in this run, medians (not with --profile).");
console.log("bf16: decode time with the f32 weights / with a bf16 copy of the projection weights (recall train --rollout_dtype bf16), alternated, medians (not with --profile).");
