/**
 * `recall synth` for the procedural families: generate candidates per family from seeded streams, drop duplicates
 * (normalised question + env hash), verify them all in the sandbox, make up rejects with new candidates, split
 * train/test per family with the seed, and write the outputs (write.ts). Rejects are kept with their reasons.
 * Generation and verification overlap: the sandbox pool starts while the first batch is generated, and each full
 * batch is verified while the next is made. Nothing is accepted before its verdict.
 */
import { availableParallelism } from "node:os";
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { createHash } from "node:crypto";
import type { SynthSettings } from "../config/synth.ts";
import { RecallError } from "../errors.ts";
import { normalizeAnswer } from "../reward/squad.ts";
import { openSandbox } from "../sandbox/index.ts";
import type { ToolExecutor } from "../sandbox/types.ts";
import { dataSourceOf, parseMix, type MixEntry } from "./families.ts";
import { makeRng, streamSeed, type Rng } from "./random.ts";
import type { Candidate, FamilyGenerator, FamilyKnobs, Sample } from "./types.ts";
import { verifyCandidates, type Verdict } from "./verify.ts";
import { writeSynthOutputs, type Reject, type SynthStats } from "./write.ts";

export interface SynthRunOptions {
  log: (line: string) => void;
  /**
   * An executor to verify with (tests share one); otherwise one is opened from the settings and closed at the end.
   * Not used when a family's tools must reach a local server (the search family's retriever): that run opens a
   * sandbox with the server's URL allow-listed.
   */
  executor?: ToolExecutor;
}

export interface SynthResult {
  outDir: string;
  train: Sample[];
  test: Sample[];
  rejects: Reject[];
  stats: SynthStats;
}

export function knobsOf(s: SynthSettings): FamilyKnobs {
  return {
    style: s.style,
    hops: s.hops,
    digits: s.digits,
    calcMin: s.calc_min,
    calcMax: s.calc_max,
    calcOps: s.calc_ops,
    distractors: s.distractors,
    lookupKeys: s.lookup_keys,
    kbEntities: s.kb_entities,
    searchTopN: s.search_top_n,
  };
}

/** Identity of a task for de-duplication: the normalised question and the tools' code. */
function taskKey(c: Candidate): string {
  return normalizeAnswer(c.question) + "\u0000" + createHash("sha256").update(c.env).digest("hex");
}

interface FamilyRun {
  entry: MixEntry;
  gen: FamilyGenerator;
  rng: Rng;
  seen: Set<string>;
  accepted: Candidate[];
  generated: number;
  duplicates: number;
  rejected: number;
}

const MAX_ROUNDS = 8;

/** Lets pending I/O run (sandbox answers, pool dispatch) between synchronous stretches of generation. */
const yieldToIo = () => new Promise<void>((resolve) => setImmediate(resolve));

export async function runSynth(s: SynthSettings, o: SynthRunOptions): Promise<SynthResult> {
  const outDir = resolve(s.out);
  mkdirSync(outDir, { recursive: true });
  const mix = parseMix(s.mix, s.n, "--mix");
  const knobs = knobsOf(s);
  const runs: FamilyRun[] = [];
  const rejects: Reject[] = [];
  let opening: Promise<ToolExecutor> | undefined;
  const t0 = performance.now();
  let generateMs = 0;
  let verifyMs = 0;
  let verified = 0;
  try {
    for (const entry of mix) {
      if (entry.count === 0) continue;
      const gen = await entry.family.open({ knobs, seed: s.seed, outDir, log: o.log });
      runs.push({ entry, gen, rng: makeRng(streamSeed(s.seed, entry.family.name)), seen: new Set(), accepted: [], generated: 0, duplicates: 0, rejected: 0 });
    }
    const allowUrls = runs.flatMap((r) => r.gen.allowUrls ?? []);
    // The pool starts (seconds: worker processes restored from a snapshot) while the first batch is generated.
    opening =
      o.executor !== undefined && allowUrls.length === 0
        ? Promise.resolve(o.executor)
        : openSandbox({ url: s.sandbox_url || undefined, workers: s.workers ?? availableParallelism(), allowUrls, resultLimit: 256 << 20 });
    opening.catch(() => {}); // awaited below; a failed start is reported there
    let readyAt: number | undefined;
    void opening.then(() => (readyAt = performance.now()), () => {});
    const byFamily = new Map(runs.map((r) => [r.entry.family.name, r]));
    const verifyOptions = (executor: ToolExecutor) => ({
      executor,
      mode: s.verify,
      batchSize: s.batch_size,
      callTimeout: 10,
      envFor: (c: Candidate) => byFamily.get(c.family)!.gen.verificationEnv?.(c.env) ?? c.env,
      dataSourceOf: (c: Candidate) => dataSourceOf(c.family),
    });
    for (let round = 0; round < MAX_ROUNDS; round++) {
      // Families interleaved (the one furthest behind its share next), so every batch holds a mix and the workers
      // finish together; each batch goes to the sandbox as soon as it is full while the next one is generated.
      const want = runs.map((r) => r.entry.count - r.accepted.length);
      const made = runs.map(() => 0);
      const misses = runs.map(() => 0);
      const batches: { candidates: Candidate[]; verdicts: Promise<Verdict[]> }[] = [];
      let batch: Candidate[] = [];
      let tv: number | undefined;
      const send = async () => {
        const candidates = batch;
        batch = [];
        tv ??= performance.now();
        const verdicts = opening!.then((executor) => verifyCandidates(candidates, verifyOptions(executor)));
        verdicts.catch(() => {}); // awaited in order below; a run stopped before that must not leave it unhandled
        batches.push({ candidates, verdicts });
        await yieldToIo();
      };
      let lastYield = performance.now();
      for (;;) {
        // Sandbox workers wait on this process for their tools' HTTP requests (the search family's retriever) and
        // for their next batch, so generation stops every few milliseconds to let them through.
        if (performance.now() - lastYield > 5) {
          await yieldToIo();
          lastYield = performance.now();
        }
        let k = -1;
        for (let i = 0; i < runs.length; i++) if (made[i]! < want[i]! && (k < 0 || made[i]! / want[i]! < made[k]! / want[k]!)) k = i;
        if (k < 0) break;
        const r = runs[k]!;
        const tg = performance.now();
        const c = r.gen.generate(r.rng);
        generateMs += performance.now() - tg;
        r.generated++;
        if (typeof c === "string") {
          r.rejected++;
          rejects.push({ family: r.entry.family.name, stage: "generate", reason: c });
        } else if (r.seen.has(taskKey(c))) r.duplicates++;
        else {
          r.seen.add(taskKey(c));
          batch.push(c);
          made[k]!++;
          misses[k] = 0;
          if (batch.length >= s.batch_size) await send();
          continue;
        }
        // Duplicates and generation failures are retried; a family that cannot make enough distinct tasks stops.
        if (++misses[k]! > 2000) {
          throw new RecallError(
            `family '${r.entry.family.name}': only ${r.accepted.length + made[k]!} distinct tasks after ${r.generated} tries for ${r.entry.count} asked; widen its knobs (e.g. --calc_min/--calc_max, --hops, --kb_entities) or lower --n`,
          );
        }
      }
      if (batch.length > 0) await send();
      if (batches.length === 0) break;
      let checked = 0;
      // Verdicts taken in generation order, so each family's accepted samples keep their order.
      for (const b of batches) {
        const verdicts = await b.verdicts;
        checked += b.candidates.length;
        b.candidates.forEach((c, i) => {
          const r = byFamily.get(c.family)!;
          const v = verdicts[i]!;
          if (v.ok) r.accepted.push(c);
          else {
            r.rejected++;
            rejects.push({ family: c.family, stage: "verify", reason: v.reason, question: c.question });
          }
        });
      }
      // Verification time counts from the first batch sent, or from the pool being ready if that came later.
      const roundMs = performance.now() - Math.max(tv!, readyAt ?? tv!);
      verifyMs += roundMs;
      verified += checked;
      const done = runs.reduce((n, r) => n + r.accepted.length, 0);
      o.log(`round ${round + 1}: verified ${checked} candidates in ${(roundMs / 1000).toFixed(1)} s; ${done}/${s.n} accepted, ${rejects.length} rejected so far`);
      if (runs.every((r) => r.accepted.length >= r.entry.count)) break;
    }
    const short = runs.filter((r) => r.accepted.length < r.entry.count);
    if (short.length > 0) {
      const r = short[0]!;
      const reasons = rejects.filter((x) => x.family === r.entry.family.name).slice(0, 1).map((x) => x.reason);
      throw new RecallError(`family '${r.entry.family.name}': only ${r.accepted.length} of ${r.entry.count} samples verified after ${MAX_ROUNDS} rounds` + (reasons.length ? `; e.g. ${reasons[0]}` : ""));
    }

    // Split per family, with the seed; ids are stable for the same settings.
    const train: Sample[] = [];
    const test: Sample[] = [];
    for (const r of runs) {
      const name = r.entry.family.name;
      const order = makeRng(streamSeed(s.seed, `${name}:split`)).shuffle(r.accepted.map((_, i) => i));
      const nTest = s.test_ratio === 0 ? 0 : Math.min(r.accepted.length - 1, Math.max(1, Math.round(r.accepted.length * s.test_ratio)));
      order.forEach((k, pos) => {
        const split = pos < nTest ? "test" : "train";
        (split === "test" ? test : train).push({ ...r.accepted[k]!, id: `${name}-${k}`, dataSource: dataSourceOf(name), split });
      });
    }
    // Families interleaved in a seeded order, so a file read front to back sees the mix.
    makeRng(streamSeed(s.seed, "train-order")).shuffle(train);
    makeRng(streamSeed(s.seed, "test-order")).shuffle(test);

    const stats = writeSynthOutputs(outDir, s, {
      train,
      test,
      rejects,
      families: runs.map((r) => ({
        name: r.entry.family.name,
        weight: r.entry.weight,
        requested: r.entry.count,
        generated: r.generated,
        duplicates: r.duplicates,
        rejected: r.rejected,
        files: r.gen.files ?? [],
      })),
      timing: { generate_s: generateMs / 1000, verify_s: verifyMs / 1000, sandbox_ready_s: ((readyAt ?? t0) - t0) / 1000, total_s: (performance.now() - t0) / 1000, verified },
    });
    return { outDir, train, test, rejects, stats };
  } finally {
    for (const r of runs) await r.gen.close();
    const executor = await opening?.catch(() => undefined);
    if (executor && executor !== o.executor) await executor.close();
  }
}
