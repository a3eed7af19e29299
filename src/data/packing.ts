/**
 * Packing trajectories into micro-batches for forward/backward passes. With a token budget (verl's
 * `use_dynamic_bsz` + `ppo_max_token_len_per_gpu`) the sequences go into exactly ⌈total tokens / budget⌉
 * micro-batches balanced by length with verl's Karmarkar–Karp partition (largest differencing, verl's tie-breaking),
 * so the micro-batches — and hence the per-micro-batch token means of the loss — are verl's. Like verl, a part may
 * then exceed the budget a little; a single sequence longer than the budget is refused. Without a budget,
 * consecutive groups of a fixed number of sequences. Each micro-batch lists its indices in ascending order.
 */
import { RecallError } from "../errors.ts";

export interface PackingOptions {
  /** Summed sequence lengths per micro-batch (dynamic batch size). */
  maxTokens?: number;
  /** Sequences per micro-batch (fixed batch size); used when maxTokens is not given. */
  maxSequences?: number;
}

/** One part of a partition state: its items (index, length) and their sum. */
interface Part {
  sum: number;
  items: [number, number][];
}

/** verl's `Set.__lt__`: by sum, then size, then the item lists (Python's lexicographic tuple order). */
function comparePart(a: Part, b: Part): number {
  if (a.sum !== b.sum) return a.sum - b.sum;
  if (a.items.length !== b.items.length) return a.items.length - b.items.length;
  for (let i = 0; i < a.items.length; i++) {
    const [ai, al] = a.items[i]!, [bi, bl] = b.items[i]!;
    if (ai !== bi) return ai - bi;
    if (al !== bl) return al - bl;
  }
  return 0;
}

/** A state holds k parts sorted largest first (verl sorts them in reverse after each merge). */
type PartitionState = Part[];
const spread = (st: PartitionState) => st[0]!.sum - st[st.length - 1]!.sum;

/** verl's `State.__lt__` as a min-heap order: the larger spread first, then the larger leading part. */
function before(a: PartitionState, b: PartitionState): boolean {
  if (spread(a) !== spread(b)) return spread(a) > spread(b);
  return comparePart(a[0]!, b[0]!) > 0;
}

/** verl's `karmarkar_karp(seqlen_list, k, equal_size=False)`: k parts of indices, each ascending. */
export function karmarkarKarp(lengths: readonly number[], k: number): number[][] {
  const sortParts = (parts: Part[]) => parts.sort((a, b) => comparePart(b, a));
  const order = lengths.map((l, i) => [l, i] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let states: PartitionState[] = order.map(([l, i]) => sortParts([{ sum: l, items: [[i, l]] }, ...Array.from({ length: k - 1 }, () => ({ sum: 0, items: [] as [number, number][] }))]));
  // The order is total (items differ), so popping from a sorted list gives what verl's heap gives.
  const take = (): PartitionState => {
    let best = 0;
    for (let j = 1; j < states.length; j++) if (before(states[j]!, states[best]!)) best = j;
    return states.splice(best, 1)[0]!;
  };
  while (states.length > 1) {
    const a = take(), b = take();
    const merged = a.map((part, i) => {
      const other = b[k - 1 - i]!;
      return { sum: part.sum + other.sum, items: [...part.items, ...other.items] };
    });
    states = [...states, sortParts(merged)];
  }
  return states[0]!.map((p) => p.items.map(([i]) => i).sort((x, y) => x - y));
}

/** Groups of sequence indices (each ascending); every index appears exactly once. */
export function packMicroBatches(lengths: readonly number[], o: PackingOptions): number[][] {
  if (lengths.length === 0) return [];
  if (o.maxTokens !== undefined) {
    const longest = Math.max(...lengths);
    if (longest > o.maxTokens) {
      throw new RecallError(`a sequence of ${longest} tokens does not fit the micro-batch token budget of ${o.maxTokens}`, {
        hint: "raise actor_rollout_ref.actor.ppo_max_token_len_per_gpu (at least max_prompt_length + max_response_length)",
      });
    }
    const total = lengths.reduce((a, b) => a + b, 0);
    const k = Math.min(lengths.length, Math.max(1, Math.ceil(total / o.maxTokens)));
    return karmarkarKarp(lengths, k).filter((p) => p.length > 0);
  }
  const size = o.maxSequences ?? lengths.length;
  if (!Number.isInteger(size) || size < 1) throw new RecallError(`micro-batch size must be a positive integer, got ${size}`);
  const out: number[][] = [];
  for (let i = 0; i < lengths.length; i += size) out.push(Array.from({ length: Math.min(size, lengths.length - i) }, (_, k) => i + k));
  return out;
}

/**
 * Micro-batches of right-padded sequences under a budget of padded tokens (sequences × longest ≤ maxTokens):
 * sequences taken longest first, so each micro-batch holds sequences of similar length (length buckets) and little
 * padding. Each sequence is its own row, so nothing attends across sequences. Deterministic; indices ascending per group.
 */
export function paddedMicroBatches(lengths: readonly number[], maxTokens: number): number[][] {
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new RecallError(`micro-batch token budget must be a positive integer, got ${maxTokens}`);
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b]! - lengths[a]! || a - b);
  const out: number[][] = [];
  let group: number[] = [];
  let width = 0;
  for (const i of order) {
    const len = lengths[i]!;
    if (len > maxTokens) throw new RecallError(`a sequence of ${len} tokens does not fit the micro-batch token budget of ${maxTokens}`);
    const w = Math.max(width, len);
    if (group.length > 0 && (group.length + 1) * w > maxTokens) {
      out.push(group.sort((a, b) => a - b));
      group = [];
      width = 0;
    }
    group.push(i);
    width = Math.max(width, len);
  }
  if (group.length > 0) out.push(group.sort((a, b) => a - b));
  return out;
}

/**
 * Contiguous runs [i0, i1) of items that cover every item of non-zero length (items of length 0 may be left out),
 * chosen to minimise Σ (run size × longest length in the run) + `passCost` per run: the padded rows that one batched
 * pass per run computes, plus a fixed cost per pass (dispatch and weight-read overhead) in rows. Exact (dynamic
 * programming over the run ends), O(n²). An infinite `passCost` gives one run from the first to the last non-empty item.
 */
export function cheapestRuns(lengths: readonly number[], passCost: number): [number, number][] {
  const n = lengths.length;
  if (passCost === Infinity) {
    const first = lengths.findIndex((l) => l > 0);
    return first < 0 ? [] : [[first, lengths.findLastIndex((l) => l > 0) + 1]];
  }
  const best = new Array<number>(n + 1).fill(Infinity);
  const from = new Array<number>(n + 1).fill(-1);
  best[0] = 0;
  for (let i = 1; i <= n; i++) {
    // Item i−1 left out of every run (only when it has length 0).
    if (lengths[i - 1] === 0 && best[i - 1]! < best[i]!) {
      best[i] = best[i - 1]!;
      from[i] = -1;
    }
    let longest = 0;
    for (let j = i - 1; j >= 0; j--) {
      longest = Math.max(longest, lengths[j]!);
      if (longest === 0) continue;
      const c = best[j]! + (i - j) * longest + passCost;
      if (c < best[i]!) {
        best[i] = c;
        from[i] = j;
      }
    }
  }
  const out: [number, number][] = [];
  for (let i = n; i > 0; ) {
    if (from[i] === -1) i--;
    else {
      out.push([from[i]!, i]);
      i = from[i]!;
    }
  }
  return out.reverse();
}

/**
 * One micro-batch's sequences split into forward passes that compute few padded rows: sorted by length (ties by
 * index) and cut where `cheapestRuns` says a separate pass saves more padded rows than it costs. The passes together
 * are the micro-batch — its loss and gradient are unchanged; only the rows computed are fewer. Every index appears
 * once; each pass lists its indices ascending.
 */
export function paddingPasses(lengths: readonly number[], passCost: number): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[a]! - lengths[b]! || a - b);
  return cheapestRuns(order.map((i) => lengths[i]!), passCost).map(([a, b]) => order.slice(a, b).sort((x, y) => x - y));
}
