/**
 * The actor's optimizer, as verl runs it: the global gradient norm clipped to `grad_clip`, then one AdamW step
 * (torch.optim.AdamW: decoupled weight decay on every parameter) — both on the GPU, with the gradients cleared by
 * the same kernel. A non-finite gradient norm skips the step (parameters and moments untouched, the step count
 * not advanced), as verl does. The moments are saved with checkpoints so a resumed run continues exactly.
 * The trainable set is the whole model, or a LoRA adapter's A/B matrices (the base weights then never change).
 */
import type { Gpu } from "../gpu/runtime.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { adamw, gradNormClip, gradNormScratchSize } from "../ops/adamw.ts";
import type { TensorSet } from "../model/tensor_set.ts";

export interface AdamwSettings {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Global L2 norm clip (≤ 0: no clipping). */
  gradClip: number;
}

export interface StepResult {
  /** The gradient norm before clipping (NaN/Infinity when not finite). */
  gradNorm: number;
  skipped: boolean;
}

export class ActorOptimizer<S extends TensorSet = TensorSet> {
  readonly m: S;
  readonly v: S;
  /** Optimizer steps taken (AdamW's bias corrections use step + 1 next). */
  step = 0;
  private readonly stats: Tensor;
  private readonly scratch: Tensor;

  constructor(
    readonly gpu: Gpu,
    readonly params: S,
    readonly grads: S,
    readonly settings: AdamwSettings,
  ) {
    // Each set's zerosLike returns its own kind (ParameterSet or LoraWeights).
    this.m = params.zerosLike() as S;
    this.v = params.zerosLike() as S;
    this.stats = gpu.zeros([2]);
    this.scratch = gpu.empty([gradNormScratchSize(gpu, grads.list())]);
  }

  /** Clips and applies the accumulated gradients at learning rate `lr`, then clears them. One readback (the norm). */
  async apply(lr: number): Promise<StepResult> {
    const g = this.gpu;
    const grads = this.grads.list();
    gradNormClip(g, grads, this.stats, this.scratch, { maxNorm: this.settings.gradClip });
    const { beta1, beta2, eps, weightDecay } = this.settings;
    const params = this.params.list(), m = this.m.list(), v = this.v.list();
    params.forEach((p, i) => {
      adamw(g, p, grads[i]!, m[i]!, v[i]!, { lr, beta1, beta2, eps, weightDecay, step: this.step + 1, stats: this.stats, zeroGrad: true });
    });
    const [norm] = await g.readF32(this.stats);
    const skipped = !Number.isFinite(norm!);
    if (!skipped) this.step++;
    return { gradNorm: norm!, skipped };
  }

  release(): void {
    this.m.release();
    this.v.release();
    this.gpu.release(this.stats, this.scratch);
  }
}
