/**
 * `recall demo`: the learning pipeline (synth → init → sft ×2 → eval → train → eval) shortened to a few steps, end to
 * end through the CLI, asserting the files and the shape of the output (learning itself is measured by the demo and
 * README, not by a timed test); the direct-answer traces of its second SFT phase; the reward the calc rows get.
 */
import { expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runRecall } from "./harness.ts";
import { directAnswerRow, writeDirectMix } from "../src/demo/direct_traces.ts";
import { commandLine } from "../src/demo/run.ts";
import { kindForDataSource, reCallReward } from "../src/reward/index.ts";
import { renderChatML, type ChatMessage } from "../src/rollout/chatml.ts";

const golden = (q: string, a: string, id = "calc-1") => ({
  id,
  data_source: "re_call_synth_calc",
  messages: [
    { role: "system", content: "Use calc." },
    { role: "user", content: q },
    { role: "assistant", content: `<think></think>\n<tool_call>\n{"name": "calc", "arguments": {"expression": "${q}"}}\n</tool_call>` },
    { role: "user", content: `<tool_response>{"name": "calc", "arguments": {"expression": "${q}"}}\nresult: \n${a}\n</tool_response>\n` },
    { role: "assistant", content: `<think></think>\n\\boxed{${a}}` },
  ],
});

test("a direct-answer row keeps the system and user turns and the final answer turn only", () => {
  const d = directAnswerRow(golden("47*83", "3901"), "x");
  expect(d.messages.map((m) => m.role)).toEqual(["system", "user", "assistant"]);
  expect(d.messages[2]!.content).toBe("<think></think>\n\\boxed{3901}");
  expect(d.id).toBe("calc-1");
  expect(() => directAnswerRow({ messages: [{ role: "user", content: "q" }] }, "f.jsonl:3")).toThrow("f.jsonl:3");
});

test("the mix answers the given share directly, seeded", async () => {
  const dir = mkdtempSync(join(tmpdir(), "recall-demo-mix-"));
  const input = join(dir, "sft.jsonl");
  writeFileSync(input, Array.from({ length: 50 }, (_, i) => JSON.stringify(golden(`${40 + i}*51`, String((40 + i) * 51), `calc-${i}`)) + "\n").join(""));
  const a = await writeDirectMix(input, join(dir, "a.jsonl"), 0.6, 7);
  expect(a).toEqual({ rows: 50, direct: 30 });
  const rows = readFileSync(join(dir, "a.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { messages: unknown[] });
  expect(rows.filter((r) => r.messages.length === 3).length).toBe(30);
  await writeDirectMix(input, join(dir, "b.jsonl"), 0.6, 7);
  expect(readFileSync(join(dir, "b.jsonl"), "utf8")).toBe(readFileSync(join(dir, "a.jsonl"), "utf8"));
  await writeDirectMix(input, join(dir, "c.jsonl"), 0.6, 8);
  expect(readFileSync(join(dir, "c.jsonl"), "utf8")).not.toBe(readFileSync(join(dir, "a.jsonl"), "utf8"));
});

test("calc rows get ReCall's reward: a correct tool path 1.0, a wrong direct guess 0.1", () => {
  expect(kindForDataSource("re_call_synth_calc")).toBe("re_call");
  const text = (messages: ChatMessage[]) => renderChatML(messages, false).trimEnd();
  const tool = golden("47*83", "3901").messages as ChatMessage[];
  expect(reCallReward({ text: text(tool), groundTruth: "3901" }).score).toBe(1);
  const guess = directAnswerRow({ messages: tool.map((m) => ({ ...m })) }, "x").messages as ChatMessage[];
  guess[2] = { role: "assistant", content: "<think></think>\n\\boxed{3801}" };
  expect(reCallReward({ text: text(guess), groundTruth: "3901" }).score).toBe(0.1);
});

test("commands are printed as shell lines a user can paste", () => {
  expect(commandLine(["sft", "--system_prompt", "Use calc.", "--lr", "0.01", "a=b"])).toBe("recall sft --system_prompt 'Use calc.' --lr 0.01 a=b");
  expect(commandLine(["x", "it's"])).toBe(`recall x 'it'\\''s'`);
});

test("recall demo, shortened: every stage's files, the commands it ran, the before/after table", () => {
  const out = join(mkdtempSync(join(tmpdir(), "recall-demo-")), "run");
  // The demo's info lines are its output; consola keeps quiet under the test runner unless told. Set for this one
  // child only: the test process's environment is shared by every test file that runs after this one.
  const saved = process.env.CONSOLA_LEVEL;
  process.env.CONSOLA_LEVEL = "3";
  let r: ReturnType<typeof runRecall>;
  try {
    r = runRecall(["demo", "--out", out, "--n", "120", "--sft_steps", "3", "--anneal_steps", "2", "--mix_steps", "2", "--grpo_steps", "2", "--limit", "4", "--seed", "1"]);
  } finally {
    if (saved === undefined) delete process.env.CONSOLA_LEVEL;
    else process.env.CONSOLA_LEVEL = saved;
  }
  expect(r.stderr + r.stdout).not.toContain("    at ");
  expect(r.code).toBe(0);
  for (const f of ["data/train.parquet", "data/test.parquet", "data/sft.jsonl", "data/sft_mix.jsonl", "init/model.safetensors", "checkpoints/demo/sft_tool/global_step_3/model.safetensors", "checkpoints/demo/sft_anneal/global_step_2/model.safetensors", "checkpoints/demo/sft_mix/global_step_2/model.safetensors", "checkpoints/demo/grpo/global_step_2/model.safetensors", "checkpoints/demo/grpo/report.html", "checkpoints/demo/grpo/metrics.jsonl", "logs/sft_tool_traces.log", "demo_summary.json"]) {
    expect(existsSync(join(out, f))).toBe(true);
  }
  const evals = readdirSync(join(out, "eval")).sort();
  expect(evals.length).toBe(2);
  expect(evals.some((d) => d.endsWith("_sft"))).toBe(true);
  expect(evals.some((d) => d.endsWith("_grpo"))).toBe(true);
  for (const d of evals) expect(readFileSync(join(out, "eval", d, "metric_score.txt"), "utf8")).toMatch(/^em: /m);
  const commands = readFileSync(join(out, "commands.sh"), "utf8");
  for (const c of ["recall synth --mix calc", "recall init --arch qwen2", "recall sft --train_files", "recall eval --method_name re-call", "recall train --train_files", "recall report"]) expect(commands).toContain(c);
  expect(r.stdout).toContain("$ recall train --train_files");
  expect(r.stdout).toMatch(/ETA \d/);
  expect(r.stdout).toMatch(/held-out greedy accuracy \(em\) +\d\.\d\d +\d\.\d\d +[+-]\d\.\d\d/);
  expect(r.stdout).toContain(`report: ${join(out, "checkpoints/demo/grpo/report.html")}`);
  const summary = JSON.parse(readFileSync(join(out, "demo_summary.json"), "utf8")) as { before: { items: number }; lastStep: { step: number } };
  expect(summary.before.items).toBe(4);
  expect(summary.lastStep.step).toBe(2);
}, 600_000);

test("recall demo refuses a folder it did not make, and a bad flag value, in one line", () => {
  const dir = mkdtempSync(join(tmpdir(), "recall-demo-foreign-"));
  writeFileSync(join(dir, "notes.txt"), "mine");
  const r = runRecall(["demo", "--out", dir]);
  expect(r.code).toBe(1);
  expect(r.stderr).toContain("is not a demo folder");
  expect(existsSync(join(dir, "notes.txt"))).toBe(true);
  const bad = runRecall(["demo", "--grpo_steps", "0"]);
  expect(bad.code).toBe(1);
  expect(bad.stderr).toContain("--grpo_steps");
});
