/**
 * Top-k BM25 search with dynamic pruning: MaxScore (Turtle & Flood) document-at-a-time over the query terms' postings,
 * with block-max skipping of the essential lists. Returns exactly what exhaustive scoring returns — same documents,
 * same float32 scores, ties to the lower document number — while reading few postings of the frequent terms.
 *
 * - Terms are ordered by upper bound (qtf · largest stored score). Once the k-th best score θ is known, the terms whose
 *   bounds add up to no more than θ are "non-essential": a document containing only them cannot enter the top k, so
 *   candidates come from the essential terms' postings alone and the others are looked up (galloping search) only while
 *   the candidate can still beat θ.
 * - The essential terms are gathered a window of documents at a time into per-term arrays (a tight loop per term,
 *   cheaper in JS than merging cursors), then the window's documents are visited in ascending order.
 * - A block of an essential term's postings whose block maximum plus the other terms' bounds cannot beat θ is skipped
 *   whole, and so is a posting whose score plus the bounds of the terms not yet gathered cannot, when no term gathered
 *   before has brought its document up. A document that another term brings up is then scored without this posting;
 *   its true score is ≤ θ, so the lower one is too, and it is not kept either way.
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

/** Documents per window: essential terms are gathered a window at a time, then its documents are visited in order. */
const WINDOW = 8192;
let windowScores: Float32Array[] = []; // per essential term, reused across searches
const windowBits = new Int32Array(WINDOW / 32);

/** The k best documents for terms given in query order (the order their contributions are summed in). */
export function maxScoreTopK(terms: TermPostings[], k: number): { docs: number[]; scores: number[] } {
  const n = terms.length;
  const heap = new TopKHeap(k);
  if (n === 0 || k <= 0) return heap.drain();
  // Sorted by upper bound, ascending; `sortedOf` maps query order to sorted order for the exact sum.
  const order = terms.map((t, i) => ({ t, i, ub: t.qtf * t.maxScore })).sort((a, b) => a.ub - b.ub || a.i - b.i);
  const docs = order.map((o) => o.t.docs);
  const scores = order.map((o) => o.t.scores);
  const bmax = order.map((o) => o.t.blockMax);
  const sortedOf = new Int32Array(n);
  order.forEach((o, s) => (sortedOf[o.i] = s));
  const qtf = Float64Array.from(order, (o) => o.t.qtf);
  const ub = Float64Array.from(order, (o) => o.ub);
  const end = Int32Array.from(order, (o) => o.t.end); // positions < SEGMENT_POSTINGS = 2^28
  const pos = Int32Array.from(order, (o) => o.t.start);
  const prefix = new Float64Array(n); // prefix[i] = ub[0] + … + ub[i]
  for (let i = 0, s = 0; i < n; i++) prefix[i] = s += ub[i]!;
  const total = prefix[n - 1]!;
  // Each float32 addition rounds by at most 2^-24 of the running sum; n additions stay under (1 + 2^-24)^n - 1.
  const SLACK = 1 + (n + 2) * 2 ** -23;
  while (windowScores.length < n) windowScores.push(new Float32Array(WINDOW));
  const acc = windowScores;
  const bits = windowBits;
  const contrib = new Float64Array(n); // by sorted position, for the document being scored
  let theta = -Infinity;
  let e = 0; // terms [0, e) are non-essential

  for (;;) {
    // The next window starts at the smallest current document of the essential terms.
    let lo = END;
    for (let i = e; i < n; i++) if (pos[i]! < end[i]!) lo = Math.min(lo, docs[i]![pos[i]!]!);
    if (lo === END) break;
    const hi = lo + WINDOW;
    // Gather the essential terms' postings in [lo, hi), the largest bound first, skipping blocks that cannot reach θ.
    // A document that no term gathered so far has brought up can only reach q · score + (the bounds of the terms
    // below this one); a posting where that is at most θ is not gathered.
    for (let i = n - 1; i >= e; i--) {
      const d_ = docs[i]!, s_ = scores[i]!, bm = bmax[i]!, a = acc[i]!, q = qtf[i]!, stop = end[i]!;
      const blockCut = theta / SLACK - (total - ub[i]!); // a block whose q · max is at most this cannot win
      const newDocCut = theta / SLACK - (i > 0 ? prefix[i - 1]! : 0);
      let p = pos[i]!;
      while (p < stop) {
        const blockEnd = Math.min(((p >>> SHIFT) + 1) << SHIFT, stop);
        if (q * bm[p >>> SHIFT]! <= blockCut) {
          p = blockEnd;
          continue;
        }
        let done = false;
        for (; p < blockEnd; p++) {
          const d = d_[p]!;
          if (d >= hi) {
            done = true;
            break;
          }
          const sc = s_[p]!;
          const x = d - lo;
          const mask = 1 << (x & 31);
          if (q * sc <= newDocCut && (bits[x >>> 5]! & mask) === 0) continue;
          a[x] = sc;
          bits[x >>> 5]! |= mask;
        }
        if (done) break;
      }
      pos[i] = p;
    }
    // Visit the gathered documents in ascending order.
    for (let w = 0; w < WINDOW / 32; w++) {
      let word = bits[w]!;
      if (word === 0) continue;
      bits[w] = 0;
      while (word !== 0) {
        const bit = 31 - Math.clz32(word & -word);
        word &= word - 1;
        const x = (w << 5) | bit;
        const d = lo + x;
        let partial = 0;
        for (let i = 0; i < e; i++) contrib[i] = 0;
        for (let i = e; i < n; i++) {
          const c = qtf[i]! * acc[i]![x]!;
          acc[i]![x] = 0;
          contrib[i] = c;
          partial += c;
        }
        let alive = true;
        for (let i = e - 1; i >= 0; i--) {
          if ((partial + prefix[i]!) * SLACK <= theta) {
            alive = false;
            break;
          }
          let p = pos[i]!;
          if (p < end[i]! && docs[i]![p]! < d) p = pos[i] = seek(docs[i]!, p, end[i]!, d);
          if (p < end[i]! && docs[i]![p] === d) {
            const c = qtf[i]! * scores[i]![p]!;
            contrib[i] = c;
            partial += c;
          }
        }
        if (!alive || (partial * SLACK <= theta && heap.full)) continue;
        let exact = 0;
        for (let j = 0; j < n; j++) exact = Math.fround(exact + contrib[sortedOf[j]!]!);
        if (heap.offer(d, exact) && heap.full) theta = heap.minScore;
      }
    }
    // θ only grows: more terms may have become non-essential (the set stays fixed within a window).
    while (e < n && prefix[e]! * SLACK <= theta) e++;
    if (e === n) break; // no document can beat θ any more
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
