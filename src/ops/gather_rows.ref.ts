/** CPU reference of src/ops/gather_rows.ts. */

/** dst[r] = src[index[r]] over rows of `width` values; a zero row where index[r] ≥ srcRows. */
export function gatherRowsRef(index: ArrayLike<number>, src: ArrayLike<number>, width: number, srcRows: number): Float32Array {
  const out = new Float32Array(index.length * width);
  for (let r = 0; r < index.length; r++) {
    const s = index[r]!;
    if (s < srcRows) for (let e = 0; e < width; e++) out[r * width + e] = src[s * width + e]!;
  }
  return out;
}

/**
 * The backward: dst[r] (+)= Σ src[k] over the rows k of sources[r], summed in that order in f32; rows below
 * accumulateRows add the sum to dst's value, the others become it.
 */
export function gatherRowsBackwardRef(sources: readonly (readonly number[])[], src: ArrayLike<number>, dst: Float32Array, width: number, accumulateRows: number): Float32Array {
  const out = Float32Array.from(dst);
  sources.forEach((list, r) => {
    for (let e = 0; e < width; e++) {
      let sum = Math.fround(0);
      for (const k of list) sum = Math.fround(sum + src[k * width + e]!);
      out[r * width + e] = r < accumulateRows ? Math.fround(out[r * width + e]! + sum) : sum;
    }
  });
  return out;
}
