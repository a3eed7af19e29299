// RMSNorm over the last dimension of [rows, D]: y = x · r · w with r = 1 / sqrt(mean(x²) + eps).
// Also Qwen3's per-head q/k norm (rows = tokens × heads, D = head_dim).
//
// Forward and dx backward: one invocation per row, serial over D (no barriers; lanes of a SIMD
// group take neighbouring rows). The forward saves r per row for the backward.
//   dx_j = r·w_j·dy_j − x_j · r³/D · Σ_k dy_k·w_k·x_k
// dw backward: dw_j += Σ_rows dy_j·x_j·r, one invocation per (column, chunk of rows); with several
// chunks the partial sums go to a scratch [chunks, D] and a second kernel adds them up in order
// (deterministic; WGSL has no float atomics).

// Every operand index is offset by its base (its window start inside the bound view).
// baseY is y in the forward and dy in the backward; baseOut is dx, dw or the dw scratch.
struct Params {
  rows: u32, D: u32, eps: f32,
  baseX: u32, baseW: u32, baseY: u32, baseR: u32, baseOut: u32,
  // dw kernels: rows per chunk and number of chunks.
  chunkRows: u32, chunks: u32,
}

override ACCUMULATE: bool = false;

@group(0) @binding(0) var<uniform> p: Params;

const WG = 64u;

fn rowId(wid: vec3u, nwg: vec3u, l: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + l;
}

// ---- forward. Bindings: x, w, y, rinv ----------------------------------------------------------
@group(0) @binding(1) var<storage, read> fx: array<f32>;
@group(0) @binding(2) var<storage, read> fw: array<f32>;
@group(0) @binding(3) var<storage, read_write> fy: array<f32>;
@group(0) @binding(4) var<storage, read_write> fr: array<f32>;

// Normalises one row into fy and returns its r.
fn normRow(row: u32) -> f32 {
  let xo = p.baseX + row * p.D;
  var ss = 0.0;
  for (var j = 0u; j < p.D; j++) {
    let v = fx[xo + j];
    ss += v * v;
  }
  let r = 1.0 / sqrt(ss / f32(p.D) + p.eps);
  let yo = p.baseY + row * p.D;
  for (var j = 0u; j < p.D; j++) {
    fy[yo + j] = fx[xo + j] * r * fw[p.baseW + j];
  }
  return r;
}

@compute @workgroup_size(WG)
fn rmsnorm_forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let row = rowId(wid, nwg, l);
  if (row >= p.rows) { return; }
  fr[p.baseR + row] = normRow(row);
}

// Inference: the same without saving r. Bindings: x, w, y.
@compute @workgroup_size(WG)
fn rmsnorm_forward_nosave(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let row = rowId(wid, nwg, l);
  if (row >= p.rows) { return; }
  _ = normRow(row);
}

// ---- backward dx. Bindings: dy, x, w, rinv, dx --------------------------------------------------
@group(0) @binding(1) var<storage, read> bdy: array<f32>;
@group(0) @binding(2) var<storage, read> bx: array<f32>;
@group(0) @binding(3) var<storage, read> bw: array<f32>;
@group(0) @binding(4) var<storage, read> br: array<f32>;
@group(0) @binding(5) var<storage, read_write> bdx: array<f32>;

@compute @workgroup_size(WG)
fn rmsnorm_backward_dx(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let row = rowId(wid, nwg, l);
  if (row >= p.rows) { return; }
  let xo = p.baseX + row * p.D;
  let go = p.baseY + row * p.D;
  let r = br[p.baseR + row];
  var s = 0.0;
  for (var j = 0u; j < p.D; j++) {
    s += bdy[go + j] * bw[p.baseW + j] * bx[xo + j];
  }
  let c = r * r * r * s / f32(p.D);
  let dxo = p.baseOut + row * p.D;
  for (var j = 0u; j < p.D; j++) {
    var v = r * bw[p.baseW + j] * bdy[go + j] - bx[xo + j] * c;
    if (ACCUMULATE) { v += bdx[dxo + j]; }
    bdx[dxo + j] = v;
  }
}

// ---- backward dw, pass 1. Bindings: dy, x, rinv, out ---------------------------------------------
// Invocation (column j, chunk c) sums rows [c·chunkRows, min((c+1)·chunkRows, rows)).
// ACCUMULATE: out[j] += sum (single chunk straight into dw); otherwise out[c·D + j] = sum (scratch).
@group(0) @binding(1) var<storage, read> wdy: array<f32>;
@group(0) @binding(2) var<storage, read> wx: array<f32>;
@group(0) @binding(3) var<storage, read> wr: array<f32>;
@group(0) @binding(4) var<storage, read_write> wout: array<f32>;

@compute @workgroup_size(WG)
fn rmsnorm_backward_dw(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let j = wid.x * WG + l;
  let c = wid.y;
  if (j >= p.D || c >= p.chunks) { return; }
  let r0 = c * p.chunkRows;
  let r1 = min(r0 + p.chunkRows, p.rows);
  var s = 0.0;
  for (var row = r0; row < r1; row++) {
    s += wdy[p.baseY + row * p.D + j] * wx[p.baseX + row * p.D + j] * wr[p.baseR + row];
  }
  if (ACCUMULATE) {
    wout[p.baseOut + j] += s;
  } else {
    wout[p.baseOut + c * p.D + j] = s;
  }
}

// ---- backward dw, pass 2: dw[j] += Σ_c scratch[c·D + j] (scratch base in baseX). Bindings: scratch, dw
@group(0) @binding(1) var<storage, read> sumIn: array<f32>;
@group(0) @binding(2) var<storage, read_write> sumOut: array<f32>;

@compute @workgroup_size(WG)
fn rmsnorm_sum_chunks(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) l: u32) {
  let j = wid.x * WG + l;
  if (j >= p.D) { return; }
  var s = 0.0;
  for (var c = 0u; c < p.chunks; c++) {
    s += sumIn[p.baseX + c * p.D + j];
  }
  sumOut[p.baseOut + j] += s;
}
