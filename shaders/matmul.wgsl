// Batched matrix multiply: C[b] = alpha * op(A[b]) · op(B[b]) (+ bias) (+ C[b] when ACCUMULATE).
// op(X) is X or Xᵀ (TRANS_A / TRANS_B), covering A·B, A·Bᵀ and Aᵀ·B of forward and backward passes.
// Logical shapes: op(A) is M×K, op(B) is K×N, C is M×N, all row-major; batch strides may be 0 to broadcast.
//
// Kernel shape chosen for lavapipe (CPU Vulkan), where each invocation is a SIMD lane and barriers
// are costly: no workgroup memory, each invocation accumulates a TM×TN register tile, loads are
// clamped to the matrix (no branches in the inner loop), stores are bounds-checked.

struct Params {
  M: u32, N: u32, K: u32, batch: u32,
  offA: u32, offB: u32, offC: u32, offBias: u32,
  strideA: u32, strideB: u32, strideC: u32, alpha: f32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;

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

@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul(@builtin(global_invocation_id) gid: vec3u) {
  let row0 = gid.y * TM;
  let col0 = gid.x * TN;
  let b = gid.z;
  if (row0 >= p.M || col0 >= p.N || b >= p.batch) { return; }
  let aBase = p.offA + b * p.strideA;
  let bBase = p.offB + b * p.strideB;
  let cBase = p.offC + b * p.strideC;

  // Clamp row/column indices so edge tiles read valid (duplicated) data; those lanes are not stored.
  var rows: array<u32, MAX_TM>;
  var cols: array<u32, TN>;
  for (var i = 0u; i < TM; i++) { rows[i] = min(row0 + i, p.M - 1u); }
  for (var j = 0u; j < TN; j++) { cols[j] = min(col0 + j, p.N - 1u); }

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
