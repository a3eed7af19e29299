/**
 * `recall sft`: supervised fine-tuning on tool-use conversations, the cold start before `recall train`. One loop,
 * top to bottom:
 *
 *   conversations → tokens + assistant mask → for each step: batch (seeded epochs) → micro-batches → forward,
 *   masked token-mean NLL, backward (accumulated) → clip + AdamW at the scheduled lr → metrics, progress line →
 *   held-out loss / token accuracy (early stopping) → checkpoint → report
 *
 * It shares the GRPO trainer's machinery: the actor's forward/backward, ActorOptimizer, the lr schedule, checkpoints
 * (HF folder + AdamW moments + trainer state, latest_checkpointed_iteration.txt), metrics.jsonl and report.html. The
 * data order is a function of (seed, epoch) and the cursor is checkpointed with the moments, so a resumed run ends
 * with the same weights as an uninterrupted one.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { writeFileAtomic } from "../util/fs.ts";
import { RecallError } from "../errors.ts";
import { getGpu } from "../gpu/runtime.ts";
import { EpochSampler, type DataCursor } from "../data/sampler.ts";
import { openPretrained } from "../model/pretrained.ts";
import { estimateMemory, formatMemoryEstimate, type RunSizes } from "../model/memory.ts";
import { VERSION } from "../version.ts";
import { formatDuration } from "../util/duration.ts";
import { sftSettingsTree, type SftSettings } from "../config/sft.ts";
import { lrAt } from "../train/schedule.ts";
import { ActorOptimizer } from "../train/optimizer.ts";
import { latestCheckpoint, loadMoments, readTrainerState, saveCheckpoint, type TrainerState } from "../train/checkpoint.ts";
import { MetricsLog, METRICS_FILE } from "../train/metrics.ts";
import { writeReport } from "../train/report.ts";
import { describeTruncation, loadSftFiles, splitHeldOut, type SftDataOptions, type SftExample } from "./dataset.ts";
import { accumulateBatchGradient, microBatches, type MicroBatching } from "./step.ts";
import { evaluateHeldOut, type HeldOutMetrics } from "./evaluate.ts";
import { attachTrainable, checkResumeKind, frozenBaseDtype, loraSettingsOf } from "../train/trainable.ts";
import { loraParameterCount } from "../model/lora.ts";
import { RunProfile } from "../train/profile.ts";

export interface SftIo {
  log(line: string): void;
  warn(line: string): void;
  /** Called after every step with its metrics (tests, progress bars). */
  onStep?(step: number, metrics: Readonly<Record<string, number>>): void;
}

export interface SftResult {
  runDir: string;
  steps: number;
  lastMetrics: Record<string, number>;
  lastHeldOut?: HeldOutMetrics;
  stoppedEarly: boolean;
}

/** Early stopping's memory, kept in the trainer state so a resumed run stops where the uninterrupted one would. */
interface EarlyStopping {
  best: number | null;
  evalsWithoutImprovement: number;
}

export function sftRunFolder(s: SftSettings): string {
  return join(s["trainer.default_local_dir"], s["trainer.project_name"], s["trainer.experiment_name"]);
}

/** Which checkpoint to start from, per trainer.resume_mode (verl's auto | disable | resume_path). */
function resumePoint(s: SftSettings, runDir: string): string | undefined {
  const mode = s["trainer.resume_mode"];
  if (mode === "disable") return undefined;
  if (mode === "resume_path") return s["trainer.resume_from_path"]!;
  return latestCheckpoint(runDir);
}

function dataOptions(s: SftSettings): SftDataOptions {
  return {
    messagesKey: s["data.multiturn.messages_key"],
    toolsKey: s["data.multiturn.tools_key"],
    promptKey: s["data.prompt_key"],
    responseKey: s["data.response_key"],
    template: s["data.chat_template"],
    trainOnPrompt: s["data.train_on_prompt"],
    maxLength: s["data.max_length"],
    truncation: s["data.truncation"],
  };
}

const trainedTokens = (xs: readonly SftExample[]) => xs.reduce((a, x) => a + x.mask.reduce((p, q) => p + q, 0), 0);

export async function runSft(s: SftSettings, io: SftIo): Promise<SftResult> {
  const t0 = performance.now();
  const modelPath = s["model.partial_pretrain"];
  if (s["data.train_files"].length === 0) throw new RecallError("no training data: give data.train_files (--train_files)");
  if (!modelPath) throw new RecallError("no model: give model.partial_pretrain (--model)");
  const batching: MicroBatching = { sequences: s["data.micro_batch_size_per_gpu"] ?? undefined, maxTokens: s["data.max_token_len_per_gpu"] };
  if (batching.sequences === undefined && s["data.max_length"] > batching.maxTokens) {
    throw new RecallError(`data.max_length ${s["data.max_length"]} is over the micro-batch budget data.max_token_len_per_gpu ${batching.maxTokens}: a long conversation could not fit one pass`, {
      hint: "raise --max_tokens_per_micro_batch or lower --max_length",
    });
  }
  const runDir = sftRunFolder(s);
  mkdirSync(runDir, { recursive: true });
  const resumeFrom = resumePoint(s, runDir);
  const state: TrainerState | undefined = resumeFrom ? readTrainerState(resumeFrom) : undefined;

  // ---- model and data --------------------------------------------------------------------------
  const gpu = await getGpu();
  // First, so an adapter without timestamp-query is refused before anything is opened.
  const profile = s["trainer.profile"] ? RunProfile.start(gpu, "--profile (trainer.profile)") : undefined;
  const lora = loraSettingsOf({
    rank: s["model.lora_rank"],
    alpha: s["model.lora_alpha"],
    targetModules: s["model.target_modules"],
    key: "model.target_modules",
    dropout: s["model.lora_dropout"],
    dropoutKey: "model.lora_dropout",
  });
  const loraDropout = lora?.dropout ?? 0;
  checkResumeKind(lora, resumeFrom);
  // LoRA: the base model, with the run's adapter (fresh, or the checkpoint's) attached below; its frozen projections
  // stay 16-bit (frozenBaseDtype).
  const baseDtype = lora ? frozenBaseDtype(gpu, modelPath) : "f32";
  const halfBase = baseDtype !== "f32";
  const { model, tokenizer } = await openPretrained(gpu, lora ? modelPath : resumeFrom ?? modelPath, { projectionDtype: baseDtype });
  const opts = dataOptions(s);
  const loaded = await loadSftFiles(s["data.train_files"], tokenizer, opts);
  const valLoaded = s["data.val_files"].length > 0 ? await loadSftFiles(s["data.val_files"], tokenizer, opts) : undefined;
  const [train, val] = valLoaded ? [loaded.examples, valLoaded.examples] : splitHeldOut(loaded.examples, s["data.val_split"], s["trainer.seed"]);
  io.log(`train data: ${train.length} conversations, ${trainedTokens(train)} trained tokens${val.length ? `; held out: ${val.length} conversations, ${trainedTokens(val)} trained tokens` : "; no held-out set"}`);
  for (const [name, r] of [["train", loaded.truncation], ["held-out", valLoaded?.truncation]] as const) {
    const line = r && describeTruncation(name, r, s["data.max_length"], s["data.truncation"]);
    if (line) io.warn(line);
  }
  const longest = Math.max(...train.map((x) => x.ids.length), ...val.map((x) => x.ids.length));
  const sizes: RunSizes = {
    batch: batching.sequences ?? Math.max(1, Math.floor(batching.maxTokens / longest)),
    seqLen: longest,
    checkpointing: s["model.enable_gradient_checkpointing"],
    training: true,
    loraParameters: lora ? loraParameterCount(model.config, lora) : undefined,
    halfProjections: halfBase,
  };
  io.log(`memory estimate:\n${formatMemoryEstimate(estimateMemory(model.config, sizes), sizes)}`);

  const batchSize = s["data.train_batch_size"];
  const sampler = new EpochSampler(train.length, { batchSize, shuffle: s["data.shuffle"], seed: s["trainer.seed"] });
  const totalSteps = s["trainer.total_training_steps"] ?? sampler.batchesPerEpoch * s["trainer.total_epochs"];
  const schedule = {
    lr: s["optim.lr"],
    warmupSteps: Math.floor(s["optim.warmup_steps_ratio"] * totalSteps),
    totalSteps,
    style: s["optim.lr_scheduler"],
    minLrRatio: s["optim.min_lr_ratio"],
  };

  const trainable = await attachTrainable(gpu, model, { lora, resumeFrom, seed: s["trainer.seed"] });
  if (lora) io.log(`LoRA: r=${lora.rank}, alpha=${lora.alpha}${loraDropout ? `, dropout ${loraDropout}` : ""} on ${lora.targetModules.join(", ")}: ${(trainable.params.numel / 1e6).toFixed(3)}M trainable parameters, base weights frozen${halfBase ? ` (projections in ${baseDtype})` : ""}`);
  const grads = trainable.grads;
  const [beta1, beta2] = s["optim.betas"];
  const optimizer = new ActorOptimizer(gpu, trainable.params, grads, {
    beta1: beta1!,
    beta2: beta2!,
    eps: s["optim.eps"],
    weightDecay: s["optim.weight_decay"],
    gradClip: s["optim.clip_grad"],
  });
  let step = 0;
  let cursor: DataCursor = { epoch: 0, batch: 0 };
  let early: EarlyStopping = { best: null, evalsWithoutImprovement: 0 };
  if (state && resumeFrom) {
    loadMoments(gpu, resumeFrom, { m: optimizer.m, v: optimizer.v });
    optimizer.step = state.optimizerSteps;
    step = state.step;
    cursor = state.cursor;
    if (state.extra?.earlyStopping) early = state.extra.earlyStopping as EarlyStopping;
    io.log(`resuming from ${resumeFrom} (step ${step} of ${totalSteps})`);
  }
  const metricsLog = new MetricsLog(join(runDir, METRICS_FILE));
  metricsLog.truncateAfter(step);
  writeFileAtomic(join(runDir, "config.yaml"), stringify(sftSettingsTree(s)));
  const valPasses = microBatches(val, batching);

  /** Held-out loss and token accuracy at `atStep`, logged on their own line; updates early stopping. */
  async function validate(atStep: number): Promise<HeldOutMetrics> {
    const vt0 = performance.now();
    const r = await evaluateHeldOut(model, val, valPasses);
    metricsLog.append(atStep, { "val/loss": r.loss, "val/token_acc": r.tokenAccuracy, "timing_s/testing": (performance.now() - vt0) / 1000 }, { epoch: cursor.epoch });
    const minDelta = s["trainer.early_stopping_min_delta"];
    if (atStep > 0) {
      if (early.best === null || r.loss < early.best - minDelta) early = { best: r.loss, evalsWithoutImprovement: 0 };
      else early = { best: early.best, evalsWithoutImprovement: early.evalsWithoutImprovement + 1 };
    }
    io.log(`held-out at step ${atStep}: loss ${r.loss.toFixed(4)}, token accuracy ${(100 * r.tokenAccuracy).toFixed(2)}% (${r.tokens} tokens)`);
    return r;
  }

  let lastMetrics: Record<string, number> = {};
  let lastHeldOut: HeldOutMetrics | undefined;
  let stoppedEarly = false;
  const startStep = step;
  const patience = s["trainer.early_stopping_patience"];
  if (patience > 0 && early.evalsWithoutImprovement >= patience) {
    stoppedEarly = true;
    io.log(`this run stopped early at step ${step}; nothing left to do`);
  }
  try {
    if (step === 0 && val.length > 0 && s["trainer.val_before_train"]) lastHeldOut = await validate(0);

    while (step < totalSteps && !stoppedEarly) {
      step++;
      await profile?.beginStep();
      const stepStart = performance.now();

      // ---- batch → gradient → AdamW --------------------------------------------------------------
      const { indices, next } = sampler.take(cursor);
      cursor = next;
      const seqs = indices.map((i) => train[i]!);
      const lr = lrAt(step - 1, schedule);
      const loss = await accumulateBatchGradient(model, grads, seqs, microBatches(seqs, batching), {
        checkpoint: s["model.enable_gradient_checkpointing"],
        loraDropout: loraDropout > 0 ? { p: loraDropout, runSeed: s["trainer.seed"], step } : undefined,
      });
      const update = await optimizer.apply(lr);
      if (update.skipped) io.warn(`step ${step}: non-finite loss or gradient norm (${update.gradNorm}); this update was skipped`);

      // ---- metrics and progress ------------------------------------------------------------------
      const profiled = await profile?.endStep();
      const stepSeconds = (performance.now() - stepStart) / 1000;
      const metrics: Record<string, number> = {
        "train/loss": loss.loss,
        "train/lr": lr,
        "train/grad_norm": update.gradNorm,
        "train/trained_tokens": loss.tokens,
        "train/micro_batches": loss.passes,
        "train/skipped_step": update.skipped ? 1 : 0,
        "timing_s/step": stepSeconds,
        "perf/total_num_tokens": loss.totalTokens,
        "perf/throughput": loss.totalTokens / stepSeconds,
        ...profiled,
      };
      metricsLog.append(step, metrics, { epoch: cursor.epoch });
      lastMetrics = metrics;
      io.onStep?.(step, metrics);
      const elapsed = (performance.now() - t0) / 1000;
      const eta = (elapsed / Math.max(1, step - startStep)) * (totalSteps - step);
      io.log(
        `step ${step}/${totalSteps}  epoch ${cursor.epoch + 1}  loss ${loss.loss.toFixed(4)}  lr ${lr.toExponential(2)}  grad ${update.gradNorm.toFixed(3)}` +
          `  ${Math.round(metrics["perf/throughput"]!)} tok/s  ${stepSeconds.toFixed(2)} s/step  ETA ${formatDuration(eta)}`,
      );

      // ---- held-out evaluation, early stopping, checkpoint, report --------------------------------
      const last = step === totalSteps;
      const testFreq = s["trainer.test_freq"];
      const epochEnd = cursor.batch >= sampler.batchesPerEpoch;
      if (val.length > 0 && (last || (testFreq > 0 ? step % testFreq === 0 : epochEnd))) {
        lastHeldOut = await validate(step);
        if (patience > 0 && early.evalsWithoutImprovement >= patience) {
          stoppedEarly = true;
          io.log(`early stopping at step ${step}: val/loss has not improved on ${early.best!.toFixed(4)} for ${early.evalsWithoutImprovement} evaluations`);
        }
      }
      const saveFreq = s["trainer.save_freq"];
      if (last || stoppedEarly || (saveFreq > 0 && step % saveFreq === 0)) {
        const dir = await saveCheckpoint(gpu, {
          runDir,
          step,
          baseModelDir: modelPath,
          params: trainable.params,
          moments: { m: optimizer.m, v: optimizer.v },
          state: {
            step,
            optimizerSteps: optimizer.step,
            cursor,
            seed: s["trainer.seed"],
            settings: sftSettingsTree(s),
            recallVersion: VERSION,
            savedAt: new Date().toISOString(),
            extra: { earlyStopping: early },
          },
          keep: s["trainer.max_ckpt_to_keep"] ?? undefined,
        });
        io.log(`checkpoint: ${dir}`);
      }
      writeReport(runDir);
    }
    if (step === startStep) writeReport(runDir);
    if (profile) io.log(profile.table());
  } finally {
    await profile?.stop().catch(() => undefined);
    optimizer.release();
    grads.release();
    if (lora) {
      trainable.params.release();
      model.adapter = undefined;
    }
  }
  return { runDir, steps: step, lastMetrics, lastHeldOut, stoppedEarly };
}
