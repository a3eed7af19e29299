/** `recall demo`: the pipeline end to end on embedded defaults writes a complete FlashRAG folder. */
import { expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runRecall } from "./harness.ts";

test("recall demo --limit 3 runs init, index and a re-call evaluation on the local engine", () => {
  const out = mkdtempSync(join(tmpdir(), "recall-demo-"));
  const r = runRecall(["demo", "--out", out, "--limit", "3", "--max_new_tokens", "16", "--max_turns", "2"]);
  expect(r.stderr + r.stdout).not.toContain("    at ");
  expect(r.code).toBe(0);
  expect(existsSync(join(out, "model/model.safetensors"))).toBe(true);
  expect(existsSync(join(out, "bm25"))).toBe(true);
  const runs = readdirSync(join(out, "eval"));
  expect(runs.length).toBe(1);
  const dir = join(out, "eval", runs[0]!);
  const items = JSON.parse(readFileSync(join(dir, "intermediate_data.json"), "utf8")) as { question: string; output: { pred: string; metric_score: Record<string, number> } }[];
  expect(items.length).toBe(3);
  expect(items[0]!.question).toBe("Which river flows through Budapest?");
  for (const it of items) expect(typeof it.output.metric_score.f1).toBe("number");
  expect(readFileSync(join(dir, "metric_score.txt"), "utf8")).toMatch(/^em: /m);
  expect(r.stdout).toContain("re-call · demo");
}, 300_000);

test("recall demo rejects a bad flag value with one line", () => {
  const r = runRecall(["demo", "--tool_backend", "docker"]);
  expect(r.code).toBe(1);
  expect(r.stderr).toContain("--tool_backend must be native or sandbox");
});
