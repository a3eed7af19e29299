/**
 * The golden fixtures (fixtures/golden/, made by scripts/golden.py with PyTorch) load through config.ts and
 * safetensors.ts, have the documented layout, and are internally consistent. The engine's own test compares
 * the WebGPU model against them.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { loadModelConfig, parameterSpecs } from "../src/model/config.ts";
import { SafetensorsModel, checkWeightsMatchConfig } from "../src/model/safetensors.ts";
import { PROJECT_ROOT, goldenInputs } from "./harness.ts";

const ROOT = join(PROJECT_ROOT, "fixtures", "golden");

const EXPECTED_FLAGS: Record<string, Record<string, unknown>> = {
  qwen2_gqa_tied: { arch: "qwen2", numHeads: 4, numKvHeads: 2, headDim: 8, qkvBias: true, oBias: false, qkNorm: false, tieWordEmbeddings: true },
  qwen3_qknorm_untied: { arch: "qwen3", numHeads: 6, numKvHeads: 2, headDim: 10, hiddenSize: 24, qkvBias: false, qkNorm: true, tieWordEmbeddings: false },
  llama_mha_untied: { arch: "llama", numHeads: 4, numKvHeads: 4, headDim: 6, hiddenSize: 32, qkvBias: false, qkNorm: false, tieWordEmbeddings: false, rmsNormEps: 1e-5 },
};

describe("golden fixtures", () => {
  test("the three documented folders are there", () => {
    expect(readdirSync(ROOT).filter((f) => f !== "README.md").sort()).toEqual(Object.keys(EXPECTED_FLAGS).sort());
  });

  test.each(Object.keys(EXPECTED_FLAGS))("%s: config, weights, gradients and expected outputs are consistent", (name) => {
    const dir = join(ROOT, name);
    const cfg = loadModelConfig(join(dir, "model"));
    expect(cfg).toMatchObject(EXPECTED_FLAGS[name]!);
    const weights = SafetensorsModel.open(join(dir, "model"));
    checkWeightsMatchConfig(cfg, weights);
    for (const g of ["grads.safetensors", "grads_entropy.safetensors"]) {
      const grads = SafetensorsModel.open(join(dir, g));
      checkWeightsMatchConfig(cfg, grads, `${name}/model/config.json`);
      // Every parameter gets a gradient; none of the tensors is all zero.
      for (const p of parameterSpecs(cfg)) expect(grads.readF32(p.name).some((v) => v !== 0)).toBe(true);
    }

    const inp = goldenInputs(name);
    const B = inp.batch, T = inp.seq_len, V = cfg.vocabSize;
    expect(inp.ids.length).toBe(B);
    const exp = SafetensorsModel.open(join(dir, "expected.safetensors"));
    expect(exp.info("logprobs").shape).toEqual([B, T]);
    expect(exp.info("entropies").shape).toEqual([B, T]);
    expect(exp.info("logits").shape).toEqual([B, T, V]);
    const lp = exp.readF32("logprobs"), ent = exp.readF32("entropies"), logits = exp.readF32("logits");
    let loss = 0, entLoss = 0;
    for (let b = 0; b < B; b++) {
      const n = inp.lengths[b]!;
      for (let t = 0; t < T; t++) {
        expect(inp.positions[b]![t]).toBe(t);
        if (t >= n) expect(inp.ids[b]![t]).toBe(inp.pad_id);
        expect(inp.logprob_mask[b]![t]).toBe(t < n - 1 ? 1 : 0);
        expect(inp.entropy_mask[b]![t]).toBe(t < n ? 1 : 0);
        const i = b * T + t;
        if (t < n - 1) expect(inp.targets[b]![t]).toBe(inp.ids[b]![t + 1]!);
        if (t >= n) {
          expect(lp[i]! === 0 && ent[i]! === 0).toBe(true);
          continue;
        }
        // log-softmax and entropy recomputed in float64 from the stored logits
        const row = logits.subarray(i * V, (i + 1) * V);
        let m = -Infinity;
        for (const v of row) m = Math.max(m, v);
        let z = 0;
        for (const v of row) z += Math.exp(v - m);
        const lse = m + Math.log(z);
        let h = 0;
        for (const v of row) h -= Math.exp(v - lse) * (v - lse);
        expect(Math.abs(h - ent[i]!)).toBeLessThan(1e-5);
        if (t < n - 1) {
          expect(Math.abs(row[inp.targets[b]![t]!]! - lse - lp[i]!)).toBeLessThan(1e-5);
          loss += inp.loss_weights[b]![t]! * lp[i]!;
        } else {
          expect(lp[i]).toBe(0);
          expect(inp.loss_weights[b]![t]).toBe(0);
        }
        entLoss += inp.entropy_weights[b]![t]! * ent[i]!;
      }
    }
    expect(Math.abs(loss - inp.loss)).toBeLessThan(1e-5 * Math.max(1, Math.abs(inp.loss)));
    expect(Math.abs(entLoss - inp.entropy_loss)).toBeLessThan(1e-5 * Math.max(1, Math.abs(inp.entropy_loss)));
    expect(Math.abs(exp.readF32("loss")[0]! - inp.loss)).toBeLessThan(1e-5 * Math.max(1, Math.abs(inp.loss)));

    const checks = JSON.parse(readFileSync(join(dir, "checks.json"), "utf8"));
    expect(checks.loop_impl_vs_vectorised_logprobs_max_abs).toBeLessThan(1e-10);
    expect(checks.alone_vs_batched_logprobs_max_abs).toBeLessThan(1e-10);
    expect(checks.finite_differences.length).toBeGreaterThanOrEqual(10);
  });

  test("fixtures stay small (< 1 MB in all)", () => {
    let total = 0;
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(join(d, e.name));
        else total += readFileSync(join(d, e.name)).byteLength;
      }
    };
    walk(ROOT);
    expect(total).toBeLessThan(1_000_000);
  });
});
