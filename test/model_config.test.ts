/** config.json parsing: the three families, their defaults, and refusal of what the engine does not implement. */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RecallError } from "../src/errors.ts";
import { loadModelConfig, modelConfigToHfJson, parameterCount, parameterSpecs, parseModelConfig } from "../src/model/config.ts";

/** Qwen2.5-0.5B-Instruct's config.json as published. */
const QWEN25_05B = {
  architectures: ["Qwen2ForCausalLM"], attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151645, hidden_act: "silu",
  hidden_size: 896, initializer_range: 0.02, intermediate_size: 4864, max_position_embeddings: 32768, max_window_layers: 21,
  model_type: "qwen2", num_attention_heads: 14, num_hidden_layers: 24, num_key_value_heads: 2, rms_norm_eps: 1e-6,
  rope_theta: 1000000.0, sliding_window: 32768, tie_word_embeddings: true, torch_dtype: "bfloat16",
  transformers_version: "4.43.1", use_cache: true, use_sliding_window: false, vocab_size: 151936,
};

/** Qwen3-0.6B's config.json as published. */
const QWEN3_06B = {
  architectures: ["Qwen3ForCausalLM"], attention_bias: false, attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151645,
  head_dim: 128, hidden_act: "silu", hidden_size: 1024, initializer_range: 0.02, intermediate_size: 3072,
  max_position_embeddings: 40960, max_window_layers: 28, model_type: "qwen3", num_attention_heads: 16, num_hidden_layers: 28,
  num_key_value_heads: 8, rms_norm_eps: 1e-6, rope_scaling: null, rope_theta: 1000000, sliding_window: null,
  tie_word_embeddings: true, torch_dtype: "bfloat16", transformers_version: "4.51.0", use_cache: true, use_sliding_window: false,
  vocab_size: 151936,
};

/** TinyLlama-1.1B's config.json (Llama 2 style, untied, no head_dim). */
const TINYLLAMA = {
  architectures: ["LlamaForCausalLM"], bos_token_id: 1, eos_token_id: 2, hidden_act: "silu", hidden_size: 2048,
  initializer_range: 0.02, intermediate_size: 5632, max_position_embeddings: 2048, model_type: "llama", num_attention_heads: 32,
  num_hidden_layers: 22, num_key_value_heads: 4, pretraining_tp: 1, rms_norm_eps: 1e-5, rope_scaling: null,
  tie_word_embeddings: false, torch_dtype: "bfloat16", transformers_version: "4.35.0", use_cache: true, vocab_size: 32000,
};

describe("config.json of real models", () => {
  test("Qwen2.5-0.5B: GQA 14/2, head 64, q/k/v bias, tied, 494M parameters", () => {
    const c = parseModelConfig(QWEN25_05B);
    expect(c).toMatchObject({
      arch: "qwen2", hiddenSize: 896, numHeads: 14, numKvHeads: 2, headDim: 64, qkvBias: true, oBias: false, qkNorm: false,
      tieWordEmbeddings: true, ropeTheta: 1e6, rmsNormEps: 1e-6, vocabSize: 151936, bosTokenId: 151643, eosTokenIds: [151645],
    });
    expect(parameterCount(c)).toBe(494_032_768); // the published figure for Qwen2.5-0.5B
  });

  test("Qwen3-0.6B: explicit head_dim 128 (≠ 1024/16), q/k norm, no bias, 596M parameters", () => {
    const c = parseModelConfig(QWEN3_06B);
    expect(c).toMatchObject({ arch: "qwen3", headDim: 128, qkNorm: true, qkvBias: false, oBias: false, numKvHeads: 8, tieWordEmbeddings: true });
    expect(parameterCount(c)).toBe(596_049_920); // Qwen3-0.6B (0.44B non-embedding + 151936×1024)
    const names = parameterSpecs(c).map((p) => p.name);
    expect(names).toContain("model.layers.27.self_attn.q_norm.weight");
    expect(parameterSpecs(c).find((p) => p.name === "model.layers.0.self_attn.q_proj.weight")!.shape).toEqual([2048, 1024]);
    expect(names).not.toContain("lm_head.weight");
  });

  test("TinyLlama: untied (lm_head present), defaults, 1.1B parameters", () => {
    const c = parseModelConfig(TINYLLAMA);
    expect(c).toMatchObject({ arch: "llama", headDim: 64, qkvBias: false, tieWordEmbeddings: false, ropeTheta: 10000, rmsNormEps: 1e-5 });
    expect(parameterSpecs(c).at(-1)!.name).toBe("lm_head.weight");
    expect(parameterCount(c)).toBe(1_100_048_384);
  });

  test("Llama attention_bias gives q/k/v and o biases; eos lists are kept", () => {
    const c = parseModelConfig({ ...TINYLLAMA, attention_bias: true, eos_token_id: [2, 7] });
    expect(c.qkvBias && c.oBias).toBe(true);
    expect(c.eosTokenIds).toEqual([2, 7]);
    expect(parameterSpecs(c).map((p) => p.name)).toContain("model.layers.0.self_attn.o_proj.bias");
  });

  test("model_type alone identifies the family; rope_type 'default' and transformers 5 rope_parameters are plain RoPE", () => {
    const { architectures: _, ...noArch } = QWEN3_06B;
    expect(parseModelConfig(noArch).arch).toBe("qwen3");
    expect(parseModelConfig({ ...TINYLLAMA, rope_scaling: { rope_type: "default" } }).ropeTheta).toBe(10000);
    const { rope_theta: __, ...v5 } = { ...QWEN3_06B, rope_parameters: { rope_type: "default", rope_theta: 5e6 } };
    expect(parseModelConfig(v5).ropeTheta).toBe(5e6);
  });

  test("modelConfigToHfJson parses back to the same config", () => {
    for (const j of [QWEN25_05B, QWEN3_06B, TINYLLAMA]) {
      const c = parseModelConfig(j);
      const again = parseModelConfig(JSON.parse(JSON.stringify(modelConfigToHfJson(c))));
      expect({ ...again, torchDtype: null }).toEqual({ ...c, torchDtype: null });
    }
  });

  test("loadModelConfig reads a folder's config.json and names it in errors", () => {
    const dir = mkdtempSync(join(tmpdir(), "recall-cfg-"));
    try {
      writeFileSync(join(dir, "config.json"), JSON.stringify(QWEN25_05B));
      expect(loadModelConfig(dir).hiddenSize).toBe(896);
      writeFileSync(join(dir, "config.json"), "{oops");
      expect(() => loadModelConfig(dir)).toThrow(new RegExp(`${dir}/config.json is not valid JSON`));
      expect(() => loadModelConfig(join(dir, "nope"))).toThrow(/cannot read model config .*nope\/config.json/);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});

describe("unsupported features are refused, naming the key and the file", () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ["yarn rope scaling", { ...QWEN25_05B, rope_scaling: { type: "yarn", factor: 4, original_max_position_embeddings: 32768 } }, /cfg.json: rope_scaling.type 'yarn' is not supported/],
    ["llama3 rope scaling", { ...TINYLLAMA, rope_scaling: { rope_type: "llama3", factor: 32 } }, /rope_scaling.rope_type 'llama3' is not supported/],
    ["sliding window", { ...QWEN25_05B, use_sliding_window: true }, /cfg.json: use_sliding_window is true/],
    ["MoE", { ...QWEN3_06B, num_experts: 128, num_experts_per_tok: 8 }, /cfg.json: 'num_experts' is set \(128\); mixture-of-experts/],
    ["quantized", { ...QWEN25_05B, quantization_config: { quant_method: "awq", bits: 4 } }, /cfg.json: quantization_config \(quant_method "awq"\)/],
    ["unknown architecture", { ...TINYLLAMA, architectures: ["MistralForCausalLM"], model_type: "mistral" }, /cfg.json: architectures \["MistralForCausalLM"\] is not supported/],
    ["MoE architecture", { ...QWEN25_05B, architectures: ["Qwen2MoeForCausalLM"] }, /architectures \["Qwen2MoeForCausalLM"\] is not supported/],
    ["activation", { ...TINYLLAMA, hidden_act: "gelu" }, /hidden_act 'gelu' is not supported/],
    ["mlp bias", { ...TINYLLAMA, mlp_bias: true }, /mlp_bias true is not supported/],
    ["dropout", { ...QWEN25_05B, attention_dropout: 0.1 }, /'attention_dropout' 0.1 is not supported/],
    ["missing key", { ...TINYLLAMA, hidden_size: undefined }, /cfg.json: missing 'hidden_size'/],
    ["bad GQA", { ...TINYLLAMA, num_key_value_heads: 5 }, /num_attention_heads \(32\) must be a multiple of num_key_value_heads \(5\)/],
    ["odd head dim", { ...QWEN3_06B, head_dim: 7 }, /head dimension 7 must be even/],
    ["layer types", { ...QWEN3_06B, layer_types: ["full_attention", "sliding_attention"] }, /layer_types contains "sliding_attention"/],
    ["partial rotary", { ...TINYLLAMA, partial_rotary_factor: 0.5 }, /partial_rotary_factor 0.5 is not supported/],
  ];
  test.each(cases)("%s", (_name, json, pattern) => {
    expect(() => parseModelConfig(json, "cfg.json")).toThrow(RecallError);
    expect(() => parseModelConfig(json, "cfg.json")).toThrow(pattern);
  });
});
