// Causal grouped-query attention with per-sequence windows, forward and backward.
//
// Layouts (row-major, token-major exactly as the q/k/v projections write them):
//   q, out, dout, dq: [B, Tq, Hq, HD]      k, v, dk, dv: [B, Tk, Hkv, HD]      lse: [B, Hq, Tq]
//   qStart[B], kvLen[B]: u32. Query row t of sequence b sits at absolute position pos = qStart[b] + t
//   and attends keys j <= pos with j < kvLen[b]; a row with pos >= kvLen[b] is padding (output 0,
//   lse 0, no gradient in or out). Query head h reads kv head h / (Hq / Hkv).
//
// One invocation owns one query row of one head (forward, dQ) or one key row of one kv head (dK/dV)
// and walks the other side with an online softmax, so no T×T matrix ever exists. Rows are numbered
// token-major, head-minor, so the lanes of a SIMD group are neighbouring heads of the same tokens:
// they run the same causal loop length and the query heads of one kv head read the same key rows.
// No workgroup memory and no barriers (lavapipe runs each invocation as a SIMD lane).
//
// The backward needs three dispatches: attn_bwd_prep packs lse, delta = rowsum(dout ∘ out) and the
// per-sequence windows into one u32 work buffer (bit-cast floats), then attn_bwd_dq (parallel over
// queries) and attn_bwd_dkv (parallel over keys, summing the query heads of each kv head) run.
// Packing keeps every entry point within 8 storage bindings, WebGPU's default limit.

struct Params {
  B: u32, Tq: u32, Tk: u32, Hq: u32,
  Hkv: u32, gridX: u32, _pad0: u32, _pad1: u32,
  scale: f32,
}

// Head dimension, fixed per pipeline so every inner loop has a constant trip count.
override HD: u32 = 64u;
const MAX_HD = 256u;
const WG = 64u;

@group(0) @binding(0) var<uniform> p: Params;

fn linearIndex(gid: vec3u) -> u32 {
  return gid.y * p.gridX * WG + gid.x;
}

// ---- forward -----------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> fq: array<f32>;
@group(0) @binding(2) var<storage, read> fk: array<f32>;
@group(0) @binding(3) var<storage, read> fv: array<f32>;
@group(0) @binding(4) var<storage, read> fqStart: array<u32>;
@group(0) @binding(5) var<storage, read> fkvLen: array<u32>;
@group(0) @binding(6) var<storage, read_write> fout: array<f32>;
@group(0) @binding(7) var<storage, read_write> flse: array<f32>;

@compute @workgroup_size(64)
fn attn_fwd(@builtin(global_invocation_id) gid: vec3u) {
  let r = linearIndex(gid); // ((b * Tq + t) * Hq + h)
  if (r >= p.B * p.Tq * p.Hq) { return; }
  let h = r % p.Hq;
  let bt = r / p.Hq;
  let t = bt % p.Tq;
  let b = bt / p.Tq;
  let hk = h / (p.Hq / p.Hkv);
  let pos = fqStart[b] + t;
  let kvl = min(fkvLen[b], p.Tk);
  let qBase = r * HD;
  let lseIdx = (b * p.Hq + h) * p.Tq + t;
  if (pos >= kvl) {
    for (var d = 0u; d < HD; d++) { fout[qBase + d] = 0.0; }
    flse[lseIdx] = 0.0;
    return;
  }

  var qv: array<f32, MAX_HD>;
  var acc: array<f32, MAX_HD>;
  for (var d = 0u; d < HD; d++) {
    qv[d] = fq[qBase + d] * p.scale;
    acc[d] = 0.0;
  }
  var m = -3.0e38;
  var l = 0.0;
  let kStride = p.Hkv * HD;
  var kBase = (b * p.Tk * p.Hkv + hk) * HD;
  for (var j = 0u; j <= pos; j++) {
    var s = 0.0;
    for (var d = 0u; d < HD; d++) { s += qv[d] * fk[kBase + d]; }
    if (s > m) {
      // A new maximum: rescale what was accumulated (rare after the first few keys).
      let c = exp(m - s);
      l *= c;
      for (var d = 0u; d < HD; d++) { acc[d] *= c; }
      m = s;
    }
    let e = exp(s - m);
    l += e;
    for (var d = 0u; d < HD; d++) { acc[d] += e * fv[kBase + d]; }
    kBase += kStride;
  }
  let inv = 1.0 / l;
  for (var d = 0u; d < HD; d++) { fout[qBase + d] = acc[d] * inv; }
  flse[lseIdx] = m + log(l);
}

// ---- backward: prep ----------------------------------------------------------------------------
// work layout (u32 words): [0, R) lse by row r, [R, 2R) delta by row r, [2R, 2R+B) qStart, [2R+B, 2R+2B) kvLen,
// where R = B * Tq * Hq and r = (b * Tq + t) * Hq + h.

@group(0) @binding(1) var<storage, read> pout: array<f32>;
@group(0) @binding(2) var<storage, read> pdout: array<f32>;
@group(0) @binding(3) var<storage, read> plse: array<f32>;
@group(0) @binding(4) var<storage, read> pqStart: array<u32>;
@group(0) @binding(5) var<storage, read> pkvLen: array<u32>;
@group(0) @binding(6) var<storage, read_write> pwork: array<u32>;

@compute @workgroup_size(64)
fn attn_bwd_prep(@builtin(global_invocation_id) gid: vec3u) {
  let r = linearIndex(gid);
  let R = p.B * p.Tq * p.Hq;
  if (r >= R) { return; }
  if (r < p.B) {
    pwork[2u * R + r] = pqStart[r];
    pwork[2u * R + p.B + r] = pkvLen[r];
  }
  let h = r % p.Hq;
  let bt = r / p.Hq;
  let t = bt % p.Tq;
  let b = bt / p.Tq;
  let pos = pqStart[b] + t;
  let kvl = min(pkvLen[b], p.Tk);
  var delta = 0.0;
  var lse = 0.0;
  if (pos < kvl) {
    let base = r * HD;
    for (var d = 0u; d < HD; d++) { delta += pdout[base + d] * pout[base + d]; }
    lse = plse[(b * p.Hq + h) * p.Tq + t];
  }
  pwork[r] = bitcast<u32>(lse);
  pwork[R + r] = bitcast<u32>(delta);
}

// ---- backward: dQ (one invocation per query row) ----------------------------------------------

@group(0) @binding(1) var<storage, read> qq: array<f32>;
@group(0) @binding(2) var<storage, read> qk: array<f32>;
@group(0) @binding(3) var<storage, read> qv_: array<f32>;
@group(0) @binding(4) var<storage, read> qdout: array<f32>;
@group(0) @binding(5) var<storage, read> qwork: array<u32>;
@group(0) @binding(6) var<storage, read_write> qdq: array<f32>;

@compute @workgroup_size(64)
fn attn_bwd_dq(@builtin(global_invocation_id) gid: vec3u) {
  let r = linearIndex(gid);
  let R = p.B * p.Tq * p.Hq;
  if (r >= R) { return; }
  let h = r % p.Hq;
  let bt = r / p.Hq;
  let t = bt % p.Tq;
  let b = bt / p.Tq;
  let hk = h / (p.Hq / p.Hkv);
  let pos = qwork[2u * R + b] + t;
  let kvl = min(qwork[2u * R + p.B + b], p.Tk);
  let qBase = r * HD;
  if (pos >= kvl) {
    for (var d = 0u; d < HD; d++) { qdq[qBase + d] = 0.0; }
    return;
  }
  let lse = bitcast<f32>(qwork[r]);
  let delta = bitcast<f32>(qwork[R + r]);

  var qs: array<f32, MAX_HD>;
  var dO: array<f32, MAX_HD>;
  var acc: array<f32, MAX_HD>;
  for (var d = 0u; d < HD; d++) {
    qs[d] = qq[qBase + d] * p.scale;
    dO[d] = qdout[qBase + d];
    acc[d] = 0.0;
  }
  let kStride = p.Hkv * HD;
  var kBase = (b * p.Tk * p.Hkv + hk) * HD;
  for (var j = 0u; j <= pos; j++) {
    var s = 0.0;
    var dp = 0.0;
    for (var d = 0u; d < HD; d++) {
      s += qs[d] * qk[kBase + d];
      dp += dO[d] * qv_[kBase + d];
    }
    let ds = exp(s - lse) * (dp - delta);
    for (var d = 0u; d < HD; d++) { acc[d] += ds * qk[kBase + d]; }
    kBase += kStride;
  }
  for (var d = 0u; d < HD; d++) { qdq[qBase + d] = acc[d] * p.scale; }
}

// ---- backward: dK, dV (one invocation per key row of a kv head) -------------------------------

@group(0) @binding(1) var<storage, read> kq: array<f32>;
@group(0) @binding(2) var<storage, read> kk: array<f32>;
@group(0) @binding(3) var<storage, read> kv_: array<f32>;
@group(0) @binding(4) var<storage, read> kdout: array<f32>;
@group(0) @binding(5) var<storage, read> kwork: array<u32>;
@group(0) @binding(6) var<storage, read_write> kdk: array<f32>;
@group(0) @binding(7) var<storage, read_write> kdv: array<f32>;

@compute @workgroup_size(64)
fn attn_bwd_dkv(@builtin(global_invocation_id) gid: vec3u) {
  let r = linearIndex(gid); // ((b * Tk + j) * Hkv + hk)
  if (r >= p.B * p.Tk * p.Hkv) { return; }
  let R = p.B * p.Tq * p.Hq;
  let hk = r % p.Hkv;
  let bj = r / p.Hkv;
  let j = bj % p.Tk;
  let b = bj / p.Tk;
  let group = p.Hq / p.Hkv;
  let qs = kwork[2u * R + b];
  let kvl = min(kwork[2u * R + p.B + b], p.Tk);
  let base = r * HD;

  var kj: array<f32, MAX_HD>;
  var vj: array<f32, MAX_HD>;
  var dk: array<f32, MAX_HD>;
  var dv: array<f32, MAX_HD>;
  for (var d = 0u; d < HD; d++) {
    kj[d] = kk[base + d] * p.scale;
    vj[d] = kv_[base + d];
    dk[d] = 0.0;
    dv[d] = 0.0;
  }
  if (j < kvl && kvl > qs) {
    // Valid queries that see key j: pos = qs + i with j <= pos < kvl, 0 <= i < Tq.
    var i = 0u;
    if (j > qs) { i = j - qs; }
    let iEnd = min(p.Tq, kvl - qs);
    for (; i < iEnd; i++) {
      for (var g = 0u; g < group; g++) {
        let row = (b * p.Tq + i) * p.Hq + hk * group + g;
        let qBase = row * HD;
        var s = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < HD; d++) {
          s += kq[qBase + d] * kj[d];
          dp += kdout[qBase + d] * vj[d];
        }
        let pr = exp(s - bitcast<f32>(kwork[row]));
        let ds = pr * (dp - bitcast<f32>(kwork[R + row]));
        for (var d = 0u; d < HD; d++) {
          dv[d] += pr * kdout[qBase + d];
          dk[d] += ds * kq[qBase + d];
        }
      }
    }
  }
  for (var d = 0u; d < HD; d++) {
    kdk[base + d] = dk[d] * p.scale;
    kdv[base + d] = dv[d];
  }
}
