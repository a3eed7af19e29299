/**
 * Inverted dropout on the GPU with a keyed mask that is never stored (shaders/dropout.wgsl):
 *   dropout(x, y, p, key)                       y  = mask ⊙ x · 1/(1−p)
 *   dropout(x, y, p, key, {accumulate: true})   y += mask ⊙ x · 1/(1−p)   (the backward into an accumulated gradient)
 * Element g is kept when the top 24 bits of hash(key, g) reach round(p·2^24), so the kept share is 1−p and the same
 * key gives the same mask in the forward, the backward and an activation-checkpointing recompute.
 * Tensors bigger than one storage binding are processed in windows; the mask follows the element index, not the window.
 */
import { Params, type Gpu, type Kernel } from "../gpu/runtime.ts";
import { shapeString, type Tensor } from "../gpu/tensor.ts";
import { dropoutScale, dropoutThreshold, type DropoutKey } from "./dropout.ref.ts";
import { bindWindow, chunksFitting, workgroupGrid, type WindowOptions } from "./launch.ts";

export type { DropoutKey } from "./dropout.ref.ts";

const BLOCK = 256 * 4;
const STORAGE = ["read", "read_write"] as const;
const DROPOUT: Kernel = { shader: "dropout", entry: "dropout", storage: STORAGE, uniforms: true };
const DROPOUT_ACC: Kernel = { shader: "dropout", entry: "dropout_accumulate", storage: STORAGE, uniforms: true };

export interface DropoutOptions extends WindowOptions {
  /** Elements (default: all of y). */
  n?: number;
  /** Add into y instead of writing it. */
  accumulate?: boolean;
}

/** y (+)= mask ⊙ x · 1/(1−p) over n elements; x and y must be different buffers. Records GPU work only. */
export function dropout(gpu: Gpu, x: Tensor, y: Tensor, p: number, key: DropoutKey, o: DropoutOptions = {}): void {
  const n = o.n ?? y.numel;
  if (n > x.numel || n > y.numel) throw new Error(`dropout: ${n} elements do not fit x ${shapeString(x.shape)} and y ${shapeString(y.shape)}`);
  if (n >= 2 ** 32) throw new Error(`dropout: ${n} elements exceed the mask's 32-bit element index`);
  if (x.buffer === y.buffer) throw new Error("dropout: x and y must be different buffers");
  const threshold = dropoutThreshold(p), scale = dropoutScale(p);
  for (const [start, count] of chunksFitting(gpu, n, [1, 1], o)) {
    const wx = bindWindow(gpu, x, start, count), wy = bindWindow(gpu, y, start, count);
    gpu.dispatch({
      kernel: o.accumulate ? DROPOUT_ACC : DROPOUT,
      params: new Params().u32(count, wx.base, wy.base, start, key.key0 >>> 0, key.key1 >>> 0, threshold).f32(scale).bytes(),
      bindings: [wx.view, wy.view],
      workgroups: workgroupGrid(gpu, Math.ceil(count / BLOCK)),
    });
  }
}
