/** `recall merge`: fold a LoRA adapter into its base model, writing a plain Hugging Face model folder. */
import { consola } from "consola";
import { defineRecallCommand, requiredStringFlag } from "../src/cli/command.ts";
import { mergeAdapter } from "../src/model/merge.ts";

export default defineRecallCommand({
  meta: {
    name: "merge",
    description: "Merge a LoRA adapter folder (PEFT format: adapter_config.json + adapter_model.safetensors) into its base model: W + (alpha/r)·B·A, written as a new model folder.",
  },
  examples: [
    "recall merge --base runs/tiny-qwen2 --adapter checkpoints/recall/grpo/global_step_10 --out runs/tiny-qwen2-merged",
  ],
  args: {
    base: { type: "string", description: "Base model folder the adapter was trained on", required: true },
    adapter: { type: "string", description: "Adapter folder (recall train/sft checkpoints with --lora_rank, or PEFT's save_pretrained)", required: true },
    out: { type: "string", description: "New folder for the merged model (must not exist or be empty)", required: true },
    json: { type: "boolean", description: "Print a JSON summary ({out, merged_tensors, files})" },
  },
  async run({ args }) {
    const t0 = performance.now();
    const r = await mergeAdapter({ base: requiredStringFlag(args, "base"), adapter: requiredStringFlag(args, "adapter"), out: requiredStringFlag(args, "out") });
    if (args.json) {
      console.log(JSON.stringify({ out: r.out, merged_tensors: r.mergedTensors, files: r.files }));
      return;
    }
    consola.success(`${r.out}: ${r.mergedTensors} projection weights merged in ${((performance.now() - t0) / 1000).toFixed(1)} s (${r.files.join(", ")})`);
  },
});
