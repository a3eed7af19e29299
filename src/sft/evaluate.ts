/**
 * Held-out metrics: the token-mean loss over trained tokens (the training loss, without gradients) and token
 * accuracy — the share of trained tokens that are the model's argmax prediction (greedy decoding would write them
 * given the true prefix). The argmax needs logits, which the fused log-prob op never materialises, so for the
 * trained rows only, logits are recomputed in chunks from the final hidden states and reduced by the sampler's
 * greedy kernel (ties to the lowest id, as greedy generation breaks them).
 */
import type { Gpu } from "../gpu/runtime.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { lastLogits, lastLogitsScratch } from "../ops/logprobs.ts";
import { sample } from "../ops/sampling.ts";
import { makeBatch, releaseBatch, type Transformer } from "../model/transformer.ts";
import { outerTensors } from "../model/weights.ts";
import type { TrainSequence } from "./step.ts";

export interface HeldOutMetrics {
  loss: number;
  tokenAccuracy: number;
  tokens: number;
}

/** Rows of logits computed at once: at most 64, fewer when [rows × vocab] would not fit one binding. */
function logitRows(gpu: Gpu, V: number): number {
  return Math.max(1, Math.min(64, Math.floor(gpu.limits.maxStorageBufferBindingSize / (4 * V))));
}

/** Argmax ids of rows `rows` of the final hidden states `hf` [N, D]. */
async function argmaxRows(model: Transformer, hf: Tensor, N: number, rows: readonly number[]): Promise<Uint32Array> {
  const g = model.gpu;
  const { vocabSize: V, hiddenSize: D } = model.config;
  const C = Math.min(logitRows(g, V), rows.length);
  const need = lastLogitsScratch({ B: C, V, D, N }, { rows: true });
  const gathered = g.empty([need.gathered]);
  const slice = need.sliceScratch > 0 ? g.empty([need.sliceScratch]) : undefined;
  const logits = g.empty([C * V]);
  const ids = g.empty([C], "u32");
  const zeros = g.upload(new Uint32Array(C), [C]);
  const out = new Uint32Array(rows.length);
  const head = outerTensors(model.params).lmHead;
  try {
    for (let r0 = 0; r0 < rows.length; r0 += C) {
      const n = Math.min(C, rows.length - r0);
      const idx = new Uint32Array(C);
      idx.set(rows.slice(r0, r0 + n));
      const rowT = g.upload(idx, [C]);
      lastLogits(g, hf, head, logits, { B: C, V, D, N }, { rows: rowT, gathered, sliceScratch: slice });
      sample(g, logits, ids, zeros, zeros, { B: C, V }, { temperature: 0, seed: 0 });
      const got = await g.readU32(ids);
      out.set(got.subarray(0, n), r0);
      g.release(rowT);
    }
  } finally {
    g.release(gathered, logits, ids, zeros, ...(slice ? [slice] : []));
  }
  return out;
}

/** Loss and token accuracy of `seqs`, in the passes `passes` (index groups, as for training). */
export async function evaluateHeldOut(model: Transformer, seqs: readonly TrainSequence[], passes: readonly number[][]): Promise<HeldOutMetrics> {
  const g = model.gpu;
  let sum = 0, tokens = 0, correct = 0;
  for (const group of passes) {
    const batch = makeBatch(g, group.map((i) => seqs[i]!.ids));
    // Training mode keeps the final hidden states (with checkpointing, little else) for the argmax.
    const fwd = model.forward(batch, { train: true, checkpoint: true });
    try {
      const lp = new Float32Array((await g.readMany([fwd.logprob]))[0]!);
      const rows: number[] = [];
      const targets: number[] = [];
      group.forEach((i, b) => {
        const s = seqs[i]!;
        for (let t = 1; t < s.ids.length; t++) {
          if (s.mask[t] === 0) continue;
          const row = b * batch.T + t - 1;
          sum -= lp[row]!;
          rows.push(row);
          targets.push(s.ids[t]!);
        }
      });
      tokens += rows.length;
      if (rows.length > 0) {
        const best = await argmaxRows(model, fwd.saved!.hf, batch.B * batch.T, rows);
        best.forEach((id, k) => {
          if (id === targets[k]) correct++;
        });
      }
    } finally {
      model.releaseForward(fwd);
      g.release(fwd.logprob, fwd.entropy);
      releaseBatch(g, batch);
    }
  }
  return { loss: tokens > 0 ? sum / tokens : NaN, tokenAccuracy: tokens > 0 ? correct / tokens : NaN, tokens };
}
