/** `recall generate`: sample a continuation of a prompt with the local WebGPU engine (KV cache, GPU sampling). */
import { consola } from "consola";
import { defineRecallCommand, listFlag, numberFlag, requiredStringFlag, stringFlag } from "../src/cli/command.ts";
import { getGpu } from "../src/gpu/runtime.ts";
import { openPretrained } from "../src/model/pretrained.ts";
import { GenerationSession } from "../src/model/generate.ts";
import { RecallError } from "../src/errors.ts";
import { estimateMemory, formatMemoryEstimate } from "../src/model/memory.ts";

export default defineRecallCommand({
  meta: { name: "generate", description: "Generate a continuation of a prompt with a local model (greedy or sampled, on the GPU)." },
  examples: [
    "recall generate --model runs/tiny-qwen2 --prompt 'Once upon a time' --max_new_tokens 20",
    "recall generate --model runs/tiny-qwen2 --prompt 'What is 2+2?' --chat --temperature 0.7 --top_p 0.9 --seed 1",
    "recall generate --model runs/tiny-qwen2 --prompt 'List:' --stop '\\n\\n' --json",
    "recall generate --model runs/tiny-qwen2 --adapter checkpoints/recall/sft-lora/global_step_20 --prompt 'What is 2+2?' --chat",
  ],
  args: {
    model: { type: "string", description: "Model folder (config.json, model.safetensors, tokenizer.json)", required: true },
    adapter: { type: "string", description: "LoRA adapter folder (PEFT format) applied to --model" },
    prompt: { type: "string", description: "The prompt text", required: true },
    chat: { type: "boolean", description: "Wrap the prompt as a user message with the model's chat template (+ generation prompt)" },
    max_new_tokens: { type: "string", description: "Most tokens to generate (default 128)" },
    temperature: { type: "string", description: "Sampling temperature; 0 = greedy (default 0)" },
    top_p: { type: "string", description: "Nucleus sampling mass in (0, 1] (default 1)" },
    top_k: { type: "string", description: "Keep the k most likely tokens; 0 = all (default 0)" },
    seed: { type: "string", description: "Sampling seed (default 0)" },
    stop: { type: "string", description: "Stop when the generated text contains this string (repeatable)" },
    json: { type: "boolean", description: 'Print {"prompt_ids", "ids", "text", "finish_reason"}' },
  },
  async run({ args }) {
    const dir = requiredStringFlag(args, "model");
    const prompt = requiredStringFlag(args, "prompt");
    const maxNewTokens = numberFlag(args, "max_new_tokens", { default: 128, integer: true, min: 1 });
    const sampling = {
      temperature: numberFlag(args, "temperature", { default: 0, min: 0 }),
      topP: numberFlag(args, "top_p", { default: 1, min: 0, max: 1 }),
      topK: numberFlag(args, "top_k", { default: 0, integer: true, min: 0 }),
      seed: numberFlag(args, "seed", { default: 0, integer: true, min: 0, max: 2 ** 32 - 1 }),
    };
    if (sampling.topP === 0) throw new RecallError("flag --top_p must be > 0");
    const gpu = await getGpu();
    const { model, tokenizer, stopTokenIds } = await openPretrained(gpu, dir, { adapter: stringFlag(args, "adapter"), projectionDtype: "stored" });
    const promptIds = args.chat
      ? tokenizer.encodeChat([{ role: "user", content: prompt }], { addGenerationPrompt: true })
      : tokenizer.encode(prompt, { addSpecialTokens: true });
    if (promptIds.length === 0) throw new RecallError("--prompt encodes to no tokens");
    const capacity = Math.min(model.config.maxPositionEmbeddings, promptIds.length + maxNewTokens);
    if (!args.json) {
      const run = { batch: 1, seqLen: promptIds.length, training: false, kvSequences: 1, kvCapacity: capacity, halfProjections: model.params.hasHalf };
      consola.info(`GPU memory estimate:\n${formatMemoryEstimate(estimateMemory(model.config, run), run)}`);
    }
    const session = new GenerationSession(model, 1, capacity);
    const t0 = performance.now();
    session.append([promptIds]);
    const [result] = await session.generate({
      maxNewTokens,
      sampling,
      stopTokenIds,
      stopStrings: listFlag(args, "stop"),
      decode: (ids) => tokenizer.decode(ids),
    });
    const secs = (performance.now() - t0) / 1000;
    const ids = result!.tokens;
    const text = tokenizer.decode(ids, { skipSpecialTokens: true });
    if (args.json) {
      console.log(JSON.stringify({ prompt_ids: promptIds, ids, text, finish_reason: result!.finishReason }));
    } else {
      process.stdout.write(text + "\n");
      consola.info(`${ids.length} tokens in ${secs.toFixed(2)} s (${(ids.length / secs).toFixed(1)} tok/s), finished: ${result!.finishReason}`);
    }
    session.release();
  },
});
