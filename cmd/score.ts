/** `recall score`: per-token log-probs of a text or id sequence under a model — the contract other tools test against. */
import { consola } from "consola";
import { defineRecallCommand, stringFlag, requiredStringFlag } from "../src/cli/command.ts";
import { RecallError } from "../src/errors.ts";
import { getGpu } from "../src/gpu/runtime.ts";
import { RecallTokenizer } from "../src/data/tokenizer.ts";
import { Transformer } from "../src/model/transformer.ts";
import { loadAdapter } from "../src/model/peft_adapter.ts";

export function parseIds(text: string, vocabSize: number): number[] {
  const ids = text.split(",").map((s) => s.trim()).filter((s) => s !== "").map(Number);
  const bad = ids.findIndex((v) => !Number.isInteger(v) || v < 0 || v >= vocabSize);
  if (ids.length === 0) throw new RecallError("flag --ids needs at least one token id (e.g. --ids 1,2,3)");
  if (bad >= 0) throw new RecallError(`flag --ids: entry ${bad + 1} ('${text.split(",")[bad]?.trim()}') is not a token id in [0, ${vocabSize})`);
  return ids;
}

export default defineRecallCommand({
  meta: { name: "score", description: "Per-token log-probs log p(ids[i] | ids[<i]) (natural log) of a text or id sequence under a model." },
  examples: [
    "recall score --model runs/tiny-qwen2 --text 'The capital of France is Paris.' --json",
    "recall score --model runs/tiny-qwen2 --ids 12,40,7,99 --json",
    "recall score --model runs/tiny-qwen2 --adapter checkpoints/recall/sft-lora/global_step_20 --ids 12,40,7,99 --json",
  ],
  args: {
    model: { type: "string", description: "Model folder (config.json, model.safetensors, tokenizer.json)", required: true },
    adapter: { type: "string", description: "LoRA adapter folder (PEFT format) applied to --model" },
    text: { type: "string", description: "Text to score (tokenized without adding special tokens)" },
    ids: { type: "string", description: "Comma-separated token ids to score instead of --text" },
    json: { type: "boolean", description: 'Print {"ids": [...], "tokens": [...], "logprobs": [null, ...]}' },
  },
  async run({ args }) {
    const dir = requiredStringFlag(args, "model");
    const text = stringFlag(args, "text");
    const idsFlag = stringFlag(args, "ids");
    if ((text === undefined) === (idsFlag === undefined)) throw new RecallError("give exactly one of --text or --ids");
    const gpu = await getGpu();
    const model = await Transformer.load(gpu, dir, { projectionDtype: "stored" });
    const adapter = stringFlag(args, "adapter");
    if (adapter) model.adapter = await loadAdapter(gpu, model.config, adapter);
    const tokenizer = text !== undefined || !args.json ? RecallTokenizer.load(dir) : undefined;
    const ids = idsFlag !== undefined ? parseIds(idsFlag, model.V) : tokenizer!.encode(text!, { addSpecialTokens: false });
    if (ids.length === 0) throw new RecallError("--text encodes to no tokens");
    const [logprobs] = await model.score([ids]);
    const tokens = tokenizer ? ids.map((id) => tokenizer.idToToken(id) ?? null) : undefined;
    if (args.json) {
      console.log(JSON.stringify({ ids, ...(tokens ? { tokens } : {}), logprobs }));
      return;
    }
    let total = 0;
    for (const [i, id] of ids.entries()) {
      const lp = logprobs![i];
      if (lp !== null && lp !== undefined) total += lp;
      consola.log(`${String(i).padStart(5)} ${String(id).padStart(7)}  ${JSON.stringify(tokens?.[i] ?? "").padEnd(20)} ${lp === null || lp === undefined ? "" : lp.toFixed(4)}`);
    }
    consola.log(`total log-prob ${total.toFixed(4)} over ${ids.length - 1} predicted tokens (perplexity ${Math.exp(-total / Math.max(1, ids.length - 1)).toFixed(2)})`);
  },
});
