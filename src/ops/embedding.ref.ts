/** CPU reference for ops/embedding.ts: gather rows by id (zero rows for ids ≥ V) and the scatter-add backward. */
import type { Out } from "./elementwise.ref.ts";

export function embeddingRef(ids: ArrayLike<number>, table: ArrayLike<number>, out: Out, N: number, V: number, D: number): void {
  for (let n = 0; n < N; n++) {
    const v = ids[n]!;
    for (let d = 0; d < D; d++) out[n * D + d] = v < V ? table[v * D + d]! : 0;
  }
}

/**
 * dTable[v] += Σ_{n: ids[n] = v} dOut[n]. With `f32` the sum runs the way the GPU kernel defines it:
 * accumulated in float32 in increasing n, then added to the table row once — bit for bit.
 */
export function embeddingBackwardRef(
  ids: ArrayLike<number>,
  dOut: ArrayLike<number>,
  dTable: Out,
  N: number,
  V: number,
  D: number,
  o: { f32?: boolean } = {},
): void {
  const round = o.f32 ? Math.fround : (x: number) => x;
  const acc = new Map<number, Float64Array>();
  for (let n = 0; n < N; n++) {
    const v = ids[n]!;
    if (v >= V) continue;
    let a = acc.get(v);
    if (!a) acc.set(v, (a = new Float64Array(D)));
    for (let d = 0; d < D; d++) a[d] = round(a[d]! + dOut[n * D + d]!);
  }
  for (const [v, a] of acc) for (let d = 0; d < D; d++) dTable[v * D + d] = round(dTable[v * D + d]! + a[d]!);
}
