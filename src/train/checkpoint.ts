/**
 * Checkpoints of a training run, laid out as verl users expect:
 *
 *   {run}/global_step_{N}/                      a Hugging Face model folder (config.json, model.safetensors,
 *                                               generation_config.json, tokenizer files) that transformers,
 *                                               `recall eval --generator_model` and `recall train` all load,
 *     optimizer.safetensors                     AdamW moments (`exp_avg.<param>`, `exp_avg_sq.<param>`)
 *     trainer_state.json                        step, optimizer steps, data cursor, seed, resolved settings
 *   {run}/latest_checkpointed_iteration.txt     N, as verl writes it
 *
 * A LoRA run's global_step_{N} is a PEFT adapter folder instead (adapter_config.json, adapter_model.safetensors,
 * the tokenizer files; no config.json, so it is never mistaken for a whole model), with the moments of A and B:
 * `recall eval --adapter`, `recall merge` and `peft.PeftModel.from_pretrained` load it on top of the base model.
 *
 * A checkpoint is written into `global_step_{N}.partial` and renamed when complete, and the iteration file
 * goes through a temp name too, so a crash leaves the previous checkpoint intact. Parameters are written in
 * f32 so a resumed run continues bit-exactly. Non-finite weights are refused before anything is written.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { RecallError, errorMessage } from "../errors.ts";
import { writeFileAtomic } from "../util/fs.ts";
import type { Gpu } from "../gpu/runtime.ts";
import { SafetensorsModel, writeSafetensors } from "../model/safetensors.ts";
import type { TensorSet } from "../model/tensor_set.ts";
import { LoraWeights } from "../model/lora.ts";
import { saveAdapter } from "../model/peft_adapter.ts";
import type { DataCursor } from "../data/sampler.ts";

export const LATEST_FILE = "latest_checkpointed_iteration.txt";
export const STATE_FILE = "trainer_state.json";
export const OPTIMIZER_FILE = "optimizer.safetensors";
const WEIGHT_FILE = /(\.safetensors|\.bin|\.pt|\.pth|\.safetensors\.index\.json|\.bin\.index\.json)$/;

export interface TrainerState {
  /** Global steps completed. */
  step: number;
  /** AdamW steps taken (fewer than `step` when non-finite steps were skipped). */
  optimizerSteps: number;
  cursor: DataCursor;
  seed: number;
  /** The resolved settings of the run that wrote it. */
  settings: Record<string, unknown>;
  recallVersion: string;
  savedAt: string;
  /** State of one trainer that the others do not have (SFT: early stopping's best held-out loss). */
  extra?: Record<string, unknown>;
}

export function checkpointDir(runDir: string, step: number): string {
  return join(runDir, `global_step_${step}`);
}

/** Throws when any parameter holds NaN or ±Infinity (checked on the host while reading for the save). */
function checkFinite(name: string, data: Float32Array): Float32Array {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]!)) throw new RecallError(`refusing to save a checkpoint: parameter ${name} holds a non-finite value at element ${i}`);
  }
  return data;
}

export interface SaveInput {
  runDir: string;
  step: number;
  /** The model folder the run started from: its config, generation config and tokenizer files are copied. */
  baseModelDir: string;
  /** What the run trains: the model's parameters, or its LoRA adapter (saved as a PEFT adapter folder). */
  params: TensorSet;
  moments: { m: TensorSet; v: TensorSet };
  state: TrainerState;
  /** Keep at most this many checkpoints (older ones removed); undefined keeps all. */
  keep?: number;
}

/** Writes global_step_{N} atomically, updates latest_checkpointed_iteration.txt, prunes old ones. Returns the folder. */
export async function saveCheckpoint(gpu: Gpu, o: SaveInput): Promise<string> {
  const final = checkpointDir(o.runDir, o.step);
  const partial = `${final}.partial`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial, { recursive: true });
  try {
    const adapter = o.params instanceof LoraWeights ? o.params : undefined;
    for (const f of readdirSync(o.baseModelDir)) {
      const src = join(o.baseModelDir, f);
      if (!WEIGHT_FILE.test(f) && statSync(src).isFile() && f !== STATE_FILE && !(adapter && f === "config.json")) copyFileSync(src, join(partial, f));
    }
    if (adapter) {
      await saveAdapter(partial, adapter, { baseModel: o.baseModelDir, metadata: { recall_step: String(o.step) } });
    } else {
      const params = o.params;
      await writeSafetensors(
        join(partial, "model.safetensors"),
        params.specs.map((s) => ({ name: s.name, shape: s.shape, data: async () => checkFinite(s.name, await gpu.readF32(params.get(s.name))) })),
        { metadata: { recall_step: String(o.step) } },
      );
    }
    const moments = o.params.specs.flatMap((s) => [
      { name: `exp_avg.${s.name}`, shape: s.shape, data: () => gpu.readF32(o.moments.m.get(s.name)) },
      { name: `exp_avg_sq.${s.name}`, shape: s.shape, data: () => gpu.readF32(o.moments.v.get(s.name)) },
    ]);
    await writeSafetensors(join(partial, OPTIMIZER_FILE), moments);
    writeFileSync(join(partial, STATE_FILE), JSON.stringify(o.state, null, 2) + "\n");
  } catch (e) {
    rmSync(partial, { recursive: true, force: true });
    if (e instanceof RecallError) throw e;
    throw new RecallError(`could not write checkpoint ${final}: ${errorMessage(e)}`);
  }
  rmSync(final, { recursive: true, force: true });
  renameSync(partial, final);
  writeFileAtomic(join(o.runDir, LATEST_FILE), String(o.step));
  if (o.keep !== undefined && o.keep > 0) pruneCheckpoints(o.runDir, o.keep);
  return final;
}

/** Steps of the complete checkpoints in a run folder, ascending. */
export function listCheckpoints(runDir: string): number[] {
  if (!existsSync(runDir)) return [];
  return readdirSync(runDir)
    .map((f) => /^global_step_(\d+)$/.exec(f))
    .filter((m): m is RegExpExecArray => m !== null && existsSync(join(runDir, m[0], STATE_FILE)))
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}

function pruneCheckpoints(runDir: string, keep: number): void {
  const steps = listCheckpoints(runDir);
  for (const s of steps.slice(0, Math.max(0, steps.length - keep))) rmSync(checkpointDir(runDir, s), { recursive: true, force: true });
}

/**
 * The checkpoint to resume from: the one `latest_checkpointed_iteration.txt` names, or a newer complete one — a
 * run killed between renaming its new global_step_N into place and updating that file leaves exactly that.
 */
export function latestCheckpoint(runDir: string): string | undefined {
  const file = join(runDir, LATEST_FILE);
  const newest = listCheckpoints(runDir).at(-1);
  if (!existsSync(file)) return newest === undefined ? undefined : checkpointDir(runDir, newest);
  const text = readFileSync(file, "utf8").trim();
  if (!/^\d+$/.test(text)) throw new RecallError(`${file} should hold a step number, not '${text.slice(0, 40)}'`);
  if (newest !== undefined && newest > Number(text)) return checkpointDir(runDir, newest);
  const dir = checkpointDir(runDir, Number(text));
  if (!existsSync(join(dir, STATE_FILE))) throw new RecallError(`${file} names step ${text}, but ${dir} is missing or incomplete`);
  return dir;
}

export function readTrainerState(dir: string): TrainerState {
  const file = join(dir, STATE_FILE);
  if (!existsSync(file)) throw new RecallError(`${dir} is not a recall checkpoint (no ${STATE_FILE})`);
  try {
    const s = JSON.parse(readFileSync(file, "utf8")) as TrainerState;
    if (!Number.isInteger(s.step) || !s.cursor) throw new Error("missing step or cursor");
    return s;
  } catch (e) {
    throw new RecallError(`${file} is not a valid trainer state: ${errorMessage(e)}`);
  }
}

/** Loads the AdamW moments of a checkpoint into m and v (names and shapes checked). */
export function loadMoments(gpu: Gpu, dir: string, moments: { m: TensorSet; v: TensorSet }): void {
  const file = SafetensorsModel.open(join(dir, OPTIMIZER_FILE));
  for (const [prefix, set] of [["exp_avg", moments.m], ["exp_avg_sq", moments.v]] as const) {
    for (const s of set.specs) {
      const name = `${prefix}.${s.name}`;
      if (!file.has(name)) throw new RecallError(`${dir}/${OPTIMIZER_FILE} has no tensor ${name}`);
      const t = set.get(s.name);
      const data = file.readF32(name);
      if (data.length !== t.numel) throw new RecallError(`${dir}/${OPTIMIZER_FILE}: ${name} has ${data.length} values, the model needs ${t.numel}`);
      gpu.write(t, data);
    }
  }
}
