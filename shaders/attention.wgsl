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

// The head dimension as a pipeline constant when the host sets it (HEAD_DIM > 0), else p.HD: with a constant, the
// loops over a row have a constant trip count, the compiler unrolls them and the row arrays (q, acc, k, v) stay in
// registers; with a uniform bound those arrays are indexed at run time and live in per-lane memory.
override HEAD_DIM: u32 = 0u;
fn headDim() -> u32 {
  return select(p.HD, HEAD_DIM, HEAD_DIM > 0u);
}

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
  let hd = headDim();
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
  let kStride = p.Hkv * hd;

  let g0 = hb * GB;
  let n = min(GB, group - g0);
  if (pos >= kvl) {
    for (var gi = 0u; gi < n; gi++) {
      let h = hk * group + g0 + gi;
      for (var d = 0u; d < hd; d++) { fout[(rowBase + g0 + gi) * hd + d] = 0.0; }
      flse[(b * p.Hq + h) * p.Tq + t] = 0.0;
    }
    return;
  }
  var qv: array<f32, BLOCK>;
  var acc: array<f32, BLOCK>;
  var m: array<f32, MAX_GB>;
  var l: array<f32, MAX_GB>;
  for (var gi = 0u; gi < GB; gi++) {
    let qBase = (rowBase + g0 + min(gi, n - 1u)) * hd;
    for (var d = 0u; d < hd; d++) {
      qv[gi * hd + d] = fq[qBase + d] * p.scale;
      acc[gi * hd + d] = 0.0;
    }
    m[gi] = NEG;
    l[gi] = 0.0;
  }
  var kBase = (b * p.Tk * p.Hkv + hk) * hd;
  for (var j = 0u; j <= pos; j++) {
    var s: array<f32, MAX_GB>;
    for (var gi = 0u; gi < GB; gi++) { s[gi] = 0.0; }
    for (var d = 0u; d < hd; d++) {
      let kd = fk[kBase + d];
      for (var gi = 0u; gi < GB; gi++) { s[gi] += qv[gi * hd + d] * kd; }
    }
    var e: array<f32, MAX_GB>;
    for (var gi = 0u; gi < GB; gi++) {
      if (s[gi] > m[gi]) {
        // A new maximum: rescale what was accumulated (rare after the first few keys).
        let c = exp(m[gi] - s[gi]);
        l[gi] *= c;
        for (var d = 0u; d < hd; d++) { acc[gi * hd + d] *= c; }
        m[gi] = s[gi];
      }
      e[gi] = exp(s[gi] - m[gi]);
      l[gi] += e[gi];
    }
    for (var d = 0u; d < hd; d++) {
      let vd = fv[kBase + d];
      for (var gi = 0u; gi < GB; gi++) { acc[gi * hd + d] += e[gi] * vd; }
    }
    kBase += kStride;
  }
  for (var gi = 0u; gi < n; gi++) {
    let h = hk * group + g0 + gi;
    let inv = 1.0 / l[gi];
    for (var d = 0u; d < hd; d++) { fout[(rowBase + g0 + gi) * hd + d] = acc[gi * hd + d] * inv; }
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

// ---- SUBGROUP KERNELS (src/ops/attention.ts splits the file here) -------------------------------
//
// The same three computations for adapters with `subgroups` (≥ 8 lanes), head dims a multiple of 4 up to
// SG_MAX_HD4·4, and enough rows to fill a workgroup. Why: on lavapipe a storage load costs a per-lane scalar
// sequence (~20 multiply-adds' worth), moving a value between lanes is one permute, and the kernels above load
// every key element once per lane. Here a lane owns one row (a query row for the forward and dQ, a key row for
// dK/dV) and the other side is walked in blocks of 8: lane i of each 8 loads row i of the block as vec4 chunks and
// subgroupBroadcast shares it, so each element is loaded once per 8 lanes, four at a time. The online softmax
// rescales once per block, not once per key.
//
// A workgroup holds 64 consecutive rows of one (sequence, head); each subgroup walks blocks up to the furthest row
// any of its lanes needs (subgroupMax), masking the rest, so every lane reaches every broadcast. Lanes 8.. of a
// wider subgroup repeat the loads of lanes 0..7. (The block loops end at a subgroupMax, a value the same in every
// lane that WGSL's uniformity analysis cannot prove so; src/gpu/shaders.ts turns that diagnostic off for this module.)

const SG_ROWS = 64u;
const SG_MAX_HD4 = 32u;

alias Bcast = array<vec4f, 8>;
alias Row4 = array<vec4f, SG_MAX_HD4>;

// Every lane's copy of the chunks lanes 0..7 hold (subgroupBroadcast takes a constant lane).
fn bcast8(x: vec4f) -> Bcast {
  return Bcast(subgroupBroadcast(x, 0u), subgroupBroadcast(x, 1u), subgroupBroadcast(x, 2u), subgroupBroadcast(x, 3u),
               subgroupBroadcast(x, 4u), subgroupBroadcast(x, 5u), subgroupBroadcast(x, 6u), subgroupBroadcast(x, 7u));
}

fn bcast8f(x: f32) -> array<f32, 8> {
  return array<f32, 8>(subgroupBroadcast(x, 0u), subgroupBroadcast(x, 1u), subgroupBroadcast(x, 2u), subgroupBroadcast(x, 3u),
                       subgroupBroadcast(x, 4u), subgroupBroadcast(x, 5u), subgroupBroadcast(x, 6u), subgroupBroadcast(x, 7u));
}

// A workgroup's rows: tile `tile` (64 rows) of the sequence/head pair `pair`, from a linear workgroup index.
struct SgTile { tile: u32, pair: u32 }
fn sgTile(wid: vec3u, rows: u32) -> SgTile {
  let tiles = (rows + SG_ROWS - 1u) / SG_ROWS;
  let w = wid.y * p.gridX + wid.x;
  return SgTile(w % tiles, w / tiles);
}

@group(0) @binding(1) var<storage, read> sq: array<vec4f>;
@group(0) @binding(2) var<storage, read> sk: array<vec4f>;
@group(0) @binding(3) var<storage, read> sv: array<vec4f>;

// ---- forward: workgroups over (b, h, tile of 64 query rows) ----

@group(0) @binding(4) var<storage, read> sqStart: array<u32>;
@group(0) @binding(5) var<storage, read> skvLen: array<u32>;
@group(0) @binding(6) var<storage, read_write> sout: array<f32>;
@group(0) @binding(7) var<storage, read_write> slse: array<f32>;

@compute @workgroup_size(SG_ROWS)
fn attn_fwd_sg(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let tl = sgTile(wid, p.Tq);
  let h = tl.pair % p.Hq;
  let b = tl.pair / p.Hq;
  if (b >= p.B) { return; } // whole workgroup: uniform
  let hk = h / (p.Hq / p.Hkv);
  let t = tl.tile * SG_ROWS + lid.x;
  let pos = sqStart[b] + t;
  let kvl = min(skvLen[b], p.Tk);
  let valid = t < p.Tq && pos < kvl;
  let hd4 = headDim() / 4u;
  let qRow = (b * p.Tq + min(t, p.Tq - 1u)) * p.Hq + h; // clamped: lanes past Tq load a real row and store nothing
  var q: Row4;
  var acc: Row4;
  for (var c = 0u; c < hd4; c++) {
    q[c] = sq[qRow * hd4 + c] * p.scale;
    acc[c] = vec4f(0.0);
  }
  var m = NEG;
  var l = 0.0;
  let jEnd = subgroupMax(select(0u, pos + 1u, valid)); // keys [0, jEnd) cover every valid lane; jEnd ≤ kvl
  let kStride4 = p.Hkv * hd4;
  let mine = lane % 8u;
  for (var j0 = 0u; j0 < jEnd; j0 += 8u) {
    let jl = j0 + mine;
    let has = jl < jEnd;
    let kBase = ((b * p.Tk + min(jl, jEnd - 1u)) * p.Hkv + hk) * hd4;
    var s = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (var c = 0u; c < hd4; c++) {
      let kb = bcast8(select(vec4f(0.0), sk[kBase + c], has));
      for (var kk = 0u; kk < 8u; kk++) { s[kk] += dot(q[c], kb[kk]); }
    }
    var mNew = m;
    for (var kk = 0u; kk < 8u; kk++) {
      s[kk] = select(NEG, s[kk], valid && j0 + kk <= pos);
      mNew = max(mNew, s[kk]);
    }
    var e: array<f32, 8>;
    let corr = exp(m - mNew);
    l *= corr;
    for (var kk = 0u; kk < 8u; kk++) {
      e[kk] = select(0.0, exp(s[kk] - mNew), s[kk] > NEG);
      l += e[kk];
    }
    m = mNew;
    for (var c = 0u; c < hd4; c++) {
      let vb = bcast8(select(vec4f(0.0), sv[kBase + c], has));
      var a = acc[c] * corr;
      for (var kk = 0u; kk < 8u; kk++) { a += e[kk] * vb[kk]; }
      acc[c] = a;
    }
  }
  if (t >= p.Tq) { return; }
  let inv = select(0.0, 1.0 / l, valid);
  let oBase = ((b * p.Tq + t) * p.Hq + h) * p.HD;
  for (var c = 0u; c < hd4; c++) {
    let o = acc[c] * inv;
    for (var i = 0u; i < 4u; i++) { sout[oBase + c * 4u + i] = o[i]; }
  }
  slse[(b * p.Hq + h) * p.Tq + t] = select(0.0, m + log(l), valid);
}

// ---- backward dQ: workgroups over (b, h, tile of 64 query rows) ----

@group(0) @binding(4) var<storage, read> sdout: array<vec4f>;
@group(0) @binding(5) var<storage, read> swork: array<u32>;
@group(0) @binding(6) var<storage, read_write> sdq: array<f32>;

@compute @workgroup_size(SG_ROWS)
fn attn_bwd_dq_sg(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let tl = sgTile(wid, p.Tq);
  let h = tl.pair % p.Hq;
  let b = tl.pair / p.Hq;
  if (b >= p.B) { return; }
  let R = p.B * p.Tq * p.Hq;
  let hk = h / (p.Hq / p.Hkv);
  let t = tl.tile * SG_ROWS + lid.x;
  let pos = swork[2u * R + b] + t;
  let kvl = min(swork[2u * R + p.B + b], p.Tk);
  let valid = t < p.Tq && pos < kvl;
  let hd4 = headDim() / 4u;
  let row = (b * p.Tq + min(t, p.Tq - 1u)) * p.Hq + h;
  var q: Row4;
  var dO: Row4;
  var acc: Row4;
  for (var c = 0u; c < hd4; c++) {
    q[c] = select(vec4f(0.0), sq[row * hd4 + c] * p.scale, valid);
    dO[c] = select(vec4f(0.0), sdout[row * hd4 + c], valid);
    acc[c] = vec4f(0.0);
  }
  let lse = bitcast<f32>(swork[row]);
  let delta = bitcast<f32>(swork[R + row]);
  let jEnd = subgroupMax(select(0u, pos + 1u, valid));
  let mine = lane % 8u;
  for (var j0 = 0u; j0 < jEnd; j0 += 8u) {
    let jl = j0 + mine;
    let has = jl < jEnd;
    let kBase = ((b * p.Tk + min(jl, jEnd - 1u)) * p.Hkv + hk) * hd4;
    var s = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    var dp = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (var c = 0u; c < hd4; c++) {
      let kb = bcast8(select(vec4f(0.0), sk[kBase + c], has));
      let vb = bcast8(select(vec4f(0.0), sv[kBase + c], has));
      for (var kk = 0u; kk < 8u; kk++) {
        s[kk] += dot(q[c], kb[kk]);
        dp[kk] += dot(dO[c], vb[kk]);
      }
    }
    var ds: array<f32, 8>;
    for (var kk = 0u; kk < 8u; kk++) {
      ds[kk] = select(0.0, exp(s[kk] - lse) * (dp[kk] - delta), valid && j0 + kk <= pos);
    }
    for (var c = 0u; c < hd4; c++) {
      let kb = bcast8(select(vec4f(0.0), sk[kBase + c], has));
      var a = acc[c];
      for (var kk = 0u; kk < 8u; kk++) { a += ds[kk] * kb[kk]; }
      acc[c] = a;
    }
  }
  if (t >= p.Tq) { return; }
  let oBase = ((b * p.Tq + t) * p.Hq + h) * p.HD;
  for (var c = 0u; c < hd4; c++) {
    let o = acc[c] * p.scale;
    for (var i = 0u; i < 4u; i++) { sdq[oBase + c * 4u + i] = o[i]; }
  }
}

// ---- backward dK, dV: workgroups over (b, kv head, tile of 64 key rows); each lane sums over its group's heads ----

@group(0) @binding(6) var<storage, read_write> sdk: array<f32>;
@group(0) @binding(7) var<storage, read_write> sdv: array<f32>;

@compute @workgroup_size(SG_ROWS)
fn attn_bwd_dkv_sg(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let tl = sgTile(wid, p.Tk);
  let hk = tl.pair % p.Hkv;
  let b = tl.pair / p.Hkv;
  if (b >= p.B) { return; }
  let R = p.B * p.Tq * p.Hq;
  let group = p.Hq / p.Hkv;
  let j = tl.tile * SG_ROWS + lid.x;
  let qs = swork[2u * R + b];
  let kvl = min(swork[2u * R + p.B + b], p.Tk);
  let valid = j < kvl;
  let hd4 = headDim() / 4u;
  let kRow = (b * p.Tk + min(j, p.Tk - 1u)) * p.Hkv + hk;
  var k: Row4;
  var v: Row4;
  var dk: Row4;
  var dv: Row4;
  for (var c = 0u; c < hd4; c++) {
    // select, not a multiply by 0: keys past kvLen may be uninitialised (NaN) cache memory.
    k[c] = select(vec4f(0.0), sk[kRow * hd4 + c] * p.scale, valid);
    v[c] = select(vec4f(0.0), sv[kRow * hd4 + c], valid);
    dk[c] = vec4f(0.0);
    dv[c] = vec4f(0.0);
  }
  // Query rows that see a key of this subgroup: position qs + i ≥ the subgroup's first valid key, below kvl and Tq.
  let jMin = subgroupMin(select(0xffffffffu, j, valid));
  let iEnd = select(0u, min(p.Tq, kvl - qs), kvl > qs && jMin != 0xffffffffu);
  var iStart = 0u;
  if (jMin > qs) { iStart = jMin - qs; }
  let mine = lane % 8u;
  for (var i0 = iStart; i0 < iEnd; i0 += 8u) {
    let il = i0 + mine;
    let has = il < iEnd;
    for (var g = 0u; g < group; g++) {
      let row = (b * p.Tq + min(il, iEnd - 1u)) * p.Hq + hk * group + g;
      let lseB = bcast8f(bitcast<f32>(swork[row]));
      let deltaB = bcast8f(bitcast<f32>(swork[R + row]));
      var s = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
      var dp = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
      for (var c = 0u; c < hd4; c++) {
        let qb = bcast8(select(vec4f(0.0), sq[row * hd4 + c], has));
        let ob = bcast8(select(vec4f(0.0), sdout[row * hd4 + c], has));
        for (var kk = 0u; kk < 8u; kk++) {
          s[kk] += dot(k[c], qb[kk]);
          dp[kk] += dot(v[c], ob[kk]);
        }
      }
      var pr: array<f32, 8>;
      var ds: array<f32, 8>;
      for (var kk = 0u; kk < 8u; kk++) {
        // Query i0 + kk sees this key when it exists and is not before it (causal).
        let sees = valid && i0 + kk < iEnd && j <= qs + i0 + kk;
        pr[kk] = select(0.0, exp(s[kk] - lseB[kk]), sees);
        ds[kk] = pr[kk] * (dp[kk] - deltaB[kk]);
      }
      for (var c = 0u; c < hd4; c++) {
        let qb = bcast8(select(vec4f(0.0), sq[row * hd4 + c], has));
        let ob = bcast8(select(vec4f(0.0), sdout[row * hd4 + c], has));
        var a = dv[c];
        var d = dk[c];
        for (var kk = 0u; kk < 8u; kk++) {
          a += pr[kk] * ob[kk];
          d += ds[kk] * qb[kk];
        }
        dv[c] = a;
        dk[c] = d;
      }
    }
  }
  if (j >= p.Tk) { return; }
  let oBase = ((b * p.Tk + j) * p.Hkv + hk) * p.HD;
  for (var c = 0u; c < hd4; c++) {
    let a = dk[c] * p.scale;
    let d = dv[c];
    for (var i = 0u; i < 4u; i++) {
      sdk[oBase + c * 4u + i] = select(0.0, a[i], valid);
      sdv[oBase + c * 4u + i] = select(0.0, d[i], valid);
    }
  }
}

// ---- forward, keys split over a subgroup (attn_fwd_rows_sg: decode and short prefills) ----------
// attn_fwd walks each row's keys in one invocation: a decode step of 32 sequences with 2 kv heads is 64 invocations,
// each a serial pass over every key, however long the context. Here a workgroup of RL = 8 lanes (one subgroup on any
// adapter with subgroups of ≥ 8) takes one block of query heads of one row: lane i keeps an online softmax over keys
// i, i + 8, …, reading q, k and v as vec4, and the lanes' states are merged at the end with subgroup reductions (the
// maximum, then the rescaled sums). No workgroup memory and no barriers (on lavapipe a barrier switches every SIMD group
// of the workgroup). Needs a head dimension that is a multiple of 4 (HEAD_DIM set). Same contract as attn_fwd.
const RL = 8u;
@group(0) @binding(1) var<storage, read> rq4: array<vec4f>;
@group(0) @binding(2) var<storage, read> rk4: array<vec4f>;
@group(0) @binding(3) var<storage, read> rv4: array<vec4f>;
@group(0) @binding(6) var<storage, read_write> rout4: array<vec4f>;

// The query row of a decode kernel's workgroup r = ((b * Tq + t) * Hkv + hk) * HB + hb: its sequence b, token t, kv
// head hk, the block's first query head g0 (of the kv head's group) and its n heads, the output row of head g0, and
// the row's absolute position. `skip`: no work — r is past the grid, or the row is padding (a position past its
// sequence's length), whose outputs (0, and lse 0) startDecodeRow has written.
struct DecodeRow { b: u32, t: u32, hk: u32, group: u32, g0: u32, n: u32, rowBase: u32, pos: u32, skip: bool }

fn startDecodeRow(r: u32, lane: u32) -> DecodeRow {
  if (r >= p.B * p.Tq * p.Hkv * p.HB) { return DecodeRow(0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, true); }
  let qb = queryBlock(r);
  let group = p.Hq / p.Hkv;
  let g0 = qb.hb * GB;
  let pos = fqStart[qb.b] + qb.t;
  let d = DecodeRow(qb.b, qb.t, qb.hk, group, g0, min(GB, group - g0), qb.bt * p.Hq + qb.hk * group + g0, pos, pos >= min(fkvLen[qb.b], p.Tk));
  if (d.skip) {
    let D4 = HEAD_DIM / 4u;
    for (var i = lane; i < d.n * D4; i += RL) { rout4[d.rowBase * D4 + i] = vec4f(0.0); }
    if (lane < d.n) { flse[decodeLseIndex(d, lane)] = 0.0; }
  }
  return d;
}

// Where head g0 + gi of the row keeps its log-sum-exp.
fn decodeLseIndex(d: DecodeRow, gi: u32) -> u32 {
  return (d.b * p.Hq + d.hk * d.group + d.g0 + gi) * p.Tq + d.t;
}

@compute @workgroup_size(RL)
fn attn_fwd_rows_sg(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let d = startDecodeRow(wid.x + wid.y * nwg.x, lane); // the same row for the whole workgroup
  if (d.skip) { return; }
  let b = d.b;
  let hk = d.hk;
  let n = d.n;
  let D4 = HEAD_DIM / 4u;
  let rowBase = d.rowBase;
  let pos = d.pos;
  var q4: array<vec4f, 128>; // GB · HD / 4 ≤ BLOCK / 4
  var acc: array<vec4f, 128>;
  var m: array<f32, MAX_GB>;
  var l: array<f32, MAX_GB>;
  for (var gi = 0u; gi < GB; gi++) {
    for (var e = 0u; e < D4; e++) {
      q4[gi * D4 + e] = rq4[(rowBase + min(gi, n - 1u)) * D4 + e] * p.scale;
      acc[gi * D4 + e] = vec4f(0.0);
    }
    m[gi] = NEG;
    l[gi] = 0.0;
  }
  let stride4 = p.Hkv * D4;
  for (var j = lane; j <= pos; j += RL) {
    let kb = (b * p.Tk + j) * stride4 + hk * D4;
    var s: array<f32, MAX_GB>;
    for (var gi = 0u; gi < GB; gi++) { s[gi] = 0.0; }
    for (var e = 0u; e < D4; e++) {
      let k4 = rk4[kb + e];
      for (var gi = 0u; gi < GB; gi++) { s[gi] += dot(q4[gi * D4 + e], k4); }
    }
    var w: array<f32, MAX_GB>;
    for (var gi = 0u; gi < GB; gi++) {
      if (s[gi] > m[gi]) {
        let c = exp(m[gi] - s[gi]);
        l[gi] *= c;
        for (var e = 0u; e < D4; e++) { acc[gi * D4 + e] *= c; }
        m[gi] = s[gi];
      }
      w[gi] = exp(s[gi] - m[gi]);
      l[gi] += w[gi];
    }
    for (var e = 0u; e < D4; e++) {
      let v4 = rv4[kb + e];
      for (var gi = 0u; gi < GB; gi++) { acc[gi * D4 + e] += w[gi] * v4; }
    }
  }
  // Merge the lanes: rescale each to the subgroup's maximum (a lane without keys has m = NEG, weight 0).
  for (var gi = 0u; gi < n; gi++) {
    let mx = subgroupMax(m[gi]);
    let c = exp(m[gi] - mx);
    let sum = subgroupAdd(l[gi] * c);
    for (var e = 0u; e < D4; e++) {
      let o = subgroupAdd(acc[gi * D4 + e] * c);
      if (lane == e % RL) { rout4[(rowBase + gi) * D4 + e] = o / sum; }
    }
    if (lane == 0u) { flse[decodeLseIndex(d, gi)] = mx + log(sum); }
  }
}

// ---- forward, head dimension split over a subgroup (attn_fwd_dims_sg: decode and short prefills, hd ≥ 64) ----------
// attn_fwd_rows_sg keeps a whole query row per lane: GB·hd query values and GB·hd accumulators, up to 1,024 floats,
// which no register file holds (on lavapipe they go to the stack and every FMA reads and writes them there: 3–7× slower
// than this kernel at Qwen2.5-0.5B's 7 query heads of 64, bench/attention.ts). Here the 8 lanes of a workgroup split
// the head dimension instead: lane i owns the vec4 columns i, i + 8, … (E = ceil(HD/32) of them) of every query head of
// the block, so it holds GB·E vec4 of q and of the output (≤ DIMS_MAX). Keys go in blocks of 8, all lanes on the same
// key: a lane's partial dot products are summed over the subgroup with constant-lane broadcasts (one permute each on
// lavapipe), lane kk keeps the score of key kk, one exp per lane gives the block's 8 weights, and broadcasts hand each
// weight to every lane for its columns of the value rows. The running maximum is the same in every lane; each lane sums
// the weights of its own keys and the sums are added at the end. Every key and value element is read once per row and
// kv head, as in attn_fwd_rows_sg. Same contract as attn_fwd.
const DIMS_MAX = 16u; // GB · E vec4 per lane (src/ops/attention.ts caps GB to fit)

@compute @workgroup_size(RL)
fn attn_fwd_dims_sg(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let d = startDecodeRow(wid.x + wid.y * nwg.x, lane); // the same row for the whole workgroup
  if (d.skip) { return; }
  let n = d.n;
  let D4 = HEAD_DIM / 4u;
  let E = (D4 + RL - 1u) / RL;
  let rowBase = d.rowBase;
  let pos = d.pos;
  // Columns past the head (lanes ≥ D4 when HD < 32, or the last lanes' second vec4) hold q = 0: their partial dot
  // products are 0, and they are not stored. Their loads are clamped into the row.
  var q4: array<vec4f, DIMS_MAX>;
  var acc: array<vec4f, DIMS_MAX>;
  var m: array<f32, MAX_GB>; // running maximum score, the same in every lane
  var l: array<f32, MAX_GB>; // this lane's keys' weights, rescaled to m
  for (var gi = 0u; gi < GB; gi++) {
    for (var i = 0u; i < E; i++) {
      let e = lane + i * RL;
      q4[gi * E + i] = select(vec4f(0.0), rq4[(rowBase + min(gi, n - 1u)) * D4 + min(e, D4 - 1u)] * p.scale, e < D4);
      acc[gi * E + i] = vec4f(0.0);
    }
    m[gi] = NEG;
    l[gi] = 0.0;
  }
  let stride4 = p.Hkv * D4;
  let kvBase = d.b * p.Tk * stride4 + d.hk * D4;
  for (var j0 = 0u; j0 <= pos; j0 += RL) {
    // Scores of keys j0 .. j0 + 7 (those past pos are skipped): lane kk keeps key kk's, and every lane the block's maximum.
    var s: array<f32, MAX_GB>;
    var bm: array<f32, MAX_GB>;
    for (var gi = 0u; gi < GB; gi++) { s[gi] = NEG; bm[gi] = NEG; }
    for (var kk = 0u; kk < RL; kk++) {
      let kb = kvBase + min(j0 + kk, pos) * stride4;
      var part: array<f32, MAX_GB>;
      for (var gi = 0u; gi < GB; gi++) { part[gi] = 0.0; }
      for (var i = 0u; i < E; i++) {
        let k4 = rk4[kb + min(lane + i * RL, D4 - 1u)];
        for (var gi = 0u; gi < GB; gi++) { part[gi] += dot(q4[gi * E + i], k4); }
      }
      let seen = j0 + kk <= pos;
      for (var gi = 0u; gi < GB; gi++) {
        let x = bcast8f(part[gi]);
        let score = ((x[0] + x[1]) + (x[2] + x[3])) + ((x[4] + x[5]) + (x[6] + x[7]));
        s[gi] = select(s[gi], score, seen && lane == kk);
        bm[gi] = select(bm[gi], max(bm[gi], score), seen);
      }
    }
    // Online softmax over the block: rescale to the new maximum, weigh lane kk's key, and add the weighted value rows.
    var wb: array<array<f32, 8>, MAX_GB>;
    for (var gi = 0u; gi < GB; gi++) {
      let mNew = max(m[gi], bm[gi]);
      let c = exp(m[gi] - mNew);
      let w = select(0.0, exp(s[gi] - mNew), j0 + lane <= pos);
      l[gi] = l[gi] * c + w;
      m[gi] = mNew;
      for (var i = 0u; i < E; i++) { acc[gi * E + i] *= c; }
      wb[gi] = bcast8f(w);
    }
    for (var kk = 0u; kk < RL; kk++) {
      let kb = kvBase + min(j0 + kk, pos) * stride4;
      for (var i = 0u; i < E; i++) {
        let v4 = rv4[kb + min(lane + i * RL, D4 - 1u)];
        for (var gi = 0u; gi < GB; gi++) { acc[gi * E + i] += wb[gi][kk] * v4; }
      }
    }
  }
  for (var gi = 0u; gi < n; gi++) {
    let sum = subgroupAdd(l[gi]);
    for (var i = 0u; i < E; i++) {
      let e = lane + i * RL;
      if (e < D4) { rout4[(rowBase + gi) * D4 + e] = acc[gi * E + i] / sum; }
    }
    if (lane == 0u) { flse[decodeLseIndex(d, gi)] = m[gi] + log(sum); }
  }
}
