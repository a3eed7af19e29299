/**
 * Adapter and device acquisition: picks the adapter, asks for the adapter's own limits (not the
 * WebGPU defaults: model tensors need big storage bindings), enables useful features, and turns
 * uncaptured errors and device loss into RecallErrors raised at the next synchronisation point.
 */
import { RecallError } from "../errors.ts";
import { webgpu, BINDING_NAME, disabledDeviceToggles } from "./binding.ts";

export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  backend: string;
  type: string;
  software: boolean;
  binding: string;
}

export const WANTED_FEATURES = ["shader-f16", "subgroups", "timestamp-query"] as const;

/** The limits recall relies on, with the names WebGPU uses. */
export const LIMIT_NAMES = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxUniformBufferBindingSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "minStorageBufferOffsetAlignment",
  "minUniformBufferOffsetAlignment",
  "maxBindGroups",
] as const;
export type LimitName = (typeof LIMIT_NAMES)[number];
export type Limits = Record<LimitName, number>;

// Dawn's C enums, as bun-webgpu reports them (webgpu.h WGPUBackendType / WGPUAdapterType).
const BACKENDS: Record<number, string> = { 1: "null", 2: "webgpu", 3: "d3d11", 4: "d3d12", 5: "metal", 6: "vulkan", 7: "opengl", 8: "opengles" };
const ADAPTER_TYPES: Record<number, string> = { 1: "discrete-gpu", 2: "integrated-gpu", 3: "cpu", 4: "unknown" };

export function installHint(): string {
  switch (process.platform) {
    case "linux":
      return "install a Vulkan driver: your GPU vendor's, or Mesa >= 25 (lavapipe, CPU). On Debian 12 'bash scripts/setup.sh' adds it from bookworm-backports; elsewhere install 'mesa-vulkan-drivers' (Debian/Ubuntu) or 'vulkan-swrast' (Arch/Fedora)";
    case "darwin":
      return "macOS 13+ with Metal is required; check that the machine is not a VM without Metal";
    case "win32":
      return "update your GPU driver (D3D12); on a VM, enable WARP or a GPU passthrough";
    default:
      return `no Dawn build for ${process.platform}-${process.arch}`;
  }
}

export interface DeviceHandle {
  adapter: GPUAdapter;
  device: GPUDevice;
  info: AdapterDescription;
  limits: Limits;
  features: string[];
  /** Errors reported asynchronously by the device since the last check. */
  takeErrors(): string[];
}

export async function openDevice(options: { powerPreference?: GPUPowerPreference } = {}): Promise<DeviceHandle> {
  let gpu: GPU;
  try {
    gpu = webgpu();
  } catch (e) {
    throw new RecallError(`could not load the WebGPU runtime (${BINDING_NAME}): ${(e as Error).message}`, { hint: installHint() });
  }
  const adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? "high-performance" });
  if (!adapter) throw new RecallError("no WebGPU adapter found", { hint: installHint() });

  const features = WANTED_FEATURES.filter((f) => adapter.features.has(f));
  // Ask for everything the adapter offers: the WebGPU defaults (128 MiB bindings on lavapipe are
  // fine, but 256 MiB buffers are not) would cap model sizes far below the hardware's.
  const requiredLimits: Record<string, number> = {};
  const offered = adapter.limits as unknown as Record<string, unknown>;
  for (const name in offered) {
    const v = offered[name];
    if (typeof v === "number" && name !== "nextInChain") requiredLimits[name] = v;
  }
  // Dawn rounds timestamp queries down to multiples of 65,536 ns by default (a browser's guard against timing
  // attacks); recall's profiler (profiler.ts) wants the clock's own resolution, so the toggle is turned off.
  const nextInChain = disabledDeviceToggles(["timestamp_quantization"]);
  const device = await adapter.requestDevice({ requiredFeatures: features as GPUFeatureName[], requiredLimits, nextInChain } as GPUDeviceDescriptor);

  const errors: string[] = [];
  device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
    errors.push(ev.error.message.trim());
  };
  void device.lost.then((info) => {
    if (info.reason !== "destroyed") errors.push(`GPU device lost: ${info.message || info.reason}`);
  });

  const raw = adapter.info as unknown as Record<string, unknown>;
  const typeName = typeof raw.adapterType === "number" ? (ADAPTER_TYPES[raw.adapterType] ?? "unknown") : String(raw.type ?? "unknown");
  const info: AdapterDescription = {
    vendor: String(raw.vendor ?? ""),
    architecture: String(raw.architecture ?? ""),
    device: String(raw.device ?? ""),
    description: String(raw.description ?? ""),
    backend: typeof raw.backendType === "number" ? (BACKENDS[raw.backendType] ?? "unknown") : "unknown",
    type: typeName,
    software: typeName === "cpu" || raw.architecture === "software" || raw.isFallbackAdapter === true,
    binding: BINDING_NAME,
  };
  const limits = {} as Limits;
  for (const name of LIMIT_NAMES) limits[name] = Number((device.limits as unknown as Record<string, number>)[name]);

  return {
    adapter,
    device,
    info,
    limits,
    features: [...adapter.features].map(String).sort(),
    takeErrors: () => errors.splice(0, errors.length),
  };
}
