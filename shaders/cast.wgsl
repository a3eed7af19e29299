// f32 → bf16, rounding to nearest even and keeping NaN a (quiet) NaN, as torch's `.to(torch.bfloat16)` and
// src/ops/cast.ref.ts's f32ToBf16: the rollout's bf16 copy of the policy's projection weights, refreshed after
// every update. The source is read as raw bits (u32), so no adapter can flush a subnormal on the way.
// Output: one u32 word per invocation, two values, the even element in the low half (src/gpu/tensor.ts).

struct Params {
  words: u32,   // output words to write
  count: u32,   // values in the window (odd: the last word's high half is 0)
  baseSrc: u32, // element index of the window's first value in src
  baseDst: u32, // word index of the window's first word in dst
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

fn bf16Bits(u: u32) -> u32 {
  if ((u & 0x7fffffffu) > 0x7f800000u) { return (u >> 16u) | 0x40u; }
  return (u + 0x7fffu + ((u >> 16u) & 1u)) >> 16u;
}

@compute @workgroup_size(64)
fn cast_bf16(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let w = (wid.x + wid.y * nwg.x) * 64u + l;
  if (w >= p.words) { return; }
  let i = 2u * w;
  let lo = bf16Bits(src[p.baseSrc + i]);
  let hi = select(0u, bf16Bits(src[p.baseSrc + min(i + 1u, p.count - 1u)]), i + 1u < p.count);
  dst[p.baseDst + w] = lo | (hi << 16u);
}
