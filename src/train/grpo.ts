/**
 * `recall train`: GRPO on multi-turn tool-calling rollouts, as ReCall runs it with verl (SPEC §6), on one WebGPU
 * device. One loop, top to bottom:
 *
 *   for each step:  batch of prompts → rollouts (n per prompt, tools in the sandbox) → rewards → advantages
 *                   → old / reference log-probs → for each mini-batch: loss, backward over micro-batches, AdamW
 *                   → metrics, rollout dump, report → checkpoint → validation
 *
 * The math lives in pure functions (advantages.ts, loss.ts, schedule.ts); the GPU work in actor.ts and
 * optimizer.ts; files in checkpoint.ts, metrics.ts and report.ts. Everything random is keyed by (seed, step), and
 * the data cursor and AdamW moments are checkpointed, so a resumed run repeats the uninterrupted one exactly.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { writeFileAtomic } from "../util/fs.ts";
import { formatDuration } from "../util/duration.ts";
import { RecallError } from "../errors.ts";
import { getGpu, type Gpu } from "../gpu/runtime.ts";
import { loadRlDataset, type RlDataset, type RlExample } from "../data/rl_dataset.ts";
import { EpochSampler, type DataCursor } from "../data/sampler.ts";
import { openPretrained, type Pretrained } from "../model/pretrained.ts";
import { Transformer } from "../model/transformer.ts";
import { checkpointProjectionDtype } from "../model/weights.ts";
import { LocalTokenGenerator } from "../model/local_generator.ts";
import { estimateMemory, formatMemoryEstimate, type RunSizes } from "../model/memory.ts";
import { writeSafetensors } from "../model/safetensors.ts";
import { createReward, type RewardFn, type RewardResult } from "../reward/index.ts";
import { loadCustomReward } from "../reward/custom.ts";
import { loadPythonReward, type PythonReward } from "../reward/python_reward.ts";
import { openSandbox } from "../sandbox/index.ts";
import type { ToolExecutor } from "../sandbox/types.ts";
import { VERSION } from "../version.ts";
import type { TrainSettings } from "../config/train.ts";
import { trainSettingsTree } from "../config/train.ts";
import { outcomeAdvantages } from "./advantages.ts";
import { klInReward, klPenalty, overlongPenalty, type PolicyLossMetrics, type PolicyLossSettings } from "./loss.ts";
import { lrAt } from "./schedule.ts";
import { scoreResponses, type PolicySequence } from "./actor.ts";
import { updateActor } from "./update.ts";
import { ActorOptimizer } from "./optimizer.ts";
import { latestCheckpoint, loadMoments, readTrainerState, saveCheckpoint, type TrainerState } from "./checkpoint.ts";
import { MetricsLog, METRICS_FILE, summarize } from "./metrics.ts";
import { writeReport } from "./report.ts";
import { Bf16RolloutWeights, rolloutBatch, stepSeed, type Trajectory } from "./rollout.ts";
import { attachTrainable, checkResumeKind, frozenBaseDtype, loraSettingsOf } from "./trainable.ts";
import { loraParameterCount, type LoraSettings } from "../model/lora.ts";
import { RunProfile } from "./profile.ts";

export interface TrainIo {
  log(line: string): void;
  warn(line: string): void;
  /** Called after every step with its metrics (tests, progress bars). */
  onStep?(step: number, metrics: Readonly<Record<string, number>>): void;
}

export interface TrainResult {
  runDir: string;
  steps: number;
  lastMetrics: Record<string, number>;
  /** With trainer.profile: GPU time per kernel family summed over the run's steps, and their wall time. */
  profile?: ReturnType<RunProfile["total"]>;
}

/** A scored trajectory: the reward, and the sequence as the actor sees it. */
interface Scored extends Trajectory {
  score: number;
  reason: string;
}

/** The run folder: {default_local_dir}/{project_name}/{experiment_name}. */
export function runFolder(s: TrainSettings): string {
  return join(s["trainer.default_local_dir"], s["trainer.project_name"], s["trainer.experiment_name"]);
}

const mean = (xs: readonly number[]) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);

/** Which checkpoint to start from, per trainer.resume_mode (verl's auto | disable | resume_path). */
function resumePoint(s: TrainSettings, runDir: string): string | undefined {
  const mode = s["trainer.resume_mode"];
  if (mode === "disable") return undefined;
  if (mode === "resume_path") {
    const p = s["trainer.resume_from_path"];
    if (!p) throw new RecallError("trainer.resume_mode=resume_path needs trainer.resume_from_path");
    readTrainerState(p);
    return p;
  }
  return latestCheckpoint(runDir);
}

/** Memory before anything is allocated; a run whose tensors cannot exist on this adapter is refused with the numbers. */
function checkMemory(gpu: Gpu, policy: Pretrained, s: TrainSettings, capacity: number, io: TrainIo, lora: LoraSettings | undefined, halfBase: boolean): void {
  const c = policy.model.config;
  const seqLen = capacity;
  const microTokens = s["actor_rollout_ref.actor.use_dynamic_bsz"] ? s["actor_rollout_ref.actor.ppo_max_token_len_per_gpu"] : (s["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"] ?? 1) * seqLen;
  const sizes: RunSizes = {
    batch: Math.max(1, Math.floor(microTokens / seqLen)),
    seqLen,
    checkpointing: s["actor_rollout_ref.model.enable_gradient_checkpointing"],
    training: true,
    referenceModel: !needsReference(s) ? false : !lora && checkpointProjectionDtype(s["actor_rollout_ref.model.path"], c) === "bf16" ? "bf16-projections" : true,
    loraParameters: lora ? loraParameterCount(c, lora) : undefined,
    halfProjections: halfBase,
    bf16RolloutCopy: !lora && s["actor_rollout_ref.rollout.dtype"] === "bfloat16",
    kvSequences: s["actor_rollout_ref.rollout.max_num_seqs"],
    kvCapacity: capacity,
  };
  const e = estimateMemory(c, sizes);
  io.log(`memory estimate:\n${formatMemoryEstimate(e, sizes)}`);
  const kvLayerBytes = sizes.kvSequences! * capacity * c.numKvHeads * c.headDim * 4;
  const maxBuffer = gpu.limits.maxBufferSize;
  const maxBinding = gpu.limits.maxStorageBufferBindingSize;
  const big: [string, number, string][] = [
    ["one layer's KV cache (max_num_seqs × (max_prompt_length + max_response_length) × kv heads × head dim × 4 B)", kvLayerBytes, "lower actor_rollout_ref.rollout.max_num_seqs or the prompt/response lengths"],
    ["one micro-batch's MLP activations (tokens × intermediate size × 4 B)", microTokens * c.intermediateSize * 4, "lower actor_rollout_ref.actor.ppo_max_token_len_per_gpu (or ppo_micro_batch_size_per_gpu)"],
  ];
  for (const [what, bytes, fix] of big) {
    if (bytes > Math.min(maxBuffer, maxBinding)) {
      throw new RecallError(`this run needs ${what} = ${(bytes / 2 ** 20).toFixed(0)} MiB in one buffer; the adapter allows ${(Math.min(maxBuffer, maxBinding) / 2 ** 20).toFixed(0)} MiB`, { hint: fix });
    }
  }
}

function needsReference(s: TrainSettings): boolean {
  return (s["actor_rollout_ref.actor.use_kl_loss"] && s["actor_rollout_ref.actor.kl_loss_coef"] !== 0) || s["algorithm.use_kl_in_reward"];
}

function lossSettings(s: TrainSettings, horizon: number): PolicyLossSettings {
  const clip = s["actor_rollout_ref.actor.clip_ratio"];
  return {
    clipRatioLow: s["actor_rollout_ref.actor.clip_ratio_low"] ?? clip,
    clipRatioHigh: s["actor_rollout_ref.actor.clip_ratio_high"] ?? clip,
    clipRatioC: s["actor_rollout_ref.actor.clip_ratio_c"],
    lossAggMode: s["actor_rollout_ref.actor.loss_agg_mode"],
    compat: s["actor_rollout_ref.actor.loss_compat"],
    entropyCoeff: s["actor_rollout_ref.actor.entropy_coeff"],
    useKlLoss: s["actor_rollout_ref.actor.use_kl_loss"] && s["actor_rollout_ref.actor.kl_loss_coef"] !== 0,
    klCoef: s["actor_rollout_ref.actor.kl_loss_coef"],
    klType: s["actor_rollout_ref.actor.kl_loss_type"],
    horizon,
  };
}

/** A rollout dump row: ReCall's fields, plus recall's tool-use extras. */
function dumpRow(t: Scored, decode: (ids: readonly number[]) => string): Record<string, unknown> {
  return {
    data_source: t.example.dataSource,
    sequences_str: decode([...t.promptIds, ...t.responseIds]),
    ground_truth: t.example.groundTruth,
    score: t.score,
    reason: t.reason,
    uid: t.uid,
    num_turns: t.conversation.turns,
    tool_calls: t.conversation.toolCalls.length,
    end: t.conversation.end,
    response_length: t.responseIds.length,
  };
}

function writeDump(dir: string, name: string, rows: readonly Record<string, unknown>[]): void {
  mkdirSync(dir, { recursive: true });
  writeFileAtomic(join(dir, name), rows.map((r) => JSON.stringify(r)).join("\n") + (rows.length ? "\n" : ""));
}

/** Tool-use figures of a set of trajectories (the metrics a ReCall user watches besides the score). */
function toolUseMetrics(ts: readonly Scored[]): Record<string, number> {
  const calls = ts.flatMap((t) => t.conversation.toolCalls);
  return {
    "num_turns/mean": mean(ts.map((t) => t.conversation.turns)),
    "tool_calls/mean": mean(ts.map((t) => t.conversation.toolCalls.length)),
    tool_call_parse_failure_rate: calls.length === 0 ? 0 : calls.filter((c) => !c.call.ok).length / calls.length,
    format_failure_rate: mean(ts.map((t) => (/^(bad format|over length|cannot extract)/.test(t.reason) ? 1 : 0))),
  };
}

export async function runGrpo(s: TrainSettings, io: TrainIo): Promise<TrainResult> {
  const t0 = performance.now();
  if (s["data.train_files"].length === 0) throw new RecallError("no training data: give data.train_files (--train_files)");
  if (!s["actor_rollout_ref.model.path"]) throw new RecallError("no model: give actor_rollout_ref.model.path (--actor_model_path)");
  const runDir = runFolder(s);
  mkdirSync(runDir, { recursive: true });
  const resumeFrom = resumePoint(s, runDir);
  const state: TrainerState | undefined = resumeFrom ? readTrainerState(resumeFrom) : undefined;
  const basePath = s["actor_rollout_ref.model.path"];
  const lora = loraSettingsOf({
    rank: s["actor_rollout_ref.model.lora_rank"],
    alpha: s["actor_rollout_ref.model.lora_alpha"],
    targetModules: s["actor_rollout_ref.model.target_modules"],
    key: "actor_rollout_ref.model.target_modules",
    dropout: s["actor_rollout_ref.model.lora_dropout"],
    dropoutKey: "actor_rollout_ref.model.lora_dropout",
  });
  const loraDropout = lora?.dropout ?? 0;

  checkResumeKind(lora, resumeFrom);
  // ---- model, data, tools ----------------------------------------------------------------------
  const gpu = await getGpu();
  // First, so an adapter without timestamp-query is refused before anything is opened.
  const profile = s["trainer.profile"] ? RunProfile.start(gpu, "--profile (trainer.profile)") : undefined;
  // LoRA: the base model, with the run's adapter (fresh, or the checkpoint's) attached below; its frozen projections
  // stay 16-bit (frozenBaseDtype).
  // A bf16 rollout under LoRA decodes with the frozen base itself, so the base is kept in bf16.
  const bf16Rollouts = s["actor_rollout_ref.rollout.dtype"] === "bfloat16";
  const baseDtype = lora ? (bf16Rollouts ? "bf16" : frozenBaseDtype(gpu, basePath)) : "f32";
  const halfBase = baseDtype !== "f32";
  const policy = await openPretrained(gpu, lora ? basePath : resumeFrom ?? basePath, { projectionDtype: baseDtype });
  const model = policy.model;
  const tokenizer = policy.tokenizer;
  const maxPrompt = s["data.max_prompt_length"];
  const maxResponse = s["data.max_response_length"];
  const capacity = Math.min(maxPrompt + maxResponse, model.config.maxPositionEmbeddings);
  checkMemory(gpu, policy, s, capacity, io, lora, halfBase);
  const trainable = await attachTrainable(gpu, model, { lora, resumeFrom, seed: s["trainer.seed"] });
  if (lora) io.log(`LoRA: r=${lora.rank}, alpha=${lora.alpha}${loraDropout ? `, dropout ${loraDropout}` : ""} on ${lora.targetModules.join(", ")}: ${(trainable.params.numel / 1e6).toFixed(3)}M trainable parameters, base weights frozen${halfBase ? ` (projections in ${baseDtype})` : ""}`);
  // The reference policy: the base weights as loaded — under LoRA the same model with its adapter switched off. Frozen,
  // so a bf16 checkpoint's projections stay bf16 (the same values and log-probs, half the bytes).
  const reference = !needsReference(s) || lora ? undefined : await Transformer.load(gpu, basePath, { projectionDtype: "stored" });

  const dataOptions = {
    promptKey: s["data.prompt_key"],
    maxPromptLength: maxPrompt,
    filterOverlongPrompts: s["data.filter_overlong_prompts"],
    truncation: s["data.truncation"],
    useReCall: s["data.use_re_call"],
    promptTemplateName: s["data.prompt_template_name"],
    systemPrompt: s["data.system_prompt"],
    searchUrl: s["data.search_url"],
  };
  const train = await loadRlDataset(s["data.train_files"], tokenizer, dataOptions);
  const val: RlDataset | undefined = s["data.val_files"].length > 0 ? await loadRlDataset(s["data.val_files"], tokenizer, dataOptions) : undefined;
  for (const [name, d] of [["train", train], ["val", val]] as const) {
    if (!d) continue;
    io.log(`${name} data: ${d.examples.length} prompts from ${d.files.length} file(s)${d.dropped ? `, ${d.dropped} dropped for exceeding ${maxPrompt} tokens` : ""}${d.withoutTools ? `, ${d.withoutTools} without tools` : ""}`);
  }
  const batchSize = s["data.train_batch_size"];
  const sampler = new EpochSampler(train.examples.length, { batchSize, shuffle: s["data.shuffle"], seed: s["data.seed"] });
  const totalSteps = s["trainer.total_training_steps"] ?? sampler.batchesPerEpoch * s["trainer.total_epochs"];
  const n = s["actor_rollout_ref.rollout.n"];
  const miniPrompts = s["actor_rollout_ref.actor.ppo_mini_batch_size"];
  if (batchSize % miniPrompts !== 0) {
    throw new RecallError(`data.train_batch_size ${batchSize} must be a multiple of actor_rollout_ref.actor.ppo_mini_batch_size ${miniPrompts}`);
  }
  const microSize = s["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"];
  if (!s["actor_rollout_ref.actor.use_dynamic_bsz"] && microSize !== null && (miniPrompts * n) % microSize !== 0) {
    // verl refuses this too: the 1 / accumulation scaling assumes equal micro-batches.
    throw new RecallError(`actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu ${microSize} must divide ppo_mini_batch_size × rollout.n = ${miniPrompts * n}`);
  }
  const warmupSetting = s["actor_rollout_ref.actor.optim.lr_warmup_steps"];
  const warmupSteps = warmupSetting >= 0 ? warmupSetting : Math.floor(s["actor_rollout_ref.actor.optim.lr_warmup_steps_ratio"] * totalSteps);

  // A bf16 rollout of a full fine-tuning run decodes with its own bf16 copy, refreshed after every update.
  const bf16Rollout = bf16Rollouts && !lora ? new Bf16RolloutWeights(model) : undefined;
  if (bf16Rollout) io.log("rollout: decoding with bf16 projection and LM-head weights, refreshed after every update (rollout.dtype=bfloat16)");
  if (bf16Rollouts && lora) io.log("rollout: decoding with the frozen base's bf16 projections and the f32 adapter (rollout.dtype=bfloat16)");
  const generator = new LocalTokenGenerator(bf16Rollout ? { ...policy, model: bf16Rollout.model } : policy, resumeFrom ?? basePath, {
    batchSize: s["actor_rollout_ref.rollout.max_num_seqs"],
    capacity,
  });
  const sandboxUrl = s["actor_rollout_ref.rollout.sandbox_url"];
  const searchUrl = s["data.search_url"];
  const sandbox = lazySandbox(() => openSandbox({ url: sandboxUrl || undefined, allowUrls: searchUrl ? [searchUrl] : [] }));
  const builtinReward = await createReward(s["reward_model.reward_manager"] === "naive" ? "f1" : "auto");
  const customPath = s["custom_reward_function.path"];
  // A Python file runs unchanged in the sandbox (verl's compute_score); a JS/TS module (recall's own form) in-process.
  const customReward = !customPath
    ? undefined
    : /\.(m?[jt]s)$/.test(customPath)
      ? jsReward(await loadCustomReward(customPath))
      : loadPythonReward(customPath, s["custom_reward_function.name"], sandbox);

  const grads = trainable.grads;
  const [beta1, beta2] = s["actor_rollout_ref.actor.optim.betas"];
  const optimizer = new ActorOptimizer(gpu, trainable.params, grads, {
    beta1: beta1!,
    beta2: beta2!,
    eps: s["actor_rollout_ref.actor.optim.eps"],
    weightDecay: s["actor_rollout_ref.actor.optim.weight_decay"],
    gradClip: s["actor_rollout_ref.actor.grad_clip"],
  });
  let step = 0;
  let cursor: DataCursor = { epoch: 0, batch: 0 };
  if (state && resumeFrom) {
    loadMoments(gpu, resumeFrom, { m: optimizer.m, v: optimizer.v });
    optimizer.step = state.optimizerSteps;
    step = state.step;
    cursor = state.cursor;
    io.log(`resuming from ${resumeFrom} (step ${step})`);
  }
  const metricsLog = new MetricsLog(join(runDir, METRICS_FILE));
  metricsLog.truncateAfter(step);
  const rolloutDir = s["trainer.rollout_save_path"] || join(runDir, "rollout");
  writeFileAtomic(join(runDir, "config.yaml"), stringify(trainSettingsTree(s)));
  const decode = (ids: readonly number[]) => tokenizer.decode(ids, { skipSpecialTokens: false });
  const limits = {
    maxTurns: s["actor_rollout_ref.rollout.max_turns"],
    maxTokensPerTurn: s["actor_rollout_ref.rollout.max_tokens_per_turn"],
    maxResponseTokens: maxResponse,
    maxContextTokens: capacity,
  };
  const temperature = s["actor_rollout_ref.rollout.temperature"];
  const logprobBudget = Math.max(s["actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu"], capacity);

  /** Rewards of finished trajectories (ReCall's reward on prompt + response, or the user's Python scorer on the response). */
  async function score(ts: readonly Trajectory[]): Promise<Scored[]> {
    return Promise.all(
      ts.map(async (t): Promise<Scored> => {
        let r: RewardResult;
        if (customReward) {
          r = await customReward({ dataSource: t.example.dataSource, solutionStr: decode(t.responseIds), groundTruth: t.example.groundTruth, extraInfo: t.example.extraInfo });
        } else {
          r = await builtinReward({ text: t.conversation.prompt + t.conversation.response, groundTruth: t.example.groundTruth, dataSource: t.example.dataSource, extraInfo: t.example.extraInfo });
        }
        let value = r.score;
        if (s["reward_model.overlong_buffer.enable"]) {
          value += overlongPenalty(t.responseIds.length, maxResponse, s["reward_model.overlong_buffer.len"], s["reward_model.overlong_buffer.penalty_factor"]);
        }
        return { ...t, score: value, reason: r.reason };
      }),
    );
  }

  /** Greedy rollouts of the whole validation set; mean score per data source. */
  async function validate(atStep: number): Promise<Record<string, number>> {
    if (!val) return {};
    const vt0 = performance.now();
    const doSample = s["actor_rollout_ref.rollout.val_kwargs.do_sample"];
    const chunk = s["data.val_batch_size"] ?? val.examples.length;
    const scored: Scored[] = [];
    for (let i = 0; i < val.examples.length; i += chunk) {
      const trajectories = await rolloutBatch(val.examples.slice(i, i + chunk), generator, sandbox, {
        n: doSample ? s["actor_rollout_ref.rollout.val_kwargs.n"] : 1,
        temperature: doSample ? s["actor_rollout_ref.rollout.val_kwargs.temperature"] : 0,
        topP: s["actor_rollout_ref.rollout.val_kwargs.top_p"],
        topK: Math.max(0, s["actor_rollout_ref.rollout.val_kwargs.top_k"]),
        seed: stepSeed(s["trainer.seed"], atStep * 1000 + i / chunk, "val"),
        limits,
        toolTimeout: 5,
      });
      scored.push(...(await score(trajectories)));
    }
    writeDump(rolloutDir, `val_${atStep}.jsonl`, scored.map((t) => dumpRow(t, decode)));
    const bySource = new Map<string, number[]>();
    for (const t of scored) bySource.set(t.example.dataSource, [...(bySource.get(t.example.dataSource) ?? []), t.score]);
    const out: Record<string, number> = {};
    for (const [source, xs] of bySource) out[`val/test_score/${source}`] = mean(xs);
    out["timing_s/testing"] = (performance.now() - vt0) / 1000;
    metricsLog.append(atStep, out, { epoch: cursor.epoch });
    io.log(`validation at step ${atStep}: ${[...bySource].map(([src, xs]) => `${src} ${mean(xs).toFixed(4)}`).join(", ")}`);
    return out;
  }

  let lastMetrics: Record<string, number> = {};
  try {
    if (step === 0 && s["trainer.val_before_train"]) await validate(0);

    while (step < totalSteps) {
      step++;
      await profile?.beginStep();
      const stepStart = performance.now();
      const timing: Record<string, number> = {};
      const timed = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
        const a = performance.now();
        try {
          return await f();
        } finally {
          timing[`timing_s/${name}`] = (timing[`timing_s/${name}`] ?? 0) + (performance.now() - a) / 1000;
        }
      };

      // ---- rollouts and rewards (with DAPO's dynamic sampling: keep groups whose rewards differ) --
      let kept: Scored[] = [];
      let generated = 0;
      let genBatches = 0;
      const decodeBefore = { steps: generator.steps, ahead: generator.decodedAhead };
      const filter = s["algorithm.filter_groups.enable"];
      for (;;) {
        const { indices, next } = sampler.take(cursor);
        cursor = next;
        genBatches++;
        const examples: RlExample[] = indices.map((i) => train.examples[i]!);
        const seed = stepSeed(s["trainer.seed"], step * 1000 + genBatches - 1, "train");
        const ts = await timed("gen", () =>
          rolloutBatch(examples, generator, sandbox, {
            n,
            temperature,
            topP: s["actor_rollout_ref.rollout.top_p"],
            topK: Math.max(0, s["actor_rollout_ref.rollout.top_k"]),
            seed,
            limits,
            toolTimeout: 5,
          }),
        );
        const scored = await timed("reward", () => score(ts));
        generated += scored.length;
        // Group ids stay unique across generation batches.
        for (const t of scored) t.uid += (genBatches - 1) * batchSize;
        if (!filter) {
          kept = scored;
          break;
        }
        const groups = new Map<number, Scored[]>();
        for (const t of scored) groups.set(t.uid, [...(groups.get(t.uid) ?? []), t]);
        for (const g of groups.values()) if (new Set(g.map((t) => t.score)).size > 1 || g.length === 1) kept.push(...g);
        const maxGen = s["algorithm.filter_groups.max_num_gen_batches"];
        if (kept.length >= batchSize * n) {
          kept = kept.slice(0, batchSize * n);
          break;
        }
        if (maxGen > 0 && genBatches >= maxGen) {
          throw new RecallError(`dynamic sampling: ${genBatches} generation batches gave ${kept.length / n} of ${batchSize} groups with varied rewards`, {
            hint: "raise algorithm.filter_groups.max_num_gen_batches, or the data is too easy/hard for this model",
          });
        }
        io.log(`dynamic sampling: ${kept.length / n}/${batchSize} groups kept after ${genBatches} generation batch(es); generating more`);
      }

      // ---- sequences, old and reference log-probs ------------------------------------------------
      const seqs: PolicySequence[] = kept.map((t) => ({ ids: [...t.promptIds, ...t.responseIds], responseStart: t.promptIds.length }));
      const masks = kept.map((t) => Float32Array.from(t.lossMask));
      const responseMasks = kept.map((t) => new Float32Array(t.responseIds.length).fill(1));
      // On-policy (one epoch of one mini-batch, no KL in the reward): the update's forward runs on the rollout's weights,
      // so its log-probs are the old ones and a separate scoring pass would compute the same numbers (TRL does the same).
      // Not with LoRA dropout: the update's forward drops, and verl's old log-probs come from a pass without dropout.
      const onPolicy = s["actor_rollout_ref.actor.ppo_epochs"] === 1 && miniPrompts * n >= seqs.length && !s["algorithm.use_kl_in_reward"] && loraDropout === 0;
      const old = onPolicy ? undefined : await timed("old_log_prob", () => scoreResponses(model, seqs, { temperature, maxTokens: logprobBudget }));
      const scoreReference = () =>
        reference ? scoreResponses(reference, seqs, { temperature, maxTokens: logprobBudget }) : model.withoutAdapter(() => scoreResponses(model, seqs, { temperature, maxTokens: logprobBudget }));
      const ref = needsReference(s) ? await timed("ref", scoreReference) : undefined;

      // ---- advantages ------------------------------------------------------------------------------
      const scores = kept.map((t) => t.score);
      let tokenRewards: Float32Array[] | undefined;
      let rewardKl: number | undefined;
      if (s["algorithm.use_kl_in_reward"] && ref) {
        // The penalty counts the policy's own tokens only; the score sits on the last response token, as in verl.
        const kl = old!.logprob.map((lp, i) => klPenalty(lp, ref.logprob[i]!, s["algorithm.kl_penalty"]).map((x, t) => x * masks[i]![t]!));
        const r = klInReward(scores, kl, responseMasks, s["algorithm.kl_ctrl.kl_coef"]);
        tokenRewards = r.tokenRewards;
        rewardKl = r.klMean;
      }
      const adv = await timed("adv", async () =>
        outcomeAdvantages(
          { scores, groups: kept.map((t) => t.uid), responseMasks, tokenRewards },
          { estimator: s["algorithm.adv_estimator"], normByStd: s["algorithm.norm_adv_by_std_in_grpo"], gamma: s["algorithm.gamma"] },
        ),
      );

      // ---- update: ppo_epochs × mini-batches, each accumulated over micro-batches -------------------
      const lr = lrAt(step - 1, {
        lr: s["actor_rollout_ref.actor.optim.lr"],
        warmupSteps,
        totalSteps,
        style: s["actor_rollout_ref.actor.optim.warmup_style"],
        minLrRatio: s["actor_rollout_ref.actor.optim.min_lr_ratio"],
        numCycles: s["actor_rollout_ref.actor.optim.num_cycles"],
      });
      const loss = lossSettings(s, maxResponse);
      const dynamic = s["actor_rollout_ref.actor.use_dynamic_bsz"];
      const update = await timed("update_actor", () =>
        updateActor(model, optimizer, { seqs, oldLogprob: old?.logprob, refLogprob: ref?.logprob, advantages: adv.advantages, lossMask: masks }, {
          ppoEpochs: s["actor_rollout_ref.actor.ppo_epochs"],
          miniBatchSequences: miniPrompts * n,
          maxTokens: dynamic ? s["actor_rollout_ref.actor.ppo_max_token_len_per_gpu"] : undefined,
          microBatchSequences: s["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"] ?? undefined,
          temperature,
          checkpoint: s["actor_rollout_ref.model.enable_gradient_checkpointing"],
          loss,
          lr,
          shuffleSeed: s["actor_rollout_ref.actor.shuffle"] ? stepSeed(s["trainer.seed"], step, "train") : undefined,
          loraDropout: loraDropout > 0 ? { p: loraDropout, runSeed: s["trainer.seed"], step } : undefined,
        }),
      );
      // The prefix cache holds keys and values of the old weights; the next rollouts must not reuse them.
      bf16Rollout?.refresh();
      generator.weightsChanged();
      const lossMetrics = update.lossMetrics;
      // verl logs the last mini-batch's gradient norm.
      const gradNorm = update.gradNorms[update.gradNorms.length - 1] ?? NaN;
      const skippedSteps = update.skippedSteps;
      if (skippedSteps > 0) io.warn(`step ${step}: ${skippedSteps} update(s) had a non-finite gradient norm and were skipped`);

      // ---- metrics -----------------------------------------------------------------------------
      const lengths = kept.map((t) => t.responseIds.length);
      const advTokens = adv.advantages.flatMap((a) => [...a]);
      const scoreStats = summarize(scores);
      const advStats = summarize(advTokens);
      const lengthStats = summarize(lengths);
      const tokens = kept.reduce((acc, t) => acc + t.promptIds.length + t.responseIds.length, 0);
      const avgLoss = (k: keyof PolicyLossMetrics) => mean(lossMetrics.map((x) => x[k]));
      const profiled = await profile?.endStep();
      const stepSeconds = (performance.now() - stepStart) / 1000;
      const rewardsPerSeq = tokenRewards ? tokenRewards.map((r) => r.reduce((a, b) => a + b, 0)) : scores;
      const metrics: Record<string, number> = {
        "critic/score/mean": scoreStats.mean,
        "critic/score/max": scoreStats.max,
        "critic/score/min": scoreStats.min,
        "critic/rewards/mean": mean(rewardsPerSeq),
        "critic/advantages/mean": advStats.mean,
        "critic/advantages/max": advStats.max,
        "critic/advantages/min": advStats.min,
        "actor/pg_loss": avgLoss("pg_loss"),
        "actor/pg_clipfrac": avgLoss("pg_clipfrac"),
        "actor/pg_clipfrac_lower": avgLoss("pg_clipfrac_lower"),
        "actor/ppo_kl": avgLoss("ppo_kl"),
        "actor/entropy": avgLoss("entropy"),
        "actor/grad_norm": gradNorm,
        "actor/lr": lr,
        "response_length/mean": lengthStats.mean,
        "response_length/max": lengthStats.max,
        "response_length/clip_ratio": mean(lengths.map((l) => (l >= maxResponse ? 1 : 0))),
        "prompt_length/mean": mean(kept.map((t) => t.promptIds.length)),
        ...toolUseMetrics(kept),
        ...timing,
        "timing_s/step": stepSeconds,
        "perf/total_num_tokens": tokens,
        "perf/throughput": tokens / stepSeconds,
        // The rollout engine's decode steps this step, and how many ran ahead of the previous step's readback.
        "perf/decode_steps": generator.steps - decodeBefore.steps,
        "perf/decoded_ahead": generator.decodedAhead - decodeBefore.ahead,
        "train/skipped_step": skippedSteps > 0 ? 1 : 0,
        ...profiled,
      };
      if (loss.useKlLoss) metrics["actor/kl_loss"] = avgLoss("kl_loss");
      if (rewardKl !== undefined) metrics["actor/reward_kl_penalty"] = rewardKl;
      if (filter) metrics["train/num_gen_batches"] = genBatches;
      metricsLog.append(step, metrics, { epoch: cursor.epoch });
      writeDump(rolloutDir, `train_${step}.jsonl`, kept.map((t) => dumpRow(t, decode)));
      if (s["trainer.save_batches"]) await saveBatch(runDir, step, { kept, old: update.oldLogprob, ref: ref?.logprob, advantages: adv.advantages });
      lastMetrics = metrics;
      io.onStep?.(step, metrics);
      const elapsed = (performance.now() - t0) / 1000;
      const eta = (elapsed / Math.max(1, step - (state?.step ?? 0))) * (totalSteps - step);
      io.log(
        `step ${step}/${totalSteps}  score ${scoreStats.mean.toFixed(3)}  entropy ${metrics["actor/entropy"]!.toFixed(3)}  kl ${(metrics["actor/kl_loss"] ?? metrics["actor/ppo_kl"]!).toExponential(2)}` +
          `  tools ${metrics["tool_calls/mean"]!.toFixed(2)}  ${Math.round(metrics["perf/throughput"]!)} tok/s  ${stepSeconds.toFixed(1)} s/step  ETA ${formatDuration(eta)}`,
      );

      // ---- checkpoint and validation ------------------------------------------------------------
      const last = step === totalSteps;
      const saveFreq = s["trainer.save_freq"];
      if ((saveFreq > 0 && step % saveFreq === 0) || (last && saveFreq !== -1)) {
        const dir = await saveCheckpoint(gpu, {
          runDir,
          step,
          baseModelDir: basePath,
          params: trainable.params,
          moments: { m: optimizer.m, v: optimizer.v },
          state: { step, optimizerSteps: optimizer.step, cursor, seed: s["trainer.seed"], settings: trainSettingsTree(s), recallVersion: VERSION, savedAt: new Date().toISOString() },
          keep: s["trainer.max_actor_ckpt_to_keep"] ?? undefined,
        });
        io.log(`checkpoint: ${dir}`);
      }
      const testFreq = s["trainer.test_freq"];
      if (val && ((testFreq > 0 && step % testFreq === 0) || last)) await validate(step);
      writeReport(runDir);
    }
    if (step === 0 || !existsSync(join(runDir, "report.html"))) writeReport(runDir);
    if (profile) io.log(profile.table());
  } finally {
    await profile?.stop().catch(() => undefined);
    await generator.close().catch(() => undefined);
    await sandbox.close().catch(() => undefined);
    optimizer.release();
    grads.release();
    if (lora) {
      trainable.params.release();
      model.adapter = undefined;
    }
    reference?.params.release();
    bf16Rollout?.release();
  }
  return { runDir, steps: step, lastMetrics, profile: profile?.total() };
}

/** The sandbox opens on first use: runs whose rows carry no tools and whose reward is not Python never start it. */
function lazySandbox(open: () => Promise<ToolExecutor>): ToolExecutor {
  let opened: Promise<ToolExecutor> | undefined;
  return {
    execute: (req) => (opened ??= open()).then((x) => x.execute(req)),
    close: async () => {
      if (opened) await (await opened).close();
    },
  };
}

/** A JS/TS scorer module seen through the Python reward's interface (it gets the response as `text`). */
function jsReward(fn: RewardFn): PythonReward {
  return async (i) => fn({ text: i.solutionStr, groundTruth: i.groundTruth, dataSource: i.dataSource, extraInfo: i.extraInfo });
}

/**
 * `trainer.save_batches`: the update's batch as verl sees it, so an independent implementation can recompute the
 * update from the checkpoint before it. Float tensors [sequences, longest] (right-padded with 0) in safetensors;
 * ids and per-sequence fields in JSON.
 */
async function saveBatch(runDir: string, step: number, b: { kept: readonly Scored[]; old: readonly Float32Array[]; ref?: readonly Float32Array[]; advantages: readonly Float32Array[] }): Promise<void> {
  const dir = join(runDir, "batches");
  mkdirSync(dir, { recursive: true });
  const S = b.kept.length;
  const width = Math.max(1, ...b.kept.map((t) => t.responseIds.length));
  const padded = (rows: readonly ArrayLike<number>[]) => {
    const out = new Float32Array(S * width);
    rows.forEach((r, i) => out.set(Array.from(r), i * width));
    return out;
  };
  const tensors = [
    { name: "old_log_probs", shape: [S, width], data: padded(b.old) },
    { name: "advantages", shape: [S, width], data: padded(b.advantages) },
    { name: "loss_mask", shape: [S, width], data: padded(b.kept.map((t) => t.lossMask)) },
    { name: "token_level_scores", shape: [S], data: Float32Array.from(b.kept.map((t) => t.score)) },
  ];
  if (b.ref) tensors.push({ name: "ref_log_prob", shape: [S, width], data: padded(b.ref) });
  await writeSafetensors(join(dir, `step_${step}.safetensors`), tensors);
  const json = b.kept.map((t) => ({ uid: t.uid, prompt_ids: t.promptIds, response_ids: t.responseIds, response_start: t.promptIds.length, loss_mask: t.lossMask, score: t.score, data_source: t.example.dataSource }));
  writeFileAtomic(join(dir, `step_${step}.json`), JSON.stringify({ step, sequences: json }) + "\n");
}

