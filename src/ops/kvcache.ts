/**
 * KV cache append for generation: k/v rows of the tokens just processed go to their positions in each
 * sequence's cache, so later steps attend to them without recomputing the prefix.
 *   src k, v [B, Tq, F]   cache k, v [B, Tmax, F]   start [B] (u32): cache length before   newLen [B] (u32)
 */
import { RecallError } from "../errors.ts";
import { Params, type Gpu, type Kernel } from "../gpu/runtime.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { workgroupGrid } from "./launch.ts";

const APPEND: Kernel = { shader: "kvcache", entry: "kv_append", storage: ["read", "read", "read", "read", "read_write", "read_write"], uniforms: true };

export interface KvAppendDims {
  B: number;
  Tq: number;
  Tmax: number;
  F: number;
}

export function kvAppend(gpu: Gpu, k: Tensor, v: Tensor, start: Tensor, newLen: Tensor, kCache: Tensor, vCache: Tensor, dims: KvAppendDims): void {
  const { B, Tq, Tmax, F } = dims;
  const n = B * Tq * F;
  if (k.numel < n || v.numel < n) throw new Error(`kvAppend: k/v need ${n} elements`);
  if (kCache.numel < B * Tmax * F || vCache.numel < B * Tmax * F) throw new Error(`kvAppend: caches need ${B * Tmax * F} elements`);
  if (B * Tmax * F * 4 > gpu.limits.maxStorageBufferBindingSize) {
    throw new RecallError(`KV cache of ${B} sequences × ${Tmax} tokens × ${F} needs more than one storage binding (${gpu.limits.maxStorageBufferBindingSize} bytes); lower the batch size or the maximum length`);
  }
  const [x, y] = workgroupGrid(gpu, Math.ceil(n / 256));
  gpu.dispatch({
    kernel: APPEND,
    params: new Params().u32(B, Tq, Tmax, F, x, 0, 0, 0).bytes(),
    bindings: [k, v, start, newLen, kCache, vCache],
    workgroups: [x, y],
  });
}
