/** The local engine as the rollout loop's TokenGenerator: batching of concurrent calls and KV-cache reuse across turns. */
import { beforeAll, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import { initModel } from "../src/model/init.ts";
import { LocalTokenGenerator } from "../src/model/local_generator.ts";
import { GenerationSession } from "../src/model/generate.ts";
import { scoreResponses } from "../src/train/actor.ts";

let gpu: Gpu;
let dir: string;
beforeAll(async () => {
  gpu = await getGpu();
  dir = join(mkdtempSync(join(tmpdir(), "recall-localgen-")), "m");
  await initModel({ arch: "qwen2", preset: "tiny", outDir: dir, seed: 2 });
});

const params = { maxNewTokens: 6, temperature: 1, topP: 1, topK: 0, seed: 7, stopTokenIds: [] as number[] };

test("concurrent calls share one batched round; results equal one-at-a-time generation", async () => {
  const gen = await LocalTokenGenerator.open(gpu, dir, { batchSize: 4, capacity: 64 });
  const prompts = [[10, 11, 12], [20, 21], [30, 31, 32, 33], [40]];
  const outs = await Promise.all(prompts.map((p) => gen.completeTokens(p, params)));
  expect(gen.rounds).toBe(1);
  for (const [i, p] of prompts.entries()) {
    expect(outs[i]!.tokenIds.length).toBe(6);
    // Same slot index, same seed and positions → the same stream as a lone session using that slot.
    const s = new GenerationSession(gen.pretrained.model, 4, 64);
    const appends: (number[] | undefined)[] = [undefined, undefined, undefined, undefined];
    appends[i] = p;
    s.append(appends);
    const r = await s.generate({ maxNewTokens: 6, sampling: params, sequences: [i] });
    s.release();
    expect(outs[i]!.tokenIds).toEqual(r[i]!.tokens);
  }
  await gen.close();
});

test("a continued conversation reuses its cache slot: only the new tokens are processed", async () => {
  const gen = await LocalTokenGenerator.open(gpu, dir, { batchSize: 2, capacity: 64 });
  const prompt = [5, 6, 7, 8];
  const first = await gen.completeTokens(prompt, params);
  const before = gen.rowsProcessed;
  const next = [...prompt, ...first.tokenIds, 100, 101, 102];
  const second = await gen.completeTokens(next, params);
  // The last sampled token of turn one and the three appended ones, then one row per decoded token but the last.
  expect(gen.rowsProcessed - before).toBe(1 + 3 + (second.tokenIds.length - 1));
  await gen.close();
  // Same answer as a generator that never saw the first turn.
  const fresh = await LocalTokenGenerator.open(gpu, dir, { batchSize: 2, capacity: 64 });
  const again = await fresh.completeTokens(next, params);
  expect(again.tokenIds).toEqual(second.tokenIds);
  await fresh.close();
});

test("prompts that do not fit the cache are refused with a clear error", async () => {
  const gen = await LocalTokenGenerator.open(gpu, dir, { batchSize: 1, capacity: 8 });
  await expect(gen.completeTokens(new Array(8).fill(3), params)).rejects.toThrow(/does not fit the 8-token cache/);
  await gen.close();
});

test("continuous batching: a queued call takes a freed slot while a long call keeps decoding", async () => {
  const gen = await LocalTokenGenerator.open(gpu, dir, { batchSize: 2, capacity: 64 });
  const greedy = { ...params, temperature: 0 };
  const [long, a, b] = await Promise.all([
    gen.completeTokens([1, 2, 3], { ...greedy, maxNewTokens: 20 }),
    gen.completeTokens([4, 5], { ...greedy, maxNewTokens: 3 }),
    gen.completeTokens([6, 7, 8, 9], { ...greedy, maxNewTokens: 3 }),
  ]);
  expect(long.tokenIds.length).toBe(20);
  expect(a.tokenIds.length).toBe(3);
  expect(b.tokenIds.length).toBe(3);
  // The third call joined when the second finished: 20 decode steps in all, not 20 + 3.
  expect(gen.steps).toBe(20);
  expect(gen.rounds).toBe(2);
  await gen.close();
  // Each result is what the call gets alone.
  for (const [prompt, max, got] of [[[6, 7, 8, 9], 3, b], [[1, 2, 3], 20, long]] as const) {
    const solo = await LocalTokenGenerator.open(gpu, dir, { batchSize: 1, capacity: 64 });
    expect((await solo.completeTokens(prompt, { ...greedy, maxNewTokens: max })).tokenIds).toEqual(got.tokenIds);
    await solo.close();
  }
});

test("a group of samples of one prompt shares one prefill (KV forked); each sample equals its solo run", async () => {
  const gen = await LocalTokenGenerator.open(gpu, dir, { batchSize: 4, capacity: 96 });
  const prompt = Array.from({ length: 40 }, (_, i) => 50 + (i % 30));
  const outs = await Promise.all([0, 1, 2, 3].map((k) => gen.completeTokens(prompt, { ...params, streamId: 1000 + k })));
  // The leader computed 40 prompt rows; the three others copied 39 of them and ran one.
  expect(gen.forkedTokens).toBe(3 * 39);
  // Different streams draw different samples; each equals the same call made alone.
  expect(new Set(outs.map((o) => o.tokenIds.join(","))).size).toBeGreaterThan(1);
  for (const [k, o] of outs.entries()) {
    const solo = await LocalTokenGenerator.open(gpu, dir, { batchSize: 1, capacity: 96 });
    const r = await solo.completeTokens(prompt, { ...params, streamId: 1000 + k });
    expect(o.tokenIds).toEqual(r.tokenIds);
    await solo.close();
  }
  await gen.close();
});

test("each sampled id comes with its log-prob, equal to the trainer's recomputation at that temperature", async () => {
  const gen = await LocalTokenGenerator.open(gpu, dir, { batchSize: 4, capacity: 64 });
  const prompts = [[10, 11, 12], [20, 21], [30, 31, 32, 33]];
  for (const temperature of [0.7, 0]) {
    const outs = await Promise.all(prompts.map((p, k) => gen.completeTokens(p, { ...params, temperature, topK: 5, streamId: k })));
    const seqs = prompts.map((p, k) => ({ ids: [...p, ...outs[k]!.tokenIds], responseStart: p.length }));
    const scored = await scoreResponses(gen.pretrained.model, seqs, { temperature: temperature > 0 ? temperature : 1, maxTokens: 4096 });
    for (const [k, o] of outs.entries()) {
      expect(o.logprobs!.length).toBe(o.tokenIds.length);
      o.logprobs!.forEach((lp, j) => expect(Math.abs(lp - scored.logprob[k]![j]!)).toBeLessThan(2e-4));
    }
  }
  await gen.close();
});

test("non-finite logits stop generation with a clear error instead of sampling from them; the engine then serves on", async () => {
  const gen = await LocalTokenGenerator.open(gpu, dir, { batchSize: 2, capacity: 32 });
  const norm = gen.pretrained.model.params.get("model.norm.weight");
  const weights = await gpu.readF32(norm);
  gpu.write(norm, new Float32Array(norm.numel).fill(Number.NaN));
  await expect(gen.completeTokens([5, 6, 7], params)).rejects.toThrow("next-token logits hold NaN or infinity");
  // The step decoded ahead of the failed one is dropped, not left pending.
  gpu.write(norm, weights);
  const after = await gen.completeTokens([5, 6, 7], { ...params, streamId: 3 });
  await gen.close();
  const solo = await LocalTokenGenerator.open(gpu, dir, { batchSize: 2, capacity: 32 });
  expect(after.tokenIds).toEqual((await solo.completeTokens([5, 6, 7], { ...params, streamId: 3 })).tokenIds);
  await solo.close();
});

test("decoding ahead: calls that stop on a stop id while the next step already runs get what they get alone, and continue alike", async () => {
  const sampled = (k: number) => ({ ...params, maxNewTokens: 10, streamId: 100 + k });
  const prompts = [[10, 11, 12], [20, 21], [30, 31, 32, 33]];
  const probe = await LocalTokenGenerator.open(gpu, dir, { batchSize: 3, capacity: 64 });
  const free = await Promise.all(prompts.map((p, k) => probe.completeTokens(p, sampled(k))));
  await probe.close();
  // A stop id the first call meets at its third token or later (not generated before).
  const stop = free[0]!.tokenIds.find((t, i) => i >= 2 && free[0]!.tokenIds.indexOf(t) === i);
  expect(stop).toBeDefined();
  const o = (k: number) => ({ ...sampled(k), stopTokenIds: [stop!] });
  const gen = await LocalTokenGenerator.open(gpu, dir, { batchSize: 3, capacity: 64 });
  const first = await Promise.all(prompts.map((p, k) => gen.completeTokens(p, o(k))));
  expect(first[0]!.finishReason).toBe("stop");
  expect(gen.decodedAhead).toBeGreaterThan(0);
  // Second turns in the same slots (a stopped call's last token was already run ahead).
  const next = prompts.map((p, k) => [...p, ...first[k]!.tokenIds, 90 + k, 91]);
  const second = await Promise.all(next.map((p, k) => gen.completeTokens(p, sampled(k))));
  await gen.close();
  for (const [k, p] of prompts.entries()) {
    const solo = await LocalTokenGenerator.open(gpu, dir, { batchSize: 1, capacity: 64 });
    expect((await solo.completeTokens(p, o(k))).tokenIds).toEqual(first[k]!.tokenIds);
    expect((await solo.completeTokens(next[k]!, sampled(k))).tokenIds).toEqual(second[k]!.tokenIds);
    await solo.close();
  }
});

test("a queued call that samples differently waits without stopping the running calls from decoding ahead", async () => {
  const gen = await LocalTokenGenerator.open(gpu, dir, { batchSize: 2, capacity: 64 });
  const greedy = { ...params, temperature: 0, maxNewTokens: 10 };
  const hot = { ...params, temperature: 1, maxNewTokens: 3, streamId: 5 };
  const [a, b] = await Promise.all([gen.completeTokens([1, 2, 3], greedy), gen.completeTokens([4, 5], hot)]);
  // The second call joins only when the first is done (one sampler launch per step), and meanwhile the first call's
  // steps after its first all ran ahead.
  expect(gen.rounds).toBe(2);
  expect(gen.steps).toBe(13);
  expect(gen.decodedAhead).toBeGreaterThanOrEqual(9);
  await gen.close();
  for (const [prompt, p, got] of [[[1, 2, 3], greedy, a], [[4, 5], hot, b]] as const) {
    const solo = await LocalTokenGenerator.open(gpu, dir, { batchSize: 1, capacity: 64 });
    expect((await solo.completeTokens(prompt, p)).tokenIds).toEqual(got.tokenIds);
    await solo.close();
  }
});
