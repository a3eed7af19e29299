/**
 * GPU buffer allocation with reuse and accounting. Freed buffers go back to a free list keyed by
 * (size class, usage) and are handed out again, so the per-step churn of activations does not hit
 * the driver. `inUse` and `peak` count bytes handed out to callers; `pooled` counts bytes held idle.
 */
export interface BufferStats {
  inUse: number;
  peak: number;
  pooled: number;
  allocations: number;
}

/** WebGPU buffer usage bits (the spec's values; the globals only exist once a binding is loaded). */
export const Usage = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 } as const;
export const STORAGE_USAGE = Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST;

/** Rounds a request up so buffers are reusable across close sizes: 256 B granularity, and 1/8-power-of-two steps above 64 KiB. */
export function sizeClass(bytes: number): number {
  const min = Math.max(256, Math.ceil(bytes / 256) * 256);
  if (min <= 65536) return min;
  const step = 2 ** (Math.floor(Math.log2(min)) - 3);
  return Math.ceil(min / step) * step;
}

export class BufferPool {
  private free = new Map<string, GPUBuffer[]>();
  private sizes = new WeakMap<GPUBuffer, number>();
  readonly stats: BufferStats = { inUse: 0, peak: 0, pooled: 0, allocations: 0 };

  constructor(private device: GPUDevice) {}

  acquire(bytes: number, usage: number = STORAGE_USAGE, label?: string): GPUBuffer {
    const size = sizeClass(bytes);
    const key = `${size}:${usage}`;
    let buf = this.free.get(key)?.pop();
    if (buf) {
      this.stats.pooled -= size;
    } else {
      buf = this.device.createBuffer({ size, usage, label });
      this.sizes.set(buf, size);
      this.stats.allocations++;
    }
    this.stats.inUse += size;
    this.stats.peak = Math.max(this.stats.peak, this.stats.inUse);
    return buf;
  }

  /** Returns a buffer for reuse. The caller must not touch it again (GPU work queued before is fine: queue order protects it). */
  release(buf: GPUBuffer): void {
    const size = this.sizes.get(buf);
    if (size === undefined) throw new Error("BufferPool.release: buffer was not acquired from this pool");
    const key = `${size}:${buf.usage}`;
    let list = this.free.get(key);
    if (!list) this.free.set(key, (list = []));
    list.push(buf);
    this.stats.inUse -= size;
    this.stats.pooled += size;
  }

  /** Destroys every idle buffer (returns their memory to the driver). */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.stats.pooled = 0;
  }
}
