// KV cache append: copies the key/value rows of newly processed tokens into each sequence's cache.
//   src [B, Tq, F] (F = kv heads × head_dim, the k/v projection layout), cache [B, Tmax, F]
//   row t < newLen[b] of sequence b goes to cache position start[b] + t; padding rows are skipped.
// No backward: the cache is only used for generation.

struct Params { B: u32, Tq: u32, Tmax: u32, F: u32, gridX: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> kSrc: array<f32>;
@group(0) @binding(2) var<storage, read> vSrc: array<f32>;
@group(0) @binding(3) var<storage, read> start: array<u32>;
@group(0) @binding(4) var<storage, read> newLen: array<u32>;
@group(0) @binding(5) var<storage, read_write> kCache: array<f32>;
@group(0) @binding(6) var<storage, read_write> vCache: array<f32>;

@compute @workgroup_size(256)
fn kv_append(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.gridX * 256u;
  if (i >= p.B * p.Tq * p.F) { return; }
  let f = i % p.F;
  let row = i / p.F;
  let t = row % p.Tq;
  let b = row / p.Tq;
  if (t >= newLen[b]) { return; }
  let pos = start[b] + t;
  if (pos >= p.Tmax) { return; }
  let dst = (b * p.Tmax + pos) * p.F + f;
  kCache[dst] = kSrc[i];
  vCache[dst] = vSrc[i];
}
