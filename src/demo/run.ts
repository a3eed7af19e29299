/**
 * The end-to-end job on embedded defaults: a fresh tiny model, a BM25 index over a small embedded corpus, and a ReCall
 * evaluation (multi-turn tool calls through the local WebGPU engine, the in-process retriever and, optionally, ReCall's
 * Python tool in the sandbox), written as a FlashRAG output folder. Every piece is the real one the full-size commands
 * use; only the sizes are small. A freshly initialised model answers at random, so its scores are near zero: the point
 * is that the whole pipeline runs on this machine, from one binary.
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import corpus from "./corpus.jsonl" with { type: "text" };
import questions from "./questions.jsonl" with { type: "text" };
import { initModel } from "../model/init.ts";
import type { Architecture } from "../model/config.ts";
import { buildBm25Index } from "../retrieval/index_builder.ts";
import { resolveConfig } from "../eval/config.ts";
import { openBackends } from "../eval/backends.ts";
import { runEvaluation, type EvalSummary } from "../eval/run.ts";
import { VERSION } from "../version.ts";

export interface DemoOptions {
  out: string;
  arch: Architecture;
  preset: string;
  seed: number;
  limit?: number;
  maxNewTokens: number;
  maxTurns: number;
  toolBackend: "native" | "sandbox";
  log: (line: string) => void;
  warn: (line: string) => void;
}

export interface DemoResult {
  modelDir: string;
  indexDir: string;
  summary: EvalSummary;
}

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const out = resolve(o.out);
  mkdirSync(out, { recursive: true });
  const modelDir = join(out, "model");
  if (!existsSync(join(modelDir, "config.json"))) {
    const m = await initModel({ arch: o.arch, preset: o.preset, outDir: modelDir, seed: o.seed });
    o.log(`model: ${o.arch} '${o.preset}' (${(m.parameters / 1e6).toFixed(2)}M parameters, random init) → ${modelDir}`);
  } else {
    o.log(`model: reusing ${modelDir}`);
  }

  const corpusPath = join(out, "corpus.jsonl");
  const indexDir = join(out, "bm25");
  writeFileSync(corpusPath, corpus);
  const manifest = buildBm25Index({ corpusPath, indexPath: indexDir, overwrite: true });
  o.log(`retriever: BM25 over ${manifest.stats.docs} passages → ${indexDir}`);

  const datasetPath = join(out, "demo_questions.jsonl");
  writeFileSync(datasetPath, questions);
  const cfg = resolveConfig(
    {},
    {
      method_name: "re-call",
      dataset_path: datasetPath,
      dataset_name: "demo",
      generator_model: modelDir,
      index_path: indexDir,
      corpus_path: corpusPath,
      save_dir: join(out, "eval"),
      max_tokens_per_turn: o.maxNewTokens,
      max_turns: o.maxTurns,
      tool_backend: o.toolBackend,
      workers: 4,
      context_length: 4096,
      ...(o.limit !== undefined ? { limit: o.limit } : {}),
    },
    "recall demo",
  );
  const backends = await openBackends(cfg);
  try {
    const summary = await runEvaluation(cfg, backends, {
      log: o.log,
      warn: o.warn,
      record: { recall_version: VERSION, started_at: new Date().toISOString(), demo: true, ...backends.description },
    });
    return { modelDir, indexDir, summary };
  } finally {
    await backends.close();
  }
}
