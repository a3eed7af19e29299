/**
 * The k best documents by score, with a bounded min-heap: O(n log k). Ties go to the lower document number, so
 * results are deterministic and every search path (exhaustive or pruned) ranks the same way. Output is best first.
 */
export class TopKHeap {
  private readonly heapDoc: Uint32Array;
  private readonly heapScore: Float64Array;
  size = 0;

  constructor(readonly k: number) {
    this.heapDoc = new Uint32Array(Math.max(0, k));
    this.heapScore = new Float64Array(Math.max(0, k));
  }

  get full(): boolean {
    return this.size === this.k;
  }

  /** The score a new document must beat once the heap is full (on an equal score the lower document number wins). */
  get minScore(): number {
    return this.size === this.k ? this.heapScore[0]! : -Infinity;
  }

  /** Offers a document; returns true when it was kept. */
  offer(d: number, s: number): boolean {
    const hs = this.heapScore, hd = this.heapDoc;
    if (this.size < this.k) {
      let i = this.size++;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!worse(s, d, hs[p]!, hd[p]!)) break;
        hs[i] = hs[p]!;
        hd[i] = hd[p]!;
        i = p;
      }
      hs[i] = s;
      hd[i] = d;
      return true;
    }
    if (this.k === 0 || !worse(hs[0]!, hd[0]!, s, d)) return false;
    hs[0] = s;
    hd[0] = d;
    this.siftDown(0);
    return true;
  }

  private siftDown(i: number): void {
    const hs = this.heapScore, hd = this.heapDoc, size = this.size;
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < size && worse(hs[l]!, hd[l]!, hs[m]!, hd[m]!)) m = l;
      if (r < size && worse(hs[r]!, hd[r]!, hs[m]!, hd[m]!)) m = r;
      if (m === i) return;
      const ts = hs[i]!, td = hd[i]!;
      hs[i] = hs[m]!;
      hd[i] = hd[m]!;
      hs[m] = ts;
      hd[m] = td;
      i = m;
    }
  }

  /** Empties the heap into best-first arrays. */
  drain(): { docs: number[]; scores: number[] } {
    const hs = this.heapScore, hd = this.heapDoc;
    const outDocs = new Array<number>(this.size);
    const outScores = new Array<number>(this.size);
    for (let i = this.size - 1; i >= 0; i--) {
      outDocs[i] = hd[0]!;
      outScores[i] = hs[0]!;
      this.size--;
      hs[0] = hs[this.size]!;
      hd[0] = hd[this.size]!;
      this.siftDown(0);
    }
    return { docs: outDocs, scores: outScores };
  }
}

/** "a is worse than b": lower score, or equal score and higher document number. */
function worse(sa: number, da: number, sb: number, db: number): boolean {
  return sa < sb || (sa === sb && da > db);
}

/** The k best among `count` candidate documents whose scores are `scores[doc]`. */
export function topK(candidates: Uint32Array, count: number, scores: Float32Array, k: number): { docs: number[]; scores: number[] } {
  const heap = new TopKHeap(Math.max(0, Math.min(k, count)));
  for (let c = 0; c < count; c++) {
    const d = candidates[c]!;
    heap.offer(d, scores[d]!);
  }
  return heap.drain();
}
