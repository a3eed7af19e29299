/**
 * What the optimizer, the gradient norm and checkpoints need from a set of trainable tensors: names, shapes and
 * GPU tensors in a fixed order, and a zeroed twin for gradients or AdamW moments. The full model's parameters
 * (ParameterSet) and a LoRA adapter's A/B matrices (LoraWeights) are both one.
 */
import type { Tensor } from "../gpu/tensor.ts";

export interface TensorSpec {
  name: string;
  shape: readonly number[];
}

export interface TensorSet {
  readonly specs: readonly TensorSpec[];
  get(name: string): Tensor;
  /** All tensors in `specs` order. */
  list(): Tensor[];
  readonly numel: number;
  /** A new set with the same names and shapes, filled with zeros. */
  zerosLike(): TensorSet;
  release(): void;
}
