/**
 * `recall demo`: a tiny model learns, by RL, when to call a tool — the ReCall story in miniature, on embedded defaults,
 * through the public commands chained (each printed as a shell line, and collected in `commands.sh`, so any stage can
 * be rerun by hand):
 *
 *   recall synth (calc, 4-digit products) → recall init → recall sft on tool traces (copying digits into a call and
 *   out of the result) → recall sft on a mix where most traces answer directly (the model now mostly guesses, and
 *   guesses wrong) → recall eval (held-out, greedy) → recall train (GRPO: a correct tool path earns 1.0, a wrong
 *   guess 0.1) → recall eval again → report.html
 *
 * `quick` starts from the embedded warm-start checkpoint (the two SFT phases, made by scripts/demo_warm_start.ts)
 * and runs the GRPO and eval parts. Each command runs as a child process of this executable (stage_process.ts), its
 * output in `logs/<stage>.log`, while the demo keeps one progress line with an ETA. SFT on tool traces runs in
 * chunks (each a `recall sft` that resumes the last) until its held-out token accuracy shows the digits are copied.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { RecallError } from "../errors.ts";
import { writeFileAtomic } from "../util/fs.ts";
import { VERSION } from "../version.ts";
import { writeDirectMix } from "./direct_traces.ts";
import { DemoProgress, type StagePlan } from "./progress.ts";
import { runStage } from "./stage_process.ts";
import { DEMO_RECIPE, type DemoRecipe } from "./recipe.ts";

export interface DemoOptions {
  out: string;
  seed: number;
  quick: boolean;
  /** Overrides of the recipe's sizes (a shortened run for tests, or experiments). */
  sizes?: Partial<Pick<DemoRecipe, "samples" | "sftSteps" | "annealSteps" | "mixSteps" | "grpoSteps" | "evalItems">>;
  /** Stop after the SFT phases (scripts/demo_warm_start.ts). */
  sftOnly?: boolean;
  log: (line: string) => void;
  warn: (line: string) => void;
  /** A terminal to redraw the progress line on; absent: progress lines are logged. */
  tty?: { draw(line: string): void; clear(): void };
}

/** Held-out greedy evaluation of one model through `recall eval`. */
export interface EvalFigures {
  dir: string;
  em: number;
  acc: number;
  f1: number;
  /** Share of answers whose conversation called the tool. */
  toolUse: number;
  items: number;
}

/** One GRPO step's figures from metrics.jsonl. */
export interface StepFigures {
  step: number;
  score: number;
  toolCalls: number;
}

export interface DemoResult {
  out: string;
  commands: string[];
  sftModel: string;
  grpoModel?: string;
  reportPath?: string;
  sftHeldOutTokenAccuracy?: number;
  sftSteps?: number;
  before?: EvalFigures;
  after?: EvalFigures;
  firstStep?: StepFigures;
  lastStep?: StepFigures;
  seconds: number;
  stageSeconds: Record<string, number>;
}

/** Quotes a word for a POSIX shell when it needs it. */
export function shellWord(w: string): string {
  return /^[A-Za-z0-9_./:=,+@%-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`;
}

export const commandLine = (argv: readonly string[]) => ["recall", ...argv].map(shellWord).join(" ");

/** The marker that makes a folder the demo's own, so a rerun may clear it. */
const MARKER = "demo.json";
const OWNED = ["data", "init", "warm_start", "checkpoints", "eval", "logs", "commands.sh", "demo_summary.json", MARKER];

function prepareFolder(out: string): void {
  if (existsSync(out)) {
    if (!statSync(out).isDirectory()) throw new RecallError(`--out ${out} exists and is not a folder`);
    const entries = readdirSync(out);
    if (entries.length > 0 && !entries.includes(MARKER)) {
      throw new RecallError(`--out ${out} is not empty and is not a demo folder (no ${MARKER}); the demo clears its folder before it starts`, { hint: "give a new or empty folder" });
    }
    for (const e of OWNED) rmSync(join(out, e), { recursive: true, force: true });
  }
  mkdirSync(join(out, "logs"), { recursive: true });
}

/** Reads a GRPO run's per-step score and tool calls from metrics.jsonl. */
export function grpoSteps(runDir: string): StepFigures[] {
  const lines = readFileSync(join(runDir, "metrics.jsonl"), "utf8").split("\n").filter((l) => l.trim() !== "");
  const steps: StepFigures[] = [];
  for (const l of lines) {
    const m = JSON.parse(l) as Record<string, number>;
    if (typeof m["critic/score/mean"] === "number") steps.push({ step: m.step!, score: m["critic/score/mean"]!, toolCalls: m["tool_calls/mean"] ?? 0 });
  }
  return steps;
}

/** The last value of each metric in a run's metrics.jsonl. */
export function lastMetrics(runDir: string): Record<string, number> {
  const last: Record<string, number> = {};
  for (const l of readFileSync(join(runDir, "metrics.jsonl"), "utf8").split("\n")) {
    if (l.trim() === "") continue;
    for (const [k, v] of Object.entries(JSON.parse(l) as Record<string, unknown>)) if (typeof v === "number") last[k] = v;
  }
  return last;
}

/** Reads an eval folder's metrics and the share of answers that called the tool. */
export function evalFigures(dir: string): EvalFigures {
  const metrics = Object.fromEntries(
    readFileSync(join(dir, "metric_score.txt"), "utf8")
      .split("\n")
      .map((l) => l.split(": "))
      .filter((p) => p.length === 2)
      .map(([k, v]) => [k!, Number(v)]),
  );
  const items = JSON.parse(readFileSync(join(dir, "intermediate_data.json"), "utf8")) as { output: { tool_calls?: number } }[];
  const toolUse = items.filter((it) => (it.output.tool_calls ?? 0) > 0).length;
  return { dir, em: metrics.em ?? 0, acc: metrics.acc ?? 0, f1: metrics.f1 ?? 0, toolUse: items.length ? toolUse / items.length : 0, items: items.length };
}

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const t0 = performance.now();
  const r: DemoRecipe = { ...DEMO_RECIPE, ...o.sizes };
  const out = o.out;
  prepareFolder(out);
  writeFileAtomic(join(out, MARKER), JSON.stringify({ recall_version: VERSION, seed: o.seed, quick: o.quick, recipe: r, started_at: new Date().toISOString() }, null, 2) + "\n");

  const data = join(out, "data");
  const ckpt = join(out, "checkpoints");
  const project = "demo";
  const runDir = (name: string) => join(ckpt, project, name);
  const stepDir = (name: string, step: number) => join(runDir(name), `global_step_${step}`);
  // Loaded only when asked for: the warm start is a build product of this very pipeline (scripts/demo_warm_start.ts).
  const warm = o.quick ? await import("./warm_start.ts") : undefined;
  // Quick runs use the data the warm start was trained on, so the held-out set stays held out.
  const dataSeed = warm ? warm.WARM_START.dataSeed : o.seed;

  const plan: StagePlan[] = [{ name: "synth", seconds: r.synthSeconds }];
  if (!warm) {
    plan.push(
      { name: "init", seconds: r.startSeconds },
      { name: "sft (tool traces)", seconds: Math.min(r.sftSteps, r.sftNominalSteps) * r.sftSecondsPerStep },
      { name: "sft (anneal)", seconds: r.annealSteps * r.sftSecondsPerStep + r.startSeconds },
      { name: "sft (mix)", seconds: r.mixSteps * r.sftSecondsPerStep + r.startSeconds },
    );
  } else plan.push({ name: "warm start", seconds: 1 });
  if (!o.sftOnly) {
    plan.push(
      { name: "eval (before)", seconds: r.evalItems * r.evalSecondsPerItem + r.startSeconds },
      { name: "train (GRPO)", seconds: r.grpoSteps * r.grpoSecondsPerStep + r.startSeconds },
      { name: "eval (after)", seconds: r.evalItems * r.evalSecondsPerItem + r.startSeconds },
    );
  }
  const progress = new DemoProgress(plan, (l) => o.log(l), o.tty);
  const say = (l: string) => {
    progress.clear();
    o.log(l);
  };
  const warn = (l: string) => {
    progress.clear();
    o.warn(l);
  };
  const commands: string[] = [];
  const stageSeconds: Record<string, number> = {};
  const logFile = (stage: string) => join(out, "logs", `${stage.replace(/[^a-z0-9]+/gi, "_").replace(/_+$/, "")}.log`);
  const writeCommands = () =>
    writeFileAtomic(join(out, "commands.sh"), ["#!/bin/sh", "# The commands `recall demo` ran, in order (from the folder it ran in).", "set -e", ...commands].join("\n") + "\n");
  /** Prints, records and runs one public command; `onLine` sees its output (progress). */
  const command = async (stage: string, argv: string[], onLine: (line: string) => void = () => {}): Promise<void> => {
    const line = commandLine(argv);
    commands.push(line);
    writeCommands();
    say(`$ ${line}`);
    await runStage(argv, logFile(stage), onLine, warn);
  };
  const timed = async <T>(stage: string, f: () => Promise<T>): Promise<T> => {
    progress.stage(stage);
    const s0 = performance.now();
    try {
      return await f();
    } finally {
      stageSeconds[stage] = (performance.now() - s0) / 1000;
    }
  };
  /** `step k/N` lines of recall sft and recall train → progress through the stage. */
  const stepLines = (offset: number, total: number, describe: (line: string) => string) => (line: string) => {
    const m = /\bstep (\d+)\/(\d+)\b/.exec(line);
    if (m) progress.update((Number(m[1]) - offset) / total, `step ${m[1]}/${offset + total} · ${describe(line)}`);
  };
  const field = (name: string) => (line: string) => new RegExp(`${name} ([\\d.e+-]+)`).exec(line)?.[0] ?? "";

  // ---- 1. data -------------------------------------------------------------------------------------------------
  await timed("synth", async () => {
    await command("synth", [
      "synth", "--mix", "calc", "--n", String(r.samples), "--calc_min", "32", "--calc_max", "99", "--calc_ops", "mul", "--style", "compact",
      "--system_prompt", r.systemPrompt, "--test_ratio", String(r.testRatio), "--seed", String(dataSeed), "--out", data,
    ]);
    const stats = JSON.parse(readFileSync(join(data, "stats.json"), "utf8")) as { samples: { train: number; test: number } };
    say(`data: ${stats.samples.train} train + ${stats.samples.test} held-out calc tasks (factors 32–99, 4-digit products) in ${data}`);
  });
  const testFile = join(data, "test.parquet");

  // ---- 2. cold start (or the embedded warm start) ---------------------------------------------------------------
  let sftModel = "";
  let sftSteps: number | undefined;
  let sftHeldOutTokenAccuracy: number | undefined;
  if (warm) {
    sftModel = join(out, "warm_start");
    await timed("warm start", async () => {
      const note = `warm start: the embedded SFT checkpoint (made by scripts/demo_warm_start.ts with recall sft, seed ${warm.WARM_START.dataSeed}) → ${sftModel}`;
      commands.push(`# ${note}`);
      say(note);
      mkdirSync(sftModel, { recursive: true });
      // Read and written (not copied): an embedded file lives in the executable, where copyfile cannot reach it.
      for (const [name, path] of Object.entries(warm.WARM_START_FILES)) writeFileAtomic(join(sftModel, name), readFileSync(path));
    });
  } else {
    const init = join(out, "init");
    await timed("init", () => command("init", ["init", "--arch", "qwen2", "--preset", "tiny", "--seed", String(o.seed), "--out", init]));

    const sftCommon = (experiment: string) => [
      "--batch_size", String(r.sftBatch), "--lr_scheduler", "constant", "--warmup_ratio", "0", "--save_path", ckpt, "--project_name", project,
      "--experiment_name", experiment, "--seed", String(o.seed), "trainer.val_before_train=false",
    ];
    await timed("sft (tool traces)", async () => {
      // Chunks of sftCheckEvery steps, each a `recall sft` that resumes the last, until the held-out token accuracy
      // says the digits are copied (or sftSteps are done).
      let done = 0;
      const expected = Math.min(r.sftSteps, r.sftNominalSteps);
      while (done < r.sftSteps) {
        const upto = Math.min(r.sftSteps, done + r.sftCheckEvery);
        await command(
          "sft (tool traces)",
          [
            "sft", "--train_files", join(data, "sft.jsonl"), "--val_files", join(data, "sft_test.jsonl"), "--model", init, "--lr", String(r.sftLr),
            "--max_steps", String(upto), "--test_freq", String(r.sftCheckEvery), "--save_freq", String(r.sftCheckEvery), "--max_ckpt_to_keep", "1",
            ...sftCommon("sft_tool"),
          ],
          stepLines(0, Math.max(expected, upto), field("loss")),
        );
        done = upto;
        const m = lastMetrics(runDir("sft_tool"));
        sftHeldOutTokenAccuracy = m["val/token_acc"];
        say(`sft on tool traces: step ${done}, held-out token accuracy ${((sftHeldOutTokenAccuracy ?? 0) * 100).toFixed(2)}% (stop at ${(r.sftStopTokenAcc * 100).toFixed(1)}%)`);
        if ((sftHeldOutTokenAccuracy ?? 0) >= r.sftStopTokenAcc) break;
      }
      sftSteps = done;
    });

    await timed("sft (anneal)", async () => {
      await command(
        "sft (anneal)",
        [
          "sft", "--train_files", join(data, "sft.jsonl"), "--val_files", join(data, "sft_test.jsonl"), "--model", stepDir("sft_tool", sftSteps!),
          "--lr", String(r.annealLr), "--max_steps", String(r.annealSteps), "--test_freq", String(r.annealSteps), ...sftCommon("sft_anneal"),
        ],
        stepLines(0, r.annealSteps, field("loss")),
      );
      sftHeldOutTokenAccuracy = lastMetrics(runDir("sft_anneal"))["val/token_acc"];
      say(`sft on tool traces at lr ${r.annealLr}: ${r.annealSteps} steps, held-out token accuracy ${((sftHeldOutTokenAccuracy ?? 0) * 100).toFixed(2)}%`);
    });

    const mixFile = join(data, "sft_mix.jsonl");
    await timed("sft (mix)", async () => {
      const made = await writeDirectMix(join(data, "sft.jsonl"), mixFile, r.directShare, dataSeed);
      const note = `${mixFile}: ${made.direct} of ${made.rows} golden traces rewritten to answer directly, without the tool (${Math.round(r.directShare * 100)}%; written by recall demo from sft.jsonl)`;
      commands.push(`# ${note}`);
      say(note);
      await command(
        "sft (mix)",
        ["sft", "--train_files", mixFile, "--model", stepDir("sft_anneal", r.annealSteps), "--lr", String(r.mixLr), "--max_steps", String(r.mixSteps), ...sftCommon("sft_mix")],
        stepLines(0, r.mixSteps, field("loss")),
      );
      sftModel = stepDir("sft_mix", r.mixSteps);
    });
  }
  const result: DemoResult = { out, commands, sftModel, sftSteps, sftHeldOutTokenAccuracy, seconds: 0, stageSeconds };
  if (o.sftOnly) {
    progress.clear();
    result.seconds = (performance.now() - t0) / 1000;
    return result;
  }

  // ---- 3. held-out evaluation, before -------------------------------------------------------------------------
  const evaluate = (stage: string, model: string, note: string): Promise<EvalFigures> =>
    timed(stage, async () => {
      const saveDir = join(out, "eval");
      const before = new Set(existsSync(saveDir) ? readdirSync(saveDir) : []);
      await command(
        stage,
        [
          "eval", "--method_name", "re-call", "--dataset_path", testFile, "--generator_model", model, "--system_prompt", r.systemPrompt,
          "--limit", String(r.evalItems), "--max_turns", String(r.maxTurns), "--max_tokens_per_turn", String(r.maxTokensPerTurn),
          "--workers", String(r.evalItems), "--save_dir", saveDir, "--save_note", note,
        ],
        (line) => {
          const m = /(\d+)\/(\d+) \(/.exec(line);
          if (m) progress.update(Number(m[1]) / Number(m[2]), `${m[1]}/${m[2]} items`);
        },
      );
      // The run folder it made: {dataset}_{time}_{note}, new in save_dir.
      const made = readdirSync(saveDir).filter((d) => !before.has(d) && d.endsWith(`_${note}`));
      if (made.length !== 1) throw new RecallError(`recall eval made ${made.length} run folders ending _${note} in ${saveDir}; expected one (see ${logFile(stage)})`);
      const dir = join(saveDir, made[0]!);
      const f = evalFigures(dir);
      say(`held-out (${f.items} tasks, greedy): em ${f.em.toFixed(2)}, the tool called in ${(f.toolUse * 100).toFixed(0)}% of answers → ${dir}`);
      return f;
    });
  result.before = await evaluate("eval (before)", sftModel, "sft");

  // ---- 4. RL -----------------------------------------------------------------------------------------------------
  await timed("train (GRPO)", async () => {
    await command(
      "train (GRPO)",
      [
        "train", "--train_files", join(data, "train.parquet"), "--actor_model_path", sftModel, "--system_prompt", r.systemPrompt,
        "--train_batch_size", String(r.grpoPrompts), "--ppo_mini_batch_size", String(r.grpoPrompts), "--rollout_n", String(r.grpoSamples),
        "--lr", String(r.grpoLr), "--max_turns", String(r.maxTurns), "--max_response_length", String(r.maxResponseLength),
        "--save_path", ckpt, "--project_name", project, "--experiment_name", "grpo", "--save_freq", String(Math.min(r.grpoSaveFreq, r.grpoSteps)), "--test_freq", "-1",
        `trainer.total_training_steps=${r.grpoSteps}`, "trainer.val_before_train=false", `trainer.seed=${o.seed}`, `data.seed=${o.seed}`,
        "actor_rollout_ref.actor.use_kl_loss=false", `actor_rollout_ref.actor.entropy_coeff=${r.grpoEntropyCoeff}`,
        `actor_rollout_ref.rollout.temperature=${r.grpoTemperature}`, "actor_rollout_ref.rollout.top_p=1",
        `actor_rollout_ref.rollout.max_tokens_per_turn=${r.maxTokensPerTurn}`,
      ],
      stepLines(0, r.grpoSteps, (l) => `${field("score")(l).replace("score", "reward")} · ${field("tools")(l).replace("tools", "tool calls")}`),
    );
    const steps = grpoSteps(runDir("grpo"));
    result.firstStep = steps[0];
    result.lastStep = steps.at(-1);
    result.grpoModel = stepDir("grpo", r.grpoSteps);
    say(
      `GRPO: ${steps.length} steps; mean train reward ${result.firstStep?.score.toFixed(2)} → ${result.lastStep?.score.toFixed(2)}, ` +
        `tool calls per rollout ${result.firstStep?.toolCalls.toFixed(2)} → ${result.lastStep?.toolCalls.toFixed(2)}`,
    );
  });

  // ---- 5. held-out evaluation, after; the report ----------------------------------------------------------------
  result.after = await evaluate("eval (after)", result.grpoModel!, "grpo");
  progress.clear();
  const reportArgv = ["report", runDir("grpo")];
  commands.push(commandLine(reportArgv));
  writeCommands();
  await runStage(reportArgv, logFile("report"), () => {}, warn);
  result.reportPath = join(runDir("grpo"), "report.html");
  result.seconds = (performance.now() - t0) / 1000;
  writeFileAtomic(join(out, "demo_summary.json"), JSON.stringify({ recall_version: VERSION, seed: o.seed, quick: o.quick, recipe: r, ...result }, null, 2) + "\n");
  return result;
}
