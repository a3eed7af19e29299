// Rows gathered by index, and the backward that sums them back (src/ops/gather_rows.ts). A shared-prefix pass
// (src/model/shared_prefix.ts) gathers each sample's keys and values — its prompt's rows, then its own — and the
// backward sums each prompt row's gradient over the samples that read it.
//
// Each invocation moves up to PER consecutive values of one row, so a narrow row (a kv head's 32 values) still fills
// a workgroup with several rows: one workgroup per row, as a table lookup runs, left most lanes idle and paid a
// workgroup's setup per row (on lavapipe the whole cost of a gather of short rows).

struct Params {
  rows: u32, width: u32, srcRows: u32,
  // Backward: destination rows below this add their sum to what they hold; the others are overwritten with it.
  accumulateRows: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

const WG = 64u;
const PER = 4u;

// This invocation's row and first value, or a row ≥ p.rows when it has none.
fn slot(wid: vec3u, nwg: vec3u, l: u32) -> vec2u {
  let chunks = (p.width + PER - 1u) / PER;
  let i = (wid.x + wid.y * nwg.x) * WG + l;
  return vec2u(i / chunks, (i % chunks) * PER);
}

// ---- forward. Bindings: index [rows], src [srcRows, width], dst [rows, width] ---------------------
@group(0) @binding(1) var<storage, read> index: array<u32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

// dst[r] = src[index[r]], a zero row where index[r] ≥ srcRows.
@compute @workgroup_size(WG)
fn gather_rows(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let at = slot(wid, nwg, l);
  let r = at.x;
  let e0 = at.y;
  if (r >= p.rows) { return; }
  let s = index[r];
  let base = min(s, p.srcRows - 1u) * p.width;
  for (var e = e0; e < min(e0 + PER, p.width); e++) {
    dst[r * p.width + e] = select(0.0, src[base + e], s < p.srcRows);
  }
}

// ---- backward. Bindings: segments, dsrc (the gathered rows' gradient), ddst ------------------------
// segments: start[rows + 1], then the lists: row r's sources are list[start[r] .. start[r + 1]], in the order summed.
@group(0) @binding(1) var<storage, read> segments: array<u32>;

// dst[r] (+)= Σ src[list[k]] over r's segment, summed in list order (an empty segment sums to 0).
@compute @workgroup_size(WG)
fn gather_rows_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let at = slot(wid, nwg, l);
  let r = at.x;
  let e0 = at.y;
  if (r >= p.rows) { return; }
  let a = segments[r];
  let b = segments[r + 1u];
  let lists = p.rows + 1u;
  for (var e = e0; e < min(e0 + PER, p.width); e++) {
    var sum = 0.0;
    for (var k = a; k < b; k++) { sum += src[segments[lists + k] * p.width + e]; }
    let o = r * p.width + e;
    if (r < p.accumulateRows) { dst[o] = dst[o] + sum; } else { dst[o] = sum; }
  }
}
