// Rotary position embedding, Hugging Face half-rotation layout (rotate_half), IN PLACE.
// For each row (token) with position p, head h and i < hd/2, with a = f32(p) · invFreq[i]:
//   x[i]        ← x[i]·cos a − x[i + hd/2]·sin a
//   x[i + hd/2] ← x[i + hd/2]·cos a + x[i]·sin a
// The backward is the same rotation by −a (sign = −1): dx = Rᵀ·dy.
//
// One invocation per (row, i): it computes cos/sin once and rotates that pair in every head of q
// and then of k, so the trigonometry is shared by all Hq + Hkv heads. Each invocation reads and
// writes only its own pairs, which makes in-place safe.
//
// The angle is the f32 product like HF computes it; cos/sin then get an explicit Cody–Waite
// reduction to [−π, π] (reduceAngle, shaders/rope_angle.wgsl) because WGSL only bounds their error inside that range.

struct Params {
  rows: u32, Hq: u32, Hkv: u32, hd: u32,
  baseQ: u32, baseK: u32, basePos: u32, baseInv: u32,
  sign: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read> invFreq: array<f32>;
@group(0) @binding(4) var<storage, read_write> k: array<f32>;

const WG = 64u;

struct Rot { c: f32, s: f32, i: u32, row: u32, ok: bool }

fn rotation(wid: vec3u, nwg: vec3u, l: u32) -> Rot {
  let half = p.hd / 2u;
  let id = (wid.x + wid.y * nwg.x) * WG + l;
  var r: Rot;
  r.ok = id < p.rows * half;
  if (!r.ok) { return r; }
  r.row = id / half;
  r.i = id % half;
  let a = reduceAngle(f32(positions[p.basePos + r.row]) * invFreq[p.baseInv + r.i]);
  r.c = cos(a);
  r.s = p.sign * sin(a);
  return r;
}

// Bindings: q, positions, invFreq, k. Rotates Hq heads of q and Hkv heads of k.
@compute @workgroup_size(WG)
fn rope_qk(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let r = rotation(wid, nwg, l);
  if (!r.ok) { return; }
  let half = p.hd / 2u;
  let qo = p.baseQ + r.row * p.Hq * p.hd + r.i;
  for (var h = 0u; h < p.Hq; h++) {
    let o = qo + h * p.hd;
    let x1 = q[o];
    let x2 = q[o + half];
    q[o] = x1 * r.c - x2 * r.s;
    q[o + half] = x2 * r.c + x1 * r.s;
  }
  let ko = p.baseK + r.row * p.Hkv * p.hd + r.i;
  for (var h = 0u; h < p.Hkv; h++) {
    let o = ko + h * p.hd;
    let x1 = k[o];
    let x2 = k[o + half];
    k[o] = x1 * r.c - x2 * r.s;
    k[o + half] = x2 * r.c + x1 * r.s;
  }
}

// Bindings: x, positions, invFreq. Rotates Hq heads of one tensor.
@compute @workgroup_size(WG)
fn rope_x(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let r = rotation(wid, nwg, l);
  if (!r.ok) { return; }
  let half = p.hd / 2u;
  let qo = p.baseQ + r.row * p.Hq * p.hd + r.i;
  for (var h = 0u; h < p.Hq; h++) {
    let o = qo + h * p.hd;
    let x1 = q[o];
    let x2 = q[o + half];
    q[o] = x1 * r.c - x2 * r.s;
    q[o + half] = x2 * r.c + x1 * r.s;
  }
}
