/**
 * Matrix multiply on the GPU, in the variants a transformer's forward and backward need:
 *   forward   y = x·Wᵀ (+ b)          → matmul(x, W, {transB: true, bias})
 *   backward  dx = dy·W               → matmul(dy, W)
 *             dW += dyᵀ·x            → matmul(dy, x, {transA: true, accumulate: true})
 * Batched over a leading dimension with per-operand strides (0 broadcasts one operand).
 *
 * Two kernels in shaders/matmul.wgsl compute the same contract: a subgroup kernel (adapters with the
 * `subgroups` feature and subgroups of ≥ 8 lanes, lavapipe included) and a portable fallback. Which
 * one runs, and with what register tiling, is a `MatmulPlan` (choosePlan); results agree to rounding.
 */
import { Params, type Gpu, type Kernel } from "../gpu/runtime.ts";
import { subgroupKernelsSupported, subgroupSources } from "../gpu/shaders.ts";
import { Tensor, shapeString } from "../gpu/tensor.ts";
import { bindWindow, workgroupGrid } from "./launch.ts";

const { portable: PORTABLE_SOURCE, subgroup: SUBGROUP_SOURCE } = subgroupSources("matmul");

/** Replaces `from` in `code` (every match of a global RegExp); a source that lost it is a bug in this file. */
function swapIn(code: string, from: string | RegExp, to: string, variant: string): string {
  const next = code.replace(from, to);
  if (next === code) throw new Error(`shaders/matmul.wgsl: the ${variant} variant lost '${String(from)}'`);
  return next;
}

/**
 * The same kernels reading B as f16 (adapters with `shader-f16`): a LoRA run keeps its frozen projection weights in
 * half precision. Only B's declarations and its loads change; every product and sum stays f32.
 */
function halfB(code: string): string {
  let out = swapIn(code, "var<storage, read> B: array<f32>;", "var<storage, read> B: array<f16>;", "f16");
  out = swapIn(out, /return B\[([^\]]+)\];/g, "return f32(B[$1]);", "f16");
  if (out.includes("var<storage, read> B4: array<vec4f>;")) {
    out = swapIn(out, "var<storage, read> B4: array<vec4f>;", "var<storage, read> B4: array<vec4h>;", "f16");
    out = swapIn(out, "let lo4 = B4[base];", "let lo4 = vec4f(B4[base]);", "f16");
    out = swapIn(out, "B4[base + 1u],", "vec4f(B4[base + 1u]),", "f16");
  }
  return `enable f16;\n${out}`;
}

/**
 * The same kernels reading B as bf16 (any adapter: B is bound as u32 words of two values, see src/gpu/tensor.ts): a
 * rollout's copy of the policy's projection weights. A value's f32 is exact, so the products are those of the f32
 * kernel on the same values, bit for bit; the vec4 path loads a block's 8 k as one vec4u (sgLoadBH4).
 */
function bf16B(code: string): string {
  let out = swapIn(code, "var<storage, read> B: array<f32>;", "var<storage, read> B: array<u32>;", "bf16");
  out = swapIn(out, /return B\[([^\]]+)\];/g, "return bf16At($1);", "bf16");
  if (out.includes("fn sgLoadBH4(")) out = swapIn(out, /sgLoadB4\(&bv, t, k0\);/g, "sgLoadBH4(&bv, t, k0);", "bf16");
  return `${out}
fn bf16At(i: u32) -> f32 {
  let w = B[i / 2u];
  return bitcast<f32>(select(w << 16u, w & 0xffff0000u, (i & 1u) == 1u));
}
`;
}

const STORAGE = ["read", "read", "read_write", "read"] as const;

/** The entry points of one B element type. */
interface MatmulKernels {
  portable: Kernel;
  transposeB: Kernel;
  /** Subgroup kernels by [vec4A][vec4B]. */
  subgroup: [[Kernel, Kernel], [Kernel, Kernel]];
  /** vec4 A and B with the RMSNorm of A in the prologue (MatmulOptions.normA). */
  subgroupNormA: Kernel;
}

function kernelsReading(variant: string, transform: (code: string) => string): MatmulKernels {
  const portable: Kernel = { shader: { name: `matmul-portable${variant}`, code: transform(PORTABLE_SOURCE) }, entry: "matmul", storage: STORAGE, uniforms: true };
  const sg: Kernel = { shader: { name: `matmul-subgroups${variant}`, code: transform(SUBGROUP_SOURCE) }, entry: "matmul_sg", storage: STORAGE, uniforms: true };
  return {
    portable,
    transposeB: { ...portable, entry: "transpose_b" },
    subgroup: [
      [sg, { ...sg, entry: "matmul_sg_b4" }],
      [{ ...sg, entry: "matmul_sg_a4" }, { ...sg, entry: "matmul_sg_a4b4" }],
    ],
    subgroupNormA: { ...sg, entry: "matmul_sg_a4b4_norm", storage: [...STORAGE, "read"] },
  };
}

/** By B's dtype; built on first use (the f16 and bf16 variants are source rewrites). */
const KERNELS: Partial<Record<MatmulBType, MatmulKernels>> = {};
function kernelsFor(dtype: MatmulBType): MatmulKernels {
  return (KERNELS[dtype] ??= kernelsReading(dtype === "f32" ? "" : `-${dtype}b`, dtype === "f16" ? halfB : dtype === "bf16" ? bf16B : (c) => c));
}

/** Register/workgroup tiling of the portable kernel (WGSL overrides). */
export interface MatmulTiling {
  tm: number; // rows per invocation (1..8); columns per invocation are fixed at 4 (one vec4)
  wgX: number;
  wgY: number;
}

/**
 * The kernel a product runs with. `subgroup`: each subgroup of a 64-invocation workgroup owns `tm`
 * rows (1..16) and each invocation `tn` columns (1..4); the workgroup's lanes form 64/`wgn` row groups of `wgn`
 * lanes across the columns (wgn 64, 32, 16 or 8, at least the subgroup size; default 64); `vec4B` reads a
 * transposed B four k at a time (needs transB, K, offsetB and — when batched — strideB multiples of 4); `vec4A` reads
 * A four k (not transposed) or four rows (transposed) at a time (see vec4AAligned).
 * `portable`: see MatmulTiling.
 */
export type MatmulPlan =
  | ({ kernel: "portable" } & MatmulTiling)
  | { kernel: "subgroup"; tm: number; tn: number; vec4B: boolean; vec4A?: boolean; wgn?: number; transposeB?: boolean };

export const SUBGROUP_MAX_TM = 16;
export const SUBGROUP_MAX_TN = 4;
const SUBGROUP_WG = 64;
/** Fewest rows per tile for which choosePlan reads A as vec4 (see choosePlan). */
const VEC4A_MIN_TM = 8;
/** Narrowest row group: the kernel shares blocks of 8 k across 8 lanes. */
const SUBGROUP_MIN_WGN = 8;
/** Fewest rows and columns for which a software adapter copies a non-transposed B transposed first (see transposedBPays). */
const TRANSPOSE_B_MIN_ROWS = 512;
const TRANSPOSE_B_MIN_COLUMNS = 128;
/** Largest B (elements) copied transposed: the copy is a pool scratch of the same size. */
const TRANSPOSE_B_MAX_ELEMENTS = 1 << 24;

/**
 * Tiling of the portable kernel by the number of output rows, from bench/matmul.ts --sweep on lavapipe (2 cores):
 * 8 rows × 4 columns per invocation was fastest for training-sized products; decode-sized products (M = batch) use
 * thin tiles so clamped duplicate rows don't multiply the work.
 */
export function chooseTiling(M: number): MatmulTiling {
  if (M >= 32) return { tm: 8, wgX: 16, wgY: 4 };
  if (M >= 4) return { tm: 4, wgX: 16, wgY: 4 };
  return { tm: M <= 1 ? 1 : 2, wgX: 64, wgY: 1 };
}

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  /** Added to every row of the result (length N). */
  bias?: Tensor;
  /** Run the portable kernel with this tiling (benchmarks, tests); results are identical, only speed differs. */
  tiling?: MatmulTiling;
  /** Run exactly this kernel and tiling (benchmarks, tests); takes precedence over `tiling`. */
  plan?: MatmulPlan;
  /** C += result instead of C = result. */
  accumulate?: boolean;
  /**
   * SwiGLU epilogue: B (transposed) holds 2N rows, gate rows then up rows (a fused gate/up weight), and
   * C = silu(alpha·A·B[0..N)ᵀ) ⊙ alpha·A·B[N..2N)ᵀ. Needs transB; no bias, no accumulate.
   */
  glu?: boolean;
  alpha?: number;
  /**
   * A is the residual stream and the product's A is its RMSNorm, rmsnorm(A)·weight with this epsilon, computed per row
   * inside the kernel exactly as rmsnorm() computes it (the same values bit for bit, one dispatch and one [M, K]
   * round trip fewer): a generation step's input, post-attention and final norms. Needs normAFusable (subgroup kernel, A read
   * as vec4 and not transposed, B transposed as vec4, one product).
   */
  normA?: { weight: Tensor; eps: number };
  /** Number of independent products; A, B, C hold them back to back unless a stride says otherwise. */
  batch?: number;
  strideA?: number;
  strideB?: number;
  strideC?: number;
  /** Element offsets into each operand (for slices of a larger buffer). */
  offsetA?: number;
  offsetB?: number;
  offsetC?: number;
}

type Dims = { M: number; N: number; K: number };

/** B's element type: f32, or the 16-bit storage of frozen (f16) and rollout (bf16) weights. */
export type MatmulBType = "f32" | "f16" | "bf16";

/**
 * Whether B can be read as vec4 along k: transposed, with K, its offset and (batched) its stride multiples of 4 — of 8
 * for a bf16 B, whose vec4 of words holds a block's 8 k.
 */
export function vec4BAligned(dims: Dims, o: MatmulOptions, bType: MatmulBType = "f32"): boolean {
  const batch = o.batch ?? 1;
  const strideB = o.strideB ?? dims.K * dims.N;
  const w = bType === "bf16" ? 8 : 4;
  return !!o.transB && dims.K % w === 0 && (o.offsetB ?? 0) % w === 0 && (batch === 1 || strideB % w === 0);
}

/**
 * Whether A can be read as vec4 with `tm` rows per tile: along k when not transposed (K a multiple of 4), along rows
 * when transposed (M and tm multiples of 4, so a tile's rows start on a vec4); and offsetA and (batched) strideA
 * multiples of 4.
 */
export function vec4AAligned(dims: Dims, o: MatmulOptions, tm: number): boolean {
  const batch = o.batch ?? 1;
  const strideA = o.strideA ?? dims.M * dims.K;
  const along = o.transA ? dims.M % 4 === 0 && tm % 4 === 0 : dims.K % 4 === 0;
  return along && (o.offsetA ?? 0) % 4 === 0 && (batch === 1 || strideA % 4 === 0);
}

/**
 * Whether matmul() can compute this product with `normA` (the RMSNorm of A in its prologue): the subgroup kernel with
 * A and B read as vec4 — A not transposed, B transposed, K a multiple of 4 (8 for a bf16 B) — and one product.
 */
export function normAFusable(gpu: Gpu, dims: Dims, o: MatmulOptions, bType: MatmulBType = "f32"): boolean {
  return subgroupKernelsSupported(gpu) && !o.transA && (o.batch ?? 1) === 1 && vec4AAligned(dims, o, 16) && vec4BAligned(dims, o, bType);
}

/**
 * The plan matmul() uses when none is given. On the subgroup kernel (measured on lavapipe with bench/matmul.ts
 * --sweep): 16 rows × 2 columns per lane for training-sized products (1.1–1.5× over 8 rows; 4 columns with 8+ rows
 * is 3–4× slower: the loops no longer unroll); with fewer rows, the next power of two ≥ M (every B element a lane
 * loads feeds tm multiply-adds, and rows past M are clamped duplicates, so tm tracks M). 2 columns per lane at every
 * M: 1 column is 10–25% slower; 4 columns for one or two rows measured between 4% slower and 11% faster at N ≥ 4864
 * and up to 25% slower at N = 384 (fewer workgroups to spread over the cores). A product narrower than 128 columns
 * splits the workgroup into row groups as narrow as the subgroup allows (wgn), instead of leaving lanes past N idle:
 * on the demo model (B=16, T≈214) its N = 64 and 32 products ran up to 2.6× faster (most ~2×), its SFT step ~24%.
 * A is read as vec4 when aligned (vec4AAligned) and tiles have 8+ rows: on the `small` preset's training products
 * (B=16, T=128) 1.24–1.29× with A along k, 1.08–1.11× with Aᵀ (dW, whose scalar loads of B then dominate), its training
 * step 1.16× (alternated in one process); at 8 rows ~1.1×, at 4 even, and at 1–2 rows (decode) 3–20% slower: each
 * lane then loads 8 k of one row where it loaded one.
 */
export function choosePlan(gpu: Gpu, dims: Dims, o: MatmulOptions = {}, bType: MatmulBType = "f32"): MatmulPlan {
  if (o.plan) return o.plan;
  if (o.tiling) return { kernel: "portable", ...o.tiling };
  if (!subgroupKernelsSupported(gpu)) return { kernel: "portable", ...chooseTiling(dims.M) };
  let tm = 1;
  while (tm < dims.M && tm < SUBGROUP_MAX_TM) tm *= 2;
  const tn = 2;
  // A GLU lane's two column slots are a gate column and its up column: a row group spans wgn output columns.
  const colsPerLane = o.glu ? 1 : tn;
  let wgn = SUBGROUP_WG;
  while (wgn / 2 >= Math.max(SUBGROUP_MIN_WGN, subgroupMaxSize(gpu)) && (wgn / 2) * colsPerLane >= dims.N) wgn /= 2;
  // With normA, A is read as vec4 at any tile height (the fused norm needs it).
  const vec4A = (tm >= VEC4A_MIN_TM || !!o.normA) && vec4AAligned(dims, o, tm);
  const transposeB = transposedBPays(gpu, dims, o);
  return {
    kernel: "subgroup",
    tm,
    tn,
    vec4B: transposeB || vec4BAligned(dims, o, bType),
    ...(vec4A ? { vec4A } : {}),
    ...(wgn < SUBGROUP_WG ? { wgn } : {}),
    ...(transposeB ? { transposeB } : {}),
  };
}

/**
 * Whether a product with a non-transposed B (the backward's dx = dy·W and dW = dyᵀ·x) copies B transposed into a
 * scratch first and reads that as vec4 along k. On a software adapter (lavapipe) every scalar storage load costs what
 * a vec4 one does, and the dx and dW products of the `small` preset's training step (2048 rows) ran 1.09–1.32× faster
 * with the copy counted (ad hoc; the same results bit for bit: the same products in the same order); the copy is one
 * pass over B, and dW with 128 rows lost to it (0.76×), hence the row floor. On a GPU, lanes reading neighbouring
 * columns of a non-transposed B are the coalesced case, so it keeps the scalar loads. Needs K a multiple of 4 (rows of
 * the copy are vec4-aligned), one product (batch 1), and enough rows and columns for the copy to pay. An f16 B (frozen
 * LoRA base weights) or bf16 B is copied as f32, exactly.
 */
function transposedBPays(gpu: Gpu, dims: Dims, o: MatmulOptions): boolean {
  return (
    gpu.handle.info.software &&
    !o.transB &&
    !o.glu &&
    (o.batch ?? 1) === 1 &&
    dims.K % 4 === 0 &&
    dims.M >= TRANSPOSE_B_MIN_ROWS &&
    dims.N >= TRANSPOSE_B_MIN_COLUMNS &&
    dims.K * dims.N <= TRANSPOSE_B_MAX_ELEMENTS
  );
}

/** The adapter's widest subgroup (64 when it does not say): a row group must hold whole subgroups. */
function subgroupMaxSize(gpu: Gpu): number {
  const info = gpu.handle.adapter.info as unknown as { subgroupMaxSize?: number };
  return info.subgroupMaxSize ?? SUBGROUP_WG;
}

/** A short name for a plan (benchmarks, logs). */
export function planName(p: MatmulPlan): string {
  if (p.kernel === "portable") return `portable tm${p.tm} ${p.wgX}x${p.wgY}`;
  return `subgroup ${p.tm}x${p.tn}${p.vec4A ? " a4" : ""}${p.transposeB ? " bT" : ""}${p.vec4B ? " b4" : ""}${p.wgn ? ` wgn${p.wgn}` : ""}`;
}

/**
 * C = alpha · op(A)·op(B) (+ bias) (+ C). Shapes: op(A) is M×K, op(B) is K×N, C is M×N. B may be f16 (frozen weights,
 * adapters with shader-f16) or bf16 (a rollout's weights, any adapter); products and sums are f32 either way.
 */
export function matmul(gpu: Gpu, a: Tensor, b: Tensor, c: Tensor, dims: Dims, o: MatmulOptions = {}): void {
  const { M, N, K } = dims;
  const batch = o.batch ?? 1;
  const strideA = o.strideA ?? M * K;
  const strideB = o.strideB ?? K * N * (o.glu ? 2 : 1);
  const strideC = o.strideC ?? M * N;
  const need = (t: Tensor, off: number, stride: number, per: number, what: string) => {
    const last = off + (batch - 1) * stride + per;
    if (last > t.numel) throw new Error(`matmul: ${what} ${shapeString(t.shape)} too small for M=${M} N=${N} K=${K} batch=${batch}`);
  };
  need(a, o.offsetA ?? 0, strideA, M * K, "A");
  need(b, o.offsetB ?? 0, strideB, K * N * (o.glu ? 2 : 1), "B");
  need(c, o.offsetC ?? 0, strideC, M * N, "C");
  if (o.bias && o.bias.numel < N) throw new Error(`matmul: bias ${shapeString(o.bias.shape)} shorter than N=${N}`);
  if (o.glu && (!o.transB || o.bias || o.accumulate)) throw new Error("matmul: the GLU epilogue needs transB, and takes no bias or accumulate");
  const bType = b.dtype;
  if (bType !== "f32" && bType !== "f16" && bType !== "bf16") throw new Error(`matmul: B must be f32, f16 or bf16 (got ${bType})`);
  if (bType === "f16" && !gpu.device.features.has("shader-f16")) throw new Error("matmul: an f16 B needs the adapter's shader-f16 feature");
  if (a.dtype !== "f32" || c.dtype !== "f32") throw new Error(`matmul: A and C must be f32 (got ${a.dtype}, ${c.dtype})`);
  // A bf16 B is bound as words of two values (offsetB may be odd: element offsets count values, not words).
  if (bType === "bf16" && b.byteOffset % 4 !== 0) throw new Error("matmul: a bf16 B must start on a 4-byte word");
  const kernels = kernelsFor(bType);
  const plan = choosePlan(gpu, dims, o, bType);
  const normW = o.normA ? bindWindow(gpu, o.normA.weight, 0, K) : undefined;
  if (o.normA) {
    if (!normAFusable(gpu, dims, o, bType) || plan.kernel !== "subgroup" || !plan.vec4A || !plan.vec4B || plan.transposeB) {
      throw new Error("matmul: normA needs the subgroup kernel with A (not transposed) and B (transposed) read as vec4, one product");
    }
  }
  const params = new Params()
    .u32(M, N, K, batch, o.offsetA ?? 0, o.offsetB ?? 0, o.offsetC ?? 0, 0, strideA, strideB, strideC)
    .f32(o.alpha ?? 1, o.normA?.eps ?? 0)
    .u32(normW?.base ?? 0)
    .bytes();
  // With no bias the slot is bound to A (read-only, never read: HAS_BIAS is false).
  const bindings = [a, b, c, o.bias ?? a, ...(normW ? [normW.view] : [])];
  const flags = { TRANS_A: !!o.transA, HAS_BIAS: !!o.bias, ACCUMULATE: !!o.accumulate, ...(o.glu ? { GLU: true } : {}) };
  if (plan.kernel === "portable") {
    gpu.dispatch({
      kernel: kernels.portable,
      constants: { ...flags, TRANS_B: !!o.transB, TM: plan.tm, WG_X: plan.wgX, WG_Y: plan.wgY },
      params,
      bindings,
      workgroups: [Math.ceil(N / ((o.glu ? 2 : 4) * plan.wgX)), Math.ceil(M / (plan.tm * plan.wgY)), batch],
    });
    return;
  }
  if (!subgroupKernelsSupported(gpu)) throw new Error("matmul: the subgroup kernel needs the 'subgroups' feature with subgroups of at least 8 lanes");
  if (!(plan.tm >= 1 && plan.tm <= SUBGROUP_MAX_TM && plan.tn >= 1 && plan.tn <= SUBGROUP_MAX_TN)) {
    throw new Error(`matmul: subgroup plan ${plan.tm}x${plan.tn} outside 1..${SUBGROUP_MAX_TM} × 1..${SUBGROUP_MAX_TN}`);
  }
  if (plan.transposeB) {
    if (o.transB || o.glu || batch !== 1 || K % 4 !== 0 || !plan.vec4B) {
      throw new Error("matmul: transposeB needs a non-transposed B, one product, K a multiple of 4, and vec4B");
    }
    // B's transposed copy (N×K, f32 whatever B is: f16 and bf16 values convert exactly) goes through the vec4 path as a
    // transposed B at offset 0.
    const copy = gpu.empty([N * K]);
    gpu.dispatch({ kernel: kernels.transposeB, params, bindings: [b, b, copy, b], workgroups: workgroupGrid(gpu, Math.ceil((N * K) / 64)) });
    matmul(gpu, a, copy, c, dims, { ...o, transB: true, offsetB: 0, strideB: undefined, plan: { ...plan, transposeB: false } });
    gpu.release(copy);
    return;
  }
  if (plan.vec4B && !vec4BAligned(dims, o, bType)) throw new Error(`matmul: vec4B needs transB, and K, offsetB and strideB multiples of ${bType === "bf16" ? 8 : 4}`);
  if (plan.vec4A && !vec4AAligned(dims, o, plan.tm)) {
    throw new Error("matmul: vec4A needs offsetA and strideA multiples of 4, and K (or with transA, M and tm) multiples of 4");
  }
  if (o.glu && plan.tn !== 2) throw new Error(`matmul: the GLU epilogue needs a subgroup plan with tn = 2 (a gate and an up column per lane), got ${plan.tn}`);
  const wgn = plan.wgn ?? SUBGROUP_WG;
  if (![8, 16, 32, 64].includes(wgn) || wgn < subgroupMaxSize(gpu)) {
    throw new Error(`matmul: subgroup plan row groups of ${wgn} lanes: need 8, 16, 32 or 64, and at least the adapter's ${subgroupMaxSize(gpu)}-lane subgroups`);
  }
  gpu.dispatch({
    kernel: o.normA ? kernels.subgroupNormA : kernels.subgroup[plan.vec4A ? 1 : 0][plan.vec4B ? 1 : 0],
    constants: { ...flags, ...(plan.vec4B ? {} : { TRANS_B: !!o.transB }), SG_TM: plan.tm, SG_TN: plan.tn, ...(wgn === SUBGROUP_WG ? {} : { SG_WGN: wgn }) },
    params,
    bindings,
    workgroups: [Math.ceil(N / (wgn * (o.glu ? 1 : plan.tn))), Math.ceil(M / (plan.tm * (SUBGROUP_WG / wgn))), batch],
  });
}
