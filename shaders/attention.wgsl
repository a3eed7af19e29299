// Causal grouped-query attention with per-sequence windows, forward and backward.
//
// Layouts (row-major, token-major exactly as the q/k/v projections write them):
//   q, out, dout, dq: [B, Tq, Hq, HD]      k, v, dk, dv: [B, Tk, Hkv, HD]      lse: [B, Hq, Tq]
//   qStart[B], kvLen[B]: u32. Query row t of sequence b sits at absolute position pos = qStart[b] + t
//   and attends keys j <= pos with j < kvLen[b]; a row with pos >= kvLen[b] is padding (output 0,
//   lse 0, no gradient in or out). Query head h reads kv head h / (Hq / Hkv).
//
// Each invocation walks the other side with an online softmax, so no T×T matrix ever exists, and is
// register-blocked so that every element it loads from a storage buffer feeds several FMAs (on
// lavapipe a lane is one SIMD element and per-lane loads are gathers — they, not FMAs, set the pace):
//  - forward and dQ: one invocation per (sequence, token, kv head, block of GB query heads of that kv
//    head) — usually one block holding the whole group — so each key/value row is loaded once per GB
//    heads;
//  - dK/dV: one invocation per (sequence, block of KB keys, kv head), so each query/dout row is
//    loaded once per KB keys; it sums the gradient over all query heads of its kv head.
// Lanes are numbered kv-head-minor. No workgroup memory and no barriers.
//
// The backward needs three dispatches: attn_bwd_prep packs lse, delta = rowsum(dout ∘ out) and the
// per-sequence windows into one u32 work buffer (bit-cast floats), then attn_bwd_dq and attn_bwd_dkv.
// Packing keeps every entry point within 8 storage bindings, WebGPU's default limit.

struct Params {
  B: u32, Tq: u32, Tk: u32, Hq: u32,
  Hkv: u32, gridX: u32, HD: u32, HB: u32, // HB: head blocks of GB query heads per kv head
  scale: f32,
}

// Query heads per invocation pass (forward, dQ) and keys per invocation (dK/dV); GB·HD and KB·HD ≤ BLOCK.
// They are pipeline constants so the small loops over them unroll and their scores stay in registers;
// the head dimension is a runtime value (constant HD loops unrolled inside them made compiles take seconds).
override GB: u32 = 1u;
override KB: u32 = 1u;
override WGS: u32 = 64u;
const BLOCK = 512u;
const MAX_GB = 8u;
const MAX_KB = 8u;
const NEG = -3.0e38;

@group(0) @binding(0) var<uniform> p: Params;

fn linearIndex(gid: vec3u) -> u32 {
  return gid.y * p.gridX * WGS + gid.x;
}

// A block of query heads: invocation r = ((b·Tq + t)·Hkv + hk)·HB + hb handles query heads
// hk·group + hb·GB … of row (b, t) (bt = b·Tq + t), for the forward and the dQ backward alike.
struct QueryBlock { hb: u32, hk: u32, bt: u32, t: u32, b: u32 }
fn queryBlock(r: u32) -> QueryBlock {
  let bt = r / (p.HB * p.Hkv);
  return QueryBlock(r % p.HB, (r / p.HB) % p.Hkv, bt, bt % p.Tq, bt / p.Tq);
}

// ---- forward -----------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> fq: array<f32>;
@group(0) @binding(2) var<storage, read> fk: array<f32>;
@group(0) @binding(3) var<storage, read> fv: array<f32>;
@group(0) @binding(4) var<storage, read> fqStart: array<u32>;
@group(0) @binding(5) var<storage, read> fkvLen: array<u32>;
@group(0) @binding(6) var<storage, read_write> fout: array<f32>;
@group(0) @binding(7) var<storage, read_write> flse: array<f32>;

@compute @workgroup_size(WGS)
fn attn_fwd(@builtin(global_invocation_id) gid: vec3u) {
  let r = linearIndex(gid); // ((b * Tq + t) * Hkv + hk) * HB + hb
  if (r >= p.B * p.Tq * p.Hkv * p.HB) { return; }
  let qb = queryBlock(r);
  let hb = qb.hb;
  let hk = qb.hk;
  let bt = qb.bt;
  let t = qb.t;
  let b = qb.b;
  let group = p.Hq / p.Hkv;
  let pos = fqStart[b] + t;
  let kvl = min(fkvLen[b], p.Tk);
  let rowBase = bt * p.Hq + hk * group; // row of query head (hk, g = 0)
  let kStride = p.Hkv * p.HD;

  let g0 = hb * GB;
  let n = min(GB, group - g0);
  if (pos >= kvl) {
    for (var gi = 0u; gi < n; gi++) {
      let h = hk * group + g0 + gi;
      for (var d = 0u; d < p.HD; d++) { fout[(rowBase + g0 + gi) * p.HD + d] = 0.0; }
      flse[(b * p.Hq + h) * p.Tq + t] = 0.0;
    }
    return;
  }
  var qv: array<f32, BLOCK>;
  var acc: array<f32, BLOCK>;
  var m: array<f32, MAX_GB>;
  var l: array<f32, MAX_GB>;
  for (var gi = 0u; gi < GB; gi++) {
    let qBase = (rowBase + g0 + min(gi, n - 1u)) * p.HD;
    for (var d = 0u; d < p.HD; d++) {
      qv[gi * p.HD + d] = fq[qBase + d] * p.scale;
      acc[gi * p.HD + d] = 0.0;
    }
    m[gi] = NEG;
    l[gi] = 0.0;
  }
  var kBase = (b * p.Tk * p.Hkv + hk) * p.HD;
  for (var j = 0u; j <= pos; j++) {
    var s: array<f32, MAX_GB>;
    for (var gi = 0u; gi < GB; gi++) { s[gi] = 0.0; }
    for (var d = 0u; d < p.HD; d++) {
      let kd = fk[kBase + d];
      for (var gi = 0u; gi < GB; gi++) { s[gi] += qv[gi * p.HD + d] * kd; }
    }
    var e: array<f32, MAX_GB>;
    for (var gi = 0u; gi < GB; gi++) {
      if (s[gi] > m[gi]) {
        // A new maximum: rescale what was accumulated (rare after the first few keys).
        let c = exp(m[gi] - s[gi]);
        l[gi] *= c;
        for (var d = 0u; d < p.HD; d++) { acc[gi * p.HD + d] *= c; }
        m[gi] = s[gi];
      }
      e[gi] = exp(s[gi] - m[gi]);
      l[gi] += e[gi];
    }
    for (var d = 0u; d < p.HD; d++) {
      let vd = fv[kBase + d];
      for (var gi = 0u; gi < GB; gi++) { acc[gi * p.HD + d] += e[gi] * vd; }
    }
    kBase += kStride;
  }
  for (var gi = 0u; gi < n; gi++) {
    let h = hk * group + g0 + gi;
    let inv = 1.0 / l[gi];
    for (var d = 0u; d < p.HD; d++) { fout[(rowBase + g0 + gi) * p.HD + d] = acc[gi * p.HD + d] * inv; }
    flse[(b * p.Hq + h) * p.Tq + t] = m[gi] + log(l[gi]);
  }
}

// ---- backward: prep ----------------------------------------------------------------------------
// work layout (u32 words): [0, R) lse by row r, [R, 2R) delta by row r, [2R, 2R+B) qStart, [2R+B, 2R+2B) kvLen,
// where R = B * Tq * Hq and r = (b * Tq + t) * Hq + h. Padding rows get lse = delta = 0.

@group(0) @binding(1) var<storage, read> pout: array<f32>;
@group(0) @binding(2) var<storage, read> pdout: array<f32>;
@group(0) @binding(3) var<storage, read> plse: array<f32>;
@group(0) @binding(4) var<storage, read> pqStart: array<u32>;
@group(0) @binding(5) var<storage, read> pkvLen: array<u32>;
@group(0) @binding(6) var<storage, read_write> pwork: array<u32>;

@compute @workgroup_size(WGS)
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
    let base = r * p.HD;
    for (var d = 0u; d < p.HD; d++) { delta += pdout[base + d] * pout[base + d]; }
    lse = plse[(b * p.Hq + h) * p.Tq + t];
  }
  pwork[r] = bitcast<u32>(lse);
  pwork[R + r] = bitcast<u32>(delta);
}

// ---- backward: dQ ------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> qq: array<f32>;
@group(0) @binding(2) var<storage, read> qk: array<f32>;
@group(0) @binding(3) var<storage, read> qv_: array<f32>;
@group(0) @binding(4) var<storage, read> qdout: array<f32>;
@group(0) @binding(5) var<storage, read> qwork: array<u32>;
@group(0) @binding(6) var<storage, read_write> qdq: array<f32>;

@compute @workgroup_size(WGS)
fn attn_bwd_dq(@builtin(global_invocation_id) gid: vec3u) {
  let r = linearIndex(gid); // ((b * Tq + t) * Hkv + hk) * HB + hb
  if (r >= p.B * p.Tq * p.Hkv * p.HB) { return; }
  let R = p.B * p.Tq * p.Hq;
  let qb = queryBlock(r);
  let hb = qb.hb;
  let hk = qb.hk;
  let bt = qb.bt;
  let t = qb.t;
  let b = qb.b;
  let group = p.Hq / p.Hkv;
  let pos = qwork[2u * R + b] + t;
  let kvl = min(qwork[2u * R + p.B + b], p.Tk);
  let rowBase = bt * p.Hq + hk * group;
  let kStride = p.Hkv * p.HD;

  let g0 = hb * GB;
  let n = min(GB, group - g0);
  if (pos >= kvl) {
    for (var gi = 0u; gi < n; gi++) {
      for (var d = 0u; d < p.HD; d++) { qdq[(rowBase + g0 + gi) * p.HD + d] = 0.0; }
    }
    return;
  }
  var qs: array<f32, BLOCK>;
  var dO: array<f32, BLOCK>;
  var acc: array<f32, BLOCK>;
  var lse: array<f32, MAX_GB>;
  var delta: array<f32, MAX_GB>;
  for (var gi = 0u; gi < GB; gi++) {
    let row = rowBase + g0 + min(gi, n - 1u);
    for (var d = 0u; d < p.HD; d++) {
      qs[gi * p.HD + d] = qq[row * p.HD + d] * p.scale;
      dO[gi * p.HD + d] = qdout[row * p.HD + d];
      acc[gi * p.HD + d] = 0.0;
    }
    lse[gi] = bitcast<f32>(qwork[row]);
    delta[gi] = bitcast<f32>(qwork[R + row]);
  }
  var kBase = (b * p.Tk * p.Hkv + hk) * p.HD;
  for (var j = 0u; j <= pos; j++) {
    var s: array<f32, MAX_GB>;
    var dp: array<f32, MAX_GB>;
    for (var gi = 0u; gi < GB; gi++) { s[gi] = 0.0; dp[gi] = 0.0; }
    for (var d = 0u; d < p.HD; d++) {
      let kd = qk[kBase + d];
      let vd = qv_[kBase + d];
      for (var gi = 0u; gi < GB; gi++) {
        s[gi] += qs[gi * p.HD + d] * kd;
        dp[gi] += dO[gi * p.HD + d] * vd;
      }
    }
    var ds: array<f32, MAX_GB>;
    for (var gi = 0u; gi < GB; gi++) { ds[gi] = exp(s[gi] - lse[gi]) * (dp[gi] - delta[gi]); }
    for (var d = 0u; d < p.HD; d++) {
      let kd = qk[kBase + d];
      for (var gi = 0u; gi < GB; gi++) { acc[gi * p.HD + d] += ds[gi] * kd; }
    }
    kBase += kStride;
  }
  for (var gi = 0u; gi < n; gi++) {
    for (var d = 0u; d < p.HD; d++) { qdq[(rowBase + g0 + gi) * p.HD + d] = acc[gi * p.HD + d] * p.scale; }
  }
}

// ---- backward: dK, dV --------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> kq: array<f32>;
@group(0) @binding(2) var<storage, read> kk: array<f32>;
@group(0) @binding(3) var<storage, read> kv_: array<f32>;
@group(0) @binding(4) var<storage, read> kdout: array<f32>;
@group(0) @binding(5) var<storage, read> kwork: array<u32>;
@group(0) @binding(6) var<storage, read_write> kdk: array<f32>;
@group(0) @binding(7) var<storage, read_write> kdv: array<f32>;

@compute @workgroup_size(WGS)
fn attn_bwd_dkv(@builtin(global_invocation_id) gid: vec3u) {
  let nBlocks = (p.Tk + KB - 1u) / KB;
  let r = linearIndex(gid); // (b * nBlocks + jb) * Hkv + hk
  if (r >= p.B * nBlocks * p.Hkv) { return; }
  let R = p.B * p.Tq * p.Hq;
  let hk = r % p.Hkv;
  let bj = r / p.Hkv;
  let j0 = (bj % nBlocks) * KB;
  let b = bj / nBlocks;
  let group = p.Hq / p.Hkv;
  let qs = kwork[2u * R + b];
  let kvl = min(kwork[2u * R + p.B + b], p.Tk);
  let nk = min(KB, p.Tk - j0); // keys of this block that exist
  let kStride = p.Hkv * p.HD;
  let base0 = ((b * p.Tk + j0) * p.Hkv + hk) * p.HD;

  var kj: array<f32, BLOCK>;
  var vj: array<f32, BLOCK>;
  var dk: array<f32, BLOCK>;
  var dv: array<f32, BLOCK>;
  for (var jj = 0u; jj < KB; jj++) {
    let base = base0 + min(jj, nk - 1u) * kStride;
    for (var d = 0u; d < p.HD; d++) {
      kj[jj * p.HD + d] = kk[base + d] * p.scale;
      vj[jj * p.HD + d] = kv_[base + d];
      dk[jj * p.HD + d] = 0.0;
      dv[jj * p.HD + d] = 0.0;
    }
  }
  // Valid queries that see some key of this block: pos = qs + i with j0 <= pos < kvl, i < Tq.
  var i = 0u;
  if (j0 > qs) { i = j0 - qs; }
  var iEnd = 0u;
  if (kvl > qs && j0 < kvl) { iEnd = min(p.Tq, kvl - qs); }
  for (; i < iEnd; i++) {
    let pos = qs + i;
    for (var g = 0u; g < group; g++) {
      let row = (b * p.Tq + i) * p.Hq + hk * group + g;
      let qBase = row * p.HD;
      let lse = bitcast<f32>(kwork[row]);
      let delta = bitcast<f32>(kwork[R + row]);
      var s: array<f32, MAX_KB>;
      var dp: array<f32, MAX_KB>;
      for (var jj = 0u; jj < KB; jj++) { s[jj] = 0.0; dp[jj] = 0.0; }
      for (var d = 0u; d < p.HD; d++) {
        let qd = kq[qBase + d];
        let od = kdout[qBase + d];
        for (var jj = 0u; jj < KB; jj++) {
          s[jj] += qd * kj[jj * p.HD + d];
          dp[jj] += od * vj[jj * p.HD + d];
        }
      }
      var pr: array<f32, MAX_KB>;
      var ds: array<f32, MAX_KB>;
      for (var jj = 0u; jj < KB; jj++) {
        // Key j0 + jj is visible to this row only when it is not after it (causal).
        pr[jj] = select(0.0, exp(s[jj] - lse), j0 + jj <= pos);
        ds[jj] = pr[jj] * (dp[jj] - delta);
      }
      for (var d = 0u; d < p.HD; d++) {
        let qd = kq[qBase + d];
        let od = kdout[qBase + d];
        for (var jj = 0u; jj < KB; jj++) {
          dv[jj * p.HD + d] += pr[jj] * od;
          dk[jj * p.HD + d] += ds[jj] * qd;
        }
      }
    }
  }
  for (var jj = 0u; jj < nk; jj++) {
    let base = base0 + jj * kStride;
    let valid = j0 + jj < kvl;
    for (var d = 0u; d < p.HD; d++) {
      // select, not a multiply by 0: keys past kvLen may be uninitialised (NaN) cache memory.
      kdk[base + d] = select(0.0, dk[jj * p.HD + d] * p.scale, valid);
      kdv[base + d] = select(0.0, dv[jj * p.HD + d], valid);
    }
  }
}
