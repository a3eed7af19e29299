/**
 * Casts on the GPU (shaders/cast.wgsl): f32 → bf16 with torch's rounding (round to nearest even, NaN kept), the same
 * bits as the CPU reference f32ToBf16 (cast.ref.ts). A rollout in bf16 refreshes its copy of the
 * policy's projection weights with it after every update.
 * Tensors bigger than one storage binding are cast in windows.
 */
import { Params, type Gpu, type Kernel } from "../gpu/runtime.ts";
import { Tensor, shapeString } from "../gpu/tensor.ts";
import { bindWindow, chunksFitting, workgroupGrid, type WindowOptions } from "./launch.ts";

const CAST_BF16: Kernel = { shader: "cast", entry: "cast_bf16", storage: ["read", "read_write"], uniforms: true };

/**
 * dst (bf16) = src (f32), element for element. dst must start on a whole u32 word (an even element of its buffer);
 * an odd count leaves the high half of dst's last word 0. Records GPU work only.
 */
export function castToBf16(gpu: Gpu, src: Tensor, dst: Tensor, o: WindowOptions = {}): void {
  if (src.dtype !== "f32" || dst.dtype !== "bf16") throw new Error(`castToBf16: ${src.dtype} → ${dst.dtype}; needs f32 → bf16`);
  if (src.numel !== dst.numel) throw new Error(`castToBf16: ${shapeString(src.shape)} into ${shapeString(dst.shape)}`);
  if (dst.byteOffset % 4 !== 0) throw new Error("castToBf16: dst must start on a 4-byte word");
  const n = src.numel;
  // Windows of an even number of values, so every window but the last writes whole words.
  for (const [start, count] of chunksFitting(gpu, Math.ceil(n / 2), [2, 2], o).map(([s, c]) => [2 * s, Math.min(2 * c, n - 2 * s)] as const)) {
    const ws = bindWindow(gpu, src, start, count);
    // dst is bound as u32 words: a window of its words (start is even, so it begins on one).
    const words = new Tensor(dst.buffer, [Math.ceil(dst.numel / 2)], "u32", dst.byteOffset);
    const wd = bindWindow(gpu, words, start / 2, Math.ceil(count / 2));
    gpu.dispatch({
      kernel: CAST_BF16,
      params: new Params().u32(Math.ceil(count / 2), count, ws.base, wd.base).bytes(),
      bindings: [new Tensor(ws.view.buffer, ws.view.shape, "u32", ws.view.byteOffset), wd.view],
      workgroups: workgroupGrid(gpu, Math.ceil(count / 2 / 64)),
    });
  }
}
