/** `recall synth`: verified tool-use training data (verl parquet for `recall train`, SFT conversations for `recall sft`). */
import type { ArgsDef } from "citty";
import { consola } from "consola";
import { defineRecallCommand } from "../src/cli/command.ts";
import { availableParallelism } from "node:os";
import { readFileSync } from "node:fs";
import {
  FROM_ROLLOUTS_ARGS,
  LLM_ARGS,
  MUSIQUE_ARGS,
  parseFromRolloutsCommandLine,
  parseLlmCommandLine,
  parseMusiqueCommandLine,
  parseSynthCommandLine,
  SYNTH_ARGS,
} from "../src/config/synth.ts";
import { RecallError } from "../src/errors.ts";
import { OpenAIChatGenerator } from "../src/rollout/remote/openai.ts";
import { createLocalSandbox } from "../src/sandbox/index.ts";
import { runLlmSynth } from "../src/synth/llm.ts";
import { sftFromRollouts } from "../src/synth/from_rollouts.ts";
import { prepareMusique } from "../src/synth/musique.ts";
import { runSynth } from "../src/synth/run.ts";

const musique = defineRecallCommand({
  meta: {
    name: "musique",
    description:
      "ReCall's prepare_musique_recall.py: a FlashRAG QA folder (train.jsonl, dev.jsonl) → train.parquet and test.parquet in ReCall's schema, each row with the wikipedia_search tool (env and schema) and golden_answers as a list ground truth.",
  },
  examples: [
    "recall synth musique --input_dir data/musique --output_dir data/musique_re_call",
    "recall synth musique --input_dir data/hotpotqa --output_dir data/hotpotqa_re_call --test_size 500 --seed 1 --data_source hotpotqa_re_call",
  ],
  args: MUSIQUE_ARGS,
  async run({ rawArgs }) {
    const s = parseMusiqueCommandLine(rawArgs);
    const r = await prepareMusique({ inputDir: s.input_dir, outputDir: s.output_dir, testSize: s.test_size, seed: s.seed, dataSource: s.data_source, log: (l) => consola.info(l) });
    consola.success(`${r.train} train + ${r.test} test rows in ${s.output_dir} (${r.files.join(", ")})`);
  },
});

const fromRollouts = defineRecallCommand({
  meta: {
    name: "sft-from-rollouts",
    description: "Rejection-sampling fine-tuning data: the rollouts of a recall train run (rollout/ dumps) that scored at least --min_score, as SFT conversations.",
  },
  examples: [
    "recall synth sft-from-rollouts --input checkpoints/recall/run1 --output data/rft.jsonl",
    "recall synth sft-from-rollouts --input runs/a/rollout/train_10.jsonl,runs/a/rollout/train_20.jsonl --min_score 0.8 --max_per_prompt 2 --output data/rft.jsonl",
    "recall synth sft-from-rollouts --input checkpoints/recall/run1 --split all --max_per_prompt 0 --output data/rft_all.jsonl",
  ],
  args: FROM_ROLLOUTS_ARGS,
  run({ rawArgs }) {
    const s = parseFromRolloutsCommandLine(rawArgs);
    const r = sftFromRollouts({ inputs: s.input, output: s.output, minScore: s.min_score, maxPerPrompt: s.max_per_prompt, split: s.split, log: (l) => consola.info(l) });
    consola.success(`${r.kept} conversations in ${s.output}`);
  },
});

function readTextFile(path: string, flag: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    throw new RecallError(`${flag} '${path}' cannot be read`);
  }
}

const llm = defineRecallCommand({
  meta: {
    name: "llm",
    description:
      "SynTool-style synthesis: an OpenAI-compatible chat model proposes tool environments (Python + schemas) and tasks with solution calls; every sample is executed and verified in the sandbox; resumable.",
  },
  examples: [
    "recall synth llm --api_base http://127.0.0.1:8000 --model Qwen2.5-72B-Instruct --n_domains 50 --n 500 --out data/syntool",
    "recall synth llm --api_base https://api.openai.com --model gpt-4o-mini --api_key_env OPENAI_API_KEY --domains domains.txt --tasks_per_domain 8 --concurrency 8 --out data/syntool",
    "recall synth llm --api_base http://127.0.0.1:8000 --model m --prompt_file my_prompts.txt --n 50 --out data/syntool   # rerun: resumes",
  ],
  args: LLM_ARGS,
  async run({ rawArgs }) {
    const s = parseLlmCommandLine(rawArgs);
    const domains = s.domains === "" ? undefined : readTextFile(s.domains, "--domains").split("\n").map((l) => l.trim()).filter((l) => l !== "");
    if (domains !== undefined && domains.length === 0) throw new RecallError(`--domains '${s.domains}' has no domains`);
    const prompts = s.prompt_file === "" ? undefined : readTextFile(s.prompt_file, "--prompt_file");
    const apiKey = process.env[s.api_key_env];
    const generator = new OpenAIChatGenerator(s.api_base, {
      model: s.model,
      ...(apiKey ? { apiKey } : {}),
      http: { timeoutMs: s.request_timeout * 1000, retries: s.retries, backoffMs: 1000, maxBackoffMs: 60_000 },
    });
    const executor = await createLocalSandbox({ workers: s.workers ?? availableParallelism() });
    try {
      const r = await runLlmSynth({
        generator,
        executor,
        outDir: s.out,
        n: s.n,
        ...(domains ? { domains } : {}),
        nDomains: s.n_domains,
        tasksPerDomain: s.tasks_per_domain,
        seed: s.seed,
        testRatio: s.test_ratio,
        concurrency: s.concurrency,
        temperature: s.temperature,
        maxTokens: s.max_tokens,
        ...(prompts ? { prompts } : {}),
        callTimeout: s.call_timeout,
        systemPrompt: s.system_prompt,
        settings: { ...s },
        log: (l) => consola.info(l),
      });
      consola.success(`${r.train.length + r.test.length} samples in ${s.out}; this run: ${r.accepted} accepted, ${r.rejected} rejected, ${r.tokens.prompt} + ${r.tokens.completion} tokens`);
    } finally {
      await executor.close();
    }
  },
});

// Bare flags of the main form are booleans to the CLI layer, so a value after them is never read as a subcommand name.
const MAIN_ARGS: ArgsDef = {
  ...SYNTH_ARGS,
  json: { type: "boolean", description: SYNTH_ARGS.json!.description },
  print_config: { type: "boolean", description: SYNTH_ARGS.print_config!.description },
};

export default defineRecallCommand({
  meta: {
    name: "synth",
    description:
      "Make tool-use training data from procedural task families (calc, lookup, search, units), every sample verified in the sandbox: train/test parquet (ReCall's verl schema), SFT conversations, stats.",
  },
  examples: [
    "recall synth --mix calc --n 2000 --calc_min 32 --calc_max 99 --calc_ops mul --style compact --out data/calc",
    "recall synth --mix calc:0.4,lookup:0.3,search:0.3 --n 1000 --seed 1 --out data/mix",
    "recall synth --mix lookup,search --hops 2 --distractors 2 --n 500 --out data/hops2",
    "recall synth --mix units --n 200 --digits 3 --test_ratio 0.2 --json --out data/units",
    "recall synth musique --input_dir data/musique --output_dir data/musique_re_call",
  ],
  args: MAIN_ARGS,
  subCommands: { llm, musique, "sft-from-rollouts": fromRollouts },
  async run({ rawArgs }) {
    const { settings, json, printConfig, notes } = parseSynthCommandLine(rawArgs);
    if (printConfig) {
      process.stdout.write(JSON.stringify(settings, null, 2) + "\n");
      return;
    }
    for (const note of notes) consola.info(note);
    const log = (l: string) => (json ? process.stderr.write(l + "\n") : consola.info(l));
    const r = await runSynth(settings, { log });
    if (json) {
      process.stdout.write(JSON.stringify(r.stats, null, 2) + "\n");
      return;
    }
    for (const f of r.stats.families) {
      consola.info(`${f.name}: ${f.train} train + ${f.test} test verified; ${f.rejected} rejected, ${f.duplicates} duplicates skipped, ${f.mean_tool_calls} calls per task`);
    }
    consola.success(`${r.train.length + r.test.length} samples in ${r.outDir} (${r.stats.files.join(", ")}); ${r.stats.timing.verified_per_s} verified/s`);
  },
});
