/**
 * Score upper bounds for dynamic pruning: the largest stored score of each term (`terms.max`) and of each block of
 * BOUND_BLOCK consecutive postings of a segment (`postings-NNN.bmax`, blocks aligned to segment positions). The builder
 * writes them as it writes the scores; for an index written before they existed they are computed here at open.
 */
import { BinaryWriter } from "./binary_io.ts";
import { BOUND_BLOCK } from "./index_format.ts";

/** Streams one segment's block maxima to its `.bmax` file while the segment's scores are appended in order. */
export class BlockMaxWriter {
  private readonly w: BinaryWriter;
  private max = 0;
  private filled = 0;

  constructor(path: string) {
    this.w = new BinaryWriter(path);
  }

  add(scores: Float32Array, count: number): void {
    let max = this.max, filled = this.filled;
    for (let i = 0; i < count; i++) {
      const s = scores[i]!;
      if (s > max) max = s;
      if (++filled === BOUND_BLOCK) {
        this.w.f32(max);
        max = 0;
        filled = 0;
      }
    }
    this.max = max;
    this.filled = filled;
  }

  close(): void {
    if (this.filled > 0) this.w.f32(this.max);
    this.w.close();
  }
}

/** The largest of scores[start, end) (0 for an empty range; stored scores are positive). */
export function rangeMax(scores: Float32Array, start: number, end: number): number {
  let max = 0;
  for (let p = start; p < end; p++) if (scores[p]! > max) max = scores[p]!;
  return max;
}

/** Block maxima of a whole segment's scores, as BlockMaxWriter would have stored them. */
export function blockMaxOf(scores: Float32Array): Float32Array {
  const out = new Float32Array(Math.ceil(scores.length / BOUND_BLOCK));
  for (let b = 0; b < out.length; b++) out[b] = rangeMax(scores, b * BOUND_BLOCK, Math.min(scores.length, (b + 1) * BOUND_BLOCK));
  return out;
}

/** Per-term maxima from the dictionary's (segment, start, df) triples, for an index without `terms.max`. */
export function termMaxOf(meta: Uint32Array, segScores: Float32Array[]): Float32Array {
  const terms = meta.length / 3;
  const out = new Float32Array(terms);
  for (let t = 0; t < terms; t++) {
    const start = meta[3 * t + 1]!;
    out[t] = rangeMax(segScores[meta[3 * t]!]!, start, start + meta[3 * t + 2]!);
  }
  return out;
}
