/** CPU reference of src/ops/cast.ts; also what BF16 safetensors are written with (src/model/safetensors.ts). */

/** f32 → bf16 bits with round-to-nearest-even (as torch's `.to(torch.bfloat16)`); NaN stays a (quiet) NaN. */
export function f32ToBf16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const b = bits[i]!;
    if ((b & 0x7fffffff) > 0x7f800000) out[i] = (b >>> 16) | 0x40;
    else out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}
