/**
 * The seam to the WebGPU implementation. Everything else in recall sees only the standard WebGPU
 * types; swapping Dawn bindings means changing this file alone.
 *
 * Choice (measured, see DESIGN.md): `bun-webgpu` — Dawn through bun:ffi, prebuilt for linux-x64,
 * darwin-arm64/x64 and win32-x64 — runs compute work under Bun and inside `bun build --compile`
 * binaries. The N-API `webgpu` package (dawn.node) segfaults under Bun once work is queued.
 */
import { tmpdir } from "node:os";
import { createGPUInstance, globals } from "bun-webgpu";

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
  }
  return instance;
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
 * went from 14.1 to 8.7 ms with a sleeping poll. Poll at once twice (short waits stay short), then every
 * millisecond. If the binding's internals change, its own polling stays in place.
 */
function politeEventPolling(gpu: GPU): void {
  const ticker = (gpu as unknown as { _ticker?: Partial<Ticker> })._ticker;
  if (!ticker || typeof ticker.scheduleTick !== "function" || typeof ticker.hasWaiting !== "function" || !ticker.lib?.wgpuInstanceProcessEvents) return;
  const t = ticker as Ticker;
  let spins = 0;
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
    if (spins < 2) setImmediate(poll);
    else setTimeout(poll, 1);
  };
}
