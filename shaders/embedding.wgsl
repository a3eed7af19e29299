// Token embedding: gather rows of a [V, D] table by u32 ids, and the deterministic scatter-add
// backward dTable[v] += Σ_{n: ids[n] = v} dOut[n] (summed in increasing n, without float atomics).
//
// The table may be bigger than one storage binding (Qwen: 151,936 × 896 f32 ≈ 545 MB), so every
// kernel that touches it sees one vocab slice [vStart, vStart + vCount) and is dispatched once per
// slice. Ids ≥ V are padding: the forward writes a zero row for them, the backward ignores them.
//
// Backward, in five dispatches over a u32 scratch (integer atomics only):
//   count   count[v] = #occurrences, first[v] = first position n (stored inverted: ~n, so a zeroed
//           scratch means "none" and atomicMax finds the minimum n)
//   alloc   the first occurrence of each id reserves count[v] slots of a segment array
//   fill    every position drops n into its id's segment (in any order)
//   rank    every position finds its rank among its segment's members and writes itself there,
//           so each segment lists its positions in increasing n
//   scatter one workgroup per id (at its first occurrence) sums dOut over its segment, in order, and
//           adds the sum to its table row — per table slice and per token window of dOut.

struct Params {
  N: u32, D: u32, V: u32, vStart: u32,
  vCount: u32, baseIds: u32, baseTable: u32, baseOut: u32,
  // Token window of dOut / out: positions [tStart, tStart + tCount).
  tStart: u32, tCount: u32, zeroPadding: u32, _p: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

const WG = 64u;

fn linearWorkgroup(wid: vec3u, nwg: vec3u) -> u32 {
  return wid.x + wid.y * nwg.x;
}

// ---- forward. Bindings: ids, table (slice), out (token window) -----------------------------------
@group(0) @binding(1) var<storage, read> fIds: array<u32>;
@group(0) @binding(2) var<storage, read> fTable: array<f32>;
@group(0) @binding(3) var<storage, read_write> fOut: array<f32>;

// One workgroup per token of the window; lanes stride over D.
@compute @workgroup_size(WG)
fn embedding_forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let t = linearWorkgroup(wid, nwg);
  if (t >= p.tCount) { return; }
  let v = fIds[p.baseIds + p.tStart + t];
  let o = p.baseOut + t * p.D;
  if (v >= p.vStart && v < p.vStart + p.vCount) {
    let src = p.baseTable + (v - p.vStart) * p.D;
    for (var d = l; d < p.D; d += WG) { fOut[o + d] = fTable[src + d]; }
  } else if (v >= p.V && p.zeroPadding != 0u) {
    for (var d = l; d < p.D; d += WG) { fOut[o + d] = 0.0; }
  }
}

// ---- backward: scratch layout (u32 words, starting at the scratch binding's base) ----------------
//   [0, V)       count        [V, 2V)   first (inverted)   [2V, 3V)  segment base
//   [3V, 4V)     fill cursor  [4V]      segment allocator  [4V+1, 4V+1+N) unsorted  [.., +N) sorted
@group(0) @binding(1) var<storage, read> bIds: array<u32>;
@group(0) @binding(2) var<storage, read_write> scratchA: array<atomic<u32>>;

fn validId(n: u32) -> u32 {
  // Returns the id at position n, or 0xffffffff for padding.
  let v = bIds[p.baseIds + n];
  if (v >= p.V) { return 0xffffffffu; }
  return v;
}

@compute @workgroup_size(WG)
fn embedding_count(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let n = linearWorkgroup(wid, nwg) * WG + l;
  if (n >= p.N) { return; }
  let v = validId(n);
  if (v == 0xffffffffu) { return; }
  atomicAdd(&scratchA[v], 1u);
  atomicMax(&scratchA[p.V + v], ~n);
}

@compute @workgroup_size(WG)
fn embedding_alloc(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let n = linearWorkgroup(wid, nwg) * WG + l;
  if (n >= p.N) { return; }
  let v = validId(n);
  if (v == 0xffffffffu) { return; }
  if (~atomicLoad(&scratchA[p.V + v]) == n) {
    let c = atomicLoad(&scratchA[v]);
    atomicStore(&scratchA[2u * p.V + v], atomicAdd(&scratchA[4u * p.V], c));
  }
}

@compute @workgroup_size(WG)
fn embedding_fill(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let n = linearWorkgroup(wid, nwg) * WG + l;
  if (n >= p.N) { return; }
  let v = validId(n);
  if (v == 0xffffffffu) { return; }
  let slot = atomicLoad(&scratchA[2u * p.V + v]) + atomicAdd(&scratchA[3u * p.V + v], 1u);
  atomicStore(&scratchA[4u * p.V + 1u + slot], n);
}

@group(0) @binding(2) var<storage, read_write> scratchU: array<u32>;

@compute @workgroup_size(WG)
fn embedding_rank(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let n = linearWorkgroup(wid, nwg) * WG + l;
  if (n >= p.N) { return; }
  let v = validId(n);
  if (v == 0xffffffffu) { return; }
  let b = scratchU[2u * p.V + v];
  let c = scratchU[v];
  let unsorted = 4u * p.V + 1u;
  var rank = 0u;
  for (var j = 0u; j < c; j++) {
    rank += select(0u, 1u, scratchU[unsorted + b + j] < n);
  }
  scratchU[unsorted + p.N + b + rank] = n;
}

// ---- backward scatter. Bindings: ids, scratch (read), dOut (token window), dTable (slice) --------
@group(0) @binding(2) var<storage, read> scratchR: array<u32>;
@group(0) @binding(3) var<storage, read> sDOut: array<f32>;
@group(0) @binding(4) var<storage, read_write> sDTable: array<f32>;

// One workgroup per position n; only the first occurrence of an id in this table slice works.
@compute @workgroup_size(WG)
fn embedding_scatter(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let n = linearWorkgroup(wid, nwg);
  if (n >= p.N) { return; }
  let v = validId(n);
  if (v < p.vStart || v >= p.vStart + p.vCount) { return; }
  if (~scratchR[p.V + v] != n) { return; }
  let b = scratchR[2u * p.V + v];
  let c = scratchR[v];
  let sorted = 4u * p.V + 1u + p.N + b;
  let dst = p.baseTable + (v - p.vStart) * p.D;
  for (var d = l; d < p.D; d += WG) {
    var acc = 0.0;
    var touched = false;
    for (var j = 0u; j < c; j++) {
      let m = scratchR[sorted + j];
      if (m >= p.tStart && m < p.tStart + p.tCount) {
        acc += sDOut[p.baseOut + (m - p.tStart) * p.D + d];
        touched = true;
      }
    }
    if (touched) { sDTable[dst + d] += acc; }
  }
}
