/** `recall report RUN_DIR`: writes (or refreshes) a training run's report.html from its metrics and rollout dumps. */
import { defineRecallCommand, numberFlag, stringFlag } from "../src/cli/command.ts";
import { RecallError } from "../src/errors.ts";
import { writeReport } from "../src/train/report.ts";

export default defineRecallCommand({
  meta: { name: "report", description: "Write RUN_DIR/report.html (curves and sample rollouts of a training run, one self-contained file) and print its path." },
  examples: [
    "recall report checkpoints/recall/grpo",
    "recall report checkpoints/recall/grpo --rollout_steps 5",
  ],
  args: {
    run_dir: { type: "positional", description: "Run folder holding metrics.jsonl (and rollout/, config.yaml)", required: false },
    rollout_steps: { type: "string", description: "Show the best and worst sequences of this many newest training dumps (default 3)" },
  },
  run({ args }) {
    const dir = stringFlag(args, "run_dir");
    if (dir === undefined || dir === "") throw new RecallError("give the run folder: recall report RUN_DIR");
    const path = writeReport(dir, { rolloutSteps: numberFlag(args, "rollout_steps", { default: 3, integer: true, min: 0 }) });
    console.log(path);
  },
});
