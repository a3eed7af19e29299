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
import kvcache from "../../shaders/kvcache.wgsl" with { type: "text" };
import dropout from "../../shaders/dropout.wgsl" with { type: "text" };

export const SHADERS = { matmul, attention, logprobs, elementwise, rmsnorm, rope, embedding, kvcache, adamw, sampling, dropout } as const;
export type ShaderName = keyof typeof SHADERS;
