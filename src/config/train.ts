/**
 * `recall train` settings: verl's key tree (the keys ReCall's train.sh passes), with train.sh's values as defaults
 * (SPEC §6). Precedence, low to high: defaults; `--config FILE.yaml` (verl's nested tree or flat dotted keys);
 * train.sh flags (`--train_files`, `--rollout_n` …); bare dotted overrides (`actor_rollout_ref.actor.optim.lr=1e-6`).
 * Keys that mean something only on a GPU cluster (FSDP offload, vLLM memory, node counts) are accepted and explained
 * once, never silently dropped.
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

const KL_TYPES = ["kl", "abs", "mse", "low_var_kl"] as const;

const atLeastOneOrOff = (v: number) => (v === -1 || v >= 1 ? undefined : `must be -1 (off) or >= 1, got ${v}`);

export const TRAIN_SETTINGS = defineSettings({
  // data
  "data.train_files": { type: "list<string>", default: [], flags: ["train_files"], help: "Training parquet files (verl/ReCall schema)" },
  "data.val_files": { type: "list<string>", default: [], flags: ["test_files"], help: "Validation parquet files" },
  "data.prompt_key": { type: "string", default: "question", flags: ["prompt_key"], help: "Column holding the prompt" },
  "data.train_batch_size": { type: "int", default: 256, check: atLeast(1), flags: ["train_batch_size"], help: "Prompts per step" },
  "data.val_batch_size": { type: "int", nullable: true, default: null, check: atLeast(1), help: "Prompts per validation batch (null: the whole validation set)" },
  "data.max_prompt_length": { type: "int", default: 1536, check: atLeast(1), flags: ["max_prompt_length"], help: "Prompt token limit" },
  "data.max_response_length": { type: "int", default: 6656, check: atLeast(1), flags: ["max_response_length"], help: "Response token budget over all turns" },
  "data.filter_overlong_prompts": { type: "bool", default: true, help: "Drop prompts longer than max_prompt_length before training" },
  "data.truncation": { type: "enum", choices: ["error", "left", "right"], default: "error", help: "What a prompt over max_prompt_length does when not filtered" },
  "data.shuffle": { type: "bool", default: true, help: "Shuffle the training rows each epoch (seeded by data.seed)" },
  "data.seed": { type: "int", default: 1, help: "Seed of the data shuffle" },
  "data.use_re_call": { type: "bool", default: true, flags: ["use_re_call"], help: "Build ReCall's tool-use prompts (system template with the rows' tool schemas)" },
  "data.prompt_template_name": { type: "string", default: "re_call_template_sys", flags: ["prompt_template_name"], help: "ReCall prompt template" },
  "data.system_prompt": {
    type: "string",
    default: "",
    flags: ["system_prompt"],
    help: "recall key: your own system turn instead of the named template ({func_schemas} is replaced by the row's schemas), e.g. 'Use calc.'",
  },
  "data.search_url": { type: "string", default: "", flags: ["search_url"], help: "Retriever URL substituted into the tool env of *re_call rows, as ReCall does" },
  // model / actor
  "actor_rollout_ref.model.path": { type: "string", default: "", flags: ["actor_model_path"], help: "Model folder (Hugging Face layout) to train" },
  "actor_rollout_ref.model.enable_gradient_checkpointing": { type: "bool", default: true, help: "Recompute activations in the backward pass to save memory" },
  "actor_rollout_ref.model.lora_rank": { type: "int", default: 0, check: atLeast(0), flags: ["lora_rank"], help: "LoRA rank r (0: full fine-tuning); base weights frozen, the reference is the base with the adapter off" },
  "actor_rollout_ref.model.lora_alpha": { type: "float", default: 16, check: above(0), flags: ["lora_alpha"], help: "LoRA alpha: the adapter's output is scaled by alpha / r" },
  "actor_rollout_ref.model.lora_dropout": {
    type: "float",
    default: 0,
    check: (v) => (v >= 0 && v < 1 ? undefined : `must be in [0, 1), got ${v}`),
    flags: ["lora_dropout"],
    help: "recall key (PEFT's and TRL's lora_dropout; verl has none): dropout on the LoRA branch's input in training passes only; 0 is none",
  },
  "actor_rollout_ref.model.target_modules": {
    type: "list<string>",
    default: ["all-linear"],
    check: targetModulesProblem,
    flags: ["target_modules"],
    help: "Projections LoRA adapts: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj or all-linear",
  },
  "actor_rollout_ref.model.use_remove_padding": { type: "bool", default: true, ignored: "recall never pads inside a sequence; ignored", help: "verl: unpad sequences" },
  "actor_rollout_ref.actor.optim.lr": { type: "float", default: 1e-6, check: above(0), flags: ["lr"], help: "Actor learning rate" },
  "actor_rollout_ref.actor.optim.lr_warmup_steps": { type: "int", default: -1, check: atLeast(-1), help: "Warmup steps (-1: use lr_warmup_steps_ratio)" },
  "actor_rollout_ref.actor.optim.lr_warmup_steps_ratio": { type: "float", default: 0.0, check: inRange(0, 1), help: "Warmup steps as a fraction of all steps" },
  "actor_rollout_ref.actor.optim.warmup_style": { type: "enum", choices: ["constant", "cosine"], default: "constant", help: "LR schedule after warmup" },
  "actor_rollout_ref.actor.optim.min_lr_ratio": { type: "float", default: 0.0, check: inRange(0, 1), help: "Cosine schedule floor as a fraction of lr" },
  "actor_rollout_ref.actor.optim.num_cycles": { type: "float", default: 0.5, check: atLeast(0), help: "Cosine cycles over the run" },
  "actor_rollout_ref.actor.optim.weight_decay": { type: "float", default: 0.01, check: atLeast(0), help: "AdamW weight decay" },
  "actor_rollout_ref.actor.optim.betas": {
    type: "list<float>",
    default: [0.9, 0.999],
    check: (b) => (b.length === 2 && b.every((x) => x >= 0 && x < 1) ? undefined : `must be two numbers in [0, 1), got [${b.join(", ")}]`),
    help: "AdamW betas",
  },
  "actor_rollout_ref.actor.optim.eps": { type: "float", default: 1e-8, check: above(0), help: "AdamW epsilon" },
  "actor_rollout_ref.actor.ppo_mini_batch_size": { type: "int", default: 64, check: atLeast(1), flags: ["ppo_mini_batch_size"], help: "Prompts per optimizer step (each with rollout.n sequences)" },
  "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": { type: "int", nullable: true, default: null, check: atLeast(1), help: "Sequences per micro-batch when use_dynamic_bsz is false" },
  "actor_rollout_ref.actor.use_dynamic_bsz": { type: "bool", default: true, help: "Form micro-batches by a token budget (ppo_max_token_len_per_gpu)" },
  "actor_rollout_ref.actor.ppo_max_token_len_per_gpu": { type: "int", default: 16384, check: atLeast(1), help: "Token budget per micro-batch with use_dynamic_bsz" },
  "actor_rollout_ref.actor.ppo_epochs": { type: "int", default: 1, check: atLeast(1), help: "Passes over each step's batch" },
  "actor_rollout_ref.actor.shuffle": { type: "bool", default: false, help: "Shuffle sequences between mini-batches" },
  "actor_rollout_ref.actor.grad_clip": { type: "float", default: 1.0, check: above(0), help: "Gradient norm clip" },
  "actor_rollout_ref.actor.clip_ratio": { type: "float", default: 0.2, check: atLeast(0), help: "PPO clip ratio (both sides unless low/high are set)" },
  "actor_rollout_ref.actor.clip_ratio_low": { type: "float", nullable: true, default: null, check: atLeast(0), help: "Lower clip ratio (null: clip_ratio)" },
  "actor_rollout_ref.actor.clip_ratio_high": { type: "float", nullable: true, default: null, check: atLeast(0), help: "Upper clip ratio, DAPO clip-higher (null: clip_ratio)" },
  "actor_rollout_ref.actor.clip_ratio_c": { type: "float", default: 3.0, check: above(1), help: "Dual-clip bound for negative advantages" },
  "actor_rollout_ref.actor.loss_agg_mode": {
    type: "enum",
    choices: ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"],
    default: "token-mean",
    help: "How token losses are averaged",
  },
  "actor_rollout_ref.actor.loss_compat": {
    type: "enum",
    choices: ["recall", "verl"],
    default: "recall",
    help: "recall: ReCall's policy term (always token-mean); verl: loss_agg_mode applies to the policy term too",
  },
  "actor_rollout_ref.actor.entropy_coeff": { type: "float", default: 0.001, help: "Entropy bonus coefficient" },
  "actor_rollout_ref.actor.use_kl_loss": { type: "bool", default: true, help: "KL to the reference model as a loss term" },
  "actor_rollout_ref.actor.kl_loss_coef": { type: "float", default: 0.001, check: atLeast(0), help: "KL loss coefficient" },
  "actor_rollout_ref.actor.kl_loss_type": {
    type: "enum",
    choices: KL_TYPES,
    aliases: { k1: "kl", k2: "mse", k3: "low_var_kl" },
    default: "low_var_kl",
    help: "KL estimator (verl's k1/k2/k3 accepted)",
  },
  "actor_rollout_ref.actor.fsdp_config.param_offload": { type: "bool", default: false, ignored: "no FSDP in recall; ignored", help: "verl: offload parameters to CPU" },
  "actor_rollout_ref.actor.fsdp_config.optimizer_offload": { type: "bool", default: false, ignored: "no FSDP in recall; ignored", help: "verl: offload optimizer state to CPU" },
  // rollout
  "actor_rollout_ref.rollout.n": { type: "int", default: 5, check: atLeast(1), flags: ["rollout_n"], help: "Samples per prompt (the GRPO group)" },
  "actor_rollout_ref.rollout.temperature": { type: "float", default: 1.0, check: atLeast(0), help: "Rollout sampling temperature" },
  "actor_rollout_ref.rollout.top_p": { type: "float", default: 0.99, check: (v) => (v > 0 && v <= 1 ? undefined : `must be in (0, 1], got ${v}`), help: "Rollout top-p" },
  "actor_rollout_ref.rollout.top_k": { type: "int", default: -1, check: atLeastOneOrOff, help: "Rollout top-k (-1: off)" },
  "actor_rollout_ref.rollout.max_turns": { type: "int", default: 5, check: atLeast(1), flags: ["max_turns"], help: "Assistant turns per trajectory" },
  "actor_rollout_ref.rollout.max_tokens_per_turn": { type: "int", default: 512, check: atLeast(1), help: "New tokens per turn (ReCall hard-codes 512)" },
  "actor_rollout_ref.rollout.sandbox_url": { type: "string", default: "", flags: ["sandbox_url"], help: "ReCall sandbox server for tool calls (empty: in-process sandbox pool)" },
  "actor_rollout_ref.rollout.dtype": {
    type: "enum",
    choices: ["float32", "bfloat16"],
    aliases: { fp32: "float32", bf16: "bfloat16" },
    default: "float32",
    flags: ["rollout_dtype"],
    help: "Weights the rollout decodes with: float32 (the policy's own) or bfloat16 (a copy whose projection weights are bf16, refreshed after every update; verl's default, for vLLM)",
  },
  "actor_rollout_ref.rollout.max_num_seqs": { type: "int", default: 64, check: atLeast(1), help: "Sequences decoded together by the engine" },
  "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu": { type: "int", default: 32768, check: atLeast(1), help: "Token budget per old/reference log-prob forward" },
  "actor_rollout_ref.rollout.val_kwargs.temperature": { type: "float", default: 0, check: atLeast(0), help: "Validation temperature" },
  "actor_rollout_ref.rollout.val_kwargs.top_p": { type: "float", default: 1.0, check: (v) => (v > 0 && v <= 1 ? undefined : `must be in (0, 1], got ${v}`), help: "Validation top-p" },
  "actor_rollout_ref.rollout.val_kwargs.top_k": { type: "int", default: -1, check: atLeastOneOrOff, help: "Validation top-k (-1: off)" },
  "actor_rollout_ref.rollout.val_kwargs.n": { type: "int", default: 1, check: atLeast(1), help: "Validation samples per prompt" },
  "actor_rollout_ref.rollout.val_kwargs.do_sample": { type: "bool", default: false, help: "Sample in validation (false: greedy)" },
  "actor_rollout_ref.rollout.name": { type: "string", default: "vllm", flags: ["rollout_name"], ignored: "recall generates with its own engine; ignored", help: "verl: rollout engine" },
  "actor_rollout_ref.rollout.tensor_model_parallel_size": { type: "int", default: 1, flags: ["rollout_tp"], ignored: ONE_DEVICE, help: "verl: vLLM tensor parallel size" },
  "actor_rollout_ref.rollout.gpu_memory_utilization": { type: "float", default: 0.5, flags: ["rollout_gpu_util"], ignored: "recall sizes its KV cache from max_num_seqs and the lengths; ignored", help: "verl: vLLM memory fraction" },
  "actor_rollout_ref.rollout.enforce_eager": { type: "bool", default: false, ignored: "no CUDA graphs in recall; ignored", help: "verl: vLLM eager mode" },
  "actor_rollout_ref.rollout.free_cache_engine": { type: "bool", default: false, ignored: "recall's engine shares the training weights; ignored", help: "verl: free vLLM's cache between steps" },
  "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu": {
    type: "int",
    default: 32768,
    ignored: "reference log-probs use actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu; ignored",
    help: "verl: token budget per reference forward",
  },
  "actor_rollout_ref.ref.fsdp_config.param_offload": { type: "bool", default: false, ignored: "no FSDP in recall; ignored", help: "verl: offload reference parameters" },
  // algorithm
  "algorithm.adv_estimator": { type: "enum", choices: ["grpo", "rloo", "reinforce_plus_plus"], default: "grpo", help: "Advantage estimator" },
  "algorithm.norm_adv_by_std_in_grpo": { type: "bool", default: true, help: "Divide GRPO advantages by the group std (false: Dr.GRPO)" },
  "algorithm.gamma": { type: "float", default: 1.0, check: inRange(0, 1), help: "Discount (reinforce_plus_plus)" },
  "algorithm.lam": { type: "float", default: 1.0, check: inRange(0, 1), help: "GAE lambda (kept for verl configs)" },
  "algorithm.use_kl_in_reward": { type: "bool", default: false, help: "KL to the reference as a reward penalty" },
  "algorithm.kl_penalty": { type: "enum", choices: KL_TYPES, default: "kl", help: "KL estimator of the reward penalty" },
  "algorithm.kl_ctrl.type": {
    type: "enum",
    choices: ["fixed"],
    refused: { adaptive: "(adaptive KL controller) is not implemented in recall; use fixed" },
    default: "fixed",
    help: "KL penalty controller",
  },
  "algorithm.kl_ctrl.kl_coef": { type: "float", default: 0.001, check: atLeast(0), help: "KL reward penalty coefficient" },
  "algorithm.filter_groups.enable": { type: "bool", default: false, help: "DAPO dynamic sampling: drop groups whose scores are all equal" },
  "algorithm.filter_groups.metric": { type: "enum", choices: ["score", "acc"], default: "score", help: "What must vary within a kept group" },
  "algorithm.filter_groups.max_num_gen_batches": { type: "int", default: 10, check: atLeast(0), help: "Generation batches per step before giving up (0: no limit)" },
  // reward
  "reward_model.reward_manager": {
    type: "enum",
    choices: ["re_call", "naive"],
    default: "re_call",
    flags: ["reward_manager"],
    help: "re_call: route by data_source as ReCall does; naive: verl's default scorer",
  },
  "reward_model.overlong_buffer.enable": { type: "bool", default: false, help: "DAPO overlong reward shaping" },
  "reward_model.overlong_buffer.len": { type: "int", default: 4096, check: atLeast(0), help: "Tokens before max_response_length where the penalty starts" },
  "reward_model.overlong_buffer.penalty_factor": { type: "float", default: 1.0, check: atLeast(0), help: "Penalty at max_response_length" },
  "custom_reward_function.path": { type: "string", nullable: true, default: null, help: "Python file with a verl compute_score (run in the sandbox)" },
  "custom_reward_function.name": { type: "string", default: "compute_score", help: "Function name in custom_reward_function.path" },
  // trainer
  "trainer.project_name": { type: "string", default: "recall", flags: ["project_name"], help: "Project name (run folder level)" },
  "trainer.experiment_name": { type: "string", default: "grpo", flags: ["experiment_name"], help: "Experiment name (run folder level)" },
  "trainer.total_epochs": { type: "int", default: 2, check: atLeast(1), flags: ["total_epochs"], help: "Epochs over the training files" },
  "trainer.total_training_steps": { type: "int", nullable: true, default: null, check: atLeast(1), help: "Stop after this many steps (null: epochs decide)" },
  "trainer.save_freq": { type: "int", default: 10, check: atLeast(-1), flags: ["save_freq"], help: "Checkpoint every N steps (-1: never)" },
  "trainer.test_freq": { type: "int", default: 10, check: atLeast(-1), flags: ["test_freq"], help: "Validate every N steps (-1: never)" },
  "trainer.default_local_dir": {
    type: "string",
    default: "checkpoints",
    flags: ["save_path"],
    help: "Checkpoint root: the run folder is {default_local_dir}/{project_name}/{experiment_name}",
  },
  "trainer.rollout_save_path": { type: "string", default: "", help: "Per-step rollout dumps (empty: {run folder}/rollout)" },
  "trainer.resume_mode": { type: "enum", choices: ["auto", "disable", "resume_path"], default: "auto", help: "auto: resume the latest checkpoint of the run folder" },
  "trainer.resume_from_path": { type: "string", nullable: true, default: null, help: "Checkpoint folder for resume_mode=resume_path" },
  "trainer.val_before_train": { type: "bool", default: true, help: "Validate before the first step" },
  "trainer.max_actor_ckpt_to_keep": { type: "int", nullable: true, default: null, check: atLeast(1), help: "Keep only the newest N checkpoints (null: all)" },
  ...VERL_TRAINER_CLUSTER_KEYS,
  "trainer.critic_warmup": { type: "int", default: 0, ignored: "GRPO has no critic; ignored", help: "verl: critic warmup steps" },
  "trainer.seed": { type: "int", default: 0, help: "Seed of sampling and initialisation" },
  "trainer.save_batches": {
    type: "bool",
    default: false,
    flags: ["save_batches"],
    help: "Write each update's batch to batches/step_N.safetensors + .json, to recompute the update elsewhere",
  },
  "trainer.profile": {
    type: "bool",
    default: false,
    flags: ["profile"],
    help: "recall key: time every GPU dispatch (timestamp-query): GPU ms per kernel family per step as profile/<family>_ms in metrics.jsonl, a table at the end",
  },
  "hydra.run.dir": { type: "string", nullable: true, default: null, ignored: "no Hydra output folder; logs go to the run folder; ignored", help: "Hydra: working directory" },
});

export type TrainSettings = SettingsOf<typeof TRAIN_SETTINGS>;
export type TrainSettingKey = keyof TrainSettings;

/** The command line of `recall train` besides the settings' own flags. */
export const TRAIN_COMMAND_LINE: CommandLineSpec = {
  keyFlags: false,
  overrides: true,
  options: {
    config: { type: "string", help: "verl-style YAML (nested key tree or flat dotted keys); flags and key=value arguments override it" },
    print_config: { type: "bool", help: "Print the resolved settings as YAML and exit" },
  },
  ignoredFlags: { wandb_api_key: NO_NETWORK_LOGGER },
};

/** citty args of `recall train` (for cmd/train.ts: `args: TRAIN_ARGS`). */
export const TRAIN_ARGS = settingsArgs(TRAIN_SETTINGS, TRAIN_COMMAND_LINE);
/** Every key with its type, default and help, for `overrides: { help: TRAIN_SETTINGS_HELP }` of cmd/train.ts. */
export const TRAIN_SETTINGS_HELP = settingsHelp(TRAIN_SETTINGS);

export interface TrainCommandLine {
  settings: TrainSettings;
  /** `--print_config` was given: print `trainSettingsYaml(settings)` and exit. */
  printConfig: boolean;
  /** One line per ignored or explained key or flag that was given; print them once at start. */
  notes: string[];
}

/**
 * Resolves `recall train`'s arguments: `--config FILE.yaml`, train.sh flags (snake_case or kebab-case), bare dotted
 * overrides and `--print_config`. Throws RecallError (one line naming the key and its source) on anything bad. The
 * required settings (training files, model path) are checked unless only the configuration is printed.
 */
export function parseTrainCommandLine(rawArgs: string[]): TrainCommandLine {
  const r = resolveCommandLine(TRAIN_SETTINGS, rawArgs, TRAIN_COMMAND_LINE);
  const printConfig = r.options.print_config === true;
  checkTrainSettings(r.values, r.sources, !printConfig);
  return { settings: r.values, printConfig, notes: r.notes };
}

type Sources = { [K in TrainSettingKey]: SettingSource };

/** Rules that involve more than one key, and the keys a run cannot start without. */
function checkTrainSettings(s: TrainSettings, sources: Sources, requireRunInputs: boolean): void {
  const at = (k: TrainSettingKey) => (sources[k].kind === "default" ? `${k} (default)` : describeSource(sources[k]));
  if (requireRunInputs) {
    if (s["data.train_files"].length === 0) throw new RecallError("no training data: pass --train_files FILE.parquet (or data.train_files=[a.parquet,b.parquet])");
    if (s["actor_rollout_ref.model.path"] === "") throw new RecallError("no model: pass --actor_model_path DIR (or actor_rollout_ref.model.path=DIR)");
  }
  const mini = s["actor_rollout_ref.actor.ppo_mini_batch_size"];
  const batch = s["data.train_batch_size"];
  if (mini > batch) {
    throw new RecallError(`${at("actor_rollout_ref.actor.ppo_mini_batch_size")}: ppo_mini_batch_size ${mini} is larger than data.train_batch_size ${batch}`);
  }
  if (!s["actor_rollout_ref.actor.use_dynamic_bsz"] && s["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"] === null) {
    throw new RecallError(`${at("actor_rollout_ref.actor.use_dynamic_bsz")}: without dynamic batch size, set actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu`);
  }
  if (s["trainer.resume_mode"] === "resume_path" && !s["trainer.resume_from_path"]) {
    throw new RecallError(`${at("trainer.resume_mode")}: resume_mode resume_path needs trainer.resume_from_path`);
  }
}

/** The resolved settings as verl's nested key tree (secrets left out): for `--print_config` and a run's config.yaml. */
export function trainSettingsTree(settings: TrainSettings): Record<string, unknown> {
  return settingsTree(TRAIN_SETTINGS, settings);
}

/** `trainSettingsTree` as YAML text; reading it back with `--config` gives the same settings. */
export function trainSettingsYaml(settings: TrainSettings): string {
  return stringify(trainSettingsTree(settings));
}
