// Inverted dropout with a keyed, counter-based mask: element g of a stream is kept when the top 24 bits of
// hash(g) are at least `threshold` (= round(p·2^24)), and a kept value is multiplied by `scale` (= 1/(1-p)).
// The mask is a pure function of (key0, key1, g), so a backward pass or an activation-checkpointing recompute
// regenerates exactly the forward's mask without storing it. src/ops/dropout.ref.ts computes the same bits.
//
// Flat layout as in elementwise.wgsl: workgroup w covers [w*1024, (w+1)*1024) of the window, lane l handles
// elements l, l+256, l+512, l+768 of it. `first` is the window's first element in the whole stream (a tensor
// bigger than one binding is processed in several windows), so g = first + i.

const WG = 256u;
const PER = 4u;

struct DropoutParams {
  n: u32, baseX: u32, baseY: u32, first: u32,
  key0: u32, key1: u32, threshold: u32, scale: f32,
}

@group(0) @binding(0) var<uniform> dp: DropoutParams;
@group(0) @binding(1) var<storage, read> dropX: array<f32>;
@group(0) @binding(2) var<storage, read_write> dropY: array<f32>;

// lowbias32 (src/util/prng.ts mix32).
fn mix32(x: u32) -> u32 {
  var h = x;
  h = (h ^ (h >> 16u)) * 0x7feb352du;
  h = (h ^ (h >> 15u)) * 0x846ca68bu;
  return h ^ (h >> 16u);
}

fn kept(g: u32) -> bool {
  return (mix32(mix32(g ^ dp.key0) ^ dp.key1) >> 8u) >= dp.threshold;
}

fn flatStart(wid: vec3u, nwg: vec3u) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG * PER;
}

// ---- dropout: y = mask ⊙ x · scale ------------------------------------------------------------
@compute @workgroup_size(WG)
fn dropout(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let start = flatStart(wid, nwg);
  for (var k = 0u; k < PER; k++) {
    let i = start + k * WG + l;
    if (i < dp.n) { dropY[dp.baseY + i] = select(0.0, dropX[dp.baseX + i] * dp.scale, kept(dp.first + i)); }
  }
}

// ---- dropout_accumulate: y += mask ⊙ x · scale (the backward of dropout into an accumulated gradient) ----
@compute @workgroup_size(WG)
fn dropout_accumulate(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let start = flatStart(wid, nwg);
  for (var k = 0u; k < PER; k++) {
    let i = start + k * WG + l;
    if (i < dp.n && kept(dp.first + i)) { dropY[dp.baseY + i] += dropX[dp.baseX + i] * dp.scale; }
  }
}
