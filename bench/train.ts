/**
 * bench/train: where the time of a GRPO step goes — generation (rollouts, tool calls included), reward, old and
 * reference log-probs, the actor update — and the tokens per second of whole steps, for the tiny and small presets
 * of `recall init`. Medians over the steps after the first (the first compiles shaders).
 *
 *   ./node_modules/.bin/bun bench/train.ts [--presets tiny,small] [--steps 5] [--prompts 4] [--n 8] [--response 64]
 *
 * Random models answer at random (no tool calls), so the rollouts are plain decoding up to --response tokens; the
 * reward is a dense toy score in-process. Uses the real `recall train` loop (src/train/grpo.ts) end to end.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseTrainCommandLine } from "../src/config/train.ts";
import { writeVerlParquet } from "../src/data/verl_parquet.ts";
import { getGpu } from "../src/gpu/runtime.ts";
import { initModel } from "../src/model/init.ts";
import { runGrpo } from "../src/train/grpo.ts";
import { median } from "./peer.ts";

function flag(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
}
const presets = flag("presets", "tiny,small").split(",");
const steps = Number(flag("steps", "5"));
const prompts = Number(flag("prompts", "4"));
const n = Number(flag("n", "8"));
const response = Number(flag("response", "64"));

const gpu = await getGpu();
console.log(`adapter: ${gpu.handle.info.description}; ${prompts} prompts × ${n} samples, up to ${response} response tokens, median of steps 2..${steps}`);
const dir = mkdtempSync(join(tmpdir(), "recall-bench-train-"));
const data = join(dir, "toy.parquet");
writeVerlParquet(data, Array.from({ length: prompts * steps }, (_, i) => ({ data_source: "toy", question: `Write some letters, please (${i}).`, ability: "toy", ground_truth: "a", index: i, split: "train", env: "", func_schemas: "" })));
const reward = join(dir, "reward.ts");
writeFileSync(reward, `export default ({ text }) => { const t = [...text]; return t.length ? t.filter((c) => /[a-z]/.test(c)).length / t.length : 0; };\n`);

const PHASES = ["gen", "reward", "old_log_prob", "ref", "adv", "update_actor"] as const;
for (const preset of presets) {
  const model = join(dir, preset);
  const init = await initModel({ arch: "qwen2", preset, outDir: model, seed: 0 });
  const rows: Record<string, number>[] = [];
  const { settings } = parseTrainCommandLine([
    "--train_files", data, "--actor_model_path", model, "--train_batch_size", String(prompts), "--ppo_mini_batch_size", String(prompts),
    "--rollout_n", String(n), "--use_re_call", "false", "--max_response_length", String(response), "--save_path", join(dir, `run-${preset}`),
    "--save_freq", "-1", `custom_reward_function.path=${reward}`, `trainer.total_training_steps=${steps}`, "trainer.val_before_train=false",
    "actor_rollout_ref.actor.optim.lr=1e-4",
  ]);
  await runGrpo(settings, { log: () => {}, warn: (l) => console.warn(l), onStep: (_, m) => rows.push({ ...m }) });
  const after = rows.slice(1);
  const med = (k: string) => median(after.map((r) => r[k] ?? 0));
  const step = med("timing_s/step");
  console.log(`\n${preset} (${(init.parameters / 1e6).toFixed(2)}M parameters): ${step.toFixed(2)} s per step, ${Math.round(med("perf/throughput"))} tokens/s (prompt + response), ${Math.round(med("response_length/mean") * prompts * n / med("timing_s/gen"))} generated tokens/s`);
  for (const p of PHASES) {
    const t = med(`timing_s/${p}`);
    console.log(`  ${p.padEnd(14)} ${t.toFixed(3).padStart(8)} s  ${((100 * t) / step).toFixed(1).padStart(5)}%`);
  }
}
