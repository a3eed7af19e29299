/**
 * `recall sft` settings: verl's SFT trainer key tree (`verl.trainer.fsdp_sft_trainer`, its sft_trainer.yaml), with
 * recall's additions (held-out split, token-budget micro-batches, early stopping, train_on_prompt). Precedence, low to
 * high: defaults; `--config FILE.yaml` (nested tree or flat dotted keys); flags (`--train_files`, `--model`, `--lr` …);
 * bare dotted overrides (`optim.lr=2e-5`). Keys that only mean something on a GPU cluster are accepted and explained
 * once.
 */
import { stringify } from "yaml";
import { RecallError } from "../errors.ts";
import {
  above,
  atLeast,
  defineSettings,
  describeSource,
  inRange,
  resolveCommandLine,
  settingsArgs,
  settingsHelp,
  settingsTree,
  type CommandLineSpec,
  type SettingSource,
  type SettingsOf,
} from "./schema.ts";
import { targetModulesProblem } from "../model/lora.ts";
import { NO_NETWORK_LOGGER, ONE_DEVICE, VERL_TRAINER_CLUSTER_KEYS } from "./verl_trainer.ts";

const NO_FSDP = "no FSDP in recall; ignored";

export const SFT_SETTINGS = defineSettings({
  // data
  "data.train_files": { type: "list<string>", default: [], flags: ["train_files"], help: "Training conversations: JSONL or parquet files" },
  "data.val_files": { type: "list<string>", default: [], flags: ["val_files"], help: "Held-out conversations (empty: data.val_split of the training rows)" },
  "data.val_split": {
    type: "float",
    default: 0,
    check: (v) => (v >= 0 && v < 1 ? undefined : `must be in [0, 1), got ${v}`),
    flags: ["val_split"],
    help: "Share of the training conversations held out (seeded) when no val_files are given; 0: no held-out set",
  },
  "data.multiturn.messages_key": { type: "string", default: "messages", flags: ["messages_key"], help: "Column with the chat messages [{role, content, tool_calls?}]" },
  "data.multiturn.tools_key": { type: "string", default: "tools", flags: ["tools_key"], help: "Column with the tool schemas (ReCall's system prompt is built from them)" },
  "data.multiturn.enable": { type: "bool", default: true, ignored: "recall reads each row as a conversation or a prompt/response pair by its columns; ignored", help: "verl: multi-turn dataset" },
  "data.prompt_key": { type: "string", default: "prompt", flags: ["prompt_key"], help: "Column with the prompt of prompt/response rows" },
  "data.response_key": { type: "string", default: "response", flags: ["response_key"], help: "Column with the response of prompt/response rows" },
  "data.chat_template": {
    type: "enum",
    choices: ["model", "chatml"],
    default: "model",
    flags: ["chat_template"],
    help: "model: the tokenizer's chat template (ChatML when it has none); chatml: plain ChatML turns",
  },
  "data.train_on_prompt": { type: "bool", default: false, flags: ["train_on_prompt"], help: "Loss on every token (system, user and tool turns too), not only the assistant's" },
  "data.max_length": { type: "int", default: 2048, check: atLeast(2), flags: ["max_length"], help: "Tokens per conversation; longer ones are truncated per data.truncation (reported)" },
  "data.truncation": {
    type: "enum",
    choices: ["error", "right", "left"],
    default: "right",
    flags: ["truncation"],
    help: "Over max_length: error refuses the row; right keeps the first max_length tokens; left the last",
  },
  "data.train_batch_size": { type: "int", default: 16, check: atLeast(1), flags: ["train_batch_size", "batch_size"], help: "Conversations per optimizer step (gradients accumulated over micro-batches)" },
  "data.micro_batch_size_per_gpu": {
    type: "int",
    nullable: true,
    default: null,
    check: atLeast(1),
    flags: ["micro_batch_size"],
    help: "Conversations per forward/backward pass (null: fill passes up to data.max_token_len_per_gpu)",
  },
  "data.max_token_len_per_gpu": {
    type: "int",
    default: 8192,
    check: atLeast(1),
    flags: ["max_tokens_per_micro_batch"],
    help: "Padded tokens (conversations × longest) per forward/backward pass when micro_batch_size is null",
  },
  "data.shuffle": { type: "bool", default: true, help: "Shuffle the training conversations each epoch (seeded by trainer.seed)" },
  "data.balance_dp_token": { type: "bool", default: false, ignored: ONE_DEVICE, help: "verl: balance tokens across data-parallel ranks" },
  "data.use_shm": { type: "bool", default: false, ignored: "models are read from disk; ignored", help: "verl: load the model through shared memory" },
  // model
  "model.partial_pretrain": { type: "string", default: "", flags: ["model"], help: "Model folder (Hugging Face layout) to fine-tune" },
  "model.enable_gradient_checkpointing": { type: "bool", default: true, flags: ["gradient_checkpointing"], help: "Recompute activations in the backward pass to save memory" },
  "model.lora_rank": { type: "int", default: 0, check: atLeast(0), flags: ["lora_rank"], help: "LoRA rank r (0: full fine-tuning); base weights frozen, checkpoints are PEFT adapter folders" },
  "model.lora_alpha": { type: "float", default: 16, check: above(0), flags: ["lora_alpha"], help: "LoRA alpha: the adapter's output is scaled by alpha / r" },
  "model.lora_dropout": {
    type: "float",
    default: 0,
    check: (v) => (v >= 0 && v < 1 ? undefined : `must be in [0, 1), got ${v}`),
    flags: ["lora_dropout"],
    help: "recall key (PEFT's and TRL's lora_dropout; verl has none): dropout on the LoRA branch's input in training passes only; 0 is none",
  },
  "model.target_modules": {
    type: "list<string>",
    default: ["all-linear"],
    check: targetModulesProblem,
    flags: ["target_modules"],
    help: "Projections LoRA adapts: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj or all-linear",
  },
  "model.trust_remote_code": { type: "bool", default: false, ignored: "recall runs no model code from the model folder; ignored", help: "verl: trust remote model code" },
  "model.external_lib": { type: "string", nullable: true, default: null, ignored: "recall runs no model code from elsewhere; ignored", help: "verl: import a model library" },
  "model.use_liger": { type: "bool", default: false, ignored: "no Liger kernels; recall's fused LM head never holds [tokens × vocab] logits; ignored", help: "verl: Liger kernels" },
  "model.fsdp_config.cpu_offload": { type: "bool", default: false, ignored: NO_FSDP, help: "verl: offload to CPU" },
  "model.fsdp_config.offload_params": { type: "bool", default: false, ignored: NO_FSDP, help: "verl: offload parameters" },
  "model.fsdp_config.model_dtype": { type: "string", default: "fp32", ignored: "recall trains in f32; ignored", help: "verl: training dtype" },
  "use_remove_padding": { type: "bool", default: false, ignored: "recall never attends across or into padding; ignored", help: "verl: unpad sequences" },
  "ulysses_sequence_parallel_size": { type: "int", default: 1, ignored: ONE_DEVICE, help: "verl: sequence parallel size" },
  // optimizer
  "optim.lr": { type: "float", default: 1e-5, check: above(0), flags: ["lr"], help: "Peak learning rate" },
  "optim.betas": {
    type: "list<float>",
    default: [0.9, 0.95],
    check: (b) => (b.length === 2 && b.every((x) => x >= 0 && x < 1) ? undefined : `must be two numbers in [0, 1), got [${b.join(", ")}]`),
    help: "AdamW betas",
  },
  "optim.eps": { type: "float", default: 1e-8, check: above(0), help: "AdamW epsilon" },
  "optim.weight_decay": { type: "float", default: 0.01, check: atLeast(0), flags: ["weight_decay"], help: "AdamW weight decay" },
  "optim.warmup_steps_ratio": { type: "float", default: 0.1, check: inRange(0, 1), flags: ["warmup_ratio"], help: "Linear warmup over this share of all steps" },
  "optim.clip_grad": { type: "float", default: 1.0, check: above(0), flags: ["clip_grad"], help: "Gradient norm clip" },
  "optim.lr_scheduler": { type: "enum", choices: ["cosine", "constant"], default: "cosine", refused: { wsd: "(warmup-stable-decay) is not implemented in recall; use cosine or constant" }, flags: ["lr_scheduler"], help: "LR schedule after warmup" },
  "optim.min_lr_ratio": { type: "float", default: 0, check: inRange(0, 1), help: "Cosine floor as a share of lr" },
  // trainer
  "trainer.default_local_dir": { type: "string", default: "checkpoints", flags: ["save_path"], help: "Checkpoint root: the run folder is {default_local_dir}/{project_name}/{experiment_name}" },
  "trainer.project_name": { type: "string", default: "recall", flags: ["project_name"], help: "Project name (run folder level)" },
  "trainer.experiment_name": { type: "string", default: "sft", flags: ["experiment_name"], help: "Experiment name (run folder level)" },
  "trainer.total_epochs": { type: "int", default: 3, check: atLeast(1), flags: ["total_epochs", "epochs"], help: "Epochs over the training conversations" },
  "trainer.total_training_steps": { type: "int", nullable: true, default: null, check: atLeast(1), flags: ["max_steps"], help: "Stop after this many steps (null: epochs decide)" },
  "trainer.save_freq": { type: "int", default: -1, check: atLeast(-1), flags: ["save_freq"], help: "Checkpoint every N steps; the last step is always saved (-1 or 0: only the last)" },
  "trainer.test_freq": { type: "int", default: -1, check: atLeast(-1), flags: ["test_freq"], help: "Evaluate the held-out set every N steps (-1 or 0: at the end of each epoch)" },
  "trainer.val_before_train": { type: "bool", default: true, help: "Evaluate the held-out set before the first step" },
  "trainer.early_stopping_patience": {
    type: "int",
    default: 0,
    check: atLeast(0),
    flags: ["early_stopping_patience"],
    help: "Stop when val/loss has not improved for N evaluations in a row (0: off)",
  },
  "trainer.early_stopping_min_delta": { type: "float", default: 0, check: atLeast(0), help: "An improvement must lower val/loss by more than this" },
  "trainer.max_ckpt_to_keep": { type: "int", nullable: true, default: null, check: atLeast(1), flags: ["max_ckpt_to_keep"], help: "Keep only the newest N checkpoints (null: all)" },
  "trainer.resume_mode": { type: "enum", choices: ["auto", "disable", "resume_path"], default: "auto", flags: ["resume_mode"], help: "auto: resume the latest checkpoint of the run folder" },
  "trainer.resume_from_path": { type: "string", nullable: true, default: null, help: "Checkpoint folder for resume_mode=resume_path" },
  "trainer.seed": { type: "int", default: 1, flags: ["seed"], help: "Seed of the shuffle and the held-out split" },
  "trainer.profile": {
    type: "bool",
    default: false,
    flags: ["profile"],
    help: "recall key: time every GPU dispatch (timestamp-query): GPU ms per kernel family per step as profile/<family>_ms in metrics.jsonl, a table at the end",
  },
  ...VERL_TRAINER_CLUSTER_KEYS,
});

export type SftSettings = SettingsOf<typeof SFT_SETTINGS>;
export type SftSettingKey = keyof SftSettings;

export const SFT_COMMAND_LINE: CommandLineSpec = {
  keyFlags: false,
  overrides: true,
  options: {
    config: { type: "string", help: "YAML with verl's SFT key tree (nested or flat dotted keys); flags and key=value arguments override it" },
    print_config: { type: "bool", help: "Print the resolved settings as YAML and exit" },
  },
  ignoredFlags: { wandb_api_key: NO_NETWORK_LOGGER },
};

/** citty args of `recall sft`. */
export const SFT_ARGS = settingsArgs(SFT_SETTINGS, SFT_COMMAND_LINE);
/** Every key with its type, default and help, for `--help`. */
export const SFT_SETTINGS_HELP = settingsHelp(SFT_SETTINGS);

export interface SftCommandLine {
  settings: SftSettings;
  printConfig: boolean;
  notes: string[];
}

/** Resolves `recall sft`'s arguments; throws RecallError (one line naming the key and its source) on anything bad. */
export function parseSftCommandLine(rawArgs: string[]): SftCommandLine {
  const r = resolveCommandLine(SFT_SETTINGS, rawArgs, SFT_COMMAND_LINE);
  const printConfig = r.options.print_config === true;
  checkSftSettings(r.values, r.sources, !printConfig);
  return { settings: r.values, printConfig, notes: r.notes };
}

type Sources = { [K in SftSettingKey]: SettingSource };

/** Rules that involve more than one key, and the keys a run cannot start without. */
export function checkSftSettings(s: SftSettings, sources: Sources, requireRunInputs: boolean): void {
  const at = (k: SftSettingKey) => (sources[k].kind === "default" ? `${k} (default)` : describeSource(sources[k]));
  if (requireRunInputs) {
    if (s["data.train_files"].length === 0) throw new RecallError("no training data: pass --train_files FILE.jsonl (or data.train_files=[a.jsonl,b.parquet])");
    if (s["model.partial_pretrain"] === "") throw new RecallError("no model: pass --model DIR (or model.partial_pretrain=DIR)");
  }
  if (s["data.val_files"].length > 0 && s["data.val_split"] > 0) {
    throw new RecallError(`${at("data.val_split")}: give either data.val_files or data.val_split, not both`);
  }
  if (s["trainer.resume_mode"] === "resume_path" && !s["trainer.resume_from_path"]) {
    throw new RecallError(`${at("trainer.resume_mode")}: resume_mode resume_path needs trainer.resume_from_path`);
  }
}

/** The resolved settings as a nested key tree: for `--print_config` and a run's config.yaml. */
export function sftSettingsTree(settings: SftSettings): Record<string, unknown> {
  return settingsTree(SFT_SETTINGS, settings);
}

export function sftSettingsYaml(settings: SftSettings): string {
  return stringify(sftSettingsTree(settings));
}
