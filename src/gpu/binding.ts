/**
 * The seam to the WebGPU implementation. Everything else in recall sees only the standard WebGPU
 * types; swapping Dawn bindings means changing this file alone.
 *
 * Choice (measured, see DESIGN.md): `bun-webgpu` — Dawn through bun:ffi, prebuilt for linux-x64,
 * darwin-arm64/x64 and win32-x64 — runs compute work under Bun and inside `bun build --compile`
 * binaries. The N-API `webgpu` package (dawn.node) segfaults under Bun once work is queued.
 */
import { tmpdir } from "node:os";
import { ptr } from "bun:ffi";
import { createGPUInstance, globals } from "bun-webgpu";
import { guardMethods } from "./packed_struct_lifetime.ts";

export const BINDING_NAME = "bun-webgpu (Dawn via bun:ffi)";

let instance: GPU | undefined;

/** The process-wide WebGPU entry point (what `navigator.gpu` is in a browser). */
export function webgpu(): GPU {
  if (!instance) {
    // Mesa's Vulkan loader warns on every start without it.
    process.env.XDG_RUNTIME_DIR ??= tmpdir();
    // Installs GPUBufferUsage, GPUMapMode, ... on globalThis, as a browser would have them.
    globals();
    instance = createGPUInstance() as unknown as GPU;
    politeEventPolling(instance);
    guardPackedStructs(instance);
  }
  return instance;
}

/** Dawn's sType of a DawnTogglesDescriptor chained onto a device descriptor (bun-webgpu's WGPUSType table). */
const DAWN_TOGGLES_STYPE = 327690;
/** Chained descriptors handed to Dawn, kept reachable for the life of the process (Dawn reads them in requestDevice). */
const keptAlive: unknown[] = [];

/**
 * A `nextInChain` pointer for `requestDevice` that turns the given Dawn device toggles off. bun-webgpu packs
 * `nextInChain` as a raw pointer and offers no toggles, so the DawnTogglesDescriptor is laid out here (64-bit):
 * { next: ptr, sType: u32 (+4 pad) } chain, enabledToggleCount: size_t, enabledToggles: ptr,
 * disabledToggleCount: size_t, disabledToggles: ptr — 48 bytes.
 */
export function disabledDeviceToggles(names: readonly string[]): number {
  if (names.length === 0) return 0;
  const strings = names.map((n) => Buffer.from(`${n}\0`, "utf8"));
  const list = new BigUint64Array(strings.map((b) => BigInt(ptr(b))));
  const desc = new DataView(new ArrayBuffer(48));
  desc.setBigUint64(0, 0n, true);
  desc.setUint32(8, DAWN_TOGGLES_STYPE, true);
  desc.setBigUint64(16, 0n, true);
  desc.setBigUint64(24, 0n, true);
  desc.setBigUint64(32, BigInt(names.length), true);
  desc.setBigUint64(40, BigInt(ptr(list)), true);
  keptAlive.push(strings, list, desc);
  return ptr(desc);
}

/** The bun-webgpu methods that pack descriptors with nested buffers (see packed_struct_lifetime.ts), by object. */
const DEVICE_METHODS = [
  "createBuffer", "createTexture", "createSampler", "createBindGroupLayout", "createPipelineLayout", "createShaderModule",
  "createBindGroup", "createComputePipeline", "createComputePipelineAsync", "createRenderPipeline", "createRenderPipelineAsync",
  "createCommandEncoder", "createQuerySet", "createRenderBundleEncoder", "popErrorScope",
] as const;
const ENCODER_METHODS = ["beginComputePass", "beginRenderPass", "finish", "copyBufferToTexture", "copyTextureToBuffer", "copyTextureToTexture"] as const;

function whenResolved(result: unknown, then: (value: object) => void): void {
  if (result instanceof Promise) void result.then((v: unknown) => (v && typeof v === "object" ? then(v) : undefined), () => undefined);
}

/** Guards GPU → adapter → device → queue and command encoders, each class's prototype once, as the objects appear. */
function guardPackedStructs(gpu: GPU): void {
  guardMethods(gpu, ["requestAdapter"], (_, adapter) =>
    whenResolved(adapter, (a) =>
      guardMethods(a, ["requestDevice"], (_, device) =>
        whenResolved(device, (d) => {
          guardMethods(d, DEVICE_METHODS, (name, made) => {
            if (name === "createCommandEncoder" && made && typeof made === "object") guardMethods(made, ENCODER_METHODS);
          });
          guardMethods((d as GPUDevice).queue, ["submit", "onSubmittedWorkDone"]);
        }),
      ),
    ),
  );
}

/** bun-webgpu's event pump: it polls Dawn's events while a mapAsync / onSubmittedWorkDone is pending. */
interface Ticker {
  _ticking: boolean;
  instancePtr: unknown;
  lib: { wgpuInstanceProcessEvents(ptr: unknown): void };
  hasWaiting(): boolean;
  scheduleTick(): void;
}

/**
 * bun-webgpu polls with setImmediate, a busy loop that holds a whole CPU core while the GPU works. On a
 * software adapter (lavapipe) that core is one the GPU needs: measured on 2 cores, a 128×896×896 matmul
 * went from 14.1 to 8.7 ms with a sleeping poll. Poll at once twice (short waits stay short), then sleep between
 * polls: a futex wait (Atomics.wait) of 0.1 ms growing with the wait to 1 ms, so a wait overshoots by at most ~5% +
 * 0.1 ms, and each poll yields to the event loop (setImmediate) for I/O. setTimeout cannot sleep less than ~1.1 ms
 * here: a tiny model's 2 ms decode step waited 3 ms. If the binding's internals change, its own polling stays in place.
 */
function politeEventPolling(gpu: GPU): void {
  const ticker = (gpu as unknown as { _ticker?: Partial<Ticker> })._ticker;
  if (!ticker || typeof ticker.scheduleTick !== "function" || typeof ticker.hasWaiting !== "function" || !ticker.lib?.wgpuInstanceProcessEvents) return;
  const t = ticker as Ticker;
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  let spins = 0;
  let since = 0;
  t.scheduleTick = function (this: Ticker) {
    if (this._ticking) return;
    this._ticking = true;
    const poll = () => {
      this.lib.wgpuInstanceProcessEvents(this.instancePtr);
      this._ticking = false;
      if (this.hasWaiting()) {
        spins++;
        this.scheduleTick();
      } else {
        spins = 0;
      }
    };
    if (spins === 0) since = performance.now();
    if (spins >= 2) Atomics.wait(sleeper, 0, 0, Math.min(1, 0.1 + (performance.now() - since) / 20));
    setImmediate(poll);
  };
}

/*
 * Releasing what recall records. A browser drops its reference to a WebGPU object when the JS wrapper is garbage
 * collected; bun-webgpu never does (no finalizers), so every bind group, pass encoder and command buffer stayed
 * alive in Dawn forever. Each leaked bind group pins a Vulkan descriptor set, and lavapipe backs descriptor pools
 * with their own memfd mappings: a long run reached the kernel's vm.max_map_count (65530) after ~200 SFT steps, the
 * next descriptor pool's mmap failed and lavapipe wrote through the failed mapping (SIGSEGV in vkCreateDescriptorPool).
 * Recorded commands hold their own references in Dawn until the work completes, so dropping ours at once is safe.
 */
interface Releasable {
  lib?: Record<string, ((ptr: unknown) => void) | undefined>;
  ptr?: unknown;
}

function releaseVia(obj: object, symbol: string): void {
  const o = obj as Releasable;
  const release = o.lib?.[symbol];
  if (typeof release === "function" && o.ptr) {
    release.call(o.lib, o.ptr);
    o.ptr = null;
  }
}

/** Drops recall's reference to a bind group once it is set on a pass. */
export function releaseBindGroup(group: GPUBindGroup): void {
  releaseVia(group, "wgpuBindGroupRelease");
}

/** Drops recall's reference to a compute pass once it has ended. */
export function releaseComputePass(pass: GPUComputePassEncoder): void {
  releaseVia(pass, "wgpuComputePassEncoderRelease");
}

/** Drops recall's reference to a command buffer once it is submitted. */
export function releaseCommandBuffer(cmd: GPUCommandBuffer): void {
  const c = cmd as unknown as { bufferPtr?: unknown } & Releasable;
  releaseVia(cmd, "wgpuCommandBufferRelease");
  c.bufferPtr = null;
}
