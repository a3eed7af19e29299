/**
 * bench/train: where the time of a GRPO step goes — generation (rollouts, tool calls included), reward, old and
 * reference log-probs, the actor update — and the tokens per second of whole steps, for the tiny and small presets
 * of `recall init`. Medians over the steps after the first (the first compiles shaders).
 *
 *   ./node_modules/.bin/bun bench/train.ts [--presets tiny,small] [--steps 3] [--prompts 4] [--n 8] [--response 64] [--rollout_dtype float32|bfloat16] [--trl_python PY] [--profile]
 *
 * `--profile` runs recall's steps with `recall train --profile` and prints the GPU time per kernel family of all the
 * steps beside their wall time (the step times are then measured with profiling on: a compute pass per dispatch).
 * `--rollout_dtype bfloat16` runs recall's rollouts with a bf16 copy of the weights (`recall train --rollout_dtype`); TRL
 * generates with its f32 model either way.
 *
 * Random models answer at random (no tool calls), so the rollouts are plain decoding up to --response tokens; the
 * reward is a dense toy score in-process. Uses the real `recall train` loop (src/train/grpo.ts) end to end.
 *
 * The peer: TRL's GRPOTrainer (bench/trl_grpo.py, PyTorch CPU) on the same model folder, prompts, group size, lengths,
 * reward and hyperparameters, run after recall for each preset. --trl_python names a Python with torch + transformers
 * + trl (default /work/venv2/bin/python when it exists, else python3); without TRL the bench prints recall alone.
 * Each step prints a line as it ends: a small step takes minutes on lavapipe, so a run cut short still shows figures.
 */
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseTrainCommandLine } from "../src/config/train.ts";
import { writeVerlParquet } from "../src/data/verl_parquet.ts";
import { getGpu } from "../src/gpu/runtime.ts";
import { formatProfile } from "../src/gpu/profile_table.ts";
import { initModel } from "../src/model/init.ts";
import { runGrpo } from "../src/train/grpo.ts";
import { median } from "./peer.ts";

function flag(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
}
const presets = flag("presets", "tiny,small").split(",");
const steps = Number(flag("steps", "3"));
const prompts = Number(flag("prompts", "4"));
const n = Number(flag("n", "8"));
const response = Number(flag("response", "64"));
const trlPython = flag("trl_python", existsSync("/work/venv2/bin/python") ? "/work/venv2/bin/python" : "python3");
const lr = 1e-4;
const profile = process.argv.includes("--profile");
const rolloutDtype = flag("rollout_dtype", "float32");

const gpu = await getGpu();
console.log(`adapter: ${gpu.handle.info.description}; ${prompts} prompts × ${n} samples, up to ${response} response tokens, median of steps 2..${steps}`);
const dir = mkdtempSync(join(tmpdir(), "recall-bench-train-"));
const data = join(dir, "toy.parquet");
const questions = Array.from({ length: prompts * steps }, (_, i) => `Write some letters, please (${i}).`);
writeVerlParquet(data, questions.map((question, i) => ({ data_source: "toy", question, ability: "toy", ground_truth: "a", index: i, split: "train", env: "", func_schemas: "" })));
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
    `actor_rollout_ref.actor.optim.lr=${lr}`, "--rollout_dtype", rolloutDtype, ...(profile ? ["--profile"] : []),
  ]);
  const result = await runGrpo(settings, {
    log: () => {},
    warn: (l) => console.warn(l),
    onStep: (k, m) => {
      rows.push({ ...m });
      console.log(`  ${preset} step ${k}: ${(m["timing_s/step"] ?? 0).toFixed(2)} s (gen ${(m["timing_s/gen"] ?? 0).toFixed(2)}, update ${(m["timing_s/update_actor"] ?? 0).toFixed(2)}; ${m["perf/decoded_ahead"]} of ${m["perf/decode_steps"]} decode steps ran ahead)`);
    },
  });
  const after = rows.slice(1);
  const med = (k: string) => median(after.map((r) => r[k] ?? 0));
  const step = med("timing_s/step");
  console.log(`\n${preset} (${(init.parameters / 1e6).toFixed(2)}M parameters): ${step.toFixed(2)} s per step, ${Math.round(med("perf/throughput"))} tokens/s (prompt + response), ${Math.round(med("response_length/mean") * prompts * n / med("timing_s/gen"))} generated tokens/s`);
  for (const p of PHASES) {
    const t = med(`timing_s/${p}`);
    console.log(`  ${p.padEnd(14)} ${t.toFixed(3).padStart(8)} s  ${((100 * t) / step).toFixed(1).padStart(5)}%`);
  }
  if (result.profile) console.log(`\n${preset}: GPU profile of all ${result.profile.steps} steps (step 1 compiles shaders: wall only)\n${formatProfile(result.profile.profile, result.profile.wallMs)}`);
  const peer = runTrl(model, settings as unknown as Record<string, unknown>);
  if (peer) {
    const trlStep = median(peer.step_s.slice(1));
    console.log(`  TRL GRPOTrainer (${peer.versions}): ${trlStep.toFixed(2)} s per step (steps ${peer.step_s.map((x) => x.toFixed(1)).join(", ")}), mean completion ${peer.completion_mean?.toFixed(1)} tokens`);
    console.log(`  recall / TRL step time: ${(step / trlStep).toFixed(2)} (below 1: recall is faster)`);
  }
}

/** TRL's GRPOTrainer on the same folder and settings; undefined (with the reason) when it cannot run. */
function runTrl(model: string, s: Record<string, unknown>): { step_s: number[]; completion_mean: number | null; versions: string } | undefined {
  const job = {
    model, questions: questions.slice(0, prompts * steps), prompts, n, steps, response, lr, out: join(dir, "trl-out"),
    kl_coef: s["actor_rollout_ref.actor.use_kl_loss"] ? s["actor_rollout_ref.actor.kl_loss_coef"] : 0,
    clip_ratio: s["actor_rollout_ref.actor.clip_ratio"],
    temperature: s["actor_rollout_ref.rollout.temperature"],
    top_p: s["actor_rollout_ref.rollout.top_p"],
    weight_decay: s["actor_rollout_ref.actor.optim.weight_decay"],
    grad_clip: s["actor_rollout_ref.actor.grad_clip"],
    checkpointing: s["actor_rollout_ref.model.enable_gradient_checkpointing"],
  };
  const spawn = () => Bun.spawnSync([trlPython, join(import.meta.dir, "trl_grpo.py")], { stdin: Buffer.from(JSON.stringify(job)), stderr: "pipe" });
  let p: ReturnType<typeof spawn>;
  try {
    p = spawn();
  } catch (e) {
    console.log(`  TRL peer unavailable (${trlPython}): ${(e as Error).message}`);
    return undefined;
  }
  if (p.exitCode !== 0) {
    console.log(`  TRL peer unavailable (${trlPython}): ${p.stderr.toString().trim().split("\n").pop()}`);
    return undefined;
  }
  return JSON.parse(p.stdout.toString());
}
