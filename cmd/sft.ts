/** `recall sft`: supervised fine-tuning on (tool-use) conversations — the cold start before `recall train`. */
import { consola } from "consola";
import { defineRecallCommand } from "../src/cli/command.ts";
import { parseSftCommandLine, sftSettingsYaml, SFT_ARGS, SFT_SETTINGS_HELP } from "../src/config/sft.ts";
import { runSft } from "../src/sft/train.ts";

export default defineRecallCommand({
  meta: {
    name: "sft",
    description:
      "Supervised fine-tuning on chat conversations (OpenAI-style tool calls become ReCall's <tool_call>/<tool_response> text), loss on assistant turns: JSONL/parquet in, Hugging Face checkpoints, metrics.jsonl and report.html out.",
  },
  examples: [
    "recall sft --train_files data/sft.jsonl --model runs/tiny-qwen2 --val_split 0.1 --lr 1e-3 --total_epochs 5",
    "recall sft --train_files data/sft.jsonl --val_files data/sft_test.jsonl --model Qwen2.5-0.5B-Instruct --max_length 4096 --batch_size 32 --max_tokens_per_micro_batch 8192",
    "recall sft --config sft.yaml optim.lr=2e-5 trainer.early_stopping_patience=3",
    "recall sft --config sft.yaml --print_config",
    "recall sft --train_files data/sft.jsonl --model Qwen2.5-0.5B-Instruct --lora_rank 16 --lora_alpha 32 --target_modules q_proj,k_proj,v_proj,o_proj",
    "recall sft --train_files data/sft.jsonl --model runs/tiny-qwen2 --max_steps 5 --profile   # GPU ms per kernel family per step",
  ],
  args: SFT_ARGS,
  overrides: { help: SFT_SETTINGS_HELP },
  async run({ rawArgs }) {
    const { settings, printConfig, notes } = parseSftCommandLine(rawArgs);
    if (printConfig) {
      process.stdout.write(sftSettingsYaml(settings));
      return;
    }
    for (const note of notes) consola.info(note);
    const r = await runSft(settings, {
      log: (l) => consola.info(l),
      warn: (l) => consola.warn(l),
    });
    const held = r.lastHeldOut ? `; held-out loss ${r.lastHeldOut.loss.toFixed(4)}, token accuracy ${(100 * r.lastHeldOut.tokenAccuracy).toFixed(2)}%` : "";
    consola.success(`${r.steps} steps${r.stoppedEarly ? " (stopped early)" : ""}${held}; run folder ${r.runDir} (report.html, metrics.jsonl, checkpoints)`);
  },
});
