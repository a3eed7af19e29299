/**
 * `recall eval --method_name re-call` on verl rows that carry their own tools (`extra_info.env` + `func_schemas`,
 * as `recall synth` writes them): the row's schemas go into the system prompt (ReCall's, or --system_prompt), its
 * tool source runs in the sandbox, and no retriever is needed.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeVerlParquet } from "../src/data/verl_parquet.ts";
import { PROJECT_ROOT } from "./harness.ts";

async function runRecallAsync(args: string[]) {
  const p = Bun.spawn([join(PROJECT_ROOT, "recall"), ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

const SCHEMAS = '[{"type": "function", "function": {"name": "calc", "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}}}}]';
const ENV = "def calc(expression: str):\n    a, b = expression.split('*')\n    return int(a) * int(b)\n";
let dir: string;
let server: ReturnType<typeof Bun.serve>;
const prompts: string[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "recall-rowtools-"));
  writeVerlParquet(join(dir, "test.parquet"), [
    { data_source: "synth_calc_re_call", question: "What is 37 * 41?", ability: "re_call", ground_truth: "1517", index: 0, split: "test", env: ENV, func_schemas: SCHEMAS },
    { data_source: "synth_calc_re_call", question: "What is 52 * 63?", ability: "re_call", ground_truth: "3276", index: 1, split: "test", env: ENV, func_schemas: SCHEMAS },
  ]);
  // A scripted SGLang server: turn 1 asks the tool, turn 2 boxes whatever the tool answered.
  server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      const body = (await req.json()) as { text: string };
      prompts.push(body.text);
      const q = /What is (\d+) \* (\d+)\?/.exec(body.text)!;
      const answered = /result: \n(\d+)\n/.exec(body.text);
      const text = answered
        ? `</think> The answer is \\boxed{${answered[1]}}.`
        : `I should compute. </think>\n<tool_call>\n{"name": "calc", "arguments": {"expression": "${q[1]}*${q[2]}"}}\n</tool_call>`;
      return Response.json({ text, meta_info: { finish_reason: { type: "stop", matched: 151645 }, completion_tokens: 10 } });
    },
  });
});

afterAll(() => server.stop(true));

test("re-call runs each row's own tool in the sandbox with the row's schemas in the system prompt; no retriever needed", async () => {
  // The scripted server lives in this process: the CLI must run without blocking it.
  const r = await runRecallAsync([
    "eval", "--method_name", "re-call", "--dataset_path", join(dir, "test.parquet"), "--save_dir", join(dir, "out"),
    "--sgl_remote_url", `127.0.0.1:${server.port}`, "--system_prompt", "Use calc. Tools: {func_schemas}", "--workers", "2", "--json",
  ]);
  expect(r.stderr).not.toContain("Error");
  expect(r.code).toBe(0);
  const summary = JSON.parse(r.stdout) as { dir: string; metrics: Record<string, number> };
  expect(summary.metrics.em).toBe(1);
  expect(prompts[0]!.startsWith(`<|im_start|>system\nUse calc. Tools: ${SCHEMAS}<|im_end|>\n<|im_start|>user\nWhat is`)).toBe(true);
  const items = JSON.parse(readFileSync(join(summary.dir, "intermediate_data.json"), "utf8")) as { output: { pred: string; tool_calls: number; final_response: string } }[];
  expect(items.map((i) => i.output.pred).sort()).toEqual(["1517", "3276"]);
  expect(items[0]!.output.tool_calls).toBe(1);
  expect(items[0]!.output.final_response).toContain("<tool_response>");
  expect(readdirSync(join(dir, "out")).length).toBe(1);
}, 120_000);
