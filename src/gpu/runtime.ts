/**
 * The GPU runtime every kernel goes through: one device, one buffer pool, one pipeline cache, and a
 * single `dispatch` that records into a batch submitted on `flush()` (or automatically when a
 * result is read back). Uniform parameters of all dispatches in a batch share one arena buffer.
 */
import { RecallError } from "../errors.ts";
import { BufferPool, Usage, STORAGE_USAGE } from "./buffers.ts";
import { openDevice, type DeviceHandle } from "./device.ts";
import { releaseBindGroup, releaseCommandBuffer, releaseComputePass } from "./binding.ts";
import { GpuProfiler, requireTimestampQuery, type ProfileSnapshot } from "./profiler.ts";
import { SHADERS, type ShaderName } from "./shaders.ts";
import { Tensor, DTYPE_BYTES, type DType } from "./tensor.ts";

export type Access = "read" | "read_write";

/** A compute entry point and how it binds: binding 0 is the uniform block when `uniforms`, then storage buffers in order. */
export interface Kernel {
  /** A shader of shaders/ by name, or inline WGSL (tests, probes) with a name unique to that source. */
  shader: ShaderName | { name: string; code: string };
  entry: string;
  storage: readonly Access[];
  uniforms: boolean;
}

export type Bindable = Tensor | GPUBuffer;

export interface DispatchSpec {
  kernel: Kernel;
  /** WGSL `override` constants; part of the pipeline cache key. */
  constants?: Record<string, number | boolean>;
  /** Contents of the uniform block (a `Params` struct in the shader), as raw bytes. */
  params?: ArrayBuffer;
  bindings: readonly Bindable[];
  workgroups: readonly [number, number?, number?];
}

const ARENA_BYTES = 1 << 16;

/** A kernel's name in errors and its family in GPU profiles: shader and entry point, e.g. "matmul-subgroups:matmul_sg_a4b4". */
export function kernelFamily(k: Kernel): string {
  return `${typeof k.shader === "string" ? k.shader : k.shader.name}:${k.entry}`;
}

export class Gpu {
  readonly device: GPUDevice;
  readonly pool: BufferPool;
  private pipelines = new Map<string, GPUComputePipeline>();
  private layouts = new Map<string, GPUBindGroupLayout>();
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private arena: GPUBuffer;
  private arenaData = new Uint8Array(ARENA_BYTES);
  private arenaUsed = 0;
  private readonly uniformAlign: number;
  /** Dispatches recorded since the runtime started (for "dispatches per token" figures). */
  dispatchCount = 0;
  submitCount = 0;
  /** Timestamps of every dispatch while profiling (`startProfiling`); null otherwise, and then dispatch does no extra work. */
  profiler: GpuProfiler | null = null;

  constructor(readonly handle: DeviceHandle) {
    this.device = handle.device;
    this.pool = new BufferPool(this.device);
    this.uniformAlign = Math.max(16, handle.limits.minUniformBufferOffsetAlignment);
    this.arena = this.device.createBuffer({ size: ARENA_BYTES, usage: Usage.UNIFORM | Usage.COPY_DST, label: "uniform-arena" });
  }

  get limits() {
    return this.handle.limits;
  }

  // ---- tensors -------------------------------------------------------------------------------

  empty(shape: readonly number[], dtype: DType = "f32", label?: string): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    const bytes = n * DTYPE_BYTES[dtype];
    if (bytes > this.limits.maxBufferSize) {
      throw new RecallError(`a ${dtype} tensor of shape [${shape}] needs ${bytes} bytes, over this adapter's maxBufferSize ${this.limits.maxBufferSize}`);
    }
    return new Tensor(this.pool.acquire(Math.max(bytes, 4), STORAGE_USAGE, label), shape, dtype);
  }

  /** A tensor filled with zeros (cleared on the GPU queue, in order with recorded work). */
  zeros(shape: readonly number[], dtype: DType = "f32", label?: string): Tensor {
    const t = this.empty(shape, dtype, label);
    this.clear(t);
    return t;
  }

  upload(data: Float32Array | Uint32Array | Int32Array | Uint16Array, shape: readonly number[], dtype?: DType): Tensor {
    const dt: DType = dtype ?? (data instanceof Float32Array ? "f32" : data instanceof Uint32Array ? "u32" : data instanceof Int32Array ? "i32" : "f16");
    const t = this.empty(shape, dt);
    if (data.length !== t.numel) throw new Error(`upload: ${data.length} values for shape [${shape}]`);
    this.write(t, data);
    return t;
  }

  /** Copies host data into a tensor. Flushes recorded work first so the write lands in order after it. */
  write(t: Tensor, data: ArrayBufferView, elementOffset = 0): void {
    this.flush();
    const off = t.byteOffset + elementOffset * DTYPE_BYTES[t.dtype];
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    // writeBuffer needs 4-byte multiples; f16 data of odd length is padded.
    if (bytes.byteLength % 4 === 0) {
      this.device.queue.writeBuffer(t.buffer, off, bytes);
    } else {
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      this.device.queue.writeBuffer(t.buffer, off, padded);
    }
  }

  clear(t: Tensor): void {
    this.endPass();
    const bytes = Math.ceil(t.byteLength / 4) * 4;
    this.commandEncoder().clearBuffer(t.buffer, t.byteOffset, Math.min(bytes, t.buffer.size - t.byteOffset));
  }

  copy(src: Tensor, dst: Tensor): void {
    if (src.byteLength !== dst.byteLength) throw new Error(`copy: ${src.byteLength} bytes into ${dst.byteLength}`);
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(src.buffer, src.byteOffset, dst.buffer, dst.byteOffset, Math.ceil(src.byteLength / 4) * 4);
  }

  /** Copies `count` elements from src[srcElement…] to dst[dstElement…] (same dtype; offsets and count in elements). */
  copyRegion(src: Tensor, srcElement: number, dst: Tensor, dstElement: number, count: number): void {
    const size = DTYPE_BYTES[src.dtype];
    if (src.dtype !== dst.dtype) throw new Error(`copyRegion: ${src.dtype} into ${dst.dtype}`);
    if (srcElement + count > src.numel || dstElement + count > dst.numel) throw new Error(`copyRegion: ${count} elements out of range`);
    if ((count * size) % 4 !== 0) throw new Error("copyRegion: byte count must be a multiple of 4");
    if (count === 0) return;
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(src.buffer, src.byteOffset + srcElement * size, dst.buffer, dst.byteOffset + dstElement * size, count * size);
  }

  release(...ts: Tensor[]): void {
    for (const t of ts) this.pool.release(t.buffer);
  }

  // ---- pipelines -----------------------------------------------------------------------------

  private layoutFor(kernel: Kernel): GPUBindGroupLayout {
    const key = `${kernel.uniforms ? "u" : ""}:${kernel.storage.join(",")}`;
    let layout = this.layouts.get(key);
    if (!layout) {
      const entries: GPUBindGroupLayoutEntry[] = [];
      if (kernel.uniforms) entries.push({ binding: 0, visibility: 0x4, buffer: { type: "uniform" } });
      kernel.storage.forEach((access, i) =>
        entries.push({ binding: i + 1, visibility: 0x4, buffer: { type: access === "read" ? "read-only-storage" : "storage" } }),
      );
      layout = this.device.createBindGroupLayout({ entries, label: key });
      this.layouts.set(key, layout);
    }
    return layout;
  }

  pipeline(kernel: Kernel, constants: Record<string, number | boolean> = {}): GPUComputePipeline {
    const names = Object.keys(constants).sort();
    const shaderName = typeof kernel.shader === "string" ? kernel.shader : kernel.shader.name;
    const key = `${shaderName}:${kernel.entry}:${names.map((n) => `${n}=${Number(constants[n])}`).join(",")}`;
    let p = this.pipelines.get(key);
    if (!p) {
      this.checkErrors();
      const code = typeof kernel.shader === "string" ? SHADERS[kernel.shader] : kernel.shader.code;
      const module = this.device.createShaderModule({ code, label: shaderName });
      const consts: Record<string, number> = {};
      for (const n of names) consts[n] = Number(constants[n]);
      p = this.device.createComputePipeline({
        label: key,
        layout: this.device.createPipelineLayout({ bindGroupLayouts: [this.layoutFor(kernel)] }),
        compute: { module, entryPoint: kernel.entry, constants: consts },
      });
      const errs = this.handle.takeErrors();
      if (errs.length) throw new RecallError(`GPU pipeline '${key}' failed to build: ${errs.join("; ")}`);
      this.pipelines.set(key, p);
    }
    return p;
  }

  // ---- recording and submission --------------------------------------------------------------

  private commandEncoder(): GPUCommandEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    return this.encoder;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      releaseComputePass(this.pass);
      this.pass = null;
    }
  }

  /** Records one compute dispatch into the current batch. The only place recall launches GPU work. */
  dispatch(spec: DispatchSpec): void {
    const { kernel } = spec;
    if (spec.bindings.length !== kernel.storage.length) {
      throw new Error(`${kernelFamily(kernel)}: ${spec.bindings.length} bindings for ${kernel.storage.length} slots`);
    }
    const [x, y = 1, z = 1] = spec.workgroups;
    const maxWg = this.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxWg || y > maxWg || z > maxWg) {
      throw new RecallError(`${kernelFamily(kernel)}: grid ${x}×${y}×${z} exceeds ${maxWg} workgroups per dimension`);
    }
    if (x === 0 || y === 0 || z === 0) return;
    // Before the uniforms go into the arena: an early submit empties it.
    if (this.profiler?.full) this.flush();
    const pipeline = this.pipeline(kernel, spec.constants);
    const entries: GPUBindGroupEntry[] = [];
    if (kernel.uniforms) {
      const params = spec.params;
      if (!params) throw new Error(`${kernelFamily(kernel)}: missing params`);
      const size = Math.ceil(params.byteLength / 16) * 16;
      if (this.arenaUsed + size > ARENA_BYTES) this.flush();
      const offset = this.arenaUsed;
      this.arenaData.set(new Uint8Array(params), offset);
      this.arenaUsed = Math.ceil((offset + size) / this.uniformAlign) * this.uniformAlign;
      entries.push({ binding: 0, resource: { buffer: this.arena, offset, size } });
    }
    spec.bindings.forEach((b, i) => {
      if (b instanceof Tensor) {
        const size = Math.ceil(b.byteLength / 4) * 4;
        entries.push({ binding: i + 1, resource: { buffer: b.buffer, offset: b.byteOffset, size: Math.max(4, Math.min(size, b.buffer.size - b.byteOffset)) } });
      } else {
        entries.push({ binding: i + 1, resource: { buffer: b } });
      }
    });
    const bindGroup = this.device.createBindGroup({ layout: this.layoutFor(kernel), entries });
    if (this.profiler) {
      // A pass per dispatch: timestamps mark pass boundaries.
      this.endPass();
      this.pass = this.profiler.beginPass(this.commandEncoder(), kernelFamily(kernel));
    } else if (!this.pass) this.pass = this.commandEncoder().beginComputePass();
    this.pass.setPipeline(pipeline);
    this.pass.setBindGroup(0, bindGroup);
    // The pass holds its own reference until the work completes; a kept one would pin a descriptor set forever.
    releaseBindGroup(bindGroup);
    this.pass.dispatchWorkgroups(x, y, z);
    this.dispatchCount++;
  }

  /** Submits everything recorded so far. Cheap when nothing is pending. */
  flush(): void {
    this.endPass();
    if (!this.encoder) return;
    if (this.arenaUsed > 0) {
      this.device.queue.writeBuffer(this.arena, 0, this.arenaData, 0, this.arenaUsed);
      this.arenaUsed = 0;
    }
    this.profiler?.resolve(this.encoder);
    const cmd = this.encoder.finish();
    this.encoder = null;
    this.device.queue.submit([cmd]);
    releaseCommandBuffer(cmd);
    this.submitCount++;
  }

  /** Raises any error the device reported asynchronously (validation, out of memory, device lost). */
  checkErrors(): void {
    const errs = this.handle.takeErrors();
    if (errs.length) throw new RecallError(`GPU error: ${errs.join("; ")}`);
  }

  /**
   * Reads back tensors: one copy per tensor into mappable staging buffers, one submit, then waits
   * only for that submit. Everything recorded before is flushed with it.
   */
  async readMany(ts: readonly Tensor[]): Promise<ArrayBuffer[]> {
    this.endPass();
    const enc = this.commandEncoder();
    const staging = ts.map((t) => {
      const bytes = Math.ceil(t.byteLength / 4) * 4;
      const s = this.pool.acquire(bytes, Usage.MAP_READ | Usage.COPY_DST, "readback");
      enc.copyBufferToBuffer(t.buffer, t.byteOffset, s, 0, bytes);
      return s;
    });
    this.flush();
    try {
      await Promise.all([...staging.map((s) => s.mapAsync(0x1 /* GPUMapMode.READ */)), this.profiler?.collect()]);
    } catch (e) {
      this.checkErrors();
      throw new RecallError(`GPU readback failed: ${(e as Error).message}`);
    }
    const out = staging.map((s, i) => {
      const copy = s.getMappedRange(0, Math.ceil(ts[i]!.byteLength / 4) * 4).slice(0, ts[i]!.byteLength);
      s.unmap();
      this.pool.release(s);
      return copy;
    });
    this.checkErrors();
    return out;
  }

  async read(t: Tensor): Promise<ArrayBuffer> {
    return (await this.readMany([t]))[0]!;
  }

  async readF32(t: Tensor): Promise<Float32Array> {
    if (t.dtype !== "f32") throw new Error(`readF32 on a ${t.dtype} tensor`);
    return new Float32Array(await this.read(t));
  }

  async readU32(t: Tensor): Promise<Uint32Array> {
    return new Uint32Array(await this.read(t));
  }

  /** Waits for all submitted work (e.g. before timing). */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    await this.profiler?.collect();
    this.checkErrors();
  }

  // ---- profiling -----------------------------------------------------------------------------

  /**
   * Times every later dispatch on the GPU, per kernel family (profiler.ts). `flag` is what the user asked with,
   * for the one-line error on an adapter without `timestamp-query`; `passesPerSet` sizes the query set (tests).
   * Work recorded before is submitted untimed.
   */
  startProfiling(opts: { flag?: string; passesPerSet?: number } = {}): GpuProfiler {
    if (this.profiler) return this.profiler;
    requireTimestampQuery(this.device.features as ReadonlySet<string>, opts.flag ?? "--profile", this.handle.info.description || this.handle.info.device);
    this.flush();
    this.profiler = new GpuProfiler(this.device, this.pool, opts.passesPerSet);
    return this.profiler;
  }

  /** The totals collected so far, after waiting for every dispatch recorded before (the GPU's work is synced). */
  async profileSnapshot(): Promise<ProfileSnapshot | undefined> {
    if (!this.profiler) return undefined;
    await this.sync();
    return this.profiler.snapshot();
  }

  /** Stops timing dispatches; returns the totals of everything recorded while profiling. */
  async stopProfiling(): Promise<ProfileSnapshot | undefined> {
    const p = this.profiler;
    if (!p) return undefined;
    await this.sync();
    this.profiler = null;
    p.destroy();
    return p.snapshot();
  }
}

let shared: Promise<Gpu> | undefined;

/** The process-wide runtime, opened on first use. */
export function getGpu(): Promise<Gpu> {
  shared ??= openDevice().then((h) => new Gpu(h));
  return shared;
}

/**
 * Builds the bytes of a uniform block field by field, in declaration order (every field here is a
 * 4-byte scalar, so WGSL's layout is simply consecutive; the total is padded to 16 bytes).
 */
export class Params {
  private words: { v: number; float: boolean }[] = [];
  u32(...vs: number[]): this {
    for (const v of vs) this.words.push({ v, float: false });
    return this;
  }
  f32(...vs: number[]): this {
    for (const v of vs) this.words.push({ v, float: true });
    return this;
  }
  bytes(): ArrayBuffer {
    const buf = new ArrayBuffer(Math.max(16, Math.ceil((this.words.length * 4) / 16) * 16));
    const u = new Uint32Array(buf);
    const f = new Float32Array(buf);
    this.words.forEach((w, i) => {
      if (w.float) f[i] = w.v;
      else u[i] = w.v >>> 0;
    });
    return buf;
  }
}
