/**
 * Regenerates src/demo/warm_start/, the checkpoint `recall demo --quick` starts from: runs the demo's pipeline up to
 * the end of its SFT phases (recall synth, recall init, recall sft on tool traces, again at a lower lr, then on the mix; seed 0)
 * and copies the resulting model folder there, with a manifest of the commands and figures.
 *
 *   ./node_modules/.bin/bun scripts/demo_warm_start.ts                      # runs the SFT phases in runs/demo-warm-start
 *   ./node_modules/.bin/bun scripts/demo_warm_start.ts --from runs/demo     # takes them from a finished `recall demo --seed 0`
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { lastMetrics, runDemo } from "../src/demo/run.ts";
import { writeFileAtomic } from "../src/util/fs.ts";
import { VERSION } from "../src/version.ts";

const root = new URL("..", import.meta.url).pathname;
const flag = (name: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const seed = 0;
let model: string;
let commands: string[];
const from = flag("--from");
if (from) {
  const marker = JSON.parse(readFileSync(join(from, "demo.json"), "utf8")) as { seed: number; quick: boolean; recipe: { mixSteps: number } };
  if (marker.seed !== seed || marker.quick) throw new Error(`${from} is not a full demo run of seed ${seed}`);
  model = join(from, "checkpoints/demo/sft_mix", `global_step_${marker.recipe.mixSteps}`);
  if (!existsSync(join(model, "model.safetensors"))) throw new Error(`${from} has no finished SFT mix phase (${model})`);
  // The commands up to the first evaluation: synth, init and the SFT phases.
  const lines = readFileSync(join(from, "commands.sh"), "utf8").split("\n").filter((l) => l.startsWith("recall ") || (l.startsWith("# ") && l.includes("sft_mix.jsonl")));
  const firstEval = lines.findIndex((l) => l.startsWith("recall eval"));
  commands = firstEval < 0 ? lines : lines.slice(0, firstEval);
} else {
  const r = await runDemo({ out: flag("--out") ?? join(root, "runs/demo-warm-start"), seed, quick: false, sftOnly: true, log: (l) => console.log(l), warn: (l) => console.warn(l) });
  model = r.sftModel;
  commands = r.commands;
}
const sftTool = join(model, "../../sft_tool");
const sftAnneal = join(model, "../../sft_anneal");
const dest = join(root, "src/demo/warm_start");
mkdirSync(dest, { recursive: true });
for (const f of ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"]) copyFileSync(join(model, f), join(dest, f));
const tool = lastMetrics(sftTool);
const anneal = lastMetrics(sftAnneal);
const manifest = {
  dataSeed: seed,
  recall_version: VERSION,
  made_at: new Date().toISOString(),
  sft_tool_steps: tool.step,
  sft_tool_held_out_token_accuracy: tool["val/token_acc"],
  sft_anneal_steps: anneal.step,
  sft_anneal_held_out_token_accuracy: anneal["val/token_acc"],
  commands,
};
writeFileAtomic(join(dest, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
console.log(`warm start written to ${dest} (from ${model})`);
