/**
 * Optimizer ops on the GPU, with no readback in the loop:
 *   gradNormClip(grads, stats, scratch, {maxNorm})   stats = [global L2 norm, clip factor]
 *   adamw(param, grad, m, v, opts)                   one AdamW step on a flat tensor, gradients
 *                                                    scaled by stats[1] when `stats` is given
 * The clip factor is min(1, maxNorm / (norm + 1e-6)) like torch.nn.utils.clip_grad_norm_, 1 when
 * maxNorm ≤ 0, and −1 when the norm is not finite — adamw then leaves p, m, v untouched (a skipped
 * step) and the caller sees the non-finite norm in stats[0] when it reads the metrics.
 */
import { Params, type Gpu, type Kernel } from "../gpu/runtime.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { shapeString } from "../gpu/tensor.ts";
import { bindWindow, chunksFitting, workgroupGrid, type WindowOptions } from "./launch.ts";

const WG = 256;
const PER = 4;
/** Workgroups per gradient tensor (window) in the first level of the norm reduction. */
const NORM_WORKGROUPS = 16;

const SUMSQ_PARTIAL: Kernel = { shader: "adamw", entry: "sumsq_partial", storage: ["read", "read_write"], uniforms: true };
const SUMSQ_FINISH: Kernel = { shader: "adamw", entry: "sumsq_finish", storage: ["read", "read_write"], uniforms: true };
const ADAMW_STEP: Kernel = { shader: "adamw", entry: "adamw_step", storage: ["read_write", "read_write", "read_write", "read_write"], uniforms: true };
const ADAMW_STEP_CLIPPED: Kernel = {
  shader: "adamw",
  entry: "adamw_step_clipped",
  storage: ["read_write", "read_write", "read_write", "read_write", "read"],
  uniforms: true,
};

/** Elements per invocation for a level-1 dispatch over n elements (at least 16, at most NORM_WORKGROUPS workgroups). */
function elementsPerInvocation(n: number): number {
  return Math.max(16, Math.ceil(n / (WG * NORM_WORKGROUPS)));
}

function partialSlots(n: number): number {
  return Math.ceil(n / (WG * elementsPerInvocation(n))) * WG;
}

function windowsOf(gpu: Gpu, grads: readonly Tensor[], o: WindowOptions) {
  return grads.map((g) => chunksFitting(gpu, g.numel, [1], o));
}

/** f32 words of scratch gradNormClip needs for these gradient tensors. */
export function gradNormScratchSize(gpu: Gpu, grads: readonly Tensor[], o: WindowOptions = {}): number {
  let slots = 0;
  for (const ws of windowsOf(gpu, grads, o)) for (const [, count] of ws) slots += partialSlots(count);
  return Math.max(1, slots);
}

export interface GradNormOptions extends WindowOptions {
  /** Clip threshold on the global L2 norm; ≤ 0 disables clipping (the factor is then 1). */
  maxNorm: number;
}

/**
 * stats[0] = sqrt(Σ over all grads of g²), stats[1] = clip factor (see the module comment).
 * `stats` is f32 with ≥ 2 elements; `scratch` is f32 with ≥ gradNormScratchSize(gpu, grads) elements.
 */
export function gradNormClip(gpu: Gpu, grads: readonly Tensor[], stats: Tensor, scratch: Tensor, o: GradNormOptions): void {
  if (stats.numel < 2) throw new Error(`gradNormClip: stats ${shapeString(stats.shape)} needs 2 elements`);
  const need = gradNormScratchSize(gpu, grads, o);
  if (scratch.numel < need) throw new Error(`gradNormClip: scratch ${shapeString(scratch.shape)} smaller than the ${need} partial sums needed`);
  let slot = 0;
  grads.forEach((g, gi) => {
    if (g.dtype !== "f32") throw new Error(`gradNormClip: gradient ${gi} is ${g.dtype}, not f32`);
  });
  const windows = windowsOf(gpu, grads, o);
  grads.forEach((g, gi) => {
    for (const [start, count] of windows[gi]!) {
      const K = elementsPerInvocation(count);
      const slots = partialSlots(count);
      const wx = bindWindow(gpu, g, start, count);
      const wp = bindWindow(gpu, scratch, slot, slots);
      gpu.dispatch({
        kernel: SUMSQ_PARTIAL,
        params: new Params().u32(count, wx.base, wp.base, K, 0, 0).f32(0).u32(0).bytes(),
        bindings: [wx.view, wp.view],
        workgroups: workgroupGrid(gpu, slots / WG),
      });
      slot += slots;
    }
  });
  const wp = bindWindow(gpu, scratch, 0, Math.max(1, slot));
  const ws = bindWindow(gpu, stats, 0, 2);
  gpu.dispatch({
    kernel: SUMSQ_FINISH,
    params: new Params().u32(0, 0, wp.base, 0, slot, ws.base).f32(o.maxNorm).u32(0).bytes(),
    bindings: [wp.view, ws.view],
    workgroups: [1],
  });
}

export interface AdamwOptions extends WindowOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step number, for the bias corrections 1 − β^step. */
  step: number;
  /** The stats tensor written by gradNormClip; gradients are scaled by stats[1] (and the step is skipped when it is −1). */
  stats?: Tensor;
  /** Set the gradient to zero after reading it (saves a separate clear before the next accumulation). */
  zeroGrad?: boolean;
}

/** One AdamW step over all elements of param (grad, m, v: same length, f32). */
export function adamw(gpu: Gpu, param: Tensor, grad: Tensor, m: Tensor, v: Tensor, o: AdamwOptions): void {
  const n = param.numel;
  for (const [t, what] of [[grad, "grad"], [m, "m"], [v, "v"]] as const) {
    if (t.numel !== n) throw new Error(`adamw: ${what} ${shapeString(t.shape)} does not match param ${shapeString(param.shape)}`);
  }
  if (!(o.step >= 1)) throw new Error(`adamw: step must be ≥ 1, got ${o.step}`);
  // The scalars torch computes in double precision and hands to the f32 kernels.
  const decay = 1 - o.lr * o.weightDecay;
  const stepSize = o.lr / (1 - o.beta1 ** o.step);
  const bc2Sqrt = Math.sqrt(1 - o.beta2 ** o.step);
  const wstats = o.stats ? bindWindow(gpu, o.stats, 0, 2) : null;
  for (const [start, count] of chunksFitting(gpu, n, [1, 1, 1, 1], o)) {
    const w = [param, grad, m, v].map((t) => bindWindow(gpu, t, start, count));
    gpu.dispatch({
      kernel: wstats ? ADAMW_STEP_CLIPPED : ADAMW_STEP,
      constants: { ZERO_GRAD: !!o.zeroGrad },
      params: new Params()
        .u32(count, w[0]!.base, w[1]!.base, w[2]!.base, w[3]!.base, wstats?.base ?? 0)
        .f32(decay, 1 - o.beta1, o.beta2, 1 - o.beta2, stepSize, bc2Sqrt, o.eps)
        .u32(0, 0, 0)
        .bytes(),
      bindings: wstats ? [...w.map((x) => x.view), wstats.view] : w.map((x) => x.view),
      workgroups: workgroupGrid(gpu, Math.ceil(count / (WG * PER))),
    });
  }
}
