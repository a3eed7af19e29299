/**
 * LoRA on the GPU model against golden fixtures (scripts/golden_lora.py: PyTorch with PEFT's semantics, cross-checked
 * there against transformers + PEFT when they import): log-probs, entropies and every A/B gradient of a tiny Qwen2
 * (all-linear) and Qwen3 (q/v/down) adapter, without and with LoRA dropout (the fixtures' masks are the ones recall's
 * keyed dropout draws); a fresh adapter equals the base model; the adapter switched off is the base model; merging
 * equals the unmerged adapter; save/load round trip (lora_dropout included), and PEFT loads what we save (when a Python
 * with peft is on this machine; skipped otherwise).
 */
import { beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import { Transformer, makeBatch, releaseBatch } from "../src/model/transformer.ts";
import { SafetensorsModel } from "../src/model/safetensors.ts";
import { LoraWeights, peftTensorName, resolveTargetModules, loraParameterCount } from "../src/model/lora.ts";
import { ADAPTER_CONFIG, loadAdapter, readAdapterSettings, saveAdapter } from "../src/model/peft_adapter.ts";
import { mergeAdapter } from "../src/model/merge.ts";
import { ActorOptimizer } from "../src/train/optimizer.ts";
import { PROJECT_ROOT, expectClose, goldenInputs, runRecall, type GoldenInputs } from "./harness.ts";

setDefaultTimeout(300_000);

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

const CASES = ["qwen2_gqa_tied", "qwen3_qknorm_untied"];
const modelDir = (c: string) => join(PROJECT_ROOT, "fixtures/golden", c, "model");
const adapterDir = (c: string) => join(PROJECT_ROOT, "fixtures/lora", c, "adapter");
const inputsOf = goldenInputs;
const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
const masked = (x: Float32Array, mask: number[][]) => x.map((v, i) => (mask.flat()[i] ? v : 0));

async function logprobsOf(model: Transformer, inputs: GoldenInputs): Promise<{ lp: Float32Array; ent: Float32Array }> {
  const batch = makeBatch(gpu, inputs.ids.map((row, b) => row.slice(0, inputs.lengths[b])), inputs.ids[0]!.length);
  const fwd = model.forward(batch);
  const [lp, ent] = (await gpu.readMany([fwd.logprob, fwd.entropy])).map((b) => new Float32Array(b));
  gpu.release(fwd.logprob, fwd.entropy);
  releaseBatch(gpu, batch);
  return { lp: masked(lp!, inputs.logprob_mask), ent: masked(ent!, inputs.entropy_mask) };
}

for (const name of CASES) {
  describe(`LoRA golden ${name}`, () => {
    const inputs = inputsOf(name);
    const expected = SafetensorsModel.open(join(PROJECT_ROOT, "fixtures/lora", name, "expected.safetensors"));

    test("log-probs and entropies with the adapter match PyTorch + PEFT semantics", async () => {
      const model = await Transformer.load(gpu, modelDir(name));
      model.adapter = await loadAdapter(gpu, model.config, adapterDir(name));
      const { lp, ent } = await logprobsOf(model, inputs);
      expectClose(lp, expected.readF32("logprobs"), { atol: 3e-5, rtol: 1e-5 }, "logprobs");
      expectClose(ent, expected.readF32("entropies"), { atol: 3e-5, rtol: 1e-5 }, "entropies");
      // Switched off, it is the base model exactly (the reference policy).
      const base = await Transformer.load(gpu, modelDir(name));
      const want = await logprobsOf(base, inputs);
      const off = await model.withoutAdapter(() => logprobsOf(model, inputs));
      expect(off.lp).toEqual(want.lp);
      expect(off.ent).toEqual(want.ent);
      expect(maxAbs(lp.map((v, i) => v - want.lp[i]!))).toBeGreaterThan(0.05);
      model.adapter.release();
      model.params.release();
      base.params.release();
    });

    for (const checkpoint of [false, true]) {
      test(`LoRA dropout: log-probs and every A/B gradient with the fixtures' masks${checkpoint ? " (activation checkpointing: the recompute draws the same masks)" : ""}`, async () => {
        const drop = JSON.parse(readFileSync(join(PROJECT_ROOT, "fixtures/lora", name, "dropout.json"), "utf8")) as { p: number; seed: number };
        const want = SafetensorsModel.open(join(PROJECT_ROOT, "fixtures/lora", name, "expected_dropout.safetensors"));
        const wantGrads = SafetensorsModel.open(join(PROJECT_ROOT, "fixtures/lora", name, "grads_dropout.safetensors"));
        const model = await Transformer.load(gpu, modelDir(name));
        model.adapter = await loadAdapter(gpu, model.config, adapterDir(name));
        const grads = model.adapter.zerosLike();
        const batch = makeBatch(gpu, inputs.ids.map((row, b) => row.slice(0, inputs.lengths[b])), inputs.ids[0]!.length);
        const fwd = model.forward(batch, { train: true, checkpoint, loraDropout: drop });
        const [lp, ent] = (await gpu.readMany([fwd.logprob, fwd.entropy])).map((b) => new Float32Array(b));
        expectClose(masked(lp!, inputs.logprob_mask), want.readF32("logprobs"), { atol: 3e-5, rtol: 1e-5 }, "logprobs with dropout");
        expectClose(masked(ent!, inputs.entropy_mask), want.readF32("entropies"), { atol: 3e-5, rtol: 1e-5 }, "entropies with dropout");
        // The masks matter: the pass without dropout is far from these numbers.
        expect(maxAbs(masked(lp!, inputs.logprob_mask).map((v, i) => v - expected.readF32("logprobs")[i]!))).toBeGreaterThan(0.05);
        const w = gpu.upload(Float32Array.from(inputs.loss_weights.flat()), [batch.B * batch.T]);
        const u = gpu.upload(Float32Array.from(inputs.entropy_weights.flat()), [batch.B * batch.T]);
        model.backward(fwd, w, u, grads);
        expect(wantGrads.names.sort()).toEqual(grads.specs.map((s) => s.name).sort());
        for (const spec of grads.specs) {
          const ref = wantGrads.readF32(spec.name);
          expectClose(await gpu.readF32(grads.get(spec.name)), ref, { atol: 3e-4 * Math.max(maxAbs(ref), 1e-6), rtol: 0 }, `${spec.name} with dropout`);
        }
        // Dropout is for training passes: a log-prob pass asking for it is a bug, not a silent no-op.
        expect(() => model.forward(batch, { loraDropout: drop })).toThrow("LoRA dropout applies to training passes");
        gpu.release(w, u, fwd.logprob, fwd.entropy);
        releaseBatch(gpu, batch);
        grads.release();
        model.adapter.release();
        model.params.release();
      });

      test(`lora_dropout 0 is the pass without dropout, bit for bit and dispatch for dispatch${checkpoint ? " (activation checkpointing)" : ""}`, async () => {
        const model = await Transformer.load(gpu, modelDir(name));
        model.adapter = await loadAdapter(gpu, model.config, adapterDir(name));
        const batch = makeBatch(gpu, inputs.ids.map((row, b) => row.slice(0, inputs.lengths[b])), inputs.ids[0]!.length);
        const w = gpu.upload(Float32Array.from(inputs.loss_weights.flat()), [batch.B * batch.T]);
        const runs: { lp: Float32Array; grads: Float32Array[]; dispatches: number }[] = [];
        for (const loraDropout of [undefined, { p: 0, seed: 12345 }]) {
          const grads = model.adapter.zerosLike();
          const before = gpu.dispatchCount;
          const fwd = model.forward(batch, { train: true, checkpoint, loraDropout });
          model.backward(fwd, w, null, grads);
          const dispatches = gpu.dispatchCount - before;
          runs.push({ lp: await gpu.readF32(fwd.logprob), grads: await Promise.all(grads.list().map((t) => gpu.readF32(t))), dispatches });
          gpu.release(fwd.logprob, fwd.entropy);
          grads.release();
        }
        expect(runs[1]!.dispatches).toBe(runs[0]!.dispatches);
        expect(runs[1]!.lp).toEqual(runs[0]!.lp);
        runs[1]!.grads.forEach((g, i) => expect(g).toEqual(runs[0]!.grads[i]!));
        gpu.release(w);
        releaseBatch(gpu, batch);
        model.adapter.release();
        model.params.release();
      });

      test(`gradients of every A and B, base frozen${checkpoint ? " (activation checkpointing)" : ""}`, async () => {
        const model = await Transformer.load(gpu, modelDir(name));
        model.adapter = await loadAdapter(gpu, model.config, adapterDir(name));
        const grads = model.adapter.zerosLike();
        const batch = makeBatch(gpu, inputs.ids.map((row, b) => row.slice(0, inputs.lengths[b])), inputs.ids[0]!.length);
        const fwd = model.forward(batch, { train: true, checkpoint });
        const w = gpu.upload(Float32Array.from(inputs.loss_weights.flat()), [batch.B * batch.T]);
        const u = gpu.upload(Float32Array.from(inputs.entropy_weights.flat()), [batch.B * batch.T]);
        model.backward(fwd, w, u, grads);
        const want = SafetensorsModel.open(join(PROJECT_ROOT, "fixtures/lora", name, "grads.safetensors"));
        expect(want.names.sort()).toEqual(grads.specs.map((s) => s.name).sort());
        for (const spec of grads.specs) {
          const ref = want.readF32(spec.name);
          expectClose(await gpu.readF32(grads.get(spec.name)), ref, { atol: 3e-4 * Math.max(maxAbs(ref), 1e-6), rtol: 0 }, spec.name);
        }
        // Full fine-tuning gradients are refused while an adapter is attached (they would leave the adapter out).
        const fwd2 = model.forward(batch, { train: true });
        expect(() => model.backward(fwd2, w, null, model.newGradients())).toThrow("full fine-tuning with a LoRA adapter attached");
        model.releaseForward(fwd2);
        gpu.release(w, u, fwd.logprob, fwd.entropy, fwd2.logprob, fwd2.entropy);
        releaseBatch(gpu, batch);
        grads.release();
        model.adapter.release();
        model.params.release();
      });
    }

    test("merged weights give the unmerged adapter's log-probs", async () => {
      const dir = mkdtempSync(join(tmpdir(), "recall-merge-"));
      try {
        const r = await mergeAdapter({ base: modelDir(name), adapter: adapterDir(name), out: join(dir, "merged") });
        expect(r.mergedTensors).toBe(2 * readAdapterSettings(adapterDir(name)).targetModules.length);
        expect(existsSync(join(dir, "merged", "config.json"))).toBe(true);
        expect(existsSync(join(dir, "merged.partial"))).toBe(false);
        const merged = await Transformer.load(gpu, join(dir, "merged"));
        const { lp, ent } = await logprobsOf(merged, inputs);
        expectClose(lp, expected.readF32("logprobs"), { atol: 3e-5, rtol: 1e-5 }, "merged logprobs");
        expectClose(ent, expected.readF32("entropies"), { atol: 3e-5, rtol: 1e-5 }, "merged entropies");
        merged.params.release();
        await expect(mergeAdapter({ base: modelDir(name), adapter: adapterDir(name), out: join(dir, "merged") })).rejects.toThrow("already exists");
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}

describe("frozen projection weights stored in f16", () => {
  for (const name of CASES) {
    test(`${name}: log-probs and adapter gradients equal an f32 model holding the same f16-rounded weights`, async () => {
      const inputs = inputsOf(name);
      const half = await Transformer.load(gpu, modelDir(name), { projectionDtype: "f16" });
      const rounded = await Transformer.load(gpu, modelDir(name));
      let halfTensors = 0;
      for (const spec of rounded.params.specs) {
        if (half.params.get(spec.name).dtype !== "f16") continue;
        halfTensors++;
        const w = await gpu.readF32(rounded.params.get(spec.name));
        gpu.write(rounded.params.get(spec.name), Float32Array.from(new Float16Array(w)));
      }
      expect(halfTensors).toBe(7 * rounded.config.numLayers);
      const results: { lp: Float32Array; ent: Float32Array; grads: Float32Array[] }[] = [];
      for (const model of [half, rounded]) {
        model.adapter = await loadAdapter(gpu, model.config, adapterDir(name));
        const grads = model.adapter.zerosLike();
        const batch = makeBatch(gpu, inputs.ids.map((row, b) => row.slice(0, inputs.lengths[b])), inputs.ids[0]!.length);
        const fwd = model.forward(batch, { train: true, checkpoint: true });
        const [lp, ent] = (await gpu.readMany([fwd.logprob, fwd.entropy])).map((x) => new Float32Array(x));
        const w = gpu.upload(Float32Array.from(inputs.loss_weights.flat()), [batch.B * batch.T]);
        model.backward(fwd, w, null, grads);
        results.push({ lp: masked(lp!, inputs.logprob_mask), ent: masked(ent!, inputs.entropy_mask), grads: await Promise.all(grads.list().map((t) => gpu.readF32(t))) });
        gpu.release(w, fwd.logprob, fwd.entropy);
        releaseBatch(gpu, batch);
        grads.release();
        model.adapter.release();
        model.adapter = undefined;
      }
      // Same products on the same values: only the kernels' loads differ.
      expectClose(results[0]!.lp, results[1]!.lp, { atol: 1e-6, rtol: 1e-6 }, "logprobs");
      expectClose(results[0]!.ent, results[1]!.ent, { atol: 1e-6, rtol: 1e-6 }, "entropies");
      results[0]!.grads.forEach((g, i) => expectClose(g, results[1]!.grads[i]!, { atol: 1e-5 * Math.max(maxAbs(results[1]!.grads[i]!), 1e-6), rtol: 0 }, `grad ${i}`));
      // And it stays near the f32 model's numbers (f16 keeps 11 significant bits of each weight).
      expectClose(results[0]!.lp, SafetensorsModel.open(join(PROJECT_ROOT, "fixtures/lora", name, "expected.safetensors")).readF32("logprobs"), { atol: 1e-2, rtol: 1e-3 }, "f16 vs f32 weights");
      expect(() => half.backward(half.forward(makeBatch(gpu, [[1, 2, 3]]), { train: true }), gpu.zeros([3]), null, half.newGradients())).toThrow("f16-stored weights are frozen");
      half.params.release();
      rounded.params.release();
    });
  }
});

describe("a fresh adapter", () => {
  test("is initialised as PEFT does (A uniform in ±1/√in, B zero), so step 0 equals the base model bit for bit", async () => {
    const name = "qwen2_gqa_tied";
    const inputs = inputsOf(name);
    const model = await Transformer.load(gpu, modelDir(name));
    const want = await logprobsOf(model, inputs);
    const settings = { rank: 8, alpha: 16, targetModules: resolveTargetModules(["all-linear"], "test") };
    model.adapter = LoraWeights.init(gpu, model.config, settings, 7);
    expect(model.adapter.numel).toBe(loraParameterCount(model.config, settings));
    for (const spec of model.adapter.specs) {
      const x = await gpu.readF32(model.adapter.get(spec.name));
      if (spec.name.endsWith("lora_B.weight")) expect(maxAbs(x)).toBe(0);
      else {
        const bound = 1 / Math.sqrt(spec.shape[1]!);
        expect(maxAbs(x)).toBeLessThanOrEqual(bound);
        // Uniform on ±bound: the mean square is bound²/3.
        const ms = x.reduce((s, v) => s + v * v, 0) / x.length;
        expect(Math.abs(ms / (bound * bound / 3) - 1)).toBeLessThan(0.35);
      }
    }
    const got = await logprobsOf(model, inputs);
    expect(got.lp).toEqual(want.lp);
    expect(got.ent).toEqual(want.ent);
    model.adapter.release();
    model.params.release();
  });

  test("an optimizer step moves only A and B; save/load round trip is exact; PEFT loads the saved folder", async () => {
    const name = "qwen3_qknorm_untied";
    const inputs = inputsOf(name);
    const model = await Transformer.load(gpu, modelDir(name));
    const baseBefore = await gpu.readF32(model.params.get("model.layers.0.self_attn.q_proj.weight"));
    model.adapter = LoraWeights.init(gpu, model.config, { rank: 4, alpha: 8, targetModules: ["q_proj", "k_proj", "o_proj", "up_proj"] }, 3);
    const grads = model.adapter.zerosLike();
    const opt = new ActorOptimizer(gpu, model.adapter, grads, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, gradClip: 1 });
    const batch = makeBatch(gpu, inputs.ids.map((row, b) => row.slice(0, inputs.lengths[b])), inputs.ids[0]!.length);
    for (let step = 0; step < 2; step++) {
      const fwd = model.forward(batch, { train: true });
      const w = gpu.upload(Float32Array.from(inputs.loss_weights.flat()), [batch.B * batch.T]);
      model.backward(fwd, w, null, grads);
      gpu.release(w, fwd.logprob, fwd.entropy);
      expect((await opt.apply(0.05)).skipped).toBe(false);
    }
    releaseBatch(gpu, batch);
    expect(await gpu.readF32(model.params.get("model.layers.0.self_attn.q_proj.weight"))).toEqual(baseBefore);
    const bName = peftTensorName(1, "up_proj", "B");
    expect(maxAbs(await gpu.readF32(model.adapter.get(bName)))).toBeGreaterThan(0);
    const ours = await logprobsOf(model, inputs);

    const dir = mkdtempSync(join(tmpdir(), "recall-adapter-"));
    try {
      await saveAdapter(dir, model.adapter, { baseModel: modelDir(name) });
      const cfg = JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG), "utf8")) as Record<string, unknown>;
      expect(cfg).toMatchObject({ peft_type: "LORA", r: 4, lora_alpha: 8, lora_dropout: 0, target_modules: ["q_proj", "k_proj", "o_proj", "up_proj"], bias: "none", task_type: "CAUSAL_LM" });
      const back = await loadAdapter(gpu, model.config, dir);
      for (const spec of back.specs) expect(await gpu.readF32(back.get(spec.name))).toEqual(await gpu.readF32(model.adapter.get(spec.name)));
      expect(back.settings.dropout).toBe(0);
      back.release();

      // lora_dropout is saved and read back; scoring with the adapter ignores it (dropout is for training passes).
      const dropDir = join(dir, "with-dropout");
      const dropped = new LoraWeights(gpu, model.config, { ...model.adapter.settings, dropout: 0.3 }, "empty");
      for (const spec of dropped.specs) gpu.write(dropped.get(spec.name), await gpu.readF32(model.adapter.get(spec.name)));
      await saveAdapter(dropDir, dropped, { baseModel: modelDir(name) });
      dropped.release();
      expect(JSON.parse(readFileSync(join(dropDir, ADAPTER_CONFIG), "utf8")).lora_dropout).toBe(0.3);
      expect(readAdapterSettings(dropDir).dropout).toBe(0.3);
      const kept = model.adapter;
      model.adapter = await loadAdapter(gpu, model.config, dropDir);
      expect(model.adapter.settings.dropout).toBe(0.3);
      const scored = await logprobsOf(model, inputs);
      expect(scored.lp).toEqual(ours.lp);
      expect(scored.ent).toEqual(ours.ent);
      model.adapter.release();
      model.adapter = kept;

      // PEFT itself (optional): transformers + peft load the base model and our folder and score the same batch.
      // This machine's venvs or $RECALL_PEFT_PYTHON (only paths that exist: spawning a missing one throws).
      const candidates = [process.env.RECALL_PEFT_PYTHON, "/work/venv2/bin/python", "/work/venv/bin/python", "/usr/bin/python3"].filter((p): p is string => !!p && existsSync(p));
      const python = candidates.find((p) => Bun.spawnSync([p, "-c", "import peft, transformers"], { stderr: "ignore" }).exitCode === 0);
      if (!python) {
        console.log("PEFT load check skipped: no Python here has peft and transformers");
      } else {
        const inFile = join(dir, "batch.json");
        writeFileSync(inFile, JSON.stringify({ base: modelDir(name), adapter: dir, ids: inputs.ids, lengths: inputs.lengths }));
        const p = Bun.spawnSync([python, join(PROJECT_ROOT, "scripts/peft_logprobs.py"), inFile]);
        expect(p.stderr.toString().split("\n").filter((l) => /Error|Traceback/.test(l))).toEqual([]);
        const peftLp = Float32Array.from((JSON.parse(p.stdout.toString()) as { logprobs: number[][] }).logprobs.flat());
        expectClose(masked(peftLp, inputs.logprob_mask), ours.lp, { atol: 3e-5, rtol: 1e-5 }, "PEFT logprobs of our adapter");
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    opt.release();
    grads.release();
    model.adapter.release();
    model.params.release();
  });
});

test("the committed fixtures are what scripts/golden_lora.py computes (skipped without a python3 that has torch)", () => {
  // Only paths that exist: spawning a missing one throws.
  const python = ["/usr/bin/python3"].filter((p) => existsSync(p)).find((p) => Bun.spawnSync([p, "-c", "import torch"], { stderr: "ignore" }).exitCode === 0);
  if (!python) {
    console.log("golden_lora.py --check skipped: no python3 with torch");
    return;
  }
  const r = Bun.spawnSync([python, join(PROJECT_ROOT, "scripts/golden_lora.py"), "--check"], { cwd: PROJECT_ROOT });
  expect(r.stdout.toString()).toContain("LoRA fixtures match");
  expect(r.exitCode).toBe(0);
});

describe("adapter folders that cannot be used are refused in one line", () => {
  const cases: [string, (cfg: Record<string, unknown>) => void, string][] = [
    ["DoRA", (c) => (c.use_dora = true), "DoRA adapters (use_dora) are not supported"],
    ["a trained bias", (c) => (c.bias = "all"), "bias 'all' trains biases too"],
    ["a module list without the adapted ones", (c) => (c.target_modules = ["q_proj"]), "adapts k_proj, which target_modules does not list"],
    ["a lora_dropout of 1", (c) => (c.lora_dropout = 1), "'lora_dropout' must be a number in [0, 1), got 1"],
    ["a lora_dropout that is not a number", (c) => (c.lora_dropout = "0.1"), `'lora_dropout' must be a number in [0, 1), got "0.1"`],
  ];
  for (const [what, edit, message] of cases) {
    test(what, () => {
      const dir = mkdtempSync(join(tmpdir(), "recall-bad-adapter-"));
      try {
        const src = adapterDir("qwen2_gqa_tied");
        const cfg = JSON.parse(readFileSync(join(src, ADAPTER_CONFIG), "utf8")) as Record<string, unknown>;
        edit(cfg);
        writeFileSync(join(dir, ADAPTER_CONFIG), JSON.stringify(cfg));
        writeFileSync(join(dir, "adapter_model.safetensors"), readFileSync(join(src, "adapter_model.safetensors")));
        expect(() => readAdapterSettings(dir)).toThrow(message);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  test("an adapter for another model (shapes) and a folder without one", async () => {
    await expect(loadAdapter(gpu, (await Transformer.load(gpu, modelDir("qwen3_qknorm_untied"))).config, adapterDir("qwen2_gqa_tied"))).rejects.toThrow(/has shape \[4, 32\], the model needs \[4, 24\]|no tensor/);
    const r = runRecall(["merge", "--base", modelDir("qwen2_gqa_tied"), "--adapter", modelDir("qwen2_gqa_tied"), "--out", join(tmpdir(), "recall-never")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("is not a LoRA adapter folder (no adapter_config.json)");
  });
});

describe("a LoRA run's frozen base from a bf16 checkpoint keeps its projections bf16", () => {
  test("the same log-probs, entropies and A/B gradients bit for bit as the base loaded into f32; frozenBaseDtype picks bf16", async () => {
    const { initModel } = await import("../src/model/init.ts");
    const { frozenBaseDtype } = await import("../src/train/trainable.ts");
    const { LORA_MODULES } = await import("../src/model/lora.ts");
    const dir = join(mkdtempSync(join(tmpdir(), "recall-lora-bf16-")), "base");
    await initModel({ arch: "qwen2", preset: "tiny", outDir: dir, seed: 4, dtype: "BF16" });
    expect(frozenBaseDtype(gpu, dir)).toBe("bf16");
    expect(frozenBaseDtype(gpu, modelDir("qwen2_gqa_tied"))).toBe(gpu.device.features.has("shader-f16") ? "f16" : "f32");
    const runs: Float32Array[][] = [];
    for (const projectionDtype of ["bf16", "f32"] as const) {
      const model = await Transformer.load(gpu, dir, { projectionDtype });
      expect(model.params.get("model.layers.1.mlp.up_proj.weight").dtype).toBe(projectionDtype);
      const lora = LoraWeights.init(gpu, model.config, { rank: 4, alpha: 8, targetModules: [...LORA_MODULES] }, 3);
      lora.specs.forEach((sp, i) => {
        if (sp.name.endsWith(".lora_B.weight")) gpu.write(lora.get(sp.name), Float32Array.from({ length: sp.shape[0]! * sp.shape[1]! }, (_, j) => Math.sin(i * 7 + j) * 0.1));
      });
      model.adapter = lora;
      const grads = lora.zerosLike();
      const seqs = [Array.from({ length: 40 }, (_, t) => (t * 13 + 5) % model.V), Array.from({ length: 29 }, (_, t) => (t * 7 + 1) % model.V)];
      const batch = makeBatch(gpu, seqs);
      const fwd = model.forward(batch, { train: true });
      const w = gpu.upload(Float32Array.from({ length: batch.B * batch.T }, (_, i) => ((i % 5) - 2) * 0.1), [batch.B * batch.T]);
      const lp = await gpu.readF32(fwd.logprob), ent = await gpu.readF32(fwd.entropy);
      model.backward(fwd, w, null, grads);
      runs.push([lp, ent, ...(await Promise.all(grads.list().map((t) => gpu.readF32(t))))]);
      gpu.release(w, fwd.logprob, fwd.entropy);
      releaseBatch(gpu, batch);
      grads.release();
      lora.release();
      model.params.release();
    }
    expect(runs[0]!.length).toBeGreaterThan(2);
    expect(runs[0]).toEqual(runs[1]!);
    expect(Math.max(...runs[0]![2]!.map(Math.abs))).toBeGreaterThan(0);
  });
});
