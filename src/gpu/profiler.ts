/**
 * GPU time per kernel family, from WebGPU timestamp queries (`timestamp-query`). While a profiler is attached to the
 * runtime (runtime.ts), every dispatch gets a compute pass of its own whose `timestampWrites` mark its start and end
 * in a query set; each submit resolves the queries it used into a mappable buffer, and `collect()` (called by the
 * runtime at its await points, `sync` and `readMany`) reads them and adds each pass's end − start to its family:
 * the shader's name and entry point, e.g. "matmul-subgroups:matmul_sg_a4b4".
 *
 * Resolution: Dawn resolves timestamps to nanoseconds. Its default `timestamp_quantization` toggle would round them
 * down to multiples of 65,536 ns (~0.07 ms, per timestamp); recall turns that toggle off at device creation
 * (device.ts), so the figures carry the GPU clock's own resolution (on lavapipe, the CPU's monotonic clock in ns).
 * A dispatch's time is the GPU's between the pass's start and end: queueing and CPU-side recording are not in it,
 * which is why the tables print the wall time beside the GPU total.
 */
import { RecallError } from "../errors.ts";
import { Usage, type BufferPool } from "./buffers.ts";

/** GPUBufferUsage.QUERY_RESOLVE. */
const QUERY_RESOLVE = 0x200;
/** Passes per query set (two timestamps each); a batch that fills it is submitted early. WebGPU caps a set at 4096 queries. */
export const DEFAULT_PASSES_PER_SET = 2048;

export interface FamilyTime {
  dispatches: number;
  /** GPU milliseconds summed over the family's dispatches. */
  ms: number;
}

export interface ProfileSnapshot {
  /** Per kernel family, largest GPU time first. */
  families: [string, FamilyTime][];
  dispatches: number;
  ms: number;
}

/** The device feature profiling needs; `flag` names what the user typed when it is missing. */
export function requireTimestampQuery(features: ReadonlySet<string>, flag: string, adapter: string): void {
  if (!features.has("timestamp-query")) {
    throw new RecallError(`${flag} needs the WebGPU feature 'timestamp-query', which this adapter (${adapter}) does not offer`, {
      hint: `run without ${flag}; wall-clock timings (timing_s/*) stay available`,
    });
  }
}

/** The sum of several profiles (e.g. of the steps of a run). */
export function sumProfiles(ps: readonly ProfileSnapshot[]): ProfileSnapshot {
  const totals = new Map<string, FamilyTime>();
  for (const p of ps) {
    for (const [name, f] of p.families) {
      const t = totals.get(name) ?? { dispatches: 0, ms: 0 };
      totals.set(name, { dispatches: t.dispatches + f.dispatches, ms: t.ms + f.ms });
    }
  }
  return snapshotOf(totals);
}

function snapshotOf(totals: ReadonlyMap<string, FamilyTime>): ProfileSnapshot {
  const families = [...totals].map(([k, v]): [string, FamilyTime] => [k, { ...v }]).sort((a, b) => b[1].ms - a[1].ms);
  return { families, dispatches: families.reduce((a, [, f]) => a + f.dispatches, 0), ms: families.reduce((a, [, f]) => a + f.ms, 0) };
}

interface Readback {
  staging: GPUBuffer;
  families: string[];
}

export class GpuProfiler {
  private readonly querySet: GPUQuerySet;
  private readonly resolved: GPUBuffer;
  /** The family of each pass recorded since the last resolve (pass i wrote queries 2i and 2i+1). */
  private recorded: string[] = [];
  private submitted: Readback[] = [];
  private totals = new Map<string, FamilyTime>();
  /** The collect in progress: collects run one after another, so an awaited one has counted every earlier submit. */
  private collecting: Promise<void> = Promise.resolve();

  constructor(
    device: GPUDevice,
    private readonly pool: BufferPool,
    readonly passesPerSet = DEFAULT_PASSES_PER_SET,
  ) {
    this.querySet = device.createQuerySet({ type: "timestamp", count: 2 * passesPerSet, label: "profile-timestamps" });
    this.resolved = device.createBuffer({ size: 16 * passesPerSet, usage: QUERY_RESOLVE | Usage.COPY_SRC, label: "profile-resolve" });
  }

  /** No room for another pass: the runtime submits what it has first. */
  get full(): boolean {
    return this.recorded.length >= this.passesPerSet;
  }

  /** Opens the compute pass of one dispatch, timestamped at its start and end. */
  beginPass(encoder: GPUCommandEncoder, family: string): GPUComputePassEncoder {
    const i = this.recorded.length;
    this.recorded.push(family);
    return encoder.beginComputePass({ timestampWrites: { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
  }

  /** Appends, before the batch is finished, the copy of its timestamps into a mappable buffer. */
  resolve(encoder: GPUCommandEncoder): void {
    const n = this.recorded.length;
    if (n === 0) return;
    const bytes = 16 * n;
    encoder.resolveQuerySet(this.querySet, 0, 2 * n, this.resolved, 0);
    const staging = this.pool.acquire(bytes, Usage.MAP_READ | Usage.COPY_DST, "profile-readback");
    encoder.copyBufferToBuffer(this.resolved, 0, staging, 0, bytes);
    this.submitted.push({ staging, families: this.recorded });
    this.recorded = [];
  }

  /** Waits for the timestamps of everything submitted so far and adds them to the totals. */
  collect(): Promise<void> {
    this.collecting = this.collecting.then(() => this.collectSubmitted());
    return this.collecting;
  }

  private async collectSubmitted(): Promise<void> {
    const batch = this.submitted.splice(0);
    try {
      await Promise.all(batch.map((b) => b.staging.mapAsync(0x1 /* GPUMapMode.READ */)));
    } catch (e) {
      throw new RecallError(`GPU profile readback failed: ${(e as Error).message}`);
    }
    for (const { staging, families } of batch) {
      const t = new BigUint64Array(staging.getMappedRange(0, 16 * families.length));
      families.forEach((family, i) => {
        // Nanoseconds; a clock that steps back between two passes (never seen) counts as zero, not negative.
        const ns = t[2 * i + 1]! > t[2 * i]! ? Number(t[2 * i + 1]! - t[2 * i]!) : 0;
        const f = this.totals.get(family);
        if (f) {
          f.dispatches++;
          f.ms += ns / 1e6;
        } else this.totals.set(family, { dispatches: 1, ms: ns / 1e6 });
      });
      staging.unmap();
      this.pool.release(staging);
    }
  }

  /** The totals collected so far, largest GPU time first. */
  snapshot(): ProfileSnapshot {
    return snapshotOf(this.totals);
  }

  /** Forgets the totals (timestamps still in flight are counted by the next collect). */
  reset(): void {
    this.totals.clear();
  }

  destroy(): void {
    this.querySet.destroy();
    this.resolved.destroy();
  }
}
