/**
 * A Hugging Face `config.json` for Qwen2 / Qwen2.5, Qwen3 and Llama causal LMs, parsed into the typed
 * ModelConfig the engine builds from. Everything that would change the computation and is not
 * implemented (RoPE scaling, sliding-window attention, mixture of experts, quantized weights, another
 * architecture, another activation) is refused with a RecallError naming the key and the file —
 * never ignored.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { RecallError, errorMessage } from "../errors.ts";

export type Architecture = "qwen2" | "qwen3" | "llama";

/** The Hugging Face class name written in `architectures` for each family. */
export const HF_ARCHITECTURES: Record<Architecture, string> = {
  qwen2: "Qwen2ForCausalLM",
  qwen3: "Qwen3ForCausalLM",
  llama: "LlamaForCausalLM",
};

export interface ModelConfig {
  arch: Architecture;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  /** Key/value heads (GQA); equals numHeads for plain multi-head attention. */
  numKvHeads: number;
  /** Per-head size; `head_dim` when the file gives one (Qwen3: 128 with hidden 1024 and 16 heads), else hidden / heads. */
  headDim: number;
  /** Rows of the embedding and LM head; may exceed the tokenizer's size (Qwen: 151,936 vs 151,665). */
  vocabSize: number;
  maxPositionEmbeddings: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** The LM head is the embedding matrix (no `lm_head.weight` tensor in the file). */
  tieWordEmbeddings: boolean;
  /** q_proj, k_proj and v_proj have biases (Qwen2 always; Llama/Qwen3 when `attention_bias`). */
  qkvBias: boolean;
  /** o_proj has a bias (Llama/Qwen3 `attention_bias`; never Qwen2). */
  oBias: boolean;
  /** Qwen3: RMSNorm over each head of q and k (weights `q_norm`/`k_norm`, size headDim) before RoPE. */
  qkNorm: boolean;
  bosTokenId: number | null;
  /** All end-of-sequence ids named by config.json (`eos_token_id` may be a list). */
  eosTokenIds: number[];
  /** Standard deviation of the normal initialisation (`initializer_range`, HF default 0.02). */
  initializerRange: number;
  /** `torch_dtype` (or `dtype`) as written; informational — weights are loaded from whatever the file holds. */
  torchDtype: string | null;
}

type Json = Record<string, unknown>;

const MOE_KEYS = [
  "num_experts",
  "num_local_experts",
  "num_experts_per_tok",
  "moe_intermediate_size",
  "n_routed_experts",
  "n_shared_experts",
  "shared_expert_intermediate_size",
];

function archFromJson(j: Json, file: string): Architecture {
  const archs = j.architectures;
  const known = Object.entries(HF_ARCHITECTURES) as [Architecture, string][];
  if (archs !== undefined && archs !== null) {
    if (!Array.isArray(archs) || archs.length === 0 || !archs.every((a) => typeof a === "string")) {
      throw new RecallError(`${file}: 'architectures' must be a non-empty list of class names, got ${JSON.stringify(archs)}`);
    }
    const hits = known.filter(([, cls]) => archs.includes(cls));
    if (hits.length === 0) {
      throw new RecallError(`${file}: architectures ${JSON.stringify(archs)} is not supported`, {
        hint: `supported: ${Object.values(HF_ARCHITECTURES).join(", ")}`,
      });
    }
    return hits[0]![0];
  }
  const mt = j.model_type;
  if (mt === "qwen2" || mt === "qwen3" || mt === "llama") return mt;
  throw new RecallError(`${file}: no 'architectures' and model_type ${JSON.stringify(mt)} is not supported`, {
    hint: `supported: ${Object.values(HF_ARCHITECTURES).join(", ")}`,
  });
}

function intKey(j: Json, key: string, file: string, fallback?: number): number {
  const v = j[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new RecallError(`${file}: missing '${key}'`);
  }
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
    throw new RecallError(`${file}: '${key}' must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

function numKey(j: Json, key: string, file: string, fallback: number): number {
  const v = j[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
    throw new RecallError(`${file}: '${key}' must be a positive number, got ${JSON.stringify(v)}`);
  }
  return v;
}

function boolKey(j: Json, key: string, file: string, fallback: boolean): boolean {
  const v = j[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "boolean") throw new RecallError(`${file}: '${key}' must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function tokenIds(v: unknown, key: string, file: string): number[] {
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  for (const id of list) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0) {
      throw new RecallError(`${file}: '${key}' must be a token id or a list of ids, got ${JSON.stringify(v)}`);
    }
  }
  return list as number[];
}

/** Refuses RoPE variants other than the plain one (`rope_scaling`, or transformers 5's `rope_parameters`). */
function ropeTheta(j: Json, file: string): number {
  for (const key of ["rope_scaling", "rope_parameters"]) {
    const rs = j[key];
    if (rs === undefined || rs === null) continue;
    if (typeof rs !== "object" || Array.isArray(rs)) throw new RecallError(`${file}: '${key}' must be an object or null, got ${JSON.stringify(rs)}`);
    const r = rs as Json;
    const type = r.rope_type ?? r.type ?? "default";
    if (type !== "default") {
      throw new RecallError(`${file}: ${key}.${r.rope_type !== undefined ? "rope_type" : "type"} '${String(type)}' is not supported`, {
        hint: "only plain RoPE (rope_scaling null or rope_type 'default') is implemented",
      });
    }
    const factor = r.partial_rotary_factor;
    if (factor !== undefined && factor !== 1) throw new RecallError(`${file}: ${key}.partial_rotary_factor ${JSON.stringify(factor)} is not supported (only 1)`);
    if (key === "rope_parameters" && r.rope_theta !== undefined) {
      if (typeof r.rope_theta !== "number" || !(r.rope_theta > 0)) throw new RecallError(`${file}: rope_parameters.rope_theta must be a positive number`);
      return r.rope_theta;
    }
  }
  return numKey(j, "rope_theta", file, 10000);
}

function refuseUnsupported(j: Json, arch: Architecture, file: string): void {
  const act = j.hidden_act ?? j.hidden_activation ?? "silu";
  if (act !== "silu") throw new RecallError(`${file}: hidden_act '${String(act)}' is not supported (only 'silu', the SwiGLU MLP)`);
  if (j.use_sliding_window === true) {
    throw new RecallError(`${file}: use_sliding_window is true; sliding-window attention is not supported`, {
      hint: "set use_sliding_window to false only if the model was trained with full attention",
    });
  }
  if (arch === "llama" && j.sliding_window !== undefined && j.sliding_window !== null) {
    throw new RecallError(`${file}: sliding_window ${JSON.stringify(j.sliding_window)} is not supported`);
  }
  const layerTypes = j.layer_types;
  if (Array.isArray(layerTypes) && layerTypes.some((t) => t !== "full_attention")) {
    throw new RecallError(`${file}: layer_types contains ${JSON.stringify(layerTypes.find((t) => t !== "full_attention"))}; only 'full_attention' is supported`);
  }
  for (const key of MOE_KEYS) {
    const v = j[key];
    if (v !== undefined && v !== null && v !== 0) {
      throw new RecallError(`${file}: '${key}' is set (${JSON.stringify(v)}); mixture-of-experts models are not supported`);
    }
  }
  if (j.quantization_config !== undefined && j.quantization_config !== null) {
    const q = j.quantization_config as Json;
    throw new RecallError(`${file}: quantization_config (quant_method ${JSON.stringify(q.quant_method ?? "?")}) is set; quantized weights are not supported`, {
      hint: "use an unquantized F32, F16 or BF16 checkpoint",
    });
  }
  if (j.mlp_bias === true) throw new RecallError(`${file}: mlp_bias true is not supported (gate/up/down projections without bias only)`);
  const partial = j.partial_rotary_factor;
  if (partial !== undefined && partial !== null && partial !== 1) {
    throw new RecallError(`${file}: partial_rotary_factor ${JSON.stringify(partial)} is not supported (only 1)`);
  }
  for (const key of ["attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop"]) {
    const v = j[key];
    if (typeof v === "number" && v !== 0) throw new RecallError(`${file}: '${key}' ${v} is not supported (dropout is not implemented; set it to 0)`);
  }
}

/** Parses the JSON object of a config.json. `file` is only used in error messages. */
export function parseModelConfig(j: unknown, file = "config.json"): ModelConfig {
  if (typeof j !== "object" || j === null || Array.isArray(j)) throw new RecallError(`${file}: expected a JSON object`);
  const o = j as Json;
  const arch = archFromJson(o, file);
  refuseUnsupported(o, arch, file);
  const hiddenSize = intKey(o, "hidden_size", file);
  const numHeads = intKey(o, "num_attention_heads", file);
  const numKvHeads = intKey(o, "num_key_value_heads", file, numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new RecallError(`${file}: num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`);
  }
  let headDim: number;
  if (o.head_dim !== undefined && o.head_dim !== null) headDim = intKey(o, "head_dim", file);
  else {
    if (hiddenSize % numHeads !== 0) throw new RecallError(`${file}: hidden_size (${hiddenSize}) is not a multiple of num_attention_heads (${numHeads}) and no head_dim is given`);
    headDim = hiddenSize / numHeads;
  }
  if (headDim % 2 !== 0) throw new RecallError(`${file}: head dimension ${headDim} must be even for RoPE`);
  const attentionBias = boolKey(o, "attention_bias", file, false);
  if (arch === "qwen2" && o.attention_bias !== undefined) {
    // Qwen2's modelling code hard-wires q/k/v bias on and o_proj bias off; a file saying otherwise is not Qwen2.
    if (o.attention_bias !== true) throw new RecallError(`${file}: attention_bias ${JSON.stringify(o.attention_bias)} contradicts Qwen2 (q/k/v projections always have a bias)`);
  }
  const bosRaw = tokenIds(o.bos_token_id, "bos_token_id", file);
  return {
    arch,
    hiddenSize,
    intermediateSize: intKey(o, "intermediate_size", file),
    numLayers: intKey(o, "num_hidden_layers", file),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: intKey(o, "vocab_size", file),
    maxPositionEmbeddings: intKey(o, "max_position_embeddings", file, arch === "llama" ? 2048 : 32768),
    rmsNormEps: numKey(o, "rms_norm_eps", file, 1e-6),
    ropeTheta: ropeTheta(o, file),
    // transformers' Qwen2Config, Qwen3Config and LlamaConfig all default to untied.
    tieWordEmbeddings: boolKey(o, "tie_word_embeddings", file, false),
    qkvBias: arch === "qwen2" ? true : attentionBias,
    oBias: arch === "qwen2" ? false : attentionBias,
    qkNorm: arch === "qwen3",
    bosTokenId: bosRaw.length > 0 ? bosRaw[0]! : null,
    eosTokenIds: tokenIds(o.eos_token_id, "eos_token_id", file),
    initializerRange: numKey(o, "initializer_range", file, 0.02),
    torchDtype: typeof o.torch_dtype === "string" ? o.torch_dtype : typeof o.dtype === "string" ? o.dtype : null,
  };
}

/** Reads and parses `config.json` of a model folder (or a config file path). */
export function loadModelConfig(pathOrDir: string): ModelConfig {
  const file = pathOrDir.endsWith(".json") ? pathOrDir : join(pathOrDir, "config.json");
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new RecallError(`cannot read model config ${file}: ${errorMessage(e)}`, { hint: "a model folder holds config.json and model.safetensors" });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new RecallError(`${file} is not valid JSON: ${errorMessage(e)}`);
  }
  return parseModelConfig(json, file);
}

/** The config.json a Hugging Face `transformers` release reads back to the same model. */
export function modelConfigToHfJson(c: ModelConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {
    architectures: [HF_ARCHITECTURES[c.arch]],
    model_type: c.arch,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    hidden_act: "silu",
    max_position_embeddings: c.maxPositionEmbeddings,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    rope_scaling: null,
    tie_word_embeddings: c.tieWordEmbeddings,
    vocab_size: c.vocabSize,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenIds.length === 1 ? c.eosTokenIds[0] : c.eosTokenIds,
    initializer_range: c.initializerRange,
    attention_dropout: 0.0,
    use_cache: true,
    torch_dtype: c.torchDtype ?? "float32",
  };
  if (c.arch === "qwen2") {
    if (c.headDim * c.numHeads !== c.hiddenSize) {
      // Older transformers releases compute Qwen2's head size as hidden/heads and ignore head_dim.
      out.head_dim = c.headDim;
    } else delete out.head_dim;
  } else {
    out.attention_bias = c.qkvBias;
  }
  if (c.arch !== "llama") {
    out.use_sliding_window = false;
    out.sliding_window = null;
    out.max_window_layers = c.numLayers;
  } else {
    out.mlp_bias = false;
    out.pretraining_tp = 1;
  }
  return out;
}

/** One parameter tensor of the model, under its Hugging Face name. */
export interface ParameterSpec {
  name: string;
  shape: number[];
  /** What it is, for initialisation: matrices and embeddings get normal(0, initializer_range), norms 1, biases 0. */
  kind: "embedding" | "linear" | "bias" | "norm";
}

/** Every parameter of the model in the order transformers lists them (`lm_head.weight` only when untied). */
export function parameterSpecs(c: ModelConfig): ParameterSpec[] {
  const H = c.hiddenSize, I = c.intermediateSize, hd = c.headDim;
  const qDim = c.numHeads * hd, kvDim = c.numKvHeads * hd;
  const specs: ParameterSpec[] = [{ name: "model.embed_tokens.weight", shape: [c.vocabSize, H], kind: "embedding" }];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    specs.push({ name: `${p}.self_attn.q_proj.weight`, shape: [qDim, H], kind: "linear" });
    if (c.qkvBias) specs.push({ name: `${p}.self_attn.q_proj.bias`, shape: [qDim], kind: "bias" });
    specs.push({ name: `${p}.self_attn.k_proj.weight`, shape: [kvDim, H], kind: "linear" });
    if (c.qkvBias) specs.push({ name: `${p}.self_attn.k_proj.bias`, shape: [kvDim], kind: "bias" });
    specs.push({ name: `${p}.self_attn.v_proj.weight`, shape: [kvDim, H], kind: "linear" });
    if (c.qkvBias) specs.push({ name: `${p}.self_attn.v_proj.bias`, shape: [kvDim], kind: "bias" });
    specs.push({ name: `${p}.self_attn.o_proj.weight`, shape: [H, qDim], kind: "linear" });
    if (c.oBias) specs.push({ name: `${p}.self_attn.o_proj.bias`, shape: [H], kind: "bias" });
    if (c.qkNorm) {
      specs.push({ name: `${p}.self_attn.q_norm.weight`, shape: [hd], kind: "norm" });
      specs.push({ name: `${p}.self_attn.k_norm.weight`, shape: [hd], kind: "norm" });
    }
    specs.push({ name: `${p}.mlp.gate_proj.weight`, shape: [I, H], kind: "linear" });
    specs.push({ name: `${p}.mlp.up_proj.weight`, shape: [I, H], kind: "linear" });
    specs.push({ name: `${p}.mlp.down_proj.weight`, shape: [H, I], kind: "linear" });
    specs.push({ name: `${p}.input_layernorm.weight`, shape: [H], kind: "norm" });
    specs.push({ name: `${p}.post_attention_layernorm.weight`, shape: [H], kind: "norm" });
  }
  specs.push({ name: "model.norm.weight", shape: [H], kind: "norm" });
  if (!c.tieWordEmbeddings) specs.push({ name: "lm_head.weight", shape: [c.vocabSize, H], kind: "linear" });
  return specs;
}

/** Total number of parameters (the tied LM head counted once). */
export function parameterCount(c: ModelConfig): number {
  return parameterSpecs(c).reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0);
}
