/**
 * `recall synth` settings, on the one settings schema (src/config/schema.ts): flag names are the keys
 * (`--mix`, `--n`, `--calc_min` …); `--config FILE.yaml` sets the same keys from a file, flags win over it.
 */
import { RecallError } from "../errors.ts";
import { CALC_OPS } from "../synth/calc.ts";
import { FAMILIES } from "../synth/families.ts";
import { MAX_DISTRACTORS } from "../synth/tools.ts";
import {
  resolveCommandLine,
  atLeast,
  defineSettings,
  describeSource,
  inRange,
  settingsArgs,
  type CommandLineSpec,
  type SettingsOf,
} from "./schema.ts";

export const SYNTH_SETTINGS = defineSettings({
  mix: { type: "list<string>", default: ["calc"], help: `Families and weights, FAMILY[:W],… (families: ${Object.keys(FAMILIES).join(", ")})` },
  n: { type: "int", default: 1000, check: atLeast(1), help: "Verified samples to write, over all families (train + test)" },
  seed: { type: "int", default: 0, help: "Seed: the same settings and seed give the same files" },
  out: { type: "string", default: "", help: "Output folder (train/test parquet, sft(_test).jsonl and .parquet, stats.json, rejects.jsonl)" },
  test_ratio: { type: "float", default: 0.1, check: inRange(0, 0.9), help: "Share of each family's samples held out in test.parquet (0: no test split)" },
  style: { type: "enum", choices: ["natural", "compact"], default: "natural", help: "natural: varied templates and reasoning; compact: short questions and empty <think> (tiny models)" },
  hops: { type: "int", default: 1, check: inRange(1, 3), help: "Tool calls per task: chained calc steps, chained lookups, search hops" },
  digits: { type: "int", default: 2, check: inRange(1, 6), help: "Digits of calc operands (unless calc_min/calc_max) and of units values" },
  calc_min: { type: "int", nullable: true, default: null, check: atLeast(1), help: "Smallest calc operand (default: from digits)" },
  calc_max: { type: "int", nullable: true, default: null, check: atLeast(1), help: "Largest calc operand (default: from digits)" },
  calc_ops: { type: "list<string>", default: ["mul", "add", "sub", "div"], help: `calc operations to draw from (${CALC_OPS.join(", ")})` },
  distractors: { type: "int", default: 0, check: inRange(0, MAX_DISTRACTORS), help: "Unneeded tools added to each task's env and schemas" },
  lookup_keys: { type: "int", default: 8, check: inRange(1, 1000), help: "Entries in each lookup task's store" },
  kb_entities: { type: "int", default: 200, check: atLeast(10), help: "People in the search family's knowledge base (cities, companies, countries scale with it)" },
  search_top_n: { type: "int", default: 3, check: inRange(1, 10), help: "top_n of the golden wikipedia_search calls" },
  system_prompt: { type: "string", default: "", help: "System turn of the SFT conversations, e.g. 'Use calc.' (default: none, and the tools in 'tools', from which readers build ReCall's system prompt)" },
  verify: { type: "enum", choices: ["batched", "per_call"], default: "batched", help: "batched: many samples per sandbox call (fast); per_call: each golden call on its own, as a rollout sends it" },
  batch_size: { type: "int", default: 512, check: inRange(1, 10000), help: "Samples per sandbox call when verify is batched" },
  workers: { type: "int", nullable: true, default: null, check: atLeast(1), help: "Sandbox workers (default: CPU cores)" },
  sandbox_url: { type: "string", default: "", help: "Verify in a remote sandbox (ReCall /execute API) instead of the local one" },
});

export type SynthSettings = SettingsOf<typeof SYNTH_SETTINGS>;

export const SYNTH_COMMAND_LINE: CommandLineSpec = {
  keyFlags: true,
  overrides: false,
  options: {
    config: { type: "string", help: "YAML with the same keys as the flags; flags override it" },
    json: { type: "bool", help: "Print stats.json to stdout at the end" },
    print_config: { type: "bool", help: "Print the resolved settings as JSON and exit" },
  },
};

export const SYNTH_ARGS = settingsArgs(SYNTH_SETTINGS, SYNTH_COMMAND_LINE);

export interface SynthCommandLine {
  settings: SynthSettings;
  json: boolean;
  printConfig: boolean;
  notes: string[];
}

/** Resolves `recall synth`'s arguments; throws RecallError naming the flag (or file key) on anything bad. */
export function parseSynthCommandLine(rawArgs: string[]): SynthCommandLine {
  const r = resolveCommandLine(SYNTH_SETTINGS, rawArgs, SYNTH_COMMAND_LINE);
  const s = r.values;
  const at = (k: keyof SynthSettings) => (r.sources[k].kind === "default" ? `${k} (default)` : describeSource(r.sources[k]));
  const printConfig = r.options.print_config === true;
  if (!printConfig && s.out === "") throw new RecallError("no output folder: pass --out DIR");
  for (const op of s.calc_ops) {
    if (!(CALC_OPS as readonly string[]).includes(op)) throw new RecallError(`${at("calc_ops")}: unknown operation '${op}' (use ${CALC_OPS.join(", ")})`);
  }
  if (s.calc_ops.length === 0) throw new RecallError(`${at("calc_ops")}: give at least one operation`);
  if (s.calc_min !== null && s.calc_max !== null && s.calc_min > s.calc_max) throw new RecallError(`${at("calc_min")}: calc_min ${s.calc_min} is above calc_max ${s.calc_max}`);
  return { settings: s, json: r.options.json === true, printConfig, notes: r.notes };
}

/** `recall synth musique`: ReCall's `prepare_musique_recall.py` flags and defaults. */
export const MUSIQUE_SETTINGS = defineSettings({
  input_dir: { type: "string", default: "", help: "FlashRAG dataset folder with train.jsonl (and dev.jsonl): rows {id, question, golden_answers}" },
  output_dir: { type: "string", default: "", help: "Folder for train.parquet and test.parquet" },
  test_size: { type: "int", default: 100, check: atLeast(1), help: "dev rows drawn for test.parquet" },
  seed: { type: "int", default: 42, help: "Seed of the dev draw" },
  data_source: { type: "string", default: "musique_re_call", help: "data_source of the rows (keep 're_call' in it for ReCall's reward and search URL)" },
});
export type MusiqueSettings = SettingsOf<typeof MUSIQUE_SETTINGS>;
const MUSIQUE_COMMAND_LINE: CommandLineSpec = { keyFlags: true, overrides: false };
export const MUSIQUE_ARGS = settingsArgs(MUSIQUE_SETTINGS, MUSIQUE_COMMAND_LINE);

export function parseMusiqueCommandLine(rawArgs: string[]): MusiqueSettings {
  const s = resolveCommandLine(MUSIQUE_SETTINGS, rawArgs, MUSIQUE_COMMAND_LINE).values;
  if (s.input_dir === "") throw new RecallError("no input: pass --input_dir DIR (a FlashRAG dataset folder with train.jsonl)");
  if (s.output_dir === "") throw new RecallError("no output folder: pass --output_dir DIR");
  return s;
}

/** `recall synth sft-from-rollouts`: rollout dumps → SFT conversations (rejection-sampling fine-tuning). */
export const FROM_ROLLOUTS_SETTINGS = defineSettings({
  input: { type: "list<string>", default: [], help: "Rollout dump files, or run folders (their rollout/ dumps)" },
  output: { type: "string", default: "", help: "SFT JSONL to write" },
  min_score: { type: "float", default: 1.0, help: "Keep rollouts scoring at least this" },
  max_per_prompt: { type: "int", default: 1, check: atLeast(0), help: "Best-scored rollouts kept per prompt (0: all that pass)" },
  split: { type: "enum", choices: ["train", "val", "all"], default: "train", help: "Which dumps of a run folder: train_*, val_* or both" },
});
export type FromRolloutsSettings = SettingsOf<typeof FROM_ROLLOUTS_SETTINGS>;
const FROM_ROLLOUTS_COMMAND_LINE: CommandLineSpec = { keyFlags: true, overrides: false };
export const FROM_ROLLOUTS_ARGS = settingsArgs(FROM_ROLLOUTS_SETTINGS, FROM_ROLLOUTS_COMMAND_LINE);

export function parseFromRolloutsCommandLine(rawArgs: string[]): FromRolloutsSettings {
  const s = resolveCommandLine(FROM_ROLLOUTS_SETTINGS, rawArgs, FROM_ROLLOUTS_COMMAND_LINE).values;
  if (s.input.length === 0) throw new RecallError("no input: pass --input RUN_DIR (or rollout dump files)");
  if (s.output === "") throw new RecallError("no output: pass --output FILE.jsonl");
  return s;
}

/** `recall synth llm`: SynTool-style synthesis with an OpenAI-compatible chat model. */
export const LLM_SETTINGS = defineSettings({
  api_base: { type: "string", default: "", help: "OpenAI-compatible server (with or without /v1)" },
  model: { type: "string", default: "", help: "Model name sent to the server" },
  api_key_env: { type: "string", default: "OPENAI_API_KEY", help: "Environment variable holding the API key (unset: no key sent)" },
  domains: { type: "string", default: "", help: "File with one domain per line (default: the model proposes n_domains)" },
  n_domains: { type: "int", default: 20, check: atLeast(1), help: "Domains the model proposes when no --domains file is given" },
  tasks_per_domain: { type: "int", default: 5, check: inRange(1, 50), help: "Tasks asked for per domain" },
  n: { type: "int", default: 100, check: atLeast(1), help: "Stop when this many samples are accepted (this run and earlier runs into --out)" },
  seed: { type: "int", default: 0, help: "Seed sent with each request and of the train/test split" },
  out: { type: "string", default: "", help: "Output folder; llm_candidates.jsonl there makes a rerun resume" },
  test_ratio: { type: "float", default: 0.1, check: inRange(0, 0.9), help: "Share held out in test.parquet" },
  concurrency: { type: "int", default: 4, check: inRange(1, 256), help: "Domains in flight at once" },
  temperature: { type: "float", default: 0.7, check: inRange(0, 2), help: "Sampling temperature" },
  max_tokens: { type: "int", default: 4096, check: atLeast(16), help: "Tokens per answer" },
  retries: { type: "int", default: 5, check: atLeast(0), help: "Retries of a failed request (exponential backoff)" },
  request_timeout: { type: "float", default: 300, check: atLeast(1), help: "Seconds per request" },
  prompt_file: { type: "string", default: "", help: "Prompts file replacing the built-in one (sections '=== domains ===', '=== environment ===')" },
  call_timeout: { type: "int", default: 5, check: inRange(1, 30), help: "Seconds a tool call may run in the sandbox" },
  workers: { type: "int", nullable: true, default: null, check: atLeast(1), help: "Sandbox workers (default: CPU cores)" },
  system_prompt: { type: "string", default: "", help: "System turn of the SFT rows instead of 'tools'" },
});
export type LlmSettings = SettingsOf<typeof LLM_SETTINGS>;
const LLM_COMMAND_LINE: CommandLineSpec = { keyFlags: true, overrides: false };
export const LLM_ARGS = settingsArgs(LLM_SETTINGS, LLM_COMMAND_LINE);

export function parseLlmCommandLine(rawArgs: string[]): LlmSettings {
  const s = resolveCommandLine(LLM_SETTINGS, rawArgs, LLM_COMMAND_LINE).values;
  if (s.api_base === "") throw new RecallError("no server: pass --api_base URL (an OpenAI-compatible server)");
  if (s.model === "") throw new RecallError("no model: pass --model NAME");
  if (s.out === "") throw new RecallError("no output folder: pass --out DIR");
  return s;
}
