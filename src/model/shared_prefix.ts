/**
 * Batches whose sequences share prompts: a GRPO group is n samples of one prompt, and a whole-sequence pass (reference
 * and old log-probs, the update's forward and backward) would otherwise run every prompt token n times. Here each
 * distinct prompt runs once, and its samples' rows attend to its keys and values:
 *
 *   rows 0 .. P·Tp          prefix block: P sequences of Tp rows, each a shared prompt but its last token (positions 0..)
 *   rows P·Tp .. N          own block: S sequences of Ts rows, member s's last prompt token and response, at positions
 *                           from its prefix's length on
 *
 * Everything but attention works row by row, so it runs on these N rows as on any batch. Attention runs once per
 * block: the prefix block as plain causal sequences; the own block against keys gathered per member — its prefix's then
 * its own, Tk = Tp + Ts — as a prefill against a cache (qStart = the prefix's length). Its backward sums the gathered
 * keys' gradients back into the rows they came from, each prefix row's over the members that read it
 * (src/ops/gather_rows.ts). The values are those of running every sequence whole, to rounding (the same sums in
 * another order); the work is that of P·Tp + S·Ts rows instead of S·T.
 */
import type { Gpu } from "../gpu/runtime.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { ModelConfig } from "./config.ts";
import { checkedHeadRows, uploadHeadRows, type TokenBatch } from "./transformer.ts";
import { gatherRowsSegments } from "../ops/gather_rows.ts";

/** Where the blocks of a shared-prefix batch lie (TokenBatch.shared). */
export interface SharedPrefixLayout {
  /** Prefix block: P sequences of Tp rows (the distinct prefixes, then empty ones that align the own block). */
  P: number;
  Tp: number;
  /** Own block: S sequences of Ts rows, from row P·Tp. */
  S: number;
  Ts: number;
  /** Keys of an own sequence: its prefix's Tp slots then its Ts rows. */
  Tk: number;
  /** u32 [P] zeros, and u32 [P] each prefix's length (0 for the aligning ones). */
  prefixQStart: Tensor;
  prefixKvLen: Tensor;
  /** u32 [S] each member's prefix length (the position of its first own row), and that plus its own rows. */
  ownQStart: Tensor;
  ownKvLen: Tensor;
  /** u32 [S·Tk] the batch row holding key j of own sequence s (N where there is none: a zero row). */
  keyRows: Tensor;
  /** The gathered keys each batch row's key gradient sums (gatherRowsSegments): a prefix row's members, an own row's one. */
  keySources: Tensor;
}

/** How a group of sequences would be laid out: which prefix each uses, the blocks' sizes, and the rows in all. */
export interface SharedPrefixPlan {
  /** Per distinct prefix: its length and the member that holds its tokens. */
  prefixes: { length: number; source: number }[];
  /** Per sequence: the index of its prefix. */
  owner: number[];
  P: number;
  Tp: number;
  S: number;
  Ts: number;
  rows: number;
}

/**
 * Rows the own block must start at a multiple of, so that every per-row tensor attention reads (q, k, v, their
 * gradients, lse) can be bound from there: minStorageBufferOffsetAlignment bytes over each row width.
 */
export function sharedPrefixRowMultiple(gpu: Gpu, config: ModelConfig): number {
  const align = gpu.limits.minStorageBufferOffsetAlignment / 4;
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  let m = 1;
  for (const width of [config.numHeads * config.headDim, config.numKvHeads * config.headDim, config.numHeads]) {
    const need = align / gcd(align, width);
    m = (m * need) / gcd(m, need);
  }
  return m;
}

/**
 * Groups sequences by their first prefixLengths[i] tokens (equal lengths, equal ids) and sizes the blocks: the fewest
 * prefix rows P·Tp with P ≥ the distinct prefixes, Tp ≥ the longest, and P·Tp a multiple of `rowMultiple`.
 */
export function planSharedPrefix(sequences: readonly (readonly number[])[], prefixLengths: readonly number[], rowMultiple: number): SharedPrefixPlan {
  const prefixes: SharedPrefixPlan["prefixes"] = [];
  const byTokens = new Map<string, number>();
  const owner = sequences.map((s, i) => {
    const p = prefixLengths[i]!;
    if (!Number.isInteger(p) || p < 0 || p >= s.length) throw new Error(`planSharedPrefix: sequence ${i} has ${s.length} tokens; its prefix must leave at least one (got ${p})`);
    const key = s.slice(0, p).join(",");
    const known = byTokens.get(key);
    if (known !== undefined) return known;
    prefixes.push({ length: p, source: i });
    byTokens.set(key, prefixes.length - 1);
    return prefixes.length - 1;
  });
  const longest = Math.max(1, ...prefixes.map((x) => x.length));
  let best = { P: 0, Tp: 0 };
  for (let Tp = longest; Tp < longest + rowMultiple; Tp++) {
    for (let P = prefixes.length; P < prefixes.length + rowMultiple; P++) {
      if ((P * Tp) % rowMultiple === 0 && (best.P === 0 || P * Tp < best.P * best.Tp)) best = { P, Tp };
    }
  }
  const S = sequences.length;
  const Ts = Math.max(1, ...sequences.map((s, i) => s.length - prefixLengths[i]!));
  return { prefixes, owner, P: best.P, Tp: best.Tp, S, Ts, rows: best.P * best.Tp + S * Ts };
}

/** The host side of a shared-prefix batch: per-row ids, targets and positions, and the layout's u32 arrays. */
export function sharedPrefixRows(plan: SharedPrefixPlan, sequences: readonly (readonly number[])[], prefixLengths: readonly number[]) {
  const { P, Tp, S, Ts } = plan;
  const Np = P * Tp, N = Np + S * Ts, Tk = Tp + Ts;
  const ids = new Uint32Array(N), targets = new Uint32Array(N), positions = new Uint32Array(N);
  const prefixKvLen = new Uint32Array(P);
  plan.prefixes.forEach(({ length, source }, k) => {
    const s = sequences[source]!;
    prefixKvLen[k] = length;
    for (let t = 0; t < Tp; t++) {
      const r = k * Tp + t;
      positions[r] = t;
      if (t < length) {
        ids[r] = s[t]!;
        targets[r] = s[t + 1]!;
      }
    }
  });
  for (let r = plan.prefixes.length * Tp; r < Np; r++) positions[r] = r % Tp;
  const ownQStart = new Uint32Array(S), ownKvLen = new Uint32Array(S);
  const keyRows = new Uint32Array(S * Tk).fill(N);
  sequences.forEach((s, i) => {
    const p = prefixLengths[i]!, own = s.length - p, k = plan.owner[i]!;
    ownQStart[i] = p;
    ownKvLen[i] = p + own;
    for (let t = 0; t < Ts; t++) {
      const r = Np + i * Ts + t;
      positions[r] = p + t;
      if (t < own) {
        ids[r] = s[p + t]!;
        targets[r] = p + t + 1 < s.length ? s[p + t + 1]! : 0;
      }
    }
    for (let j = 0; j < p; j++) keyRows[i * Tk + j] = k * Tp + j;
    for (let t = 0; t < own; t++) keyRows[i * Tk + p + t] = Np + i * Ts + t;
  });
  // Each batch row's key gradient: the gathered keys that hold it, members in order.
  const sources: number[][] = Array.from({ length: N }, () => []);
  keyRows.forEach((r, key) => {
    if (r < N) sources[r]!.push(key);
  });
  return { N, Np, Tk, ids, targets, positions, prefixKvLen, ownQStart, ownKvLen, keyRows, keySources: gatherRowsSegments(sources) };
}

/** Batch row of token t of sequence i (t ≥ its prefix length) in a shared-prefix batch. */
export function sharedPrefixRow(plan: Pick<SharedPrefixPlan, "P" | "Tp" | "Ts">, prefixLength: number, i: number, t: number): number {
  return plan.P * plan.Tp + i * plan.Ts + (t - prefixLength);
}

/**
 * A shared-prefix TokenBatch of `sequences` laid out by `plan` (planSharedPrefix with the same sequences and prefix
 * lengths). `headRows[i]`: as makeBatch's, the rows t of sequence i whose log-probs are wanted, here from its prefix
 * length on (a prefix row holds one token for many sequences).
 */
export function makeSharedPrefixBatch(
  gpu: Gpu,
  plan: SharedPrefixPlan,
  sequences: readonly (readonly number[])[],
  prefixLengths: readonly number[],
  headRows?: readonly (readonly number[])[],
): TokenBatch {
  const h = sharedPrefixRows(plan, sequences, prefixLengths);
  const head = (headRows ?? []).flatMap((ts, i) => {
    const p = prefixLengths[i]!;
    return checkedHeadRows("makeSharedPrefixBatch", i, ts, p, sequences[i]!.length - 1, (t) => sharedPrefixRow(plan, p, i, t));
  });
  const chosen = uploadHeadRows(gpu, head, h.targets);
  const u32 = (a: Uint32Array) => gpu.upload(a, [a.length], "u32");
  return {
    B: 1,
    T: h.N,
    lengths: [h.N],
    ids: u32(h.ids),
    targets: u32(h.targets),
    positions: u32(h.positions),
    qStart: u32(new Uint32Array(1)),
    kvLen: u32(Uint32Array.of(h.N)),
    row: (i, t) => sharedPrefixRow(plan, prefixLengths[i]!, i, t),
    ...(chosen ? { head: chosen } : {}),
    shared: {
      P: plan.P,
      Tp: plan.Tp,
      S: plan.S,
      Ts: plan.Ts,
      Tk: h.Tk,
      prefixQStart: u32(new Uint32Array(plan.P)),
      prefixKvLen: u32(h.prefixKvLen),
      ownQStart: u32(h.ownQStart),
      ownKvLen: u32(h.ownKvLen),
      keyRows: u32(h.keyRows),
      keySources: u32(h.keySources),
    },
  };
}
