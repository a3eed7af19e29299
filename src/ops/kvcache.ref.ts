/** CPU reference for ops/kvcache.ts. */
import type { KvAppendDims } from "./kvcache.ts";

export function kvAppendRef(k: Float32Array, v: Float32Array, start: Uint32Array, newLen: Uint32Array, kCache: Float32Array, vCache: Float32Array, d: KvAppendDims): void {
  for (let b = 0; b < d.B; b++) {
    for (let t = 0; t < Math.min(newLen[b]!, d.Tq); t++) {
      const pos = start[b]! + t;
      if (pos >= d.Tmax) continue;
      for (let f = 0; f < d.F; f++) {
        kCache[(b * d.Tmax + pos) * d.F + f] = k[(b * d.Tq + t) * d.F + f]!;
        vCache[(b * d.Tmax + pos) * d.F + f] = v[(b * d.Tq + t) * d.F + f]!;
      }
    }
  }
}
