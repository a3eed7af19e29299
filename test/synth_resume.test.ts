/**
 * `recall synth llm` killed with SIGKILL mid-run and run again: the rerun asks only for the domains that had not
 * finished, accepts no task twice, repairs a torn tail of the candidates log instead of failing on it, and ends with
 * the same files as a run that was never interrupted. The CLI runs as a child (Bun.spawn, so this process's event
 * loop keeps answering as the scripted model server); the server is slowed down so the kill lands mid-run.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readDataRows } from "../src/data/rows.ts";
import { CANDIDATES_FILE, readCandidateLog } from "../src/synth/llm.ts";
import { fakeLlmServer, type FakeLlmServer } from "./fake_llm_server.ts";
import { PROJECT_ROOT } from "./harness.ts";

const SHOPS = Array.from({ length: 12 }, (_, i) => `shop${i}`);
/** 12 stalls with 2 good tasks each, one domain with 2 good tasks, a duplicate and a bad call, 3 broken domains. */
const DOMAINS = ["good", ...SHOPS.slice(0, 4), "malformed", ...SHOPS.slice(4, 8), "syntax", ...SHOPS.slice(8), "wrong"];
const ACCEPTED = 2 + 2 * SHOPS.length;
const REJECTED = 2 + 3;

let dir: string;
let fake: FakeLlmServer;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "recall-synth-resume-"));
  fake = fakeLlmServer({ domains: DOMAINS, delayMs: 300 });
});

afterAll(() => {
  fake?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function spawnLlm(out: string) {
  const args = ["synth", "llm", "--api_base", fake.url, "--model", "fake", "--n_domains", String(DOMAINS.length), "--tasks_per_domain", "4"];
  args.push("--concurrency", "2", "--n", "1000", "--workers", "1", "--call_timeout", "2", "--retries", "0", "--test_ratio", "0.25", "--out", out);
  return Bun.spawn([join(PROJECT_ROOT, "recall"), ...args], { cwd: PROJECT_ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1", CONSOLA_LEVEL: "3" } }); // info lines are hidden under bun test otherwise
}

const lines = (path: string) => readFileSync(path, "utf8").split("\n").filter((l) => l.trim() !== "");
const closedDomains = (path: string) => (existsSync(path) ? lines(path).flatMap((l) => { try { const r = JSON.parse(l); return r.type === "domain" ? [r.domain as string] : []; } catch { return []; } }) : []);

test("kill -9 mid-run, then the same command: unfinished domains only, nothing twice, a torn tail repaired, the files of an uninterrupted run", async () => {
  // The reference: one run that is never interrupted.
  const whole = join(dir, "whole");
  const ref = spawnLlm(whole);
  expect(await ref.exited).toBe(0);

  const out = join(dir, "killed");
  const log = join(out, CANDIDATES_FILE);
  const hitsBefore = fake.hits.length;
  const first = spawnLlm(out);
  // Kill once a few domains are recorded, while the rest are in flight.
  for (let t = 0; closedDomains(log).length < 3; t++) {
    if (t > 1200) throw new Error(`no 3 domains recorded in 60 s: ${await new Response(first.stderr).text()}`);
    await Bun.sleep(50);
  }
  first.kill("SIGKILL");
  await first.exited;
  expect(first.signalCode).toBe("SIGKILL");
  const closedBeforeKill = closedDomains(log);
  expect(closedBeforeKill.length).toBeLessThan(DOMAINS.length);
  const askedFirst = fake.hits.slice(hitsBefore);

  // What a kill in the middle of an append leaves: whole lines of a domain that never closed, then a torn line.
  const unfinished = DOMAINS.findIndex((d) => !closedBeforeKill.includes(d));
  appendFileSync(log, JSON.stringify({ type: "candidate", domain_index: unfinished, status: "rejected", reason: "left by the killed run" }) + "\n");
  appendFileSync(log, `{"type": "candidate", "domain_index": ${unfinished}, "status": "acc`);

  const hitsResume = fake.hits.length;
  const second = spawnLlm(out);
  const [code, stdout, stderr] = await Promise.all([second.exited, new Response(second.stdout).text(), new Response(second.stderr).text()]);
  expect(stdout + stderr).toContain("dropping 2 line(s) after the last finished domain");
  expect(code).toBe(0);
  const askedSecond = fake.hits.slice(hitsResume);

  // The rerun asked for no domain list and for no finished domain; every domain was finished by one of the runs.
  expect(askedSecond).not.toContain("list");
  for (const d of closedBeforeKill) expect(askedSecond).not.toContain(d);
  expect(new Set([...closedBeforeKill, ...askedSecond])).toEqual(new Set(DOMAINS));
  expect(askedFirst.filter((d) => d !== "list").length).toBeGreaterThanOrEqual(closedBeforeKill.length);

  // The log: every line whole JSON, each domain closed once, no task accepted twice, the unfinished domain's lines gone.
  const records = lines(log).map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(readFileSync(log, "utf8").endsWith("\n")).toBe(true);
  expect(readCandidateLog(log, () => {}).length).toBe(records.length);
  const closing = records.filter((r) => r.type === "domain").map((r) => r.index as number).sort((a, b) => a - b);
  expect(closing).toEqual(DOMAINS.map((_, i) => i));
  const accepted = records.filter((r) => r.status === "accepted").map((r) => r.candidate as { question: string; env: string });
  expect(accepted.length).toBe(ACCEPTED);
  expect(new Set(accepted.map((c) => c.question + "\u0000" + c.env)).size).toBe(ACCEPTED);
  const rejected = records.filter((r) => r.status === "rejected").map((r) => r.reason as string);
  expect(rejected.length).toBe(REJECTED);
  expect(rejected).not.toContain("left by the killed run");

  // The outputs equal the uninterrupted run's, byte for byte (domain order, not finishing order), and read back.
  for (const f of ["train.parquet", "test.parquet", "sft.jsonl", "sft_test.jsonl", "sft.parquet", "sft_test.parquet", "rejects.jsonl"]) {
    expect(`${f}: ${Buffer.compare(readFileSync(join(out, f)), readFileSync(join(whole, f)))}`).toBe(`${f}: 0`);
  }
  const train = await readDataRows(join(out, "train.parquet"));
  const testRows = await readDataRows(join(out, "test.parquet"));
  expect(train.length + testRows.length).toBe(ACCEPTED);
  expect(testRows.length).toBe(Math.round(ACCEPTED * 0.25));
  for (const { value } of [...train, ...testRows]) {
    expect(value.data_source).toBe("re_call_synth_llm");
    expect(typeof (value.extra_info as { env: string }).env).toBe("string");
  }
  expect(lines(join(out, "sft.jsonl")).map((l) => JSON.parse(l).id)).toEqual(train.map((r) => (r.value.extra_info as { id: string }).id));
  expect(lines(join(out, "rejects.jsonl")).map((l) => JSON.parse(l).reason).sort()).toEqual([...rejected].sort());
  const stats = JSON.parse(readFileSync(join(out, "stats.json"), "utf8"));
  expect(stats.samples).toEqual({ train: train.length, test: testRows.length });
}, 180_000);
