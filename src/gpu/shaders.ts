/**
 * Every WGSL source, imported as text so `bun build --compile` embeds it in the binary. One file per
 * kernel family in shaders/, forward and backward side by side.
 */
import matmul from "../../shaders/matmul.wgsl" with { type: "text" };
import sampling from "../../shaders/sampling.wgsl" with { type: "text" };
import adamw from "../../shaders/adamw.wgsl" with { type: "text" };
import embedding from "../../shaders/embedding.wgsl" with { type: "text" };
import rope from "../../shaders/rope.wgsl" with { type: "text" };
import rmsnorm from "../../shaders/rmsnorm.wgsl" with { type: "text" };
import elementwise from "../../shaders/elementwise.wgsl" with { type: "text" };
import attention from "../../shaders/attention.wgsl" with { type: "text" };
import logprobs from "../../shaders/logprobs.wgsl" with { type: "text" };
import dropout from "../../shaders/dropout.wgsl" with { type: "text" };
import rope_append from "../../shaders/rope_append.wgsl" with { type: "text" };
import rope_angle from "../../shaders/rope_angle.wgsl" with { type: "text" };
import cast from "../../shaders/cast.wgsl" with { type: "text" };
import gather_rows from "../../shaders/gather_rows.wgsl" with { type: "text" };
import type { Gpu } from "./runtime.ts";

// RoPE's two kernels share one angle reduction (shaders/rope_angle.wgsl), so their rotations agree bit for bit.
export const SHADERS = {
  matmul, attention, logprobs, elementwise, rmsnorm, embedding, adamw, sampling, dropout, cast, gather_rows,
  rope: `${rope_angle}\n${rope}`,
  rope_append: `${rope_angle}\n${rope_append}`,
} as const;
export type ShaderName = keyof typeof SHADERS;

// A family with subgroup kernels keeps them below this line: they need `enable subgroups;`, which an adapter
// without the feature rejects, so such a file is compiled as two modules — the part above the line alone
// (portable), and the whole file behind the directive. Subgroup-uniform loop bounds (a subgroupMax) are beyond what
// WGSL's uniformity analysis proves, so its subgroup diagnostic is off in those modules; the kernels keep every
// lane of a subgroup in the same loop trip themselves.
const SUBGROUP_MARKER = "// ---- SUBGROUP KERNELS";

/** The portable part of a shader file and the whole file with subgroups enabled. */
export function subgroupSources(name: ShaderName): { portable: string; subgroup: string } {
  const code = SHADERS[name];
  const at = code.indexOf(SUBGROUP_MARKER);
  if (at < 0) throw new Error(`shaders/${name}.wgsl lost its '${SUBGROUP_MARKER}' line`);
  return { portable: code.slice(0, at), subgroup: `enable subgroups;\ndiagnostic(off, subgroup_uniformity);\n${code}` };
}

/** Smallest subgroup the subgroup kernels accept: they share blocks of 8 values across 8 lanes. */
const SUBGROUP_MIN_LANES = 8;
const subgroupSupport = new WeakMap<Gpu, boolean>();

/** Whether this device runs the subgroup kernels: the `subgroups` feature, and no subgroup narrower than 8 lanes. */
export function subgroupKernelsSupported(gpu: Gpu): boolean {
  let ok = subgroupSupport.get(gpu);
  if (ok === undefined) {
    const info = gpu.handle.adapter.info as unknown as { subgroupMinSize?: number };
    ok = gpu.device.features.has("subgroups") && (info.subgroupMinSize ?? 0) >= SUBGROUP_MIN_LANES;
    subgroupSupport.set(gpu, ok);
  }
  return ok;
}
