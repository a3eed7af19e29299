/** `recall doctor`: what runtime and GPU recall sees, and whether a kernel computes correctly on it. */
import { consola } from "consola";
import { defineRecallCommand } from "../src/cli/command.ts";
import { getGpu } from "../src/gpu/runtime.ts";
import { gpuSelfTest } from "../src/gpu/selftest.ts";
import { VERSION } from "../src/version.ts";

export default defineRecallCommand({
  meta: { name: "doctor", description: "Show the runtime, the GPU adapter, its limits and features, and run a GPU self-test." },
  examples: ["recall doctor", "recall doctor --json"],
  args: {
    json: { type: "boolean", description: "Print the report as JSON (adapter, features, limits, selftest, runtime)" },
  },
  async run({ args }) {
    const gpu = await getGpu();
    const selftest = await gpuSelfTest(gpu);
    const report = {
      runtime: { recall: VERSION, bun: Bun.version, platform: `${process.platform}-${process.arch}`, binding: gpu.handle.info.binding },
      adapter: gpu.handle.info,
      features: gpu.handle.features,
      limits: gpu.handle.limits,
      selftest,
    };
    if (args.json) {
      console.log(JSON.stringify(report, null, 2));
    } else {
      const a = report.adapter;
      consola.log(`recall ${VERSION} · bun ${Bun.version} · ${report.runtime.platform} · ${a.binding}`);
      consola.log(`adapter   ${a.description || a.device} (${a.vendor}, ${a.architecture || "?"})`);
      consola.log(`          backend ${a.backend}, type ${a.type}, ${a.software ? "software (CPU) — correct but slow" : "hardware"}`);
      consola.log(`features  ${report.features.filter((f) => ["shader-f16", "subgroups", "timestamp-query"].includes(f)).join(", ") || "(none of shader-f16, subgroups, timestamp-query)"}`);
      const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
      const l = report.limits;
      consola.log(`limits    buffer ${mib(l.maxBufferSize)}, storage binding ${mib(l.maxStorageBufferBindingSize)}, ${l.maxStorageBuffersPerShaderStage} storage buffers/stage, workgroup memory ${l.maxComputeWorkgroupStorageSize} B, ${l.maxComputeInvocationsPerWorkgroup} invocations/workgroup`);
      if (selftest.ok) consola.success(`self-test ${selftest.kernel} ${selftest.shape.M}×${selftest.shape.N}×${selftest.shape.K}: max error ${selftest.maxAbsError.toExponential(1)} (${selftest.ms.toFixed(0)} ms)`);
      else consola.error(`self-test ${selftest.kernel} FAILED: ${selftest.error ?? `max error ${selftest.maxAbsError}`}`);
    }
    if (!selftest.ok) process.exitCode = 1;
  },
});
