// The LM head on chosen rows only (makeBatch's headRows): the same log-probs, entropies and gradients as running it on
// every row and reading (or weighting) only those rows.
import { describe, expect, test, setDefaultTimeout } from "bun:test";
import { randn, tinyModelOnGpu } from "./harness.ts";

setDefaultTimeout(120_000);

/** Index of the first element where a and b differ (=== compares -0 and +0 as equal: both are a zero gradient), or -1. */
function firstDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

describe("LM head on chosen rows", () => {
  const lengths = [40, 17, 29, 9];
  const range = (a: number, b: number) => Array.from({ length: Math.max(0, b - a) }, (_, i) => a + i);
  // A response (rows 10..38) with a gap (a tool response, rows 20..24), every other row, one row, none.
  const headRows = [[...range(10, 20), ...range(25, 39)], range(1, 16).filter((t) => t % 2 === 1), [27], []];
  const seqs = lengths.map((n, b) => Array.from({ length: n }, (_, t) => 1 + ((b * 37 + t * 11) % 250)));
  const wanted = headRows.flatMap((ts, b) => ts.map((t) => ({ b, t })));

  for (const checkpoint of [false, true]) {
    test(`forward values and every gradient equal the all-rows pass bit for bit (qwen3${checkpoint ? ", activation checkpointing" : ""})`, async () => {
      const { gpu, model, makeBatch, releaseBatch } = await tinyModelOnGpu("qwen3", 11);
      const all = makeBatch(gpu, seqs);
      const some = makeBatch(gpu, seqs, undefined, headRows);
      const T = all.T, N = all.B * T, R = wanted.length;
      expect(some.head?.count).toBe(R);
      const fwdAll = model.forward(all, { train: true, checkpoint, temperature: 0.7 });
      const fwdSome = model.forward(some, { train: true, checkpoint, temperature: 0.7 });
      expect(fwdSome.logprob.numel).toBe(R);
      const [lpAll, entAll, lpSome, entSome] = (await gpu.readMany([fwdAll.logprob, fwdAll.entropy, fwdSome.logprob, fwdSome.entropy])).map((x) => new Float32Array(x));
      const at = (x: Float32Array) => Float32Array.from(wanted, ({ b, t }) => x[b * T + t]!);
      expect(firstDifference(lpSome!, at(lpAll!))).toBe(-1);
      expect(firstDifference(entSome!, at(entAll!))).toBe(-1);

      // Loss weights on the chosen rows; the all-rows pass gets them at those rows and zeros elsewhere.
      const dl = randn(R, 3, 0.5), de = randn(R, 4, 0.5);
      const dlAll = new Float32Array(N), deAll = new Float32Array(N);
      wanted.forEach(({ b, t }, k) => {
        dlAll[b * T + t] = dl[k]!;
        deAll[b * T + t] = de[k]!;
      });
      const gradsAll = model.newGradients(), gradsSome = model.newGradients();
      const t = [gpu.upload(dlAll, [N]), gpu.upload(deAll, [N]), gpu.upload(dl, [R]), gpu.upload(de, [R])];
      model.backward(fwdAll, t[0]!, t[1]!, gradsAll);
      model.backward(fwdSome, t[2]!, t[3]!, gradsSome);
      let nonzero = 0;
      for (const spec of gradsAll.specs) {
        const [ga, gs] = (await gpu.readMany([gradsAll.get(spec.name), gradsSome.get(spec.name)])).map((x) => new Float32Array(x));
        expect({ name: spec.name, at: firstDifference(gs!, ga!) }).toEqual({ name: spec.name, at: -1 });
        if (ga!.some((v) => v !== 0)) nonzero++;
      }
      expect(nonzero).toBe(gradsAll.specs.length);
      gpu.release(...t, fwdAll.logprob, fwdAll.entropy, fwdSome.logprob, fwdSome.entropy);
      releaseBatch(gpu, all);
      releaseBatch(gpu, some);
      gradsAll.release();
      gradsSome.release();
      model.params.release();
    });
  }

  test("no chosen row at all: every row goes through the head; bad rows are refused", async () => {
    const { gpu, model, makeBatch, releaseBatch } = await tinyModelOnGpu("qwen2", 12);
    const none = makeBatch(gpu, seqs, undefined, [[], [], [], []]);
    expect(none.head).toBeUndefined();
    const fwd = model.forward(none);
    expect(fwd.logprob.numel).toBe(none.B * none.T);
    gpu.release(fwd.logprob, fwd.entropy);
    releaseBatch(gpu, none);
    for (const bad of [[-1], [3, 3], [5, 4], [16], [1.5]]) expect(() => makeBatch(gpu, seqs, undefined, [[], bad, [], []])).toThrow(/headRows\[1\]/);
    model.params.release();
  });
});

describe("the trainer's passes", () => {
  test("used response rows go through the head when that skips 2^16 logits; an SFT pass without a mask keeps every row; each sequence's values are where the rows say", async () => {
    const { responseBatch, scoreResponses } = await import("../src/train/actor.ts");
    const { gpu, model, makeBatch, releaseBatch } = await tinyModelOnGpu("qwen2", 13);
    // GRPO-like: long prompts, short responses (V = 320: 205 skipped rows are enough).
    const rl = Array.from({ length: 6 }, (_, b) => ({ ids: Array.from({ length: 60 + 7 * b }, (_, t) => 1 + ((b * 13 + t * 5) % 250)), responseStart: 45 + b }));
    const a = responseBatch(model, rl);
    expect(a.batch.head?.count).toBe(rl.reduce((n, s) => n + s.ids.length - s.responseStart, 0));
    // SFT-like: every row but the padding and the last is wanted; too few logits to skip.
    const sft = rl.map((s) => ({ ids: s.ids, responseStart: 1 }));
    const b = responseBatch(model, sft);
    expect(b.batch.head).toBeUndefined();
    // SFT with a loss mask: the first 40 positions (a prompt) unused, so their rows are skipped.
    const masked = rl.map((s) => ({ ids: s.ids, responseStart: 1, used: Float32Array.from({ length: s.ids.length - 1 }, (_, j) => (j >= 40 ? 1 : 0)) }));
    const c = responseBatch(model, masked);
    expect(c.batch.head?.count).toBe(rl.reduce((n, s) => n + s.ids.length - 1 - 40, 0));
    // Every layout reads back the same values as slicing an all-rows pass (0 at unused positions).
    const full = makeBatch(gpu, rl.map((s) => s.ids));
    const fwd = model.forward(full);
    const lp = await gpu.readF32(fwd.logprob);
    for (const seqs of [rl, sft, masked] as { ids: number[]; responseStart: number; used?: Float32Array }[][]) {
      const scores = await scoreResponses(model, seqs, { temperature: 1, maxTokens: 1 << 20, passCostRows: Infinity });
      seqs.forEach((s, i) => {
        const from = i * full.T + s.responseStart - 1;
        const want = lp.slice(from, from + s.ids.length - s.responseStart).map((v, j) => (s.used?.[j] === 0 ? 0 : v));
        expect(firstDifference(scores.logprob[i]!, want)).toBe(-1);
      });
    }
    gpu.release(fwd.logprob, fwd.entropy);
    for (const x of [full, a.batch, b.batch, c.batch]) releaseBatch(gpu, x);
    model.params.release();
  });
});
