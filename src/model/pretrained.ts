/** A model folder opened for inference: the GPU model, its tokenizer, and the ids that end a generation. */
import { existsSync } from "node:fs";
import { readJson } from "../util/fs.ts";
import { join } from "node:path";
import type { Gpu } from "../gpu/runtime.ts";
import { RecallTokenizer } from "../data/tokenizer.ts";
import { Transformer } from "./transformer.ts";
import type { ProjectionDtype } from "./weights.ts";
import { loadAdapter } from "./peft_adapter.ts";

export interface Pretrained {
  model: Transformer;
  tokenizer: RecallTokenizer;
  /** eos ids of config.json, generation_config.json and the tokenizer, plus `<|im_end|>` when the vocabulary has it. */
  stopTokenIds: number[];
}

/**
 * Opens a model folder; with `adapter`, a PEFT LoRA adapter folder is attached to it (`--adapter DIR`);
 * `projectionDtype` stores the projection weights in 16 bits (f16: a LoRA run's frozen base; "stored": bf16 when the
 * checkpoint is, for inference; see ParameterSet).
 */
export async function openPretrained(gpu: Gpu, dir: string, o: { adapter?: string; projectionDtype?: ProjectionDtype } = {}): Promise<Pretrained> {
  const model = await Transformer.load(gpu, dir, { projectionDtype: o.projectionDtype });
  if (o.adapter) model.adapter = await loadAdapter(gpu, model.config, o.adapter);
  const tokenizer = RecallTokenizer.load(dir);
  const stop = new Set<number>(model.config.eosTokenIds);
  const genFile = join(dir, "generation_config.json");
  if (existsSync(genFile)) {
    const eos = (readJson(genFile) as { eos_token_id?: number | number[] } | null)?.eos_token_id;
    for (const id of ([] as number[]).concat(eos ?? [])) stop.add(id);
  }
  if (tokenizer.eosTokenId !== null) stop.add(tokenizer.eosTokenId);
  const imEnd = tokenizer.tokenToId("<|im_end|>");
  if (imEnd !== undefined) stop.add(imEnd);
  return { model, tokenizer, stopTokenIds: [...stop] };
}
