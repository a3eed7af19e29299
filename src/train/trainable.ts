/**
 * What a training run changes: every parameter of the model (full fine-tuning), or — with a LoRA rank — only a LoRA
 * adapter's A and B matrices, the base weights frozen. The adapter is a fresh one (PEFT's initialisation, seeded by
 * the run's seed) or, when resuming, the checkpoint's; its settings must be the run's.
 */
import { RecallError } from "../errors.ts";
import type { Gpu } from "../gpu/runtime.ts";
import { LoraWeights, resolveTargetModules, type LoraSettings } from "../model/lora.ts";
import { isAdapterFolder, loadAdapter, readAdapterSettings } from "../model/peft_adapter.ts";
import type { Transformer } from "../model/transformer.ts";
import { loadModelConfig } from "../model/config.ts";
import { checkpointProjectionDtype } from "../model/weights.ts";
import type { GradientSet } from "./actor.ts";

/**
 * The run's LoRA settings from its rank/alpha/target_modules/lora_dropout keys, or undefined for rank 0 (full
 * fine-tuning); a dropout without a rank is refused, naming `dropoutKey` (it would silently do nothing).
 */
export function loraSettingsOf(o: { rank: number; alpha: number; targetModules: readonly string[]; key: string; dropout: number; dropoutKey: string }): LoraSettings | undefined {
  if (o.rank === 0) {
    if (o.dropout !== 0) throw new RecallError(`${o.dropoutKey} (--lora_dropout) is ${o.dropout}, but lora_rank is 0: dropout applies to a LoRA adapter only`, { hint: "give --lora_rank too, or leave --lora_dropout out" });
    return undefined;
  }
  return { rank: o.rank, alpha: o.alpha, targetModules: resolveTargetModules(o.targetModules, o.key), dropout: o.dropout };
}

/**
 * How a LoRA run keeps its frozen base's projection weights: bf16 when the checkpoint stores them so (its own values on
 * any adapter, as PEFT keeps a bf16 base), else f16 where the adapter reads it (shader-f16), else f32. A folder whose
 * config or weights cannot be read is left to the loader, which names what is wrong.
 */
export function frozenBaseDtype(gpu: Gpu, dir: string): "bf16" | "f16" | "f32" {
  try {
    if (checkpointProjectionDtype(dir, loadModelConfig(dir)) === "bf16") return "bf16";
  } catch {
    // The load that follows reports it.
  }
  return gpu.device.features.has("shader-f16") ? "f16" : "f32";
}

export interface Trainable {
  /** The tensors the optimizer updates (and checkpoints save). */
  params: GradientSet;
  grads: GradientSet;
}

/** Refuses to resume a LoRA run from a full-model checkpoint or the reverse (call before loading anything). */
export function checkResumeKind(lora: LoraSettings | undefined, resumeFrom: string | undefined): void {
  if (resumeFrom === undefined) return;
  const adapter = isAdapterFolder(resumeFrom);
  if (!lora && adapter) throw new RecallError(`${resumeFrom} is a LoRA checkpoint, but this run has lora_rank 0`, { hint: "resume with the run's --lora_rank/--lora_alpha/--target_modules" });
  if (lora && !adapter) throw new RecallError(`${resumeFrom} is a full-model checkpoint, but this run trains a LoRA adapter (lora_rank ${lora.rank})`);
}

/**
 * Attaches the run's adapter (LoRA) or returns the model's own parameters, with a zeroed gradient set of the same
 * shape. `resumeFrom`: the checkpoint the run continues from (its adapter is loaded; callers have already refused a checkpoint
 * of the other kind with checkResumeKind, before loading anything).
 */
export async function attachTrainable(gpu: Gpu, model: Transformer, o: { lora?: LoraSettings; resumeFrom?: string; seed: number }): Promise<Trainable> {
  if (!o.lora) return { params: model.params, grads: model.newGradients() };
  let adapter: LoraWeights;
  if (o.resumeFrom !== undefined) {
    const saved = readAdapterSettings(o.resumeFrom);
    const same = saved.rank === o.lora.rank && saved.alpha === o.lora.alpha && !saved.useRslora && saved.targetModules.join() === o.lora.targetModules.join();
    if (!same) {
      throw new RecallError(`${o.resumeFrom} holds an adapter with r=${saved.rank}, alpha=${saved.alpha}, modules ${saved.targetModules.join(",")}; this run asks for r=${o.lora.rank}, alpha=${o.lora.alpha}, modules ${o.lora.targetModules.join(",")}`);
    }
    // The saved lora_dropout is the one the run trained with: resuming with another would not repeat the run.
    if ((saved.dropout ?? 0) !== (o.lora.dropout ?? 0)) {
      throw new RecallError(`${o.resumeFrom} was trained with lora_dropout ${saved.dropout ?? 0}; this run asks for ${o.lora.dropout ?? 0}`, { hint: `resume with --lora_dropout ${saved.dropout ?? 0}` });
    }
    adapter = await loadAdapter(gpu, model.config, o.resumeFrom);
  } else {
    adapter = LoraWeights.init(gpu, model.config, o.lora, o.seed);
  }
  model.adapter = adapter;
  return { params: adapter, grads: adapter.zerosLike() };
}
