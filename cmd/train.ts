/** `recall train`: GRPO with multi-turn tool rollouts (ReCall's train.sh flags, verl's keys and key=value overrides). */
import { consola } from "consola";
import { defineRecallCommand } from "../src/cli/command.ts";
import { parseTrainCommandLine, trainSettingsYaml, TRAIN_ARGS, TRAIN_SETTINGS_HELP } from "../src/config/train.ts";
import { runGrpo } from "../src/train/grpo.ts";

export default defineRecallCommand({
  meta: {
    name: "train",
    description: "GRPO on multi-turn tool-calling rollouts (ReCall's trainer with verl's math) on this machine's GPU: verl parquet in, Hugging Face checkpoints, metrics.jsonl and report.html out.",
  },
  examples: [
    "recall train --train_files data/train.parquet --test_files data/test.parquet --actor_model_path runs/tiny-qwen2 --train_batch_size 8 --ppo_mini_batch_size 8 --rollout_n 4",
    "recall train --train_files data/musique_train.parquet --actor_model_path Qwen2.5-0.5B-Instruct --search_url http://127.0.0.1:8000 actor_rollout_ref.actor.optim.lr=1e-6 data.max_response_length=2048",
    "recall train --config run.yaml trainer.total_training_steps=30 algorithm.filter_groups.enable=true",
    "recall train --config run.yaml --print_config",
    "recall train --config run.yaml trainer.resume_mode=auto   # continue from latest_checkpointed_iteration.txt",
    "recall train --train_files data/train.parquet --actor_model_path Qwen2.5-0.5B-Instruct --lora_rank 32 --lora_alpha 64 --target_modules all-linear",
    "recall train --config run.yaml trainer.total_training_steps=3 --profile   # GPU ms per kernel family per step (profile/* in metrics.jsonl)",
    "recall train --config run.yaml --rollout_dtype bf16   # rollouts decode with a bf16 copy of the projection weights (verl's rollout.dtype)",
  ],
  args: TRAIN_ARGS,
  overrides: { help: TRAIN_SETTINGS_HELP },
  async run({ rawArgs }) {
    const { settings, printConfig, notes } = parseTrainCommandLine(rawArgs);
    if (printConfig) {
      process.stdout.write(trainSettingsYaml(settings));
      return;
    }
    for (const note of notes) consola.info(note);
    const r = await runGrpo(settings, {
      log: (l) => consola.info(l),
      warn: (l) => consola.warn(l),
    });
    consola.success(`${r.steps} steps; run folder ${r.runDir} (report.html, metrics.jsonl, checkpoints)`);
  },
});
