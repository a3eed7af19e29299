// Fused LM head + log-softmax, the small kernels around the matmuls of src/ops/logprobs.ts.
//
// The launcher walks tokens in chunks of `rows` and the vocabulary in slices of `width` ids: a matmul
// writes the slice's logits z [rows, width] (already divided by the temperature) into a scratch
// buffer, then lp_stats folds them into running per-row statistics kept in the same scratch after
// the logits: (m, s, t, zt) = (running max, Σ e^(z−m), Σ e^(z−m)(z−m), the target's logit). On the
// last slice it writes
//   lse = m + log s,   logprob = zt − lse,   entropy = −Σ p log p = log s − t / s.
// Backward (lp_dlogits), per slice, in place over the recomputed logits, with log p = z − lse:
//   dz = dlogprob · (onehot(target) − p) − dentropy · p · (log p + entropy)
// Targets ≥ V are "no target": logprob 0 and no gradient from dlogprob (entropy still counts).
// A workgroup covers WG / LP_LANES token rows, LP_LANES lanes each (see LP_LANES): lanes stride over the slice
// (contiguous loads), then a tree reduction in workgroup memory.

struct Params {
  rows: u32,      // token rows in this chunk
  width: u32,     // vocabulary ids in this slice (= row stride of the logits scratch)
  v0: u32,        // first vocabulary id of this slice
  n0: u32,        // first token of this chunk
  V: u32,         // whole vocabulary size
  statsOff: u32,  // element offset of the running statistics in scratch
  first: u32,     // 1 on the first slice: start the statistics instead of merging
  last: u32,      // 1 on the last slice: write lse, logprob, entropy
}

@group(0) @binding(0) var<uniform> p: Params;

const WG = 64u;
var<workgroup> wa: array<f32, WG>;
var<workgroup> wb: array<f32, WG>;

// ---- forward statistics ------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read_write> sScratch: array<f32>;
@group(0) @binding(2) var<storage, read> sTargets: array<u32>;
@group(0) @binding(3) var<storage, read_write> sLogprob: array<f32>;
@group(0) @binding(4) var<storage, read_write> sEntropy: array<f32>;
@group(0) @binding(5) var<storage, read_write> sLse: array<f32>;

// Lanes per token row: WG for wide slices; for a narrow one (a byte vocabulary's ~300 ids) the host picks fewer, so a
// workgroup reduces several rows with fewer barrier levels (lavapipe runs every barrier as a pass over the workgroup's
// subgroups: one row per 64-lane workgroup spent ~4 µs a row in them). Each lane plays WG / LP_LANES lanes of the
// one-row kernel — lane l plays l, l + LP_LANES, … — and folds them in registers in that kernel's tree order, so the
// sums are taken in the same order and the results are bit for bit the same whatever LP_LANES is.
override LP_LANES: u32 = WG;
const LP_MAX_PLAYED = 8u; // LP_LANES ≥ WG / 8
alias Played = array<f32, LP_MAX_PLAYED>;

// Levels WG/2 … LP_LANES of the one-row tree, over the lanes this lane plays (played lane j + k/LP_LANES is lane
// l + k of the one-row kernel); leaves the value of lane l in x[0].
fn foldPlayedMax(x: ptr<function, Played>) {
  for (var k = WG / 2u; k >= LP_LANES; k >>= 1u) {
    let d = k / LP_LANES;
    for (var j = 0u; j < d; j++) { (*x)[j] = max((*x)[j], (*x)[j + d]); }
  }
}

fn foldPlayedSum(x: ptr<function, Played>) {
  for (var k = WG / 2u; k >= LP_LANES; k >>= 1u) {
    let d = k / LP_LANES;
    for (var j = 0u; j < d; j++) { (*x)[j] += (*x)[j + d]; }
  }
}

@compute @workgroup_size(64)
fn lp_stats(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let l = lid % LP_LANES;
  let g0 = lid - l; // this row's first slot in wa / wb
  let row = wid.x * (WG / LP_LANES) + lid / LP_LANES;
  // Rows past the chunk compute a clamped copy (every lane must reach the barriers) and store nothing.
  let valid = row < p.rows;
  let i = min(row, p.rows - 1u);
  let base = i * p.width;
  let played = WG / LP_LANES;

  var pm: Played;
  for (var j = 0u; j < played; j++) {
    pm[j] = -3.0e38;
    for (var c = l + j * LP_LANES; c < p.width; c += WG) { pm[j] = max(pm[j], sScratch[base + c]); }
  }
  foldPlayedMax(&pm);
  wa[lid] = pm[0];
  workgroupBarrier();
  for (var k = LP_LANES / 2u; k > 0u; k >>= 1u) {
    if (l < k) { wa[lid] = max(wa[lid], wa[lid + k]); }
    workgroupBarrier();
  }
  let mx = wa[g0];

  var ps: Played;
  var pt: Played;
  for (var j = 0u; j < played; j++) {
    ps[j] = 0.0;
    pt[j] = 0.0;
    for (var c = l + j * LP_LANES; c < p.width; c += WG) {
      let x = sScratch[base + c] - mx;
      let e = exp(x);
      ps[j] += e;
      pt[j] += e * x;
    }
  }
  foldPlayedSum(&ps);
  foldPlayedSum(&pt);
  workgroupBarrier(); // everyone has read wa[g0]
  wa[lid] = ps[0];
  wb[lid] = pt[0];
  workgroupBarrier();
  for (var k = LP_LANES / 2u; k > 0u; k >>= 1u) {
    if (l < k) {
      wa[lid] += wa[lid + k];
      wb[lid] += wb[lid + k];
    }
    workgroupBarrier();
  }
  if (l != 0u || !valid) { return; }
  let sumS = wa[g0];
  let sumT = wb[g0];

  let st = p.statsOff + 4u * i;
  var M = mx;
  var S = sumS;
  var Tt = sumT;
  var zt = 0.0;
  if (p.first == 0u) {
    let m0 = sScratch[st];
    let s0 = sScratch[st + 1u];
    let t0 = sScratch[st + 2u];
    zt = sScratch[st + 3u];
    M = max(m0, mx);
    let a0 = exp(m0 - M);
    let a1 = exp(mx - M);
    S = s0 * a0 + sumS * a1;
    Tt = a0 * (t0 + (m0 - M) * s0) + a1 * (sumT + (mx - M) * sumS);
  }
  let n = p.n0 + i;
  let tgt = sTargets[n];
  if (tgt >= p.v0 && tgt < p.v0 + p.width) { zt = sScratch[base + tgt - p.v0]; }
  if (p.last != 0u) {
    let lse = M + log(S);
    sLse[n] = lse;
    sEntropy[n] = log(S) - Tt / S;
    sLogprob[n] = select(0.0, zt - lse, tgt < p.V);
  } else {
    sScratch[st] = M;
    sScratch[st + 1u] = S;
    sScratch[st + 2u] = Tt;
    sScratch[st + 3u] = zt;
  }
}

// ---- backward: dlogits in place ----------------------------------------------------------------

@group(0) @binding(1) var<storage, read_write> dScratch: array<f32>;
@group(0) @binding(2) var<storage, read> dTargets: array<u32>;
@group(0) @binding(3) var<storage, read> dLse: array<f32>;
@group(0) @binding(4) var<storage, read> dEntropy: array<f32>;
@group(0) @binding(5) var<storage, read> dDlogprob: array<f32>;
@group(0) @binding(6) var<storage, read> dDentropy: array<f32>;

@compute @workgroup_size(64)
fn lp_dlogits(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = wid.x * (WG / LP_LANES) + lid / LP_LANES;
  if (i >= p.rows) { return; }
  let n = p.n0 + i;
  let tgt = dTargets[n];
  let gl = select(0.0, dDlogprob[n], tgt < p.V);
  let gh = dDentropy[n];
  let lse = dLse[n];
  let h = dEntropy[n];
  let base = i * p.width;
  for (var c = lid % LP_LANES; c < p.width; c += LP_LANES) {
    let lp = dScratch[base + c] - lse;
    let pr = exp(lp);
    var g = -pr * (gl + gh * (lp + h));
    if (p.v0 + c == tgt) { g += gl; }
    dScratch[base + c] = g;
  }
}

// ---- generation helpers ------------------------------------------------------------------------

struct CopyParams {
  rows: u32,   // B
  cols: u32,   // D (gather) or slice width (scatter)
  stride: u32, // scatter: destination row stride (V)
  srcOff: u32, // element offsets into the bindings
  dstOff: u32,
}

@group(0) @binding(0) var<uniform> cp: CopyParams;

// out[b, :] = h[rows[b], :]
@group(0) @binding(1) var<storage, read> gH: array<f32>;
@group(0) @binding(2) var<storage, read> gRows: array<u32>;
@group(0) @binding(3) var<storage, read_write> gOut: array<f32>;

@compute @workgroup_size(64)
fn lp_gather_rows(@builtin(global_invocation_id) gid: vec3u) {
  let b = gid.y;
  let d = gid.x;
  if (b >= cp.rows || d >= cp.cols) { return; }
  gOut[cp.dstOff + b * cp.cols + d] = gH[cp.srcOff + gRows[b] * cp.cols + d];
}

// dst[b, c] (row stride `stride`) = src[b, c] (row stride `cols`)
@group(0) @binding(1) var<storage, read> cSrc: array<f32>;
@group(0) @binding(2) var<storage, read_write> cDst: array<f32>;

@compute @workgroup_size(64)
fn lp_scatter_cols(@builtin(global_invocation_id) gid: vec3u) {
  let b = gid.y;
  let c = gid.x;
  if (b >= cp.rows || c >= cp.cols) { return; }
  cDst[cp.dstOff + b * cp.stride + c] = cSrc[cp.srcOff + b * cp.cols + c];
}
