/**
 * The demo's warm start: the model at the end of its two SFT phases (seed 0), embedded in the binary so that
 * `recall demo --quick` can run the RL part alone. Made by this very pipeline through `recall sft`:
 * `bun scripts/demo_warm_start.ts` regenerates every file here (manifest.json records the commands and figures).
 * Imported `with { type: "file" }`: paths into the source tree, or into the executable's embedded file system.
 */
import configJson from "./warm_start/config.json" with { type: "file" };
import generationConfigJson from "./warm_start/generation_config.json" with { type: "file" };
import tokenizerJson from "./warm_start/tokenizer.json" with { type: "file" };
import tokenizerConfigJson from "./warm_start/tokenizer_config.json" with { type: "file" };
import weights from "./warm_start/model.safetensors" with { type: "file" };
import manifest from "./warm_start/manifest.json" with { type: "json" };

const path = (p: unknown) => p as string;

/** The model folder's files, by name. */
export const WARM_START_FILES: Record<string, string> = {
  "config.json": path(configJson),
  "generation_config.json": path(generationConfigJson),
  "tokenizer.json": path(tokenizerJson),
  "tokenizer_config.json": path(tokenizerConfigJson),
  "model.safetensors": weights,
};

/** What made it: the seed of the data it was trained on (a quick run synthesizes the same data), commands, figures. */
export const WARM_START: { dataSeed: number; commands: string[] } & Record<string, unknown> = manifest;
