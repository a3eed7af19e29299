/**
 * The single executable: built once, copied into an empty temp dir with no node_modules anywhere near,
 * and run there — GPU (doctor), the demo (embedded warm-start model, synth, sandbox, GRPO, eval), retrieval with worker threads —
 * so every embedded asset is exercised.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compiledBinary, runRecall } from "./harness.ts";

let dir: string;
let bin: string;

beforeAll(() => {
  const dist = compiledBinary();
  dir = mkdtempSync(join(tmpdir(), "recall-bin-"));
  bin = join(dir, "recall");
  copyFileSync(dist, bin);
  chmodSync(bin, 0o755);
}, 300_000);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("dist/recall from an empty directory", () => {
  test("doctor --json: adapter and a passing self-test", () => {
    const r = runRecall(["doctor", "--json"], { cwd: dir, bin });
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.selftest.ok).toBe(true);
    expect(typeof report.adapter.vendor).toBe("string");
  });

  test("demo --quick: the embedded warm start, synth, eval, GRPO, eval, report (shortened)", () => {
    const r = runRecall(["demo", "--quick", "--out", "demo", "--n", "100", "--grpo_steps", "2", "--limit", "4"], { cwd: dir, bin });
    expect(r.stderr + r.stdout).not.toContain("    at ");
    expect(r.code).toBe(0);
    expect(existsSync(join(dir, "demo/warm_start/model.safetensors"))).toBe(true);
    expect(existsSync(join(dir, "demo/checkpoints/demo/grpo/global_step_2/model.safetensors"))).toBe(true);
    expect(readdirSync(join(dir, "demo/eval")).length).toBe(2);
    expect(r.stdout).toContain("$ recall train --train_files demo/data/train.parquet --actor_model_path demo/warm_start");
    expect(r.stdout).toMatch(/mean train reward \(GRPO step 1 → last\) +\d\.\d\d +\d\.\d\d/);
    expect(r.stdout).toContain("report: demo/checkpoints/demo/grpo/report.html");
  }, 300_000);

  test("retriever: index, then serve with worker threads and answer /search", async () => {
    writeFileSync(join(dir, "corpus.jsonl"), ['{"id":"1","contents":"\\"Paris\\"\\nParis is the capital of France."}', '{"id":"2","contents":"\\"Berlin\\"\\nBerlin is the capital of Germany."}'].join("\n") + "\n");
    expect(runRecall(["retriever", "index", "--corpus_path", "corpus.jsonl", "--index_path", "idx"], { cwd: dir, bin }).code).toBe(0);
    const log = join(dir, "serve.log");
    const server = Bun.spawn([bin, "retriever", "serve", "--index_path", "idx", "--corpus_path", "corpus.jsonl", "--port", "0", "--num_retriever", "2"], {
      cwd: dir,
      stdout: Bun.file(log),
      stderr: Bun.file(log),
    });
    try {
      // The server prints its URL once listening.
      let text = "";
      const deadline = Date.now() + 60_000;
      while (!/http:\/\/127\.0\.0\.1:\d+/.test(text) && Date.now() < deadline) {
        await Bun.sleep(100);
        text = await Bun.file(log).text().catch(() => "");
      }
      const url = text.match(/http:\/\/127\.0\.0\.1:\d+/)?.[0];
      expect(url).toBeDefined();
      expect(text).toContain("2 workers");
      const res = await fetch(`${url}/search`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query: "capital of Germany", top_n: 1 }) });
      expect(await res.json()).toEqual([{ id: "2", contents: '"Berlin"\nBerlin is the capital of Germany.' }]);
      const health = await (await fetch(`${url}/health`)).json();
      expect(health).toEqual({ status: "healthy", retrievers: { total: 2, available: 2 } });
    } finally {
      server.kill();
      await server.exited;
    }
  }, 120_000);
});
