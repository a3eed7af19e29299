/**
 * Micro-batches run as forward passes of similar lengths (src/data/packing.ts paddingPasses, src/train/actor.ts):
 * the run partition is the cheapest one (checked against every partition of small cases), and splitting a
 * micro-batch changes no log-prob and, up to summation order, no gradient.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cheapestRuns, paddingPasses } from "../src/data/packing.ts";
import { getGpu } from "../src/gpu/runtime.ts";
import { initModel } from "../src/model/init.ts";
import { Transformer } from "../src/model/transformer.ts";
import { forwardForUpdate, scoreResponses, type PolicySequence } from "../src/train/actor.ts";
import { mulberry32 } from "../src/util/prng.ts";
import { expectClose } from "./harness.ts";

setDefaultTimeout(300_000);

const runsCost = (lengths: readonly number[], runs: readonly [number, number][], passCost: number) =>
  runs.reduce((c, [a, b]) => c + (b - a) * Math.max(...lengths.slice(a, b)) + passCost, 0);

/** The cheapest cost over every way to cut the items into runs, each run kept or (when all its lengths are 0) left out. */
function bruteForce(lengths: readonly number[], passCost: number): number {
  const n = lengths.length;
  let best = Infinity;
  for (let cuts = 0; cuts < 1 << Math.max(0, n - 1); cuts++) {
    let cost = 0;
    let start = 0;
    for (let i = 1; i <= n; i++) {
      if (i === n || cuts & (1 << (i - 1))) {
        const longest = Math.max(...lengths.slice(start, i));
        if (longest > 0) cost += (i - start) * longest + passCost;
        start = i;
      }
    }
    best = Math.min(best, cost);
  }
  return best;
}

test("cheapestRuns: the cheapest partition into runs, every non-empty item covered once, empty ones may be left out", () => {
  const rng = mulberry32(7);
  for (let trial = 0; trial < 300; trial++) {
    const n = 1 + Math.floor(rng() * 9);
    const lengths = Array.from({ length: n }, () => (rng() < 0.2 ? 0 : 1 + Math.floor(rng() * 40)));
    const passCost = [0, 1, 8, 32, 1000][trial % 5]!;
    const runs = cheapestRuns(lengths, passCost);
    const covered = new Array(n).fill(0);
    let last = 0;
    for (const [a, b] of runs) {
      expect(a).toBeGreaterThanOrEqual(last);
      expect(b).toBeGreaterThan(a);
      last = b;
      for (let i = a; i < b; i++) covered[i]++;
    }
    lengths.forEach((l, i) => expect(covered[i]).toBe(l > 0 ? 1 : covered[i]));
    expect(runsCost(lengths, runs, passCost)).toBe(bruteForce(lengths, passCost));
  }
  expect(cheapestRuns([0, 0], 5)).toEqual([]);
});

test("paddingPasses: every index once, ascending per pass, by length; one pass when a pass costs more than the padding", () => {
  const rng = mulberry32(11);
  for (let trial = 0; trial < 100; trial++) {
    const lengths = Array.from({ length: 1 + Math.floor(rng() * 40) }, () => 1 + Math.floor(rng() * 300));
    const passes = paddingPasses(lengths, 64);
    expect(passes.flat().sort((a, b) => a - b)).toEqual(lengths.map((_, i) => i));
    for (const p of passes) expect(p).toEqual([...p].sort((a, b) => a - b));
    // Passes hold length ranges that do not interleave (sorted by length, then cut).
    const ranges = passes.map((p) => [Math.min(...p.map((i) => lengths[i]!)), Math.max(...p.map((i) => lengths[i]!))] as const).sort((a, b) => a[0] - b[0]);
    for (let k = 1; k < ranges.length; k++) expect(ranges[k]![0]).toBeGreaterThanOrEqual(ranges[k - 1]![1]);
    const rows = passes.reduce((c, p) => c + p.length * Math.max(...p.map((i) => lengths[i]!)) + 64, 0);
    expect(rows).toBeLessThanOrEqual(lengths.length * Math.max(...lengths) + 64);
    expect(paddingPasses(lengths, Infinity)).toEqual([lengths.map((_, i) => i)]);
  }
  // 130-token prompts with responses of 0..62 tokens (a GRPO micro-batch of the small bench): split in several passes.
  expect(paddingPasses(Array.from({ length: 32 }, (_, i) => 130 + 2 * i), 64).length).toBeGreaterThan(1);
});

let dir: string;
let model: Transformer;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "recall-padding-passes-"));
  await initModel({ arch: "qwen2", preset: "tiny", outDir: join(dir, "m"), seed: 5 });
  model = await Transformer.load(await getGpu(), join(dir, "m"));
});
afterAll(() => {
  model?.params.release();
  rmSync(dir, { recursive: true, force: true });
});

function mixedSequences(): PolicySequence[] {
  const rng = mulberry32(3);
  // Short and long sequences interleaved, so the split passes are not the input order.
  const lengths = [9, 150, 12, 160, 7, 155, 10, 149];
  return lengths.map((n) => {
    const ids = Array.from({ length: n }, () => 1 + Math.floor(rng() * (model.V - 1)));
    return { ids, responseStart: Math.min(5, n - 1) };
  });
}

test("forwardForUpdate split into passes: same log-probs and entropies as one pass, gradients equal up to summation order", async () => {
  const seqs = mixedSequences();
  expect(paddingPasses(seqs.map((s) => s.ids.length), 64).length).toBeGreaterThan(1);
  const rng = mulberry32(9);
  const dl = seqs.map((s) => Float32Array.from({ length: s.ids.length - s.responseStart }, () => rng() - 0.5));
  const de = seqs.map((s) => Float32Array.from({ length: s.ids.length - s.responseStart }, () => 0.1 * (rng() - 0.5)));
  const gradsOf = async (passCostRows: number) => {
    const grads = model.newGradients();
    const pass = await forwardForUpdate(model, seqs, { temperature: 0.7, checkpoint: passCostRows === 64, passCostRows });
    pass.backward(dl, de, grads);
    const out = new Map<string, Float32Array>();
    for (const [name, t] of grads.tensors) out.set(name, await model.gpu.readF32(t));
    grads.release();
    return { lp: pass.logprob, ent: pass.entropy, grads: out };
  };
  const split = await gradsOf(64);
  const whole = await gradsOf(Infinity);
  seqs.forEach((_, i) => {
    expectClose(split.lp[i]!, whole.lp[i]!, { rtol: 0, atol: 1e-6 }, `logprob ${i}`);
    expectClose(split.ent[i]!, whole.ent[i]!, { rtol: 0, atol: 1e-6 }, `entropy ${i}`);
  });
  for (const [name, want] of whole.grads) {
    const scale = want.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    expectClose(split.grads.get(name)!, want, { rtol: 1e-4, atol: 1e-5 * scale }, name);
  }
});

test("scoreResponses split into passes = one pass", async () => {
  const seqs = mixedSequences();
  const split = await scoreResponses(model, seqs, { temperature: 1, maxTokens: 4096, passCostRows: 64 });
  const whole = await scoreResponses(model, seqs, { temperature: 1, maxTokens: 4096, passCostRows: Infinity });
  seqs.forEach((_, i) => expectClose(split.logprob[i]!, whole.logprob[i]!, { rtol: 0, atol: 1e-6 }, `logprob ${i}`));
});
