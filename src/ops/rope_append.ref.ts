/**
 * CPU reference for ops/rope_append.ts, composed of the references it fuses: rmsnormRef per head (with the q/k
 * norm), ropeRef at position qStart[b] + t, then the cache append (kvAppendRef below) of the rotated k and the plain v.
 * Float64 inside.
 */
import { rmsnormRef } from "./rmsnorm.ref.ts";
import { ropeRef } from "./rope.ref.ts";
import type { ColumnRange, RopeAppendDims, RopeAppendLayout } from "./rope_append.ts";

export function ropeAppendRef(
  qkv: Float32Array,
  layout: RopeAppendLayout,
  invFreq: Float32Array,
  qStart: Uint32Array,
  kvLen: Uint32Array,
  qOut: Float32Array,
  kCache: Float32Array,
  vCache: Float32Array,
  d: RopeAppendDims,
  norm?: { weight: Float32Array; q: number; k: number; eps: number },
): void {
  const { B, T, Hq, Hkv, hd, Tmax } = d;
  const rows = B * T;
  const gather = (r: ColumnRange, H: number) => {
    const out = new Float64Array(rows * H * hd);
    for (let row = 0; row < rows; row++) for (let j = 0; j < H * hd; j++) out[row * H * hd + j] = qkv[r.offset + row * r.stride + j]!;
    return out;
  };
  const q = gather(layout.q, Hq), k = gather(layout.k, Hkv), v = gather(layout.v, Hkv);
  if (norm) {
    rmsnormRef(q.slice(), norm.weight.subarray(norm.q, norm.q + hd), q, null, rows * Hq, hd, norm.eps);
    rmsnormRef(k.slice(), norm.weight.subarray(norm.k, norm.k + hd), k, null, rows * Hkv, hd, norm.eps);
  }
  const positions = Array.from({ length: rows }, (_, row) => qStart[Math.floor(row / T)]! + (row % T));
  ropeRef(q, positions, invFreq, rows, Hq, hd);
  ropeRef(k, positions, invFreq, rows, Hkv, hd);
  qOut.set(q);
  const newLen = Uint32Array.from({ length: B }, (_, b) => Math.max(0, kvLen[b]! - qStart[b]!));
  kvAppendRef(Float32Array.from(k), Float32Array.from(v), qStart, newLen, kCache, vCache, { B, Tq: T, Tmax, F: Hkv * hd });
}

/**
 * Appends each sequence's first newLen[b] of Tq new rows (k, v: [B, Tq, F]) to its cache ([B, Tmax, F]) at rows
 * start[b] + t; rows past Tmax are dropped.
 */
function kvAppendRef(k: Float32Array, v: Float32Array, start: Uint32Array, newLen: Uint32Array, kCache: Float32Array, vCache: Float32Array, d: { B: number; Tq: number; Tmax: number; F: number }): void {
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
