/**
 * Elementwise ops on the GPU: residual add, axpy and scale over flat tensors, and the SwiGLU
 * activation of a gated MLP (forward and backward).
 *   add(a, b, out)           out = a + b
 *   axpy(x, y, alpha)        y += alpha·x         (residual accumulation, gradient accumulation)
 *   scale(x, alpha)          x *= alpha           (in place)
 *   swiglu(gate, up, h)      h = silu(gate)·up
 *   swigluBackward(dh, gate, up, dgate, dup)
 * Tensors bigger than one storage binding are processed in windows (several dispatches).
 * Outputs must not share a buffer with inputs unless stated (WebGPU forbids a buffer bound as both
 * writable and readable in one dispatch).
 */
import { Params, type Gpu, type Kernel } from "../gpu/runtime.ts";
import { Tensor, shapeString } from "../gpu/tensor.ts";
import { bindWindow, chunksFitting, workgroupGrid, type WindowOptions } from "./launch.ts";

const WG = 256;
const PER = 4;
const BLOCK = WG * PER;

const ADD: Kernel = { shader: "elementwise", entry: "add", storage: ["read", "read", "read_write"], uniforms: true };
const AXPY: Kernel = { shader: "elementwise", entry: "axpy", storage: ["read", "read_write"], uniforms: true };
const SCALE: Kernel = { shader: "elementwise", entry: "scale", storage: ["read_write"], uniforms: true };
const SWIGLU: Kernel = { shader: "elementwise", entry: "swiglu_forward", storage: ["read", "read", "read_write"], uniforms: true };
const SWIGLU_BWD: Kernel = {
  shader: "elementwise",
  entry: "swiglu_backward",
  storage: ["read", "read", "read", "read_write", "read_write"],
  uniforms: true,
};
const SWIGLU_BWD_FUSED: Kernel = {
  shader: "elementwise",
  entry: "swiglu_backward_fused",
  storage: ["read", "read", "read", "read_write"],
  uniforms: true,
};

export interface FlatOptions extends WindowOptions {
  /** Number of elements (default: all of the output operand). */
  n?: number;
  /** Element offsets of the operands. */
  offsetA?: number;
  offsetB?: number;
  offsetOut?: number;
}

function need(op: string, t: Tensor, off: number, n: number, what: string) {
  if (off + n > t.numel) throw new Error(`${op}: ${what} ${shapeString(t.shape)} has no room for ${n} elements at offset ${off}`);
}

type Role = "a" | "b" | "out";

function flatDispatch(gpu: Gpu, kernel: Kernel, ops: { t: Tensor; off: number; role: Role }[], n: number, alpha: number, o: FlatOptions) {
  for (const [start, count] of chunksFitting(gpu, n, ops.map(() => 1), o)) {
    const wins = ops.map(({ t, off }) => bindWindow(gpu, t, off + start, count));
    const base = (role: Role) => {
      const i = ops.findIndex((op) => op.role === role);
      return i < 0 ? 0 : wins[i]!.base;
    };
    gpu.dispatch({
      kernel,
      params: new Params().u32(count, base("a"), base("b"), base("out")).f32(alpha).u32(0, 0, 0).bytes(),
      bindings: wins.map((w) => w.view),
      workgroups: workgroupGrid(gpu, Math.ceil(count / BLOCK)),
    });
  }
}

/** out = a + b over n elements. `out` may not alias a or b (use axpy for in-place accumulation). */
export function add(gpu: Gpu, a: Tensor, b: Tensor, out: Tensor, o: FlatOptions = {}): void {
  const n = o.n ?? out.numel;
  need("add", a, o.offsetA ?? 0, n, "a");
  need("add", b, o.offsetB ?? 0, n, "b");
  need("add", out, o.offsetOut ?? 0, n, "out");
  flatDispatch(gpu, ADD, [{ t: a, off: o.offsetA ?? 0, role: "a" }, { t: b, off: o.offsetB ?? 0, role: "b" }, { t: out, off: o.offsetOut ?? 0, role: "out" }], n, 1, o);
}

/** y += alpha·x over n elements (x at offsetA, y at offsetOut). */
export function axpy(gpu: Gpu, x: Tensor, y: Tensor, alpha = 1, o: FlatOptions = {}): void {
  const n = o.n ?? y.numel;
  need("axpy", x, o.offsetA ?? 0, n, "x");
  need("axpy", y, o.offsetOut ?? 0, n, "y");
  flatDispatch(gpu, AXPY, [{ t: x, off: o.offsetA ?? 0, role: "a" }, { t: y, off: o.offsetOut ?? 0, role: "out" }], n, alpha, o);
}

/** x *= alpha over n elements, in place (x at offsetOut). */
export function scale(gpu: Gpu, x: Tensor, alpha: number, o: FlatOptions = {}): void {
  const n = o.n ?? x.numel;
  need("scale", x, o.offsetOut ?? 0, n, "x");
  flatDispatch(gpu, SCALE, [{ t: x, off: o.offsetOut ?? 0, role: "out" }], n, alpha, o);
}

/**
 * Layout of the [rows, I] operands of SwiGLU: each operand has an element offset and a row stride
 * (default I). A fused gate_up projection [rows, 2I] is gate = {offset 0, stride 2I} and
 * up = {offset I, stride 2I} of the same tensor.
 */
export interface SwigluLayout extends WindowOptions {
  offsetGate?: number;
  strideGate?: number;
  offsetUp?: number;
  strideUp?: number;
  /** h in the forward, dh in the backward. */
  offsetH?: number;
  strideH?: number;
  offsetDGate?: number;
  strideDGate?: number;
  offsetDUp?: number;
  strideDUp?: number;
}

interface Operand {
  t: Tensor;
  off: number;
  stride: number;
  what: string;
}

function swigluDispatch(gpu: Gpu, kernel: Kernel, ops: Operand[], rows: number, I: number, o: SwigluLayout) {
  for (const op of ops) {
    if (op.stride < I) throw new Error(`swiglu: ${op.what} row stride ${op.stride} is shorter than I=${I}`);
    if (rows > 0) need("swiglu", op.t, op.off, (rows - 1) * op.stride + I, op.what);
  }
  const lanes = gluLanes(I);
  for (const [r0, rc] of chunksFitting(gpu, rows, ops.map((op) => op.stride), o)) {
    const wins = ops.map((op) => bindWindow(gpu, op.t, op.off + r0 * op.stride, (rc - 1) * op.stride + I));
    gpu.dispatch({ kernel, params: gluParams(ops, wins.map((w) => w.base), rc, I), bindings: wins.map((w) => w.view), ...gluGrid(gpu, rc, I, lanes) });
  }
}

/**
 * Lanes per row of the SwiGLU kernels (shaders/elementwise.wgsl GLU_LANES): all WG for rows of WG·PER columns or more,
 * else the power of two that covers the row, so a workgroup packs several narrow rows instead of idling lanes past I.
 */
function gluLanes(I: number): number {
  let lanes = 1;
  while (lanes < WG && lanes * PER < I) lanes *= 2;
  return lanes;
}

/** The override and workgroup grid of a SwiGLU dispatch over `rows` rows of I columns. */
function gluGrid(gpu: Gpu, rows: number, I: number, lanes: number): { constants?: Record<string, number>; workgroups: [number, number] } {
  const rowGroups = Math.ceil(rows / (WG / lanes));
  return { ...(lanes === WG ? {} : { constants: { GLU_LANES: lanes } }), workgroups: workgroupGrid(gpu, rowGroups * Math.ceil(I / (lanes * PER))) };
}

// GluParams: rows, I, strideG, strideU, strideH, baseG, baseU, baseH, strideDG, strideDU, baseDG, baseDU.
function gluParams(ops: Operand[], bases: number[], rows: number, I: number): ArrayBuffer {
  const by = (what: string) => {
    const i = ops.findIndex((op) => op.what === what);
    return i < 0 ? { stride: 0, base: 0 } : { stride: ops[i]!.stride, base: bases[i]! };
  };
  const g = by("gate"), u = by("up"), h = by("h"), dg = by("dgate"), du = by("dup");
  return new Params().u32(rows, I, g.stride, u.stride, h.stride, g.base, u.base, h.base, dg.stride, du.stride, dg.base, du.base).bytes();
}

/** h = silu(gate)·up over [rows, I]. gate and up may be the same tensor (a fused gate_up). */
export function swiglu(gpu: Gpu, gate: Tensor, up: Tensor, h: Tensor, dims: { rows: number; I: number }, o: SwigluLayout = {}): void {
  const { rows, I } = dims;
  swigluDispatch(
    gpu,
    SWIGLU,
    [
      { t: gate, off: o.offsetGate ?? 0, stride: o.strideGate ?? I, what: "gate" },
      { t: up, off: o.offsetUp ?? 0, stride: o.strideUp ?? I, what: "up" },
      { t: h, off: o.offsetH ?? 0, stride: o.strideH ?? I, what: "h" },
    ],
    rows,
    I,
    o,
  );
}

/**
 * dgate = dh·up·σ(g)·(1 + g·(1 − σ(g))), dup = dh·silu(gate) (written, not accumulated).
 * dgate and dup may be the same tensor (the gradient of a fused gate_up); their regions must not overlap.
 */
export function swigluBackward(
  gpu: Gpu,
  dh: Tensor,
  gate: Tensor,
  up: Tensor,
  dgate: Tensor,
  dup: Tensor,
  dims: { rows: number; I: number },
  o: SwigluLayout = {},
): void {
  const { rows, I } = dims;
  const ops: Operand[] = [
    { t: dh, off: o.offsetH ?? 0, stride: o.strideH ?? I, what: "h" },
    { t: gate, off: o.offsetGate ?? 0, stride: o.strideGate ?? I, what: "gate" },
    { t: up, off: o.offsetUp ?? 0, stride: o.strideUp ?? I, what: "up" },
    { t: dgate, off: o.offsetDGate ?? 0, stride: o.strideDGate ?? I, what: "dgate" },
  ];
  if (dgate.buffer === dup.buffer) {
    // One writable binding covering both regions; the du index is expressed relative to dgate's window.
    const dgOff = o.offsetDGate ?? 0, duOff = o.offsetDUp ?? 0;
    const sDG = o.strideDGate ?? I, sDU = o.strideDUp ?? I;
    if (sDG !== sDU) throw new Error("swigluBackward: a fused dgate/dup tensor needs one row stride");
    if (dgate.byteOffset !== dup.byteOffset) throw new Error("swigluBackward: fused dgate/dup must be the same tensor");
    const lo = Math.min(dgOff, duOff);
    const span = Math.abs(duOff - dgOff) + I;
    if (span > sDG) throw new Error("swigluBackward: fused dgate/dup regions overlap or exceed the row stride");
    const fused: Operand = { t: dgate, off: lo, stride: sDG, what: "dgate" };
    for (const op of [...ops.slice(0, 3), fused]) {
      if (rows > 0) need("swigluBackward", op.t, op.off, (rows - 1) * op.stride + (op === fused ? span : I), op.what);
    }
    const lanes = gluLanes(I);
    for (const [r0, rc] of chunksFitting(gpu, rows, [...ops.slice(0, 3).map((op) => op.stride), sDG], o)) {
      const wins = ops.slice(0, 3).map((op) => bindWindow(gpu, op.t, op.off + r0 * op.stride, (rc - 1) * op.stride + I));
      const wf = bindWindow(gpu, dgate, lo + r0 * sDG, (rc - 1) * sDG + span);
      const bases = [...wins.map((w) => w.base), wf.base + (dgOff - lo), wf.base + (duOff - lo)];
      const all: Operand[] = [...ops.slice(0, 3), { t: dgate, off: 0, stride: sDG, what: "dgate" }, { t: dup, off: 0, stride: sDG, what: "dup" }];
      gpu.dispatch({
        kernel: SWIGLU_BWD_FUSED,
        params: gluParams(all, bases, rc, I),
        bindings: [...wins.map((w) => w.view), wf.view],
        ...gluGrid(gpu, rc, I, lanes),
      });
    }
    return;
  }
  swigluDispatch(gpu, SWIGLU_BWD, [...ops, { t: dup, off: o.offsetDUp ?? 0, stride: o.strideDUp ?? I, what: "dup" }], rows, I, o);
}
