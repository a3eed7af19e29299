// Batched matrix multiply: C[b] = alpha * op(A[b]) · op(B[b]) (+ bias) (+ C[b] when ACCUMULATE).
// op(X) is X or Xᵀ (TRANS_A / TRANS_B), covering A·B, A·Bᵀ and Aᵀ·B of forward and backward passes.
// Logical shapes: op(A) is M×K, op(B) is K×N, C is M×N, all row-major; batch strides may be 0 to broadcast.
//
// GLU (with TRANS_B, no bias, no accumulate): B holds 2N rows, a gate block then an up block (the fused gate_proj
// and up_proj weights), and C[r, c] = silu(alpha·g) · alpha·u with g, u = A·B[c]ᵀ, A·B[N + c]ᵀ: SwiGLU in the
// product's epilogue (each invocation owns gate columns and the matching up columns), so a decode step writes the
// gated activations without a [M, 2N] intermediate or a separate elementwise dispatch.
//
// Two kernels share the bindings and the contract:
//  - `matmul` (portable, any adapter): each invocation accumulates a TM×4 register tile; no
//    workgroup memory, loads clamped to the matrix (no branches in the inner loop), stores bounds-checked.
//  - `matmul_sg` / `matmul_sg_b4` (below the SUBGROUP KERNELS line; adapters with the `subgroups`
//    feature and subgroups of at least 8 lanes): src/ops/matmul.ts compiles that part as a separate
//    module with `enable subgroups;` in front, so this file stays valid WGSL for adapters without it.

struct Params {
  M: u32, N: u32, K: u32, batch: u32,
  offA: u32, offB: u32, offC: u32, offBias: u32,
  strideA: u32, strideB: u32, strideC: u32, alpha: f32,
  // matmul_sg_a4b4_norm only: the RMSNorm's epsilon and its weight's offset in normW.
  normEps: f32, offNormW: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;
override GLU: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

// Tile shape: each invocation owns TM rows × 4 columns (one vec4 accumulator per row); a workgroup
// is WG_X × WG_Y invocations. Tunable per adapter (bench/matmul.ts sweeps them); TM <= MAX_TM.
override TM: u32 = 4u;
override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;
const MAX_TM = 8u;
const TN = 4u;

fn loadA(base: u32, r: u32, k: u32) -> f32 {
  if (TRANS_A) { return A[base + k * p.M + r]; }
  return A[base + r * p.K + k];
}

fn loadB(base: u32, k: u32, c: u32) -> f32 {
  if (TRANS_B) { return B[base + c * p.K + k]; }
  return B[base + k * p.N + c];
}

// silu(g)·u, written as shaders/elementwise.wgsl's swiglu_forward writes it (g·σ(g)·u, σ(g) = 1/(1 + e^−g)).
fn gluValue(g: f32, u: f32) -> f32 {
  return g * (1.0 / (1.0 + exp(-g))) * u;
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul(@builtin(global_invocation_id) gid: vec3u) {
  let row0 = gid.y * TM;
  let col0 = gid.x * select(TN, TN / 2u, GLU);
  let b = gid.z;
  if (row0 >= p.M || col0 >= p.N || b >= p.batch) { return; }
  let aBase = p.offA + b * p.strideA;
  let bBase = p.offB + b * p.strideB;
  let cBase = p.offC + b * p.strideC;

  // Clamp row/column indices so edge tiles read valid (duplicated) data; those lanes are not stored.
  // GLU: the invocation owns TN/2 output columns; its four B columns are their gate then their up columns.
  var rows: array<u32, MAX_TM>;
  var cols: array<u32, TN>;
  for (var i = 0u; i < TM; i++) { rows[i] = min(row0 + i, p.M - 1u); }
  for (var j = 0u; j < TN; j++) {
    if (GLU) { cols[j] = min(col0 + j % 2u, p.N - 1u) + (j / 2u) * p.N; } else { cols[j] = min(col0 + j, p.N - 1u); }
  }

  var acc: array<vec4f, MAX_TM>;
  for (var k = 0u; k < p.K; k++) {
    let bv = vec4f(loadB(bBase, k, cols[0]), loadB(bBase, k, cols[1]), loadB(bBase, k, cols[2]), loadB(bBase, k, cols[3]));
    for (var i = 0u; i < TM; i++) {
      acc[i] += loadA(aBase, rows[i], k) * bv;
    }
  }

  for (var i = 0u; i < TM; i++) {
    let r = row0 + i;
    if (r >= p.M) { break; }
    if (GLU) {
      for (var j = 0u; j < TN / 2u; j++) {
        let c = col0 + j;
        if (c >= p.N) { break; }
        C[cBase + r * p.N + c] = gluValue(p.alpha * acc[i][j], p.alpha * acc[i][j + 2u]);
      }
      continue;
    }
    for (var j = 0u; j < TN; j++) {
      let c = col0 + j;
      if (c >= p.N) { break; }
      var v = p.alpha * acc[i][j];
      if (HAS_BIAS) { v += bias[p.offBias + c]; }
      let idx = cBase + r * p.N + c;
      if (ACCUMULATE) { v += C[idx]; }
      C[idx] = v;
    }
  }
}

// Bᵀ of one product's B (K×N, from offB) into C as N×K (C's binding, from 0): plans with transposeB read a
// non-transposed B from this copy as vec4 along k (see src/ops/matmul.ts). Thread i writes C[i], i = c·K + k.
@compute @workgroup_size(64)
fn transpose_b(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) l: u32) {
  let i = (wid.x + wid.y * nwg.x) * 64u + l;
  if (i >= p.K * p.N) { return; }
  let c = i / p.K;
  let k = i % p.K;
  C[i] = loadB(p.offB, k, c); // TRANS_B is false here
}

// ---- SUBGROUP KERNELS (src/ops/matmul.ts splits the file here) ---------------------------------
//
// Why this shape, measured on lavapipe (Mesa 25.0, LLVM 15, 8-lane subgroups): an invocation is one
// SIMD lane, and every storage-buffer load inside a loop runs as a per-lane scalar sequence with
// a mask test and a bounds check (~10 instructions per lane), whether its address is uniform or
// not — a single load statement costs as much as ~20 multiply-adds. What is cheap is moving data
// between lanes: subgroupBroadcast with a constant lane is one permute. So a subgroup owns a tile
// of SG_TM rows × (8·SG_TN) columns: each lane keeps SG_TN columns (strided by the row group's width
// so neighbouring lanes read neighbouring addresses), and for every block of 8 k the 8 lanes load
// one k each of every row of A and broadcast them — A is read once per subgroup, not once per lane.
// Each B element a lane loads feeds SG_TM multiply-adds. The row loops are split in two halves of
// at most 8 because Mesa only unrolls the smaller loops (a 16-trip loop left the accumulators in
// memory, 3× slower); unrolled, the accumulators stay in registers.
//
// Correct for any subgroup size ≥ 8 (lanes 8.. repeat the loads of lanes 0..7). Every invocation
// of the workgroup reaches every broadcast: no early exit, edge rows/columns are clamped on load
// and skipped on store, and k past K reads as 0. (An unchecked loop over the full blocks plus a
// checked tail block measured 7–15% faster, but the second copy of the unrolled body made each
// pipeline take 2.5× as long to compile cold, ~1.8 s instead of ~0.7 s at 16 rows.)

override SG_TM: u32 = 16u; // rows per subgroup tile, 1..SG_MAX_TM
override SG_TN: u32 = 2u;  // columns per invocation, 1..SG_MAX_TN
override SG_WGN: u32 = 64u; // lanes across columns: 64, 32, 16 or 8 (see sgTile)
// With GLU, SG_TN is 2: a lane's two column slots are a gate column c and its up column N + c.
const SG_MAX_TM = 16u;
const SG_HALF = 8u;
const SG_MAX_TN = 4u;
const SG_WG = 64u;
const SG_KB = 8u; // k per block: one per lane of an 8-lane group

// B as vec4 along k (transposed B only): two loads per column per block instead of eight. Bound to
// the same slot as B; an entry point uses one or the other.
@group(0) @binding(2) var<storage, read> B4: array<vec4f>;
// A as vec4 (plans with vec4A): four k (not transposed) or four rows (transposed) per load. Bound to A's slot;
// an entry point uses one or the other.
@group(0) @binding(1) var<storage, read> A4: array<vec4f>;

alias SgAcc = array<array<f32, SG_MAX_TN>, SG_HALF>;
alias SgBlock = array<array<f32, SG_KB>, SG_MAX_TN>;

struct SgTile { aBase: u32, bBase: u32, cBase: u32, row0: u32, col0: u32 }

// The workgroup's lanes are SG_WG / SG_WGN row groups of SG_WGN lanes: each group owns SG_TM rows and the groups
// share the columns, so a narrow product (N = 64, 32) keeps every lane busy. SG_WGN is a multiple of 8 and at least
// the subgroup size, so a subgroup never spans two row groups.
fn sgTile(wid: vec3u, lid: vec3u) -> SgTile {
  let b = wid.z;
  let rowGroup = wid.y * (SG_WG / SG_WGN) + lid.x / SG_WGN;
  let colsPerGroup = SG_WGN * select(SG_TN, 1u, GLU);
  return SgTile(p.offA + b * p.strideA, p.offB + b * p.strideB, p.offC + b * p.strideC, rowGroup * SG_TM, wid.x * colsPerGroup + lid.x % SG_WGN);
}

fn sgCol(t: SgTile, j: u32) -> u32 {
  if (GLU) { return min(t.col0, p.N - 1u) + j * p.N; }
  return min(t.col0 + j * SG_WGN, p.N - 1u);
}

// Rows rowOff .. rowOff+rows of the tile: this lane loads k = ka of each row (0 past K), the
// subgroup shares all SG_KB of them, and each lane multiplies them into its columns' block `bv`.
fn sgRows(acc: ptr<function, SgAcc>, bv: ptr<function, SgBlock>, t: SgTile, rowOff: u32, rows: u32, ka: u32) {
  for (var i = 0u; i < rows; i++) {
    let a = select(0.0, loadA(t.aBase, min(t.row0 + rowOff + i, p.M - 1u), ka), ka < p.K);
    let s = array<f32, SG_KB>(subgroupBroadcast(a, 0u), subgroupBroadcast(a, 1u), subgroupBroadcast(a, 2u), subgroupBroadcast(a, 3u),
                              subgroupBroadcast(a, 4u), subgroupBroadcast(a, 5u), subgroupBroadcast(a, 6u), subgroupBroadcast(a, 7u));
    for (var kk = 0u; kk < SG_KB; kk++) {
      for (var j = 0u; j < SG_TN; j++) {
        (*acc)[i][j] = fma(s[kk], (*bv)[j][kk], (*acc)[i][j]);
      }
    }
  }
}

fn sgStore(acc: ptr<function, SgAcc>, t: SgTile, rowOff: u32, rows: u32) {
  for (var i = 0u; i < rows; i++) {
    let r = t.row0 + rowOff + i;
    if (GLU) {
      if (r < p.M && t.col0 < p.N) { C[t.cBase + r * p.N + t.col0] = gluValue(p.alpha * (*acc)[i][0], p.alpha * (*acc)[i][1]); }
      continue;
    }
    for (var j = 0u; j < SG_TN; j++) {
      let c = t.col0 + j * SG_WGN;
      if (r < p.M && c < p.N) {
        var v = p.alpha * (*acc)[i][j];
        if (HAS_BIAS) { v += bias[p.offBias + c]; }
        let idx = t.cBase + r * p.N + c;
        if (ACCUMULATE) { v += C[idx]; }
        C[idx] = v;
      }
    }
  }
}

// Both register halves of the tile: rows 0..7 from acc0, rows 8..SG_TM-1 from acc1.
fn sgStoreTile(acc0: ptr<function, SgAcc>, acc1: ptr<function, SgAcc>, t: SgTile) {
  let lo = min(SG_TM, SG_HALF);
  sgStore(acc0, t, 0u, lo);
  if (SG_TM > lo) { sgStore(acc1, t, SG_HALF, SG_TM - lo); }
}

// One block of SG_KB k for this lane's columns. Past K (the last block when K % 8 != 0) values read
// as 0; the load itself may then land beyond the matrix, which WebGPU's bounds clamping keeps inside
// the binding, and its value is discarded.
fn sgLoadB(bv: ptr<function, SgBlock>, t: SgTile, k0: u32) {
  for (var j = 0u; j < SG_TN; j++) {
    let c = sgCol(t, j);
    for (var kk = 0u; kk < SG_KB; kk++) {
      (*bv)[j][kk] = select(0.0, loadB(t.bBase, k0 + kk, c), k0 + kk < p.K);
    }
  }
}

// The same from B transposed (N×K) and bound as vec4: needs K, offB and strideB multiples of 4, so a
// block is two whole vec4 or, at the end when K % 8 == 4, one.
fn sgLoadB4(bv: ptr<function, SgBlock>, t: SgTile, k0: u32) {
  for (var j = 0u; j < SG_TN; j++) {
    let base = (t.bBase + sgCol(t, j) * p.K + k0) / 4u;
    let lo4 = B4[base];
    let hi4 = select(vec4f(0.0), B4[base + 1u], k0 + 4u < p.K);
    for (var kk = 0u; kk < 4u; kk++) {
      (*bv)[j][kk] = lo4[kk];
      (*bv)[j][kk + 4u] = hi4[kk];
    }
  }
}

// B as packed bf16 along k (transposed B; src/ops/matmul.ts swaps this in for sgLoadB4 in its bf16 variant): one
// vec4u is a block's 8 k, two per word, the even k in the low half, and a value is its 16 bits on top of 16 zero bits.
// Half the loads of sgLoadB4 for the same block, the same products. Needs K, offB and strideB multiples of 8.
@group(0) @binding(2) var<storage, read> BH4: array<vec4u>;

fn sgLoadBH4(bv: ptr<function, SgBlock>, t: SgTile, k0: u32) {
  for (var j = 0u; j < SG_TN; j++) {
    let w = BH4[(t.bBase + sgCol(t, j) * p.K + k0) / 8u];
    for (var q = 0u; q < 4u; q++) {
      (*bv)[j][2u * q] = bitcast<f32>(w[q] << 16u);
      (*bv)[j][2u * q + 1u] = bitcast<f32>(w[q] & 0xffff0000u);
    }
  }
}

// Scalar loads of B: any TRANS_A / TRANS_B, any K and offsets.
@compute @workgroup_size(SG_WG, 1, 1)
fn matmul_sg(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let t = sgTile(wid, lid);
  let lo = min(SG_TM, SG_HALF);
  let hi = SG_TM - lo;
  var acc0: SgAcc;
  var acc1: SgAcc;
  var bv: SgBlock;
  let lk = lane % SG_KB;
  for (var k0 = 0u; k0 < p.K; k0 += SG_KB) {
    sgLoadB(&bv, t, k0);
    sgRows(&acc0, &bv, t, 0u, lo, k0 + lk);
    if (hi > 0u) { sgRows(&acc1, &bv, t, SG_HALF, hi, k0 + lk); }
  }
  sgStoreTile(&acc0, &acc1, t);
}

// B transposed and read four k at a time (see sgLoadB4).
@compute @workgroup_size(SG_WG, 1, 1)
fn matmul_sg_b4(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let t = sgTile(wid, lid);
  let lo = min(SG_TM, SG_HALF);
  let hi = SG_TM - lo;
  var acc0: SgAcc;
  var acc1: SgAcc;
  var bv: SgBlock;
  let lk = lane % SG_KB;
  for (var k0 = 0u; k0 < p.K; k0 += SG_KB) {
    sgLoadB4(&bv, t, k0);
    sgRows(&acc0, &bv, t, 0u, lo, k0 + lk);
    if (hi > 0u) { sgRows(&acc1, &bv, t, SG_HALF, hi, k0 + lk); }
  }
  sgStoreTile(&acc0, &acc1, t);
}

// ---- A read as vec4 (matmul_sg_a4, matmul_sg_a4b4) ----
// A lane's scalar A loads were SG_TM load statements per block; as vec4 they are SG_TM / 4 (two per half-tile), and
// the broadcasts move the same number of values. Not transposed (A is M×K): needs K, offA and strideA multiples of 4;
// lane lk loads row lk of a half-tile, k0..k0+7 as two vec4, and row i's block is what lane i loaded. Transposed
// (A is K×M): needs M, offA, strideA and SG_TM multiples of 4; lane lk loads k0 + lk of the half-tile's rows as
// two vec4 of four rows, and rows 4q..4q+3 at k0 + kk are what lane kk loaded in its q-th vec4.
alias SgA4 = array<vec4f, 2>;

fn sgBcast8(x: vec4f) -> array<vec4f, SG_KB> {
  return array<vec4f, SG_KB>(subgroupBroadcast(x, 0u), subgroupBroadcast(x, 1u), subgroupBroadcast(x, 2u), subgroupBroadcast(x, 3u),
                             subgroupBroadcast(x, 4u), subgroupBroadcast(x, 5u), subgroupBroadcast(x, 6u), subgroupBroadcast(x, 7u));
}

// Rows past M are clamped (not stored); past K the values read as 0 (the hi load may then land beyond the
// matrix, which bounds clamping keeps inside the binding, and its value is discarded).
fn sgLoadA4(t: SgTile, rowOff: u32, k0: u32, lk: u32) -> SgA4 {
  let base = (t.aBase + min(t.row0 + rowOff + lk, p.M - 1u) * p.K + k0) / 4u;
  return SgA4(A4[base], select(vec4f(0.0), A4[base + 1u], k0 + 4u < p.K));
}

fn sgLoadA4T(t: SgTile, rowOff: u32, rows: u32, k0: u32, lk: u32) -> SgA4 {
  let k = k0 + lk;
  var a: SgA4;
  for (var q = 0u; q < (rows + 3u) / 4u; q++) {
    let r = min(t.row0 + rowOff + 4u * q, p.M - 4u);
    a[q] = select(vec4f(0.0), A4[(t.aBase + k * p.M + r) / 4u], k < p.K);
  }
  return a;
}

fn sgRowsA4(acc: ptr<function, SgAcc>, bv: ptr<function, SgBlock>, a: SgA4, rows: u32) {
  let lo = sgBcast8(a[0]);
  let hi = sgBcast8(a[1]);
  for (var i = 0u; i < rows; i++) {
    for (var kk = 0u; kk < 4u; kk++) {
      for (var j = 0u; j < SG_TN; j++) { (*acc)[i][j] = fma(lo[i][kk], (*bv)[j][kk], (*acc)[i][j]); }
    }
    for (var kk = 0u; kk < 4u; kk++) {
      for (var j = 0u; j < SG_TN; j++) { (*acc)[i][j] = fma(hi[i][kk], (*bv)[j][kk + 4u], (*acc)[i][j]); }
    }
  }
}

fn sgRowsA4T(acc: ptr<function, SgAcc>, bv: ptr<function, SgBlock>, a: SgA4, rows: u32) {
  for (var q = 0u; q < (rows + 3u) / 4u; q++) {
    let s = sgBcast8(a[q]);
    for (var c = 0u; c < 4u; c++) {
      for (var kk = 0u; kk < SG_KB; kk++) {
        for (var j = 0u; j < SG_TN; j++) { (*acc)[4u * q + c][j] = fma(s[kk][c], (*bv)[j][kk], (*acc)[4u * q + c][j]); }
      }
    }
  }
}

// One block of SG_KB k for both register halves, A read as vec4.
fn sgStepA4(acc0: ptr<function, SgAcc>, acc1: ptr<function, SgAcc>, bv: ptr<function, SgBlock>, t: SgTile, k0: u32, lk: u32) {
  let lo = min(SG_TM, SG_HALF);
  let hi = SG_TM - lo;
  if (TRANS_A) {
    sgRowsA4T(acc0, bv, sgLoadA4T(t, 0u, lo, k0, lk), lo);
    if (hi > 0u) { sgRowsA4T(acc1, bv, sgLoadA4T(t, SG_HALF, hi, k0, lk), hi); }
  } else {
    sgRowsA4(acc0, bv, sgLoadA4(t, 0u, k0, lk), lo);
    if (hi > 0u) { sgRowsA4(acc1, bv, sgLoadA4(t, SG_HALF, k0, lk), hi); }
  }
}

// A as vec4, scalar loads of B (any TRANS_B, any K tail handled as in matmul_sg).
@compute @workgroup_size(SG_WG, 1, 1)
fn matmul_sg_a4(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let t = sgTile(wid, lid);
  var acc0: SgAcc;
  var acc1: SgAcc;
  var bv: SgBlock;
  let lk = lane % SG_KB;
  for (var k0 = 0u; k0 < p.K; k0 += SG_KB) {
    sgLoadB(&bv, t, k0);
    sgStepA4(&acc0, &acc1, &bv, t, k0, lk);
  }
  sgStoreTile(&acc0, &acc1, t);
}

// A and B both as vec4.
@compute @workgroup_size(SG_WG, 1, 1)
fn matmul_sg_a4b4(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let t = sgTile(wid, lid);
  var acc0: SgAcc;
  var acc1: SgAcc;
  var bv: SgBlock;
  let lk = lane % SG_KB;
  for (var k0 = 0u; k0 < p.K; k0 += SG_KB) {
    sgLoadB4(&bv, t, k0);
    sgStepA4(&acc0, &acc1, &bv, t, k0, lk);
  }
  sgStoreTile(&acc0, &acc1, t);
}

// ---- RMSNorm in the prologue (matmul_sg_a4b4_norm) ----
// A generation step's input and post-attention norms, fused into the product that reads them: A is the residual
// stream x (M×K, not transposed, read as vec4) and the product's A is rmsnorm(x)·w. Each lane computes r for the two
// rows it loads (lk and 8 + lk of the tile) with shaders/rmsnorm.wgsl's serial loop, and scales the values it loads
// before the broadcasts as that kernel writes them, (x·r)·w: the same A bit for bit, without a dispatch that writes it
// out and a read back. Costs each lane a pass over its two rows (half again the A and B values the product loads) and
// one value of w per block (lane i loads w[k0 + i] and the subgroup shares them).
@group(0) @binding(5) var<storage, read> normW: array<f32>;

fn sgRowRinv(t: SgTile, rowOff: u32, lk: u32) -> f32 {
  let base = (t.aBase + min(t.row0 + rowOff + lk, p.M - 1u) * p.K) / 4u;
  var ss = 0.0;
  for (var q = 0u; q < p.K / 4u; q++) {
    let v = A4[base + q];
    ss += v.x * v.x;
    ss += v.y * v.y;
    ss += v.z * v.z;
    ss += v.w * v.w;
  }
  return 1.0 / sqrt(ss / f32(p.K) + p.normEps);
}

// w[k0..k0+7] as two vec4 (0 past K): lane i loads w[k0 + i], broadcasts share them.
fn sgNormW(k0: u32, lk: u32) -> SgA4 {
  let k = k0 + lk;
  let v = select(0.0, normW[p.offNormW + min(k, p.K - 1u)], k < p.K);
  return SgA4(vec4f(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u)),
              vec4f(subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u), subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u)));
}

fn sgNormA4(a: SgA4, r: f32, w: SgA4) -> SgA4 {
  return SgA4((a[0] * r) * w[0], (a[1] * r) * w[1]);
}

@compute @workgroup_size(SG_WG, 1, 1)
fn matmul_sg_a4b4_norm(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let t = sgTile(wid, lid);
  var acc0: SgAcc;
  var acc1: SgAcc;
  var bv: SgBlock;
  let lk = lane % SG_KB;
  let lo = min(SG_TM, SG_HALF);
  let hi = SG_TM - lo;
  let r0 = sgRowRinv(t, 0u, lk);
  var r1 = 0.0;
  if (hi > 0u) { r1 = sgRowRinv(t, SG_HALF, lk); }
  for (var k0 = 0u; k0 < p.K; k0 += SG_KB) {
    sgLoadB4(&bv, t, k0);
    let w = sgNormW(k0, lk);
    sgRowsA4(&acc0, &bv, sgNormA4(sgLoadA4(t, 0u, k0, lk), r0, w), lo);
    if (hi > 0u) { sgRowsA4(&acc1, &bv, sgNormA4(sgLoadA4(t, SG_HALF, k0, lk), r1, w), hi); }
  }
  sgStoreTile(&acc0, &acc1, t);
}
