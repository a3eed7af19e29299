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
  examples: ["recall doctor", "recall doctor --json"],
  subCommands: {
    doctor: () => import("./doctor.ts").then((m) => m.default),
    demo: () => import("./demo.ts").then((m) => m.default),
    sandbox: () => import("./sandbox.ts").then((m) => m.default),
    retriever: () => import("./retriever.ts").then((m) => m.default),
    eval: () => import("./eval.ts").then((m) => m.default),
    init: () => import("./init.ts").then((m) => m.default),
    score: () => import("./score.ts").then((m) => m.default),
    generate: () => import("./generate.ts").then((m) => m.default),
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
