/** `recall demo`: the whole pipeline end to end on embedded defaults (model, retriever, tool loop, evaluation). */
import { consola } from "consola";
import { defineRecallCommand, numberFlag, stringFlag } from "../src/cli/command.ts";
import { RecallError } from "../src/errors.ts";
import { ARCHITECTURES, PRESETS } from "../src/model/init.ts";
import type { Architecture } from "../src/model/config.ts";
import { runDemo } from "../src/demo/run.ts";

export default defineRecallCommand({
  meta: {
    name: "demo",
    description: "Run the pipeline end to end on embedded defaults: a fresh tiny model, a BM25 index over a small corpus, and a ReCall tool-use evaluation on the local GPU.",
  },
  examples: ["recall demo", "recall demo --out runs/demo --tool_backend sandbox", "recall demo --arch qwen3 --limit 4 --max_new_tokens 32"],
  args: {
    out: { type: "string", description: "Working folder (default runs/demo): model/, bm25/, eval/ go there" },
    arch: { type: "string", description: `Architecture of the fresh model: ${ARCHITECTURES.join(", ")} (default qwen2)` },
    preset: { type: "string", description: `Model size: ${Object.keys(PRESETS).join(", ")} (default tiny)` },
    seed: { type: "string", description: "Seed of the model's initialisation (default 0)" },
    limit: { type: "string", description: "Evaluate only the first N of the 12 embedded questions" },
    max_new_tokens: { type: "string", description: "New tokens per assistant turn (default 48)" },
    max_turns: { type: "string", description: "Assistant turns per question (default 3)" },
    tool_backend: { type: "string", description: "wikipedia_search answered in-process (native, default) or by ReCall's Python tool in the sandbox (sandbox)" },
  },
  async run({ args }) {
    const arch = stringFlag(args, "arch") ?? "qwen2";
    if (!(ARCHITECTURES as readonly string[]).includes(arch)) throw new RecallError(`flag --arch must be one of ${ARCHITECTURES.join(", ")}, got '${arch}'`);
    const preset = stringFlag(args, "preset") ?? "tiny";
    if (!PRESETS[preset]) throw new RecallError(`flag --preset must be one of ${Object.keys(PRESETS).join(", ")}, got '${preset}'`);
    const toolBackend = stringFlag(args, "tool_backend") ?? "native";
    if (toolBackend !== "native" && toolBackend !== "sandbox") throw new RecallError(`flag --tool_backend must be native or sandbox, got '${toolBackend}'`);
    const limitFlag = stringFlag(args, "limit");
    const t0 = performance.now();
    const r = await runDemo({
      out: stringFlag(args, "out") ?? "runs/demo",
      arch: arch as Architecture,
      preset,
      seed: numberFlag(args, "seed", { default: 0, integer: true, min: 0 }),
      limit: limitFlag === undefined ? undefined : numberFlag(args, "limit", { integer: true, min: 1, max: 12 }),
      maxNewTokens: numberFlag(args, "max_new_tokens", { default: 48, integer: true, min: 1 }),
      maxTurns: numberFlag(args, "max_turns", { default: 3, integer: true, min: 1 }),
      toolBackend,
      log: (l) => consola.info(l),
      warn: (l) => consola.warn(l),
    });
    console.log(r.summary.table);
    consola.success(`demo done in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${r.summary.dir}/{config.yaml,metric_score.txt,intermediate_data.json}`);
    consola.info("the model is freshly initialised, so its answers are random; train it or pass a real model to 'recall eval --generator_model DIR'");
    if (r.summary.failed > 0) process.exitCode = 3;
  },
});
