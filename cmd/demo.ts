/** `recall demo`: a tiny model learns by RL to call a tool — synth → init → SFT → eval → GRPO → eval, the public commands chained. */
import { consola } from "consola";
import { defineRecallCommand, numberFlag, stringFlag } from "../src/cli/command.ts";
import { DEMO_RECIPE } from "../src/demo/recipe.ts";
import { runDemo, type DemoResult } from "../src/demo/run.ts";
import { formatDuration } from "../src/util/duration.ts";

const sizeFlag = (description: string) => ({ type: "string" as const, description });

/** The before/after table: held-out greedy accuracy, tool use, and GRPO's mean train reward. */
export function demoTable(r: DemoResult): string {
  const rows: [string, number | undefined, number | undefined][] = [
    ["held-out greedy accuracy (em)", r.before?.em, r.after?.em],
    ["held-out answers that call the tool", r.before?.toolUse, r.after?.toolUse],
    ["mean train reward (GRPO step 1 → last)", r.firstStep?.score, r.lastStep?.score],
    ["tool calls per rollout (step 1 → last)", r.firstStep?.toolCalls, r.lastStep?.toolCalls],
  ];
  const fmt = (x: number | undefined) => (x === undefined ? "-" : x.toFixed(2));
  const width = Math.max(...rows.map(([k]) => k.length));
  const lines = [`${"".padEnd(width)}  end of SFT  end of GRPO  change`];
  for (const [k, a, b] of rows) {
    const change = a === undefined || b === undefined ? "-" : `${b - a >= 0 ? "+" : ""}${(b - a).toFixed(2)}`;
    lines.push(`${k.padEnd(width)}  ${fmt(a).padStart(10)}  ${fmt(b).padStart(11)}  ${change.padStart(6)}`);
  }
  return lines.join("\n");
}

export default defineRecallCommand({
  meta: {
    name: "demo",
    description:
      "A tiny model learns by RL when to call a tool: recall synth (calc tasks) → init → sft (tool traces, the same at a lower lr, then mostly direct answers) → eval → train (GRPO) → eval, each command printed; report.html at the end.",
  },
  examples: ["recall demo", "recall demo --seed 1 --out runs/demo-1", "recall demo --quick", "recall demo --out runs/demo-short --n 200 --sft_steps 20 --anneal_steps 5 --mix_steps 5 --grpo_steps 2 --limit 8"],
  args: {
    out: { type: "string", description: "Working folder (default runs/demo); a folder an earlier demo made is cleared first" },
    seed: { type: "string", description: "Seed of the data, the initialisation, SFT order and GRPO sampling (default 0)" },
    quick: { type: "boolean", description: "Start from the embedded warm-start checkpoint (the SFT phases, seed 0) and run GRPO and the evaluations only" },
    n: sizeFlag(`Calc tasks synthesized, train + held out (default ${DEMO_RECIPE.samples})`),
    sft_steps: sizeFlag(`Most steps of SFT on tool traces; it stops earlier once the held-out token accuracy reaches ${DEMO_RECIPE.sftStopTokenAcc} (default ${DEMO_RECIPE.sftSteps})`),
    anneal_steps: sizeFlag(`Steps of SFT on tool traces at lr ${DEMO_RECIPE.annealLr} after that stop, before the mix (default ${DEMO_RECIPE.annealSteps})`),
    mix_steps: sizeFlag(`Steps of SFT on the mix of tool traces and direct answers (default ${DEMO_RECIPE.mixSteps})`),
    grpo_steps: sizeFlag(`GRPO steps (default ${DEMO_RECIPE.grpoSteps})`),
    limit: sizeFlag(`Held-out tasks evaluated before and after GRPO (default ${DEMO_RECIPE.evalItems})`),
  },
  async run({ args }) {
    const opt = (name: string) => (stringFlag(args, name) === undefined ? undefined : numberFlag(args, name, { integer: true, min: 1 }));
    const sizes = {
      ...(opt("n") !== undefined ? { samples: opt("n")! } : {}),
      ...(opt("sft_steps") !== undefined ? { sftSteps: opt("sft_steps")! } : {}),
      ...(opt("anneal_steps") !== undefined ? { annealSteps: opt("anneal_steps")! } : {}),
      ...(opt("mix_steps") !== undefined ? { mixSteps: opt("mix_steps")! } : {}),
      ...(opt("grpo_steps") !== undefined ? { grpoSteps: opt("grpo_steps")! } : {}),
      ...(opt("limit") !== undefined ? { evalItems: opt("limit")! } : {}),
    };
    const tty = process.stderr.isTTY
      ? { draw: (l: string) => process.stderr.write(`\r\x1b[K${l.slice(0, (process.stderr.columns ?? 120) - 1)}`), clear: () => process.stderr.write("\r\x1b[K") }
      : undefined;
    const r = await runDemo({
      out: stringFlag(args, "out") ?? "runs/demo",
      seed: numberFlag(args, "seed", { default: 0, integer: true, min: 0, max: 2 ** 31 - 1 }),
      quick: args.quick === true,
      sizes,
      log: (l) => consola.info(l),
      warn: (l) => consola.warn(l),
      tty,
    });
    console.log(demoTable(r));
    consola.success(`demo done in ${formatDuration(r.seconds)}: ${r.out}/commands.sh (every command it ran), ${r.out}/demo_summary.json`);
    consola.info(`report: ${r.reportPath}`);
  },
});
