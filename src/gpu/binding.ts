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
  }
  return instance;
}
