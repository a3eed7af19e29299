/**
 * The GRPO math (src/train/advantages.ts, loss.ts, schedule.ts) against fixtures/grpo/*.json, written by
 * scripts/golden_grpo.py from an independent PyTorch implementation of verl's formulas, plus properties that
 * hold whatever the data: masked tokens are inert, identical groups have no advantage, and the analytic
 * gradients agree with finite differences.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { expectClose, PROJECT_ROOT, randn, rng } from "./harness.ts";
import { groupAdvantages, outcomeAdvantages, placeScores, torchSumF32, type AdvantageEstimator } from "../src/train/advantages.ts";
import { aggregateLoss, klInReward, klPenalty, overlongPenalty, policyLossAndGrads, type KlType, type LossAggMode, type LossCompat, type PolicyLossSettings, type PolicyMicroBatch } from "../src/train/loss.ts";
import { lrAt } from "../src/train/schedule.ts";
import { RecallError } from "../src/errors.ts";

function fixture<T>(name: string): T {
  return JSON.parse(readFileSync(`${PROJECT_ROOT}/fixtures/grpo/${name}`, "utf8")) as T;
}

/** JSON has no NaN: the script writes null. */
const nan = (x: number | null): number => (x === null ? NaN : x);
const flat = (rows: readonly ArrayLike<number>[]): number[] => rows.flatMap((r) => Array.from(r));
const f32rows = (rows: readonly (readonly number[])[]): Float32Array[] => rows.map((r) => Float32Array.from(r));

/** float64 references (from float32 inputs) leave only our own float64 rounding: tight. */
const TIGHT = { rtol: 1e-9, atol: 1e-12 };
/** Gradients are returned as float32. */
const GRAD = { rtol: 2e-7, atol: 1e-12 };

function expectScalar(got: number, want: number | null, tol: { rtol: number; atol: number }, label: string): void {
  const w = nan(want);
  if (Number.isNaN(w)) {
    expect({ label, got }).toEqual({ label, got: NaN });
    return;
  }
  expectClose([got], [w], tol, label);
}

// ------------------------------------------------------------------------------------------- advantages
interface AdvantageFixture {
  inputs: { scores: number[]; groups: (string | number)[]; response_masks: number[][]; old: number[][]; ref: number[][] };
  cases: { name: string; estimator: AdvantageEstimator; normByStd: boolean; gamma?: number; advantages: number[][]; returns?: number[][] }[];
  klInReward: { coef: number; klType: KlType; tokenRewards: number[][]; klMean: number; grpo: number[][]; reinforce_plus_plus: number[][] };
}

describe("advantages match verl (float32, fixtures/grpo/advantages.json)", () => {
  const fx = fixture<AdvantageFixture>("advantages.json");
  const { scores, groups, response_masks: masks } = fx.inputs;

  for (const c of fx.cases) {
    test(c.name, () => {
      const got = outcomeAdvantages({ scores, groups, responseMasks: masks }, { estimator: c.estimator, normByStd: c.normByStd, gamma: c.gamma });
      if (c.estimator === "reinforce_plus_plus") {
        // Batch whitening: torch's float32 summation order over the padded batch is not reproducible; one ulp of slack.
        expectClose(flat(got.advantages), flat(c.advantages), { rtol: 2e-6, atol: 2e-7 }, c.name);
        expectClose(flat(got.returns), flat(c.returns!), { rtol: 0, atol: 0 }, `${c.name} returns`);
      } else {
        // Group statistics in torch's own order: bit for bit, rounding noise included.
        expectClose(flat(got.advantages), flat(c.advantages), { rtol: 0, atol: 0 }, c.name);
      }
    });
  }

  test("verl's rounding noise on a group of eight identical 0.1 scores is reproduced, not hidden", () => {
    const grpo = fx.cases.find((c) => c.estimator === "grpo" && c.normByStd)!;
    const dup = groups.flatMap((g, i) => (g === "dup" ? [grpo.advantages[i]![0]!] : []));
    expect(dup.length).toBe(8);
    expect(Math.abs(dup[0]!)).toBeGreaterThan(1e-3); // torch's float32 mean of 8 × 0.1f is not 0.1f
    expect(new Set(dup).size).toBe(1);
  });

  test("a group of one keeps its score (mean 0, std 1)", () => {
    const grpo = fx.cases.find((c) => c.estimator === "grpo" && c.normByStd)!;
    const i = groups.indexOf(7);
    expect(grpo.advantages[i]![0]).toBe(Math.fround(Math.fround(scores[i]!) / Math.fround(1 + Math.fround(1e-6))));
  });

  test("KL in the reward: token rewards, then GRPO on their sums and REINFORCE++ on them", () => {
    const k = fx.klInReward;
    const kl = fx.inputs.old.map((o, i) => klPenalty(o, fx.inputs.ref[i]!, k.klType));
    const { tokenRewards, klMean } = klInReward(scores, kl, masks, k.coef);
    expectClose(flat(tokenRewards), flat(k.tokenRewards), { rtol: 0, atol: 0 }, "token rewards");
    expectClose([klMean], [k.klMean], { rtol: 1e-6, atol: 1e-9 }, "reward_kl_penalty");
    const grpo = outcomeAdvantages({ scores, groups, responseMasks: masks, tokenRewards }, { estimator: "grpo", normByStd: true });
    // verl sums each padded row in torch's vector order; ours runs over the ragged row.
    expectClose(flat(grpo.advantages), flat(k.grpo), { rtol: 1e-5, atol: 1e-6 }, "grpo on token rewards");
    const rpp = outcomeAdvantages({ scores, groups, responseMasks: masks, tokenRewards }, { estimator: "reinforce_plus_plus", normByStd: true });
    expectClose(flat(rpp.advantages), flat(k.reinforce_plus_plus), { rtol: 2e-6, atol: 2e-7 }, "reinforce++ on token rewards");
  });
});

// ------------------------------------------------------------------------------------------- loss
interface Row { mask: number[]; logp: number[]; old: number[]; adv: number[]; ref: number[]; entropy: number[] }
interface LossCase {
  name: string;
  settings: PolicyLossSettings;
  scale: number;
  rows: "main" | "empty_row";
  loss: number | null;
  metrics: Record<keyof ReturnType<typeof policyLossAndGrads>["metrics"], number | null>;
  dLogprob?: number[][];
  dEntropy?: number[][];
}
interface LossFixture { horizon: number; rows: Row[]; emptyRow: Row; cases: LossCase[]; kl: Record<string, number[][]>; aggregateOfRef: Record<string, number | null> }

/** A micro-batch held as float32 rows, as the trainer holds it. */
type Batch32 = { [K in keyof PolicyMicroBatch]-?: Float32Array[] };

function microBatch(rows: readonly Row[]): Batch32 {
  return {
    logprob: f32rows(rows.map((r) => r.logp)),
    oldLogprob: f32rows(rows.map((r) => r.old)),
    refLogprob: f32rows(rows.map((r) => r.ref)),
    entropy: f32rows(rows.map((r) => r.entropy)),
    advantages: f32rows(rows.map((r) => r.adv)),
    mask: f32rows(rows.map((r) => r.mask)),
  };
}

describe("policy loss, metrics and gradients match autograd (fixtures/grpo/loss.json)", () => {
  const fx = fixture<LossFixture>("loss.json");
  const main = microBatch(fx.rows);
  const withEmpty = microBatch([...fx.rows, fx.emptyRow]);

  for (const c of fx.cases) {
    test(c.name, () => {
      const got = policyLossAndGrads(c.rows === "main" ? main : withEmpty, c.settings, c.scale);
      expectScalar(got.loss, c.loss, TIGHT, `${c.name}: loss`);
      for (const [k, v] of Object.entries(c.metrics)) expectScalar(got.metrics[k as keyof typeof got.metrics], v, TIGHT, `${c.name}: ${k}`);
      if (c.dLogprob) {
        expectClose(flat(got.dLogprob), flat(c.dLogprob), GRAD, `${c.name}: dLogprob`);
        expectClose(flat(got.dEntropy), flat(c.dEntropy!), GRAD, `${c.name}: dEntropy`);
      }
    });
  }

  test("every KL estimator, per token, both compat variants", () => {
    for (const [name, want] of Object.entries(fx.kl)) {
      const [type, compat] = name.split(" ") as [KlType, LossCompat];
      const got = fx.rows.map((r) => klPenalty(r.logp, r.ref, type, compat));
      expectClose(flat(got), flat(want), { rtol: 1e-7, atol: 1e-9 }, name);
    }
  });

  test("every loss_agg_mode, both compat variants", () => {
    for (const [name, want] of Object.entries(fx.aggregateOfRef)) {
      const [mode, compat] = name.split(" ") as [LossAggMode, LossCompat];
      const got = aggregateLoss(fx.rows.map((r) => r.ref), fx.rows.map((r) => r.mask), mode, fx.horizon, compat);
      expectScalar(got, want, TIGHT, name);
    }
  });
});

// ------------------------------------------------------------------------------------------- schedule, overlong
describe("lr schedule and overlong penalty match verl", () => {
  test("constant and cosine warmup schedules, as LambdaLR steps them", () => {
    const fx = fixture<{ cases: { style: "constant" | "cosine"; lr: number; warmupSteps: number; totalSteps: number; minLrRatio?: number; numCycles?: number; lrs: number[] }[] }>("schedule.json");
    for (const c of fx.cases) {
      const got = c.lrs.map((_, step) => lrAt(step, c));
      expectClose(got, c.lrs, { rtol: 1e-14, atol: 0 }, `${c.style} warmup=${c.warmupSteps}`);
    }
  });

  test("DAPO overlong penalty", () => {
    const fx = fixture<{ cases: { responseLength: number; maxResponseLength: number; bufferLen: number; penaltyFactor: number; penalty: number }[] }>("overlong.json");
    for (const c of fx.cases) expect(overlongPenalty(c.responseLength, c.maxResponseLength, c.bufferLen, c.penaltyFactor)).toBeCloseTo(c.penalty, 14);
    expect(() => overlongPenalty(10, 100, 0, 1)).toThrow(RecallError);
  });
});

// ------------------------------------------------------------------------------------------- properties
const SETTINGS: PolicyLossSettings = {
  clipRatioLow: 0.2, clipRatioHigh: 0.28, clipRatioC: 3, lossAggMode: "token-mean", compat: "recall",
  entropyCoeff: 0.01, useKlLoss: true, klCoef: 0.1, klType: "low_var_kl", horizon: 32,
};

/** A random micro-batch: ragged rows, tool spans masked out, old/new log-probs a little apart. */
function randomBatch(seed: number, rows = 6): Batch32 {
  const r = rng(seed);
  const lens = Array.from({ length: rows }, () => 3 + Math.floor(r() * 20));
  const row = (n: number, s: number, f: (x: number) => number) => Float32Array.from(randn(n, s), f);
  const old = lens.map((n, i) => row(n, seed * 100 + i, (x) => -Math.abs(x) - 0.1));
  return {
    oldLogprob: old,
    logprob: old.map((o, i) => { const d = randn(o.length, seed * 200 + i, 0.3); return o.map((v, t) => v + d[t]!); }),
    refLogprob: old.map((o, i) => { const d = randn(o.length, seed * 300 + i, 0.5); return o.map((v, t) => v + d[t]!); }),
    entropy: lens.map((n, i) => row(n, seed * 400 + i, (x) => Math.abs(x) + 0.5)),
    advantages: lens.map((n, i) => randn(n, seed * 500 + i)),
    mask: lens.map((n) => Float32Array.from({ length: n }, () => (r() < 0.3 ? 0 : 1))),
  };
}

const MODES: LossAggMode[] = ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"];
const COMPATS: LossCompat[] = ["recall", "verl"];

describe("properties", () => {
  test("masked-out tokens get zero gradient, and changing their values changes nothing", () => {
    for (const compat of COMPATS) for (const mode of MODES) {
      const s = { ...SETTINGS, compat, lossAggMode: mode };
      const mb = randomBatch(7);
      // keep every row non-empty so ReCall's NaN cases stay out of this property
      mb.mask.forEach((m) => { m[0] = 1; });
      const a = policyLossAndGrads(mb, s, 0.5);
      const r = rng(99);
      const junk = (rows: readonly Float32Array[]) => rows.map((row, i) => row.map((v, t) => (mb.mask[i]![t] === 0 ? (r() - 0.5) * 50 : v)));
      const altered: Batch32 = { ...mb, logprob: junk(mb.logprob), oldLogprob: junk(mb.oldLogprob), refLogprob: junk(mb.refLogprob), entropy: junk(mb.entropy), advantages: junk(mb.advantages) };
      const b = policyLossAndGrads(altered, s, 0.5);
      expect(b.loss).toBe(a.loss);
      expect(b.metrics).toEqual(a.metrics);
      expect(flat(b.dLogprob)).toEqual(flat(a.dLogprob));
      expect(flat(b.dEntropy)).toEqual(flat(a.dEntropy));
      mb.mask.forEach((m, i) => m.forEach((v, t) => {
        if (v === 0) expect([a.dLogprob[i]![t], a.dEntropy[i]![t]]).toEqual([0, 0]);
      }));
    }
  });

  test("a group of identical scores gives zero advantage (scores whose float32 sum is exact)", () => {
    for (const v of [0, 1, 0.5, -0.25, 0.75, 3]) {
      for (const n of [2, 5, 8, 16]) {
        const scores = [...Array(n).fill(v), 0.3];
        const groups = [...Array(n).fill("g"), "other"];
        for (const estimator of ["grpo", "rloo"] as const) {
          for (const normByStd of [true, false]) {
            const a = groupAdvantages(scores, groups, { estimator, normByStd });
            expect(Array.from(a.subarray(0, n))).toEqual(Array(n).fill(0));
          }
        }
      }
    }
  });

  test("torchSumF32 reproduces torch's float32 summation order (values printed by torch 2.13 on x86)", () => {
    // torch.tensor([0.1] * 8).sum(): the 8-lane path, lanes added in turn
    expect(torchSumF32(Array(8).fill(0.1))).toBe(0.8000000715255737);
    // torch.tensor([0.1, 0.2, ..., 0.7]).sum(): four interleaved accumulators, the tail into the first
    expect(torchSumF32([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])).toBe(2.8000001907348633);
  });

  test("finite differences of the loss (float64) agree with dLogprob and dEntropy", () => {
    for (const compat of COMPATS) for (const mode of MODES) for (const klType of ["kl", "abs", "mse", "low_var_kl"] as KlType[]) {
      const s = { ...SETTINGS, compat, lossAggMode: mode, klType };
      const mb = randomBatch(11);
      mb.mask.forEach((m) => { m[0] = 1; });
      // float64 copies so the difference quotient measures the formula, not float32 storage
      const logp = mb.logprob.map((r) => Float64Array.from(r));
      const entropy = mb.entropy.map((r) => Float64Array.from(r));
      const lossAt = (lp: Float64Array[], en: Float64Array[]) =>
        policyLossAndGrads({ ...mb, logprob: lp, entropy: en }, s, 0.7).loss;
      const g = policyLossAndGrads({ ...mb, logprob: logp, entropy }, s, 0.7);
      const h = 1e-6;
      for (let i = 0; i < logp.length; i++) {
        for (let t = 0; t < logp[i]!.length; t++) {
          if (mb.mask[i]![t] === 0) continue;
          for (const [arr, grad] of [[logp, g.dLogprob], [entropy, g.dEntropy]] as const) {
            const x = arr[i]![t]!;
            arr[i]![t] = x + h;
            const up = lossAt(logp, entropy);
            arr[i]![t] = x - h;
            const down = lossAt(logp, entropy);
            arr[i]![t] = x;
            const fd = (up - down) / (2 * h);
            expectClose([grad[i]![t]!], [fd], { rtol: 1e-4, atol: 1e-8 }, `${compat} ${mode} ${klType} (${i},${t})`);
          }
        }
      }
    }
  });

  test("ReCall's policy term is token-mean whatever the mode; upstream's follows the mode", () => {
    const mb = randomBatch(5);
    mb.mask.forEach((m) => { m[0] = 1; });
    const tokenMean = policyLossAndGrads(mb, { ...SETTINGS, lossAggMode: "token-mean" }, 1).metrics.pg_loss;
    for (const mode of MODES) {
      expect(policyLossAndGrads(mb, { ...SETTINGS, lossAggMode: mode, compat: "recall" }, 1).metrics.pg_loss).toBe(tokenMean);
      const upstream = policyLossAndGrads(mb, { ...SETTINGS, lossAggMode: mode, compat: "verl" }, 1).metrics.pg_loss;
      if (mode !== "token-mean") expect(upstream).not.toBeCloseTo(tokenMean, 6);
    }
  });

  test("scale multiplies the loss and both gradients, not the metrics", () => {
    const mb = randomBatch(3);
    const a = policyLossAndGrads(mb, SETTINGS, 1), b = policyLossAndGrads(mb, SETTINGS, 0.25);
    expect(b.loss).toBeCloseTo(a.loss * 0.25, 12);
    expect(b.metrics).toEqual(a.metrics);
    expectClose(flat(b.dLogprob), flat(a.dLogprob).map((x) => Math.fround(x * 0.25)), { rtol: 1e-7, atol: 0 }, "dLogprob");
  });

  test("bad input is refused in one line", () => {
    const mb = randomBatch(2);
    expect(() => policyLossAndGrads({ ...mb, logprob: mb.logprob.slice(1) }, SETTINGS, 1)).toThrow(/logprob rows/);
    expect(() => policyLossAndGrads({ ...mb, refLogprob: undefined }, SETTINGS, 1)).toThrow(/reference log-probs/);
    expect(() => policyLossAndGrads(mb, { ...SETTINGS, lossAggMode: "seq-mean-token-sum-norm", horizon: undefined }, 1)).toThrow(/horizon/);
    expect(() => policyLossAndGrads(mb, { ...SETTINGS, clipRatioC: 1 }, 1)).toThrow(/clip_ratio_c/);
    expect(() => groupAdvantages([1, 2], ["a"], { estimator: "grpo", normByStd: true })).toThrow(RecallError);
    expect(() => outcomeAdvantages({ scores: [1], groups: ["a"], responseMasks: [[1, 2]] }, { estimator: "grpo", normByStd: true })).toThrow(/masks hold 0 or 1/);
    expect(() => outcomeAdvantages({ scores: [1], groups: ["a"], responseMasks: [[1]] }, { estimator: "reinforce_plus_plus", normByStd: true })).toThrow(/at least 2/);
  });

  test("placeScores puts each score on the last valid token", () => {
    expect(placeScores([2, 3, 4], [[1, 1, 0], [0, 0], [1, 0, 1]]).map((r) => Array.from(r))).toEqual([[0, 2, 0], [0, 0], [0, 0, 4]]);
  });
});
