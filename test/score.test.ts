/** `recall score` and the engine's batching contract: padding never changes a sequence's log-probs. */
import { beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import { Transformer } from "../src/model/transformer.ts";
import { initModel } from "../src/model/init.ts";
import { runRecall } from "./harness.ts";

let gpu: Gpu;
const dirs: Record<string, string> = {};
beforeAll(async () => {
  gpu = await getGpu();
  for (const arch of ["qwen2", "qwen3", "llama"] as const) {
    dirs[arch] = join(mkdtempSync(join(tmpdir(), `recall-score-${arch}-`)), "m");
    await initModel({ arch, preset: "tiny", outDir: dirs[arch]!, seed: 3 });
  }
});

describe("batched scoring", () => {
  for (const arch of ["qwen2", "qwen3", "llama"]) {
    test(`${arch}: a padded batch equals each sequence scored alone`, async () => {
      const model = await Transformer.load(gpu, dirs[arch]!);
      const seqs = [[5, 9, 33, 120, 7, 7, 64, 3, 250], [17, 4], [100, 101, 102, 103, 104]];
      const batched = await model.score(seqs);
      for (const [b, s] of seqs.entries()) {
        const [alone] = await model.score([s]);
        expect(alone![0]).toBeNull();
        for (let i = 1; i < s.length; i++) expect(Math.abs(batched[b]![i]! - alone![i]!)).toBeLessThan(2e-5);
      }
      model.params.release();
    });
  }
});

describe("recall score", () => {
  test("--ids --json prints ids and log-probs with null first, matching the engine", async () => {
    const r = runRecall(["score", "--model", dirs.qwen2!, "--ids", "5,9,33,120", "--json"]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { ids: number[]; logprobs: (number | null)[] };
    expect(out.ids).toEqual([5, 9, 33, 120]);
    expect(out.logprobs[0]).toBeNull();
    const model = await Transformer.load(gpu, dirs.qwen2!);
    const [want] = await model.score([[5, 9, 33, 120]]);
    for (let i = 1; i < 4; i++) expect(Math.abs(out.logprobs[i]! - want![i]!)).toBeLessThan(1e-6);
    model.params.release();
  });
  test("--text tokenizes and returns one log-prob per token, each ≤ 0", () => {
    const r = runRecall(["score", "--model", dirs.llama!, "--text", "Paris is big.", "--json"]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { ids: number[]; tokens: string[]; logprobs: (number | null)[] };
    expect(out.ids.length).toBe(out.logprobs.length);
    expect(out.tokens.length).toBe(out.ids.length);
    for (const lp of out.logprobs.slice(1)) expect(lp!).toBeLessThanOrEqual(0);
  });
  test("bad input: both flags, an id out of range, a missing model — one line, exit 1", () => {
    expect(runRecall(["score", "--model", dirs.qwen2!, "--ids", "1", "--text", "x"]).stderr).toContain("exactly one of --text or --ids");
    const r = runRecall(["score", "--model", dirs.qwen2!, "--ids", "1,2,100000"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("entry 3 ('100000')");
    const m = runRecall(["score", "--model", "/nonexistent/model", "--ids", "1,2"]);
    expect(m.code).toBe(1);
    expect(m.stderr).toContain("/nonexistent/model");
    expect(m.stderr).not.toContain("    at ");
  });
});
