// The q/k/v epilogue of a generation step (a forward pass against the KV cache), in one dispatch:
//   q rows:  (Qwen3: RMSNorm per head with q_norm) then RoPE → qOut [rows, Hq·hd]
//   k rows:  (Qwen3: RMSNorm per head with k_norm) then RoPE → kCache at the row's position
//   v rows:  copied → vCache at the row's position
// Row r = b·T + t of the step has position qStart[b] + t (the cache holds positions 0 … qStart[b] − 1). Its k and
// v go to cache row (b, qStart[b] + t) when that position is below kvLen[b] (padding rows are skipped) and Tmax.
//
// The three inputs are column ranges of one buffer, each with its own element offset and row stride: the output of
// one fused [rows, q|k|v] projection, or three separate products laid one after another.
//
// One invocation per (row, head) over the Hq + 2·Hkv heads: it reads its head's hd values (twice with the norm:
// the sum of squares, then the rotation), so nothing is shared between invocations and no barrier is needed. The
// norm is shaders/rmsnorm.wgsl's (same order of sums and products), and the rotation shaders/rope.wgsl's.

struct Params {
  B: u32, T: u32, Hq: u32, Hkv: u32,
  hd: u32, Tmax: u32, offQ: u32, strideQ: u32,
  offK: u32, strideK: u32, offV: u32, strideV: u32,
  normQ: u32, normK: u32, eps: f32, _p0: u32,
}

override NORM: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> invFreq: array<f32>;
@group(0) @binding(3) var<storage, read> qStart: array<u32>;
@group(0) @binding(4) var<storage, read> kvLen: array<u32>;
// q_norm's weights from normQ, k_norm's from normK (bound to invFreq, unread, without NORM).
@group(0) @binding(5) var<storage, read> normW: array<f32>;
@group(0) @binding(6) var<storage, read_write> qOut: array<f32>;
@group(0) @binding(7) var<storage, read_write> kCache: array<f32>;
@group(0) @binding(8) var<storage, read_write> vCache: array<f32>;

const WG = 64u;

// reduceAngle: shaders/rope_angle.wgsl (put in front of this file by src/gpu/shaders.ts), shared with rope.wgsl.

// One head: hd values from qkv[src …], normalised with weights normW[w …] when NORM, rotated by `pos`, to dst
// (in qOut when toQ, else in kCache).
fn normRotate(src: u32, w: u32, pos: u32, dst: u32, toQ: bool) {
  var r = 1.0;
  if (NORM) {
    var ss = 0.0;
    for (var j = 0u; j < p.hd; j++) {
      let v = qkv[src + j];
      ss += v * v;
    }
    r = 1.0 / sqrt(ss / f32(p.hd) + p.eps);
  }
  let half = p.hd / 2u;
  for (var i = 0u; i < half; i++) {
    var x1 = qkv[src + i];
    var x2 = qkv[src + i + half];
    if (NORM) {
      x1 = x1 * r * normW[w + i];
      x2 = x2 * r * normW[w + i + half];
    }
    let a = reduceAngle(f32(pos) * invFreq[i]);
    let c = cos(a);
    let s = sin(a);
    let y1 = x1 * c - x2 * s;
    let y2 = x2 * c + x1 * s;
    if (toQ) {
      qOut[dst + i] = y1;
      qOut[dst + i + half] = y2;
    } else {
      kCache[dst + i] = y1;
      kCache[dst + i + half] = y2;
    }
  }
}

@compute @workgroup_size(WG)
fn rope_append(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let heads = p.Hq + 2u * p.Hkv;
  let id = (wid.x + wid.y * nwg.x) * WG + l;
  if (id >= p.B * p.T * heads) { return; }
  let row = id / heads;
  let h = id % heads;
  let b = row / p.T;
  let t = row % p.T;
  let pos = qStart[b] + t;
  if (h < p.Hq) {
    normRotate(p.offQ + row * p.strideQ + h * p.hd, p.normQ, pos, (row * p.Hq + h) * p.hd, true);
    return;
  }
  if (pos >= kvLen[b] || pos >= p.Tmax) { return; }
  let kvh = (h - p.Hq) % p.Hkv;
  let dst = ((b * p.Tmax + pos) * p.Hkv + kvh) * p.hd;
  if (h < p.Hq + p.Hkv) {
    normRotate(p.offK + row * p.strideK + kvh * p.hd, p.normK, pos, dst, false);
    return;
  }
  let src = p.offV + row * p.strideV + kvh * p.hd;
  for (var j = 0u; j < p.hd; j++) {
    vCache[dst + j] = qkv[src + j];
  }
}
