/**
 * Top-k BM25 search with dynamic pruning: MaxScore (Turtle & Flood) document-at-a-time over the query terms' postings,
 * with block-max skipping of the essential lists. Returns exactly what exhaustive scoring returns — same documents,
 * same float32 scores, ties to the lower document number — while reading few postings of the frequent terms.
 *
 * - Terms are ordered by upper bound (qtf · largest stored score). Once the k-th best score θ is known, the terms whose
 *   bounds add up to no more than θ are "non-essential": a document containing only them cannot enter the top k, so
 *   candidates come from the essential terms' postings alone and the others are looked up (galloping search) only while
 *   the candidate can still beat θ.
 * - A block of an essential term's postings whose block maximum plus the other terms' bounds cannot beat θ is skipped
 *   whole. A document in it that another term brings up is then scored without this term; its true score is ≤ θ, so
 *   the lower one is too, and it is not kept either way.
 * - A document that can beat θ gets its exact score: the contributions added in query-term order, rounded to float32
 *   after each addition, as the exhaustive accumulator does. Bounds are compared after scaling by SLACK, which covers
 *   the float32 rounding of that sum, so no document is pruned on a rounding difference.
 * - Documents come in ascending order, so a new one with a score equal to θ loses the tie to every kept one: only a
 *   strictly larger score enters once the heap is full.
 */
import { TopKHeap } from "./top_k.ts";
import { BOUND_BLOCK } from "./index_format.ts";

/** One distinct query term: its postings (segment arrays and range) and bounds. */
export interface TermPostings {
  docs: Uint32Array;
  scores: Float32Array;
  /** Block maxima of the term's segment (block j covers segment positions [BOUND_BLOCK·j, BOUND_BLOCK·(j+1))). */
  blockMax: Float32Array;
  start: number;
  end: number;
  /** Occurrences of the term in the query. */
  qtf: number;
  /** Largest stored score among the term's postings. */
  maxScore: number;
}

const END = 0x1_0000_0000; // past every document number
const SHIFT = Math.log2(BOUND_BLOCK);

/** The k best documents for terms given in query order (the order their contributions are summed in). */
export function maxScoreTopK(terms: TermPostings[], k: number): { docs: number[]; scores: number[] } {
  const n = terms.length;
  const heap = new TopKHeap(k);
  if (n === 0 || k <= 0) return heap.drain();
  // Sorted by upper bound, ascending; `orig` maps back to query order for the exact sum.
  const order = terms.map((t, i) => ({ t, i, ub: t.qtf * t.maxScore })).sort((a, b) => a.ub - b.ub || a.i - b.i);
  const docs = order.map((o) => o.t.docs);
  const scores = order.map((o) => o.t.scores);
  const bmax = order.map((o) => o.t.blockMax);
  const orig = Int32Array.from(order, (o) => o.i);
  const qtf = Float64Array.from(order, (o) => o.t.qtf);
  const ub = Float64Array.from(order, (o) => o.ub);
  const end = Float64Array.from(order, (o) => o.t.end);
  const pos = Float64Array.from(order, (o) => o.t.start);
  const cur = Float64Array.from(order, (o) => (o.t.start < o.t.end ? o.t.docs[o.t.start]! : END));
  const prefix = new Float64Array(n); // prefix[i] = ub[0] + … + ub[i]
  for (let i = 0, s = 0; i < n; i++) prefix[i] = s += ub[i]!;
  const total = prefix[n - 1]!;
  // Each float32 addition rounds by at most 2^-24 of the running sum; n additions stay under (1 + 2^-24)^n - 1.
  const SLACK = 1 + (n + 2) * 2 ** -23;
  const contrib = new Float64Array(n); // by query order
  let theta = -Infinity;
  let e = 0; // terms [0, e) are non-essential

  for (;;) {
    // Next candidate: the smallest current document among the essential terms, after skipping blocks that cannot win.
    let d = END;
    for (let i = e; i < n; i++) {
      let p = pos[i]!;
      const stop = end[i]!;
      if (theta > -Infinity && p < stop) {
        const rest = total - ub[i]!, q = qtf[i]!, bm = bmax[i]!;
        const p0 = p;
        while (p < stop && (q * bm[p >>> SHIFT]! + rest) * SLACK <= theta) p = ((p >>> SHIFT) + 1) << SHIFT;
        if (p !== p0) {
          if (p > stop) p = stop;
          pos[i] = p;
          cur[i] = p < stop ? docs[i]![p]! : END;
        }
      }
      if (cur[i]! < d) d = cur[i]!;
    }
    if (d === END) break;

    let partial = 0;
    for (let i = e; i < n; i++) {
      if (cur[i] === d) {
        const p = pos[i]!;
        const c = qtf[i]! * scores[i]![p]!;
        contrib[orig[i]!] = c;
        partial += c;
        pos[i] = p + 1;
        cur[i] = p + 1 < end[i]! ? docs[i]![p + 1]! : END;
      }
    }
    let alive = true;
    for (let i = e - 1; i >= 0; i--) {
      if ((partial + prefix[i]!) * SLACK <= theta) {
        alive = false;
        break;
      }
      if (cur[i]! < d) {
        const p = seek(docs[i]!, pos[i]!, end[i]!, d);
        pos[i] = p;
        cur[i] = p < end[i]! ? docs[i]![p]! : END;
      }
      if (cur[i] === d) {
        const c = qtf[i]! * scores[i]![pos[i]!]!;
        contrib[orig[i]!] = c;
        partial += c;
      }
    }
    if (alive && (partial * SLACK > theta || !heap.full)) {
      let exact = 0;
      for (let j = 0; j < n; j++) exact = Math.fround(exact + contrib[j]!);
      if (heap.offer(d, exact) && heap.full) {
        theta = heap.minScore;
        while (e < n && prefix[e]! * SLACK <= theta) e++;
        if (e === n) break; // no document can beat θ any more
      }
    }
    contrib.fill(0);
  }
  return heap.drain();
}

/** The first position p in [from, end) with docs[p] ≥ target (end if none): galloping, then binary search. */
function seek(docs: Uint32Array, from: number, end: number, target: number): number {
  if (docs[from]! >= target) return from;
  let lo = from, step = 1, hi = from + 1;
  while (hi < end && docs[hi]! < target) {
    lo = hi;
    step *= 2;
    hi = lo + step;
  }
  if (hi > end) hi = end;
  // docs[lo] < target, and docs[hi] ≥ target or hi = end
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (docs[mid]! < target) lo = mid;
    else hi = mid;
  }
  return hi;
}
