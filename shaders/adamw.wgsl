// Optimizer kernels: global gradient norm with a clip factor computed on the GPU, and the AdamW
// step (decoupled weight decay) that reads that clip factor, so clipping needs no readback.
//
// Grad norm, two levels (deterministic: fixed summation order, no float atomics):
//   sumsq_partial  each invocation sums the squares of K elements of one gradient tensor
//                  (lane-interleaved: lane l of workgroup w reads w·WG·K + k·WG + l) into its own
//                  slot of a partials array; one dispatch per tensor (or binding window), each
//                  writing its own range of slots.
//   sumsq_finish   one workgroup sums all partials (strided per lane, then a tree in workgroup
//                  memory) and writes stats = [norm, clip] with clip = min(1, maxNorm/(norm + 1e-6)),
//                  1 when maxNorm ≤ 0 (no clipping), and −1 when the norm is not finite: AdamW then
//                  skips the step entirely (p, m, v unchanged).
//
// AdamW, as torch.optim.AdamW computes it, with g ← clip·g:
//   p ← p·(1 − lr·wd);  m ← m + (1 − β1)(g − m);  v ← β2·v + (1 − β2)·g²
//   p ← p − (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)

const WG = 256u;

struct NormParams {
  n: u32, baseX: u32, basePart: u32, K: u32,
  partials: u32, baseStats: u32, maxNorm: f32, _p: u32,
}

@group(0) @binding(0) var<uniform> np: NormParams;

// ---- level 1. Bindings: x, partials ------------------------------------------------------------
@group(0) @binding(1) var<storage, read> nx: array<f32>;
@group(0) @binding(2) var<storage, read_write> npart: array<f32>;

@compute @workgroup_size(WG)
fn sumsq_partial(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let w = wid.x + wid.y * nwg.x;
  let start = w * WG * np.K + l;
  let end = min(np.n, (w + 1u) * WG * np.K);
  var s = 0.0;
  for (var i = start; i < end; i += WG) {
    let v = nx[np.baseX + i];
    s += v * v;
  }
  npart[np.basePart + w * WG + l] = s;
}

// ---- level 2. Bindings: partials, stats --------------------------------------------------------
@group(0) @binding(1) var<storage, read> fpart: array<f32>;
@group(0) @binding(2) var<storage, read_write> fstats: array<f32>;

var<workgroup> tree: array<f32, WG>;

fn isFinite(x: f32) -> bool {
  // Bit test: WGSL lets compilers assume floats are finite, so x != x style checks may vanish.
  return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

@compute @workgroup_size(WG)
fn sumsq_finish(@builtin(local_invocation_index) l: u32) {
  var s = 0.0;
  for (var i = l; i < np.partials; i += WG) { s += fpart[np.basePart + i]; }
  tree[l] = s;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (l < stride) { tree[l] += tree[l + stride]; }
    workgroupBarrier();
  }
  if (l == 0u) {
    let norm = sqrt(tree[0]);
    var clip = 1.0;
    if (!isFinite(tree[0])) {
      clip = -1.0;
    } else if (np.maxNorm > 0.0) {
      clip = min(1.0, np.maxNorm / (norm + 1e-6));
    }
    fstats[np.baseStats] = norm;
    fstats[np.baseStats + 1u] = clip;
  }
}

// ---- AdamW step. Bindings: param, grad, m, v, stats ----------------------------------------------
struct AdamParams {
  n: u32, baseP: u32, baseG: u32, baseM: u32,
  baseV: u32, baseStats: u32, decay: f32, oneMinusBeta1: f32,
  beta2: f32, oneMinusBeta2: f32, stepSize: f32, bc2Sqrt: f32,
  eps: f32, _p0: u32, _p1: u32, _p2: u32,
}

override ZERO_GRAD: bool = false;
const PER = 4u;

@group(0) @binding(0) var<uniform> ap: AdamParams;
@group(0) @binding(1) var<storage, read_write> aP: array<f32>;
@group(0) @binding(2) var<storage, read_write> aG: array<f32>;
@group(0) @binding(3) var<storage, read_write> aM: array<f32>;
@group(0) @binding(4) var<storage, read_write> aV: array<f32>;
@group(0) @binding(5) var<storage, read> aStats: array<f32>;

fn adamwBlock(wid: vec3u, nwg: vec3u, l: u32, clip: f32) {
  let skip = clip < 0.0;
  let start = (wid.x + wid.y * nwg.x) * WG * PER;
  for (var k = 0u; k < PER; k++) {
    let i = start + k * WG + l;
    if (i >= ap.n) { break; }
    let gi = ap.baseG + i;
    if (!skip) {
      let g = aG[gi] * clip;
      let pi = ap.baseP + i;
      let mi = ap.baseM + i;
      let vi = ap.baseV + i;
      let m = aM[mi] + ap.oneMinusBeta1 * (g - aM[mi]);
      let v = aV[vi] * ap.beta2 + ap.oneMinusBeta2 * g * g;
      let denom = sqrt(v) / ap.bc2Sqrt + ap.eps;
      aP[pi] = aP[pi] * ap.decay - ap.stepSize * (m / denom);
      aM[mi] = m;
      aV[vi] = v;
    }
    if (ZERO_GRAD) { aG[gi] = 0.0; }
  }
}

// Gradients scaled by stats[1]. Bindings: param, grad, m, v, stats.
@compute @workgroup_size(WG)
fn adamw_step_clipped(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  adamwBlock(wid, nwg, l, aStats[ap.baseStats + 1u]);
}

// No clipping. Bindings: param, grad, m, v.
@compute @workgroup_size(WG)
fn adamw_step(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  adamwBlock(wid, nwg, l, 1.0);
}
