/**
 * The actor's learning-rate schedule, as verl builds it (verl.utils.torch_functional
 * get_constant_schedule_with_warmup / get_cosine_schedule_with_warmup, wrapped in torch's LambdaLR).
 *
 * `step` counts scheduler steps already taken: verl steps the scheduler once per training step (after
 * update_actor, so every mini-batch of a step shares one lr) and logs `actor/lr` before stepping, so the lr
 * used and logged at global step k (1-based) is lrAt(k − 1). With warmup, the first step's lr is 0 (constant)
 * or lr·0 (cosine), as in verl.
 */
import { RecallError } from "../errors.ts";

export interface LrSchedule {
  /** Peak learning rate (actor_rollout_ref.actor.optim.lr). */
  lr: number;
  /** optim.lr_warmup_steps, or int(lr_warmup_steps_ratio · totalSteps) when that is unset. */
  warmupSteps: number;
  /** The run's total training steps (trainer.total_training_steps). */
  totalSteps: number;
  /** optim.warmup_style. */
  style: "constant" | "cosine";
  /** optim.min_lr_ratio (cosine only): the cosine's floor as a fraction of lr. */
  minLrRatio?: number;
  /** optim.num_cycles (cosine only; verl: 0.5, a half cosine from lr down to the floor). */
  numCycles?: number;
}

/** The multiplier LambdaLR applies to the peak lr at this step. */
export function lrFactor(step: number, s: LrSchedule): number {
  if (!Number.isInteger(step) || step < 0) throw new RecallError(`lr schedule: step must be a non-negative integer, got ${step}.`);
  const warmup = s.warmupSteps;
  if (s.style === "constant") return Math.min(1, step / Math.max(1, warmup));
  const minLrRatio = s.minLrRatio ?? 0;
  if (!(minLrRatio >= 0 && minLrRatio <= 1)) throw new RecallError(`lr schedule: min_lr_ratio must be in [0, 1], got ${minLrRatio}.`);
  if (step < warmup) return step / Math.max(1, warmup);
  const progress = (step - warmup) / Math.max(1, s.totalSteps - warmup);
  const x = Math.cos(Math.PI * (s.numCycles ?? 0.5) * 2 * progress);
  // The cosine runs from 1 down to min_lr_ratio: x·(1−m)/2 + (1+m)/2, floored at 0 as verl does.
  return Math.max(0, x * ((1 - minLrRatio) * 0.5) + (1 + minLrRatio) * 0.5);
}

/** The learning rate after `step` scheduler steps. */
export function lrAt(step: number, s: LrSchedule): number {
  return s.lr * lrFactor(step, s);
}
