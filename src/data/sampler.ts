/**
 * The order prompts are drawn in: epochs over the dataset, each a seeded permutation (or file order without
 * shuffling), cut into batches of `batchSize` prompts with the incomplete last batch dropped (verl's dataloader
 * uses drop_last). The cursor (epoch, batch within the epoch) is all a checkpoint needs to resume at the
 * exact next batch: the permutation of an epoch depends only on the seed and the epoch number.
 */
import { RecallError } from "../errors.ts";
import { mulberry32 } from "../util/prng.ts";

export interface DataCursor {
  epoch: number;
  /** Batches of this epoch already taken. */
  batch: number;
}

export interface SamplerOptions {
  batchSize: number;
  shuffle: boolean;
  seed: number;
}

/** A permutation of 0..n−1, the same for the same (seed, epoch) on every machine. */
export function epochOrder(n: number, seed: number, epoch: number, shuffle: boolean): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  if (!shuffle) return order;
  // Distinct, well-mixed streams per epoch: the seed and the epoch go through one multiplicative hash.
  const rand = mulberry32((Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(epoch + 1, 0x85ebca6b)) >>> 0);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

export class EpochSampler {
  readonly batchesPerEpoch: number;
  private cache: { epoch: number; order: number[] } | undefined;

  constructor(readonly size: number, readonly o: SamplerOptions) {
    if (!Number.isInteger(o.batchSize) || o.batchSize < 1) throw new RecallError(`batch size must be a positive integer, got ${o.batchSize}`);
    this.batchesPerEpoch = Math.floor(size / o.batchSize);
    if (this.batchesPerEpoch === 0) {
      throw new RecallError(`the training set has ${size} prompts, fewer than one batch of data.train_batch_size ${o.batchSize}`, {
        hint: "lower data.train_batch_size (--train_batch_size) or add data",
      });
    }
  }

  private order(epoch: number): number[] {
    if (this.cache?.epoch !== epoch) this.cache = { epoch, order: epochOrder(this.size, this.o.seed, epoch, this.o.shuffle) };
    return this.cache.order;
  }

  /** The prompt indices of the batch at `cursor`, and the cursor after it. */
  take(cursor: DataCursor): { indices: number[]; next: DataCursor } {
    let { epoch, batch } = cursor;
    if (batch >= this.batchesPerEpoch) {
      epoch++;
      batch = 0;
    }
    const start = batch * this.o.batchSize;
    const indices = this.order(epoch).slice(start, start + this.o.batchSize);
    return { indices, next: { epoch, batch: batch + 1 } };
  }
}
