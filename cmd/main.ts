#!/usr/bin/env bun
/** `recall` — the root command. Each subcommand lives in its own file in cmd/ and loads lazily. */
import { defineRecallCommand, runCli } from "../src/cli/command.ts";
import { VERSION } from "../src/version.ts";

export const root = defineRecallCommand({
  meta: {
    name: "recall",
    version: VERSION,
    description: "Train language models to reason with tool calls by RL, on any WebGPU device.",
  },
  examples: [
    "recall demo",
    "recall doctor --json",
    "recall init --arch qwen2 --preset tiny --out runs/tiny-qwen2",
    "recall generate --model runs/tiny-qwen2 --prompt 'Hello' --max_new_tokens 20",
    "recall retriever index --corpus_path wiki.jsonl --index_path wiki-bm25",
    "recall train --train_files train.parquet --actor_model_path runs/tiny-qwen2 --rollout_n 4 trainer.total_training_steps=10",
    "recall report checkpoints/recall/grpo",
    "recall eval --method_name re-call --dataset_path bamboogle.jsonl --index_path wiki-bm25 --sgl_remote_url http://127.0.0.1:30000",
    "recall sandbox serve --port 8080",
  ],
  subCommands: {
    demo: () => import("./demo.ts").then((m) => m.default),
    doctor: () => import("./doctor.ts").then((m) => m.default),
    init: () => import("./init.ts").then((m) => m.default),
    generate: () => import("./generate.ts").then((m) => m.default),
    score: () => import("./score.ts").then((m) => m.default),
    merge: () => import("./merge.ts").then((m) => m.default),
    sft: () => import("./sft.ts").then((m) => m.default),
    synth: () => import("./synth.ts").then((m) => m.default),
    train: () => import("./train.ts").then((m) => m.default),
    report: () => import("./report.ts").then((m) => m.default),
    eval: () => import("./eval.ts").then((m) => m.default),
    retriever: () => import("./retriever.ts").then((m) => m.default),
    sandbox: () => import("./sandbox.ts").then((m) => m.default),
  },
});

// `recall doctor | head` closes the pipe early: that is the reader's choice, not an error worth a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw e;
  });
}

process.exitCode = await runCli(root, process.argv.slice(2), VERSION);
