// Elementwise kernels: residual add, axpy, scale, and the SwiGLU activation with its backward.
//
// Flat kernels (add, axpy, scale) walk n elements of a binding window: workgroup w covers the block
// [w*1024, (w+1)*1024) and lane l handles elements l, l+256, l+512, l+768 of it, so neighbouring
// lanes touch neighbouring addresses (vector loads on lavapipe, coalesced loads on a GPU).
// Every index is offset by a per-operand `base*` (the operand's window start inside its binding).
//
// SwiGLU kernels work on [rows, I] with per-operand row strides and bases, so gate and up may be
// two tensors or the two halves of one fused [rows, 2I] gate_up tensor (see swiglu_backward_fused).

const WG = 256u;
const PER = 4u;

struct FlatParams {
  n: u32, baseA: u32, baseB: u32, baseOut: u32,
  alpha: f32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> fp: FlatParams;

fn flatStart(wid: vec3u, nwg: vec3u) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG * PER;
}

// ---- add: out = a + b --------------------------------------------------------------------------
@group(0) @binding(1) var<storage, read> addA: array<f32>;
@group(0) @binding(2) var<storage, read> addB: array<f32>;
@group(0) @binding(3) var<storage, read_write> addOut: array<f32>;

@compute @workgroup_size(WG)
fn add(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let start = flatStart(wid, nwg);
  for (var k = 0u; k < PER; k++) {
    let i = start + k * WG + l;
    if (i < fp.n) { addOut[fp.baseOut + i] = addA[fp.baseA + i] + addB[fp.baseB + i]; }
  }
}

// ---- axpy: y += alpha * x ----------------------------------------------------------------------
@group(0) @binding(1) var<storage, read> axpyX: array<f32>;
@group(0) @binding(2) var<storage, read_write> axpyY: array<f32>;

@compute @workgroup_size(WG)
fn axpy(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let start = flatStart(wid, nwg);
  for (var k = 0u; k < PER; k++) {
    let i = start + k * WG + l;
    if (i < fp.n) { axpyY[fp.baseOut + i] += fp.alpha * axpyX[fp.baseA + i]; }
  }
}

// ---- scale: x *= alpha (in place) --------------------------------------------------------------
@group(0) @binding(1) var<storage, read_write> scaleX: array<f32>;

@compute @workgroup_size(WG)
fn scale(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let start = flatStart(wid, nwg);
  for (var k = 0u; k < PER; k++) {
    let i = start + k * WG + l;
    if (i < fp.n) { scaleX[fp.baseOut + i] *= fp.alpha; }
  }
}

// ---- SwiGLU ------------------------------------------------------------------------------------
// h = silu(g) * u, silu(g) = g * sigmoid(g).
// dg = dh * u * s * (1 + g * (1 - s)), du = dh * silu(g), with s = sigmoid(g).

struct GluParams {
  rows: u32, I: u32,
  strideG: u32, strideU: u32, strideH: u32,
  baseG: u32, baseU: u32, baseH: u32,
  strideDG: u32, strideDU: u32, baseDG: u32, baseDU: u32,
}

@group(0) @binding(0) var<uniform> gp: GluParams;

fn sigmoid(x: f32) -> f32 {
  // exp of a large positive argument overflows to inf and 1/(1+inf) = 0, which is the right limit.
  return 1.0 / (1.0 + exp(-x));
}

// Gradients of h = silu(g)·u: (dh·u·σ(g)·(1 + g·(1 − σ(g))), dh·silu(g)).
fn swigluGrads(dh: f32, g: f32, u: f32) -> vec2f {
  let s = sigmoid(g);
  return vec2f(dh * u * s * (1.0 + g * (1.0 - s)), dh * g * s);
}

@group(0) @binding(1) var<storage, read> gluG: array<f32>;
@group(0) @binding(2) var<storage, read> gluU: array<f32>;
@group(0) @binding(3) var<storage, read_write> gluH: array<f32>;

// A workgroup covers WG / GLU_LANES rows × GLU_LANES·PER columns: lane l works on row l / GLU_LANES and columns
// l % GLU_LANES + k·GLU_LANES (k < PER). GLU_LANES is WG for wide rows; for narrow ones (I < WG·PER, e.g. the tiny
// preset's I = 128) the host picks the power of two that covers I, so lanes are not left idle past the row's end
// (with WG lanes per row, 7 of 8 lanes idled at I = 128). An override, so the divisions are shifts.
override GLU_LANES: u32 = WG;

// (row, first column) of this lane; its columns are j = first + k·GLU_LANES.
fn gluCoords(wid: vec3u, nwg: vec3u, l: u32) -> vec2u {
  let span = GLU_LANES * PER;
  let blocksPerRow = (gp.I + span - 1u) / span;
  let lin = wid.x + wid.y * nwg.x;
  return vec2u((lin / blocksPerRow) * (WG / GLU_LANES) + l / GLU_LANES, (lin % blocksPerRow) * span + l % GLU_LANES);
}

@compute @workgroup_size(WG)
fn swiglu_forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let rc = gluCoords(wid, nwg, l);
  let r = rc.x;
  if (r >= gp.rows) { return; }
  for (var k = 0u; k < PER; k++) {
    let j = rc.y + k * GLU_LANES;
    if (j < gp.I) {
      let g = gluG[gp.baseG + r * gp.strideG + j];
      let u = gluU[gp.baseU + r * gp.strideU + j];
      gluH[gp.baseH + r * gp.strideH + j] = g * sigmoid(g) * u;
    }
  }
}

// Backward, separate outputs. Bindings: dh, gate, up, dgate, dup.
@group(0) @binding(1) var<storage, read> bwdDH: array<f32>;
@group(0) @binding(2) var<storage, read> bwdG: array<f32>;
@group(0) @binding(3) var<storage, read> bwdU: array<f32>;
@group(0) @binding(4) var<storage, read_write> bwdDG: array<f32>;
@group(0) @binding(5) var<storage, read_write> bwdDU: array<f32>;

@compute @workgroup_size(WG)
fn swiglu_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let rc = gluCoords(wid, nwg, l);
  let r = rc.x;
  if (r >= gp.rows) { return; }
  for (var k = 0u; k < PER; k++) {
    let j = rc.y + k * GLU_LANES;
    if (j < gp.I) {
      let dh = bwdDH[gp.baseH + r * gp.strideH + j];
      let g = bwdG[gp.baseG + r * gp.strideG + j];
      let u = bwdU[gp.baseU + r * gp.strideU + j];
      let d = swigluGrads(dh, g, u);
      bwdDG[gp.baseDG + r * gp.strideDG + j] = d.x;
      bwdDU[gp.baseDU + r * gp.strideDU + j] = d.y;
    }
  }
}

// Backward into one fused [rows, 2I]-style gradient (dgate and dup are slices of the same binding,
// which WebGPU does not allow to be bound twice as writable). Bindings: dh, gate, up, dgate_up.
@group(0) @binding(4) var<storage, read_write> bwdDGU: array<f32>;

@compute @workgroup_size(WG)
fn swiglu_backward_fused(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let rc = gluCoords(wid, nwg, l);
  let r = rc.x;
  if (r >= gp.rows) { return; }
  for (var k = 0u; k < PER; k++) {
    let j = rc.y + k * GLU_LANES;
    if (j < gp.I) {
      let dh = bwdDH[gp.baseH + r * gp.strideH + j];
      let g = bwdG[gp.baseG + r * gp.strideG + j];
      let u = bwdU[gp.baseU + r * gp.strideU + j];
      let d = swigluGrads(dh, g, u);
      bwdDGU[gp.baseDG + r * gp.strideDG + j] = d.x;
      bwdDGU[gp.baseDU + r * gp.strideDU + j] = d.y;
    }
  }
}
