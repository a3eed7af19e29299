/**
 * A freshly, randomly initialised model folder for tests, demos and benchmarks — what `recall init` writes:
 * config.json, model.safetensors, generation_config.json and the tokenizer files. Initialisation follows
 * transformers' `_init_weights`: matrices and the embedding ~ normal(0, initializer_range), biases 0, RMSNorm
 * weights 1; seeded, so the same flags give the same bytes.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { RecallError } from "../errors.ts";
import { copyFileAtomic, fileError, removeQuietly, writeFileAtomic } from "../util/fs.ts";
import { QWEN_ADDED_TOKENS, tinyByteTokenizer } from "../data/tiny_tokenizer.ts";
import { RecallTokenizer } from "../data/tokenizer.ts";
import { modelConfigToHfJson, parameterCount, parameterSpecs, type Architecture, type ModelConfig, type ParameterSpec } from "./config.ts";
import { writeSafetensorsModel, type WriteDType } from "./safetensors.ts";

export const ARCHITECTURES: readonly Architecture[] = ["qwen2", "qwen3", "llama"];

/** Model shapes. Vocabulary: the preset's, raised to the tokenizer's size, rounded up to a multiple of 64. */
export interface Preset {
  description: string;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  /** Per-head size; Qwen3 presets use `qwen3HeadDim` when set (Qwen3 decouples head_dim from hidden/heads). */
  headDim: number;
  qwen3HeadDim?: number;
  /** Minimum vocabulary (0: just the tokenizer's). */
  vocabSize: number;
  maxPositionEmbeddings: number;
}

export const PRESETS: Record<string, Preset> = {
  tiny: {
    description: "~0.1M parameters with the byte tokenizer: 2 layers, hidden 64, 4 heads / 2 KV heads, MLP 128 — for tests",
    hiddenSize: 64,
    intermediateSize: 128,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 16,
    qwen3HeadDim: 32,
    vocabSize: 0,
    maxPositionEmbeddings: 2048,
  },
  small: {
    description: "~19M parameters with the byte tokenizer: 12 layers, hidden 384, 6 heads / 2 KV heads, MLP 1024 — for benchmarks",
    hiddenSize: 384,
    intermediateSize: 1024,
    numLayers: 12,
    numHeads: 6,
    numKvHeads: 2,
    headDim: 64,
    vocabSize: 0,
    maxPositionEmbeddings: 4096,
  },
  "0.5b": {
    description: "Qwen2.5-0.5B's shape (494M parameters, vocabulary 151,936): 24 layers, hidden 896, 14 heads / 2 KV heads, MLP 4864 — for memory and speed at real size",
    hiddenSize: 896,
    intermediateSize: 4864,
    numLayers: 24,
    numHeads: 14,
    numKvHeads: 2,
    headDim: 64,
    vocabSize: 151936,
    maxPositionEmbeddings: 32768,
  },
};

/** Per-family choices that follow the real models: Qwen tie embeddings and use θ = 1e6; Llama 3 unties, θ = 5e5, ε = 1e-5. */
const FAMILY: Record<Architecture, { tie: boolean; ropeTheta: number; rmsNormEps: number }> = {
  qwen2: { tie: true, ropeTheta: 1_000_000, rmsNormEps: 1e-6 },
  qwen3: { tie: true, ropeTheta: 1_000_000, rmsNormEps: 1e-6 },
  llama: { tie: false, ropeTheta: 500_000, rmsNormEps: 1e-5 },
};

/** The config a preset gives for an architecture and a tokenizer of `tokenizerSize` ids. */
export function presetConfig(arch: Architecture, presetName: string, tokenizerSize: number, ids: { bos: number | null; eos: number[] } = { bos: null, eos: [] }): ModelConfig {
  const p = PRESETS[presetName];
  if (!p) throw new RecallError(`unknown preset '${presetName}'`, { hint: `presets: ${Object.keys(PRESETS).join(", ")}` });
  const fam = FAMILY[arch];
  const vocab = Math.ceil(Math.max(p.vocabSize, tokenizerSize) / 64) * 64;
  return {
    arch,
    hiddenSize: p.hiddenSize,
    intermediateSize: p.intermediateSize,
    numLayers: p.numLayers,
    numHeads: p.numHeads,
    numKvHeads: p.numKvHeads,
    headDim: arch === "qwen3" ? (p.qwen3HeadDim ?? p.headDim) : p.headDim,
    vocabSize: vocab,
    maxPositionEmbeddings: p.maxPositionEmbeddings,
    rmsNormEps: fam.rmsNormEps,
    ropeTheta: fam.ropeTheta,
    tieWordEmbeddings: fam.tie,
    qkvBias: arch === "qwen2",
    oBias: false,
    qkNorm: arch === "qwen3",
    bosTokenId: ids.bos,
    eosTokenIds: ids.eos,
    initializerRange: 0.02,
    torchDtype: "float32",
  };
}

/** A seeded stream of standard normals (mulberry32 + Box–Muller); same seed, same numbers on every machine. */
export class NormalStream {
  private s: number;
  private spare: number | null = null;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  private uniform(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  next(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    const u = Math.max(this.uniform(), 1e-300), v = this.uniform();
    const m = Math.sqrt(-2 * Math.log(u));
    this.spare = m * Math.sin(2 * Math.PI * v);
    return m * Math.cos(2 * Math.PI * v);
  }
}

/** Initial values of one parameter. Each tensor draws from its own stream (seed mixed with its index). */
export function initialValues(spec: ParameterSpec, index: number, seed: number, std: number): Float32Array {
  const n = spec.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  if (spec.kind === "norm") out.fill(1);
  else if (spec.kind === "embedding" || spec.kind === "linear") {
    const g = new NormalStream((Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0);
    for (let i = 0; i < n; i++) out[i] = g.next() * std;
  }
  return out;
}

/** Tokenizer files copied by --tokenizer from a folder (the ones present). */
const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json"];

export interface InitOptions {
  arch: Architecture;
  preset: string;
  outDir: string;
  /** A tokenizer folder or tokenizer.json to copy; default: the tiny byte tokenizer. */
  tokenizer?: string;
  seed?: number;
  dtype?: WriteDType;
  force?: boolean;
}

export interface InitResult {
  dir: string;
  config: ModelConfig;
  parameters: number;
  files: string[];
  tokenizerSize: number;
}

function writeJson(path: string, value: unknown): void {
  writeFileAtomic(path, JSON.stringify(value, null, 2) + "\n");
}

/** Weight files a model folder may hold; with --force, ones the new model does not write are removed (they would mix models). */
const isWeightFile = (f: string) => f.endsWith(".safetensors") || f === "model.safetensors.index.json";

/**
 * Moves the finished files of `staging` into `dir` and removes `staging`. Everything has been written by
 * then, so a full disk or a kill during the writes leaves `dir` as it was (or absent), never half a model.
 */
function publish(staging: string, dir: string, files: readonly string[]): void {
  if (!existsSync(dir)) {
    renameSync(staging, dir);
    return;
  }
  for (const f of files) renameSync(join(staging, f), join(dir, f));
  for (const f of readdirSync(dir)) if (isWeightFile(f) && !files.includes(f)) rmSync(join(dir, f), { force: true });
  rmSync(staging, { recursive: true, force: true });
}

/** Writes a randomly initialised model folder; refuses a non-empty folder unless `force`. */
export async function initModel(o: InitOptions): Promise<InitResult> {
  if (!ARCHITECTURES.includes(o.arch)) throw new RecallError(`unknown architecture '${o.arch}'`, { hint: `architectures: ${ARCHITECTURES.join(", ")}` });
  if (!PRESETS[o.preset]) throw new RecallError(`unknown preset '${o.preset}'`, { hint: `presets: ${Object.keys(PRESETS).join(", ")}` });
  const dir = o.outDir;
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new RecallError(`--out ${dir} exists and is not a folder`);
    if (readdirSync(dir).length > 0 && !o.force) throw new RecallError(`--out ${dir} is not empty`, { hint: "pass --force to overwrite the model files in it" });
  }
  // Written into a sibling folder and moved into place when complete (see publish).
  const staging = `${dir.replace(/\/+$/, "")}.${process.pid}.partial`;
  try {
    mkdirSync(dirname(staging), { recursive: true });
  } catch (e) {
    throw fileError(e); // names the part of the path that is at fault
  }
  try {
    mkdirSync(staging);
  } catch (e) {
    throw fileError(e, dir, "create the folder");
  }
  try {
    const r = await writeModelFolder(o, staging);
    publish(staging, dir, r.files);
    return { ...r, dir };
  } catch (e) {
    removeQuietly(staging);
    throw fileError(e, dir, "write");
  }
}

async function writeModelFolder(o: InitOptions, dir: string): Promise<InitResult> {
  const written: string[] = [];
  if (o.tokenizer) {
    const src = o.tokenizer;
    if (!existsSync(src)) throw new RecallError(`--tokenizer ${src} does not exist`);
    const srcDir = statSync(src).isDirectory() ? src : dirname(src);
    if (!statSync(src).isDirectory() && basename(src) !== "tokenizer.json") {
      throw new RecallError(`--tokenizer ${src}: expected a folder or a file named tokenizer.json`);
    }
    if (!existsSync(join(srcDir, "tokenizer.json"))) throw new RecallError(`--tokenizer ${src}: no tokenizer.json there`);
    RecallTokenizer.load(srcDir); // fail before writing anything if it does not load
    for (const f of TOKENIZER_FILES) {
      if (existsSync(join(srcDir, f))) {
        copyFileAtomic(join(srcDir, f), join(dir, f));
        written.push(f);
      }
    }
  } else {
    const t = tinyByteTokenizer();
    writeJson(join(dir, "tokenizer.json"), t.tokenizer);
    writeJson(join(dir, "tokenizer_config.json"), t.tokenizerConfig);
    written.push("tokenizer.json", "tokenizer_config.json");
  }
  const tok = RecallTokenizer.load(dir);
  const endOfText = tok.tokenToId(QWEN_ADDED_TOKENS[0]!.content) ?? null;
  const eos = tok.eosTokenId ?? endOfText;
  const bos = tok.bosTokenId ?? endOfText;
  const eosList = [...new Set([eos, endOfText].filter((x): x is number => x !== null))];
  const config = presetConfig(o.arch, o.preset, tok.size, { bos, eos: eos === null ? [] : [eos] });
  config.torchDtype = (o.dtype ?? "F32") === "BF16" ? "bfloat16" : "float32";

  const seed = o.seed ?? 0;
  const specs = parameterSpecs(config);
  const files = await writeSafetensorsModel(
    dir,
    specs.map((spec, i) => ({ name: spec.name, shape: spec.shape, data: () => initialValues(spec, i, seed, config.initializerRange) })),
    { dtype: o.dtype ?? "F32", metadata: { recall_init: `${o.arch}/${o.preset}/seed=${seed}` } },
  );
  written.push(...files);
  writeJson(join(dir, "config.json"), modelConfigToHfJson(config));
  const generation: Record<string, unknown> = { bos_token_id: bos, eos_token_id: eosList.length === 1 ? eosList[0] : eosList };
  if (tok.padTokenId !== null) generation.pad_token_id = tok.padTokenId;
  writeJson(join(dir, "generation_config.json"), generation);
  written.push("config.json", "generation_config.json");
  return { dir, config, parameters: parameterCount(config), files: written, tokenizerSize: tok.size };
}
