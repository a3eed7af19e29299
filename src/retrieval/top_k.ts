/**
 * Picks the k best documents among `count` candidates by score, with a bounded min-heap: O(n log k).
 * Ties go to the lower document number, so results are deterministic. Output is best first.
 */
export function topK(candidates: Uint32Array, count: number, scores: Float32Array, k: number): { docs: number[]; scores: number[] } {
  k = Math.min(k, count);
  if (k <= 0) return { docs: [], scores: [] };
  const heapDoc = new Uint32Array(k);
  const heapScore = new Float64Array(k);
  let size = 0;
  // "a is worse than b": lower score, or equal score and higher doc number.
  const worse = (sa: number, da: number, sb: number, db: number) => sa < sb || (sa === sb && da > db);
  const siftDown = (i: number) => {
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < size && worse(heapScore[l]!, heapDoc[l]!, heapScore[m]!, heapDoc[m]!)) m = l;
      if (r < size && worse(heapScore[r]!, heapDoc[r]!, heapScore[m]!, heapDoc[m]!)) m = r;
      if (m === i) return;
      const ts = heapScore[i]!, td = heapDoc[i]!;
      heapScore[i] = heapScore[m]!;
      heapDoc[i] = heapDoc[m]!;
      heapScore[m] = ts;
      heapDoc[m] = td;
      i = m;
    }
  };
  for (let c = 0; c < count; c++) {
    const d = candidates[c]!;
    const s = scores[d]!;
    if (size < k) {
      let i = size++;
      heapScore[i] = s;
      heapDoc[i] = d;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!worse(heapScore[i]!, heapDoc[i]!, heapScore[p]!, heapDoc[p]!)) break;
        const ts = heapScore[i]!, td = heapDoc[i]!;
        heapScore[i] = heapScore[p]!;
        heapDoc[i] = heapDoc[p]!;
        heapScore[p] = ts;
        heapDoc[p] = td;
        i = p;
      }
    } else if (worse(heapScore[0]!, heapDoc[0]!, s, d)) {
      heapScore[0] = s;
      heapDoc[0] = d;
      siftDown(0);
    }
  }
  const outDocs = new Array<number>(size);
  const outScores = new Array<number>(size);
  for (let i = size - 1; i >= 0; i--) {
    outDocs[i] = heapDoc[0]!;
    outScores[i] = heapScore[0]!;
    size--;
    heapScore[0] = heapScore[size]!;
    heapDoc[0] = heapDoc[size]!;
    siftDown(0);
  }
  return { docs: outDocs, scores: outScores };
}
