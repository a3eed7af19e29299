/**
 * `recall synth llm`: SynTool-style synthesis. An OpenAI-compatible chat model proposes domains, then per domain a
 * scenario, tool code (`env`) with schemas, and tasks with solution calls and answers. Everything it says is parsed
 * strictly and run in the sandbox: each solution call's result comes from executing it, the answer must appear in
 * the last result, and the finished sample goes through the same verification as the procedural families (a second
 * execution must give the same results, ReCall's reward must be 1). Duplicates (normalised question + env hash) are
 * dropped. Each domain's accepted and rejected candidates (with reasons) are appended to `llm_candidates.jsonl` in
 * one whole write, with a closing domain record, so a killed run (even kill -9 mid-write) resumes with the domains
 * that did not finish. At the end all accepted samples, in domain order, are split and written as the procedural
 * ones are (train/test parquet, SFT JSONL, stats).
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { RecallError, errorMessage } from "../errors.ts";
import { normalizeAnswer } from "../reward/squad.ts";
import type { ChatGenerator } from "../rollout/generator.ts";
import { parseToolCall } from "../rollout/tool_calls.ts";
import { flattenAnswer } from "../sandbox/flatten.ts";
import type { ToolExecutor } from "../sandbox/types.ts";
import { appendWhole, writeFileAtomic } from "../util/fs.ts";
import { dataSourceOf } from "./families.ts";
import defaultPrompts from "./llm_prompts.txt" with { type: "text" };
import { makeRng, streamSeed } from "./random.ts";
import { callJsonText, finalTurn } from "./trace.ts";
import type { Candidate, GoldenTurn, Sample } from "./types.ts";
import { verifyCandidates } from "./verify.ts";
import { writeSynthOutputs, type Reject, type SynthStats } from "./write.ts";
import { pyJsonDumps } from "../python/json.ts";
import { fromJsValue } from "../python/value.ts";

export const LLM_FAMILY = "llm";
export const CANDIDATES_FILE = "llm_candidates.jsonl";
const DOMAINS_FILE = "llm_domains.json";

export interface LlmSynthOptions {
  generator: ChatGenerator;
  executor: ToolExecutor;
  outDir: string;
  /** Accepted samples to stop at (over this and earlier runs into the same folder). */
  n: number;
  /** Domains, one per line; or undefined to have the model propose `nDomains`. */
  domains?: string[];
  nDomains: number;
  tasksPerDomain: number;
  seed: number;
  testRatio: number;
  concurrency: number;
  temperature: number;
  maxTokens: number;
  /** The prompts file's text (sections `=== domains ===`, `=== environment ===`). */
  prompts?: string;
  /** Seconds a tool call may run in the sandbox. */
  callTimeout: number;
  systemPrompt: string;
  /** Recorded in stats.json. */
  settings: Record<string, unknown>;
  log: (line: string) => void;
}

export interface LlmSynthResult {
  train: Sample[];
  test: Sample[];
  stats: SynthStats;
  /** Candidates accepted and rejected by this run (earlier runs' are in the JSONL). */
  accepted: number;
  rejected: number;
  tokens: { prompt: number; completion: number };
}

/** The prompt sections of a prompts file. */
export function parsePrompts(text: string, where: string): { domains: string; environment: string } {
  const sections: Record<string, string> = {};
  let name: string | undefined;
  for (const line of text.split("\n")) {
    const m = /^=== (\w+) ===\s*$/.exec(line);
    if (m) {
      name = m[1]!;
      sections[name] = "";
    } else if (name !== undefined) sections[name] += line + "\n";
  }
  for (const k of ["domains", "environment"]) if (!sections[k]?.trim()) throw new RecallError(`${where}: no '=== ${k} ===' section`);
  return { domains: sections.domains!.trim(), environment: sections.environment!.trim() };
}

/** The JSON value in a model's answer: the whole text, or the body of its first fenced block. */
export function jsonOf(text: string): unknown {
  const fenced = /```(?:json)?\s*\n([\s\S]*?)```/.exec(text);
  const body = (fenced ? fenced[1]! : text).trim();
  try {
    return JSON.parse(body);
  } catch (e) {
    throw new Error(`malformed JSON (${errorMessage(e)}): ${JSON.stringify(body.slice(0, 120))}`);
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

interface ProposedTask {
  question: string;
  calls: { name: string; arguments: Record<string, string | number> }[];
  answer: string;
}

interface Proposal {
  scenario: string;
  env: string;
  funcSchemas: string;
  tasks: unknown[];
}

/** A proposal checked field by field; throws naming the first problem. */
export function parseProposal(text: string): Proposal {
  const v = jsonOf(text);
  if (!isRecord(v)) throw new Error("the answer is not a JSON object");
  if (typeof v.env !== "string" || v.env.trim() === "") throw new Error("'env' must be Python source text");
  if (!Array.isArray(v.func_schemas) || v.func_schemas.length === 0) throw new Error("'func_schemas' must be a non-empty list");
  for (const [i, s] of v.func_schemas.entries()) {
    const fn = isRecord(s) && s.type === "function" && isRecord(s.function) ? s.function : undefined;
    if (!fn || typeof fn.name !== "string" || !/^[A-Za-z_]\w*$/.test(fn.name) || !isRecord(fn.parameters)) {
      throw new Error(`func_schemas[${i}] is not {"type": "function", "function": {"name", "parameters", ...}}`);
    }
  }
  if (!Array.isArray(v.tasks) || v.tasks.length === 0) throw new Error("'tasks' must be a non-empty list");
  return {
    scenario: typeof v.scenario === "string" ? v.scenario : "",
    env: v.env,
    funcSchemas: pyJsonDumps(fromJsValue(v.func_schemas), { indent: 4 }),
    tasks: v.tasks,
  };
}

function parseTask(t: unknown, names: string[]): ProposedTask {
  if (!isRecord(t) || typeof t.question !== "string" || t.question.trim() === "") throw new Error("task without a 'question' string");
  if (typeof t.answer !== "string" && typeof t.answer !== "number") throw new Error("task without an 'answer'");
  if (!Array.isArray(t.calls) || t.calls.length === 0) throw new Error("task without 'calls'");
  const calls = t.calls.map((c, i) => {
    if (!isRecord(c) || typeof c.name !== "string") throw new Error(`call ${i + 1} has no 'name'`);
    if (!names.includes(c.name)) throw new Error(`call ${i + 1} names '${c.name}', which is not in func_schemas`);
    const args = c.arguments ?? {};
    if (!isRecord(args)) throw new Error(`call ${i + 1}: 'arguments' must be an object`);
    for (const [k, a] of Object.entries(args)) {
      if (typeof a !== "string" && typeof a !== "number") throw new Error(`call ${i + 1}: argument '${k}' must be a string or number`);
    }
    return { name: c.name, arguments: args as Record<string, string | number> };
  });
  return { question: t.question.trim(), calls, answer: String(t.answer).trim() };
}

const taskKey = (c: Candidate) => normalizeAnswer(c.question) + "\u0000" + createHash("sha256").update(c.env).digest("hex");

interface DomainOutcome {
  records: Record<string, unknown>[];
  accepted: Candidate[];
  rejected: number;
}

/** One domain: ask, parse, execute, check. Never throws for what the model said; only for an unreachable server. */
async function runDomain(o: LlmSynthOptions, prompts: { environment: string }, index: number, domain: string, seen: Set<string>, tokens: { prompt: number; completion: number }): Promise<DomainOutcome> {
  const records: Record<string, unknown>[] = [];
  const accepted: Candidate[] = [];
  let rejected = 0;
  const reject = (reason: string, question?: string) => {
    rejected++;
    records.push({ type: "candidate", domain_index: index, status: "rejected", reason, ...(question ? { question } : {}) });
  };
  const reply = await o.generator.chat(
    [{ role: "user", content: prompts.environment.replaceAll("{domain}", domain).replaceAll("{tasks}", String(o.tasksPerDomain)) }],
    { maxNewTokens: o.maxTokens, temperature: o.temperature, seed: streamSeed(o.seed, `llm:${index}`) },
  );
  tokens.prompt += reply.promptTokens ?? 0;
  tokens.completion += reply.completionTokens ?? 0;
  let proposal: Proposal;
  try {
    if (reply.finishReason === "length") throw new Error(`the answer was cut at ${o.maxTokens} tokens`);
    proposal = parseProposal(reply.text);
  } catch (e) {
    reject(`proposal: ${errorMessage(e)}`);
    return { records, accepted, rejected };
  }
  const { env, funcSchemas } = proposal;
  const names = (JSON.parse(funcSchemas) as { function: { name: string } }[]).map((s) => s.function.name);
  const candidates: Candidate[] = [];
  for (const raw of proposal.tasks.slice(0, o.tasksPerDomain)) {
    let task: ProposedTask;
    try {
      task = parseTask(raw, names);
    } catch (e) {
      reject(`task: ${errorMessage(e)}`, isRecord(raw) && typeof raw.question === "string" ? raw.question : undefined);
      continue;
    }
    // The results are what the sandbox returns for the model's calls, never what the model claims.
    const turns: GoldenTurn[] = [];
    let failure: string | undefined;
    for (const [i, call] of task.calls.entries()) {
      const parsed = parseToolCall(callJsonText(call));
      if (!parsed.ok) {
        failure = `call ${i + 1} does not parse: ${parsed.result}`;
        break;
      }
      const result = flattenAnswer(await o.executor.execute({ env, call: parsed.expr, timeout: o.callTimeout }));
      if (result.startsWith("error:") || result === "") {
        failure = `call ${i + 1} (${callJsonText(call)}) failed: ${JSON.stringify(result.slice(0, 200))}`;
        break;
      }
      turns.push({ think: i === 0 ? ` I call ${call.name} to find out. ` : ` Next I call ${call.name}. `, calls: [{ ...call, result }] });
    }
    if (failure !== undefined) {
      reject(failure, task.question);
      continue;
    }
    const last = turns[turns.length - 1]!.calls[0]!.result;
    if (normalizeAnswer(task.answer) === "" || !normalizeAnswer(last).includes(normalizeAnswer(task.answer))) {
      reject(`the answer '${task.answer}' is not in the last result ${JSON.stringify(last.slice(0, 200))}`, task.question);
      continue;
    }
    const c: Candidate = {
      family: LLM_FAMILY,
      question: task.question,
      env,
      funcSchemas,
      groundTruth: task.answer,
      golden: { turns, ...finalTurn("natural", task.answer, "The tool results give the answer.") },
      meta: { hops: turns.length, domain },
    };
    if (seen.has(taskKey(c)) || candidates.some((x) => taskKey(x) === taskKey(c))) {
      reject("duplicate of an accepted task (same question and env)", task.question);
      continue;
    }
    candidates.push(c);
  }
  // Run again through the common verification: results must repeat, the reward must be 1.
  const verdicts = await verifyCandidates(candidates, {
    executor: o.executor,
    mode: "per_call",
    batchSize: 1,
    callTimeout: o.callTimeout,
    envFor: (c) => c.env,
    dataSourceOf: (c) => dataSourceOf(c.family),
  });
  candidates.forEach((c, i) => {
    const v = verdicts[i]!;
    if (!v.ok) return reject(`verify: ${v.reason}`, c.question);
    seen.add(taskKey(c));
    accepted.push(c);
    records.push({ type: "candidate", domain_index: index, status: "accepted", candidate: c });
  });
  return { records, accepted, rejected };
}

/**
 * The records of finished domains in the candidates log. A domain's records and its closing record go in one append,
 * so a run killed mid-append leaves at most a tail after the last closing record: a torn line, or lines of a domain
 * that never closed. That tail is cut off the file (the domain is asked again); anything unreadable before it is
 * corruption and refused.
 */
export function readCandidateLog(path: string, log: (line: string) => void): Record<string, unknown>[] {
  if (!existsSync(path)) return [];
  const lines = readFileSync(path, "utf8").split("\n");
  const records: (Record<string, unknown> | undefined)[] = lines.map((l) => {
    try {
      const v: unknown = JSON.parse(l);
      return isRecord(v) ? v : undefined;
    } catch {
      return undefined;
    }
  });
  let end = -1; // index of the last closing record
  records.forEach((r, i) => {
    if (r?.type === "domain") end = i;
  });
  for (let i = 0; i < end; i++) {
    if (records[i] === undefined && lines[i]!.trim() !== "") throw new RecallError(`${path}:${i + 1}: not a JSON record (delete the file to start over)`);
  }
  const tail = lines.slice(end + 1).filter((l) => l.trim() !== "");
  if (tail.length > 0) {
    // A kill mid-append; the kept part is rewritten whole (temp name, rename) so the next append starts on a fresh line.
    log(`${path}: dropping ${tail.length} line(s) after the last finished domain (a run stopped while writing); that domain is asked again`);
    writeFileAtomic(path, end < 0 ? "" : lines.slice(0, end + 1).join("\n") + "\n");
  }
  return records.slice(0, end + 1).filter((r): r is Record<string, unknown> => r !== undefined);
}

async function domainList(o: LlmSynthOptions, prompts: { domains: string }, path: string): Promise<string[]> {
  if (o.domains !== undefined) return o.domains;
  if (existsSync(path)) return JSON.parse(readFileSync(path, "utf8")) as string[];
  let lastError = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    const reply = await o.generator.chat([{ role: "user", content: prompts.domains.replaceAll("{k}", String(o.nDomains)) }], {
      maxNewTokens: o.maxTokens,
      temperature: o.temperature,
      seed: streamSeed(o.seed, `domains:${attempt}`),
    });
    try {
      const v = jsonOf(reply.text);
      if (!Array.isArray(v) || v.length === 0 || !v.every((d) => typeof d === "string" && d.trim() !== "")) throw new Error("not a JSON list of strings");
      const domains = [...new Set((v as string[]).map((d) => d.trim()))].slice(0, o.nDomains);
      writeFileAtomic(path, JSON.stringify(domains, null, 2) + "\n");
      return domains;
    } catch (e) {
      lastError = errorMessage(e);
      o.log(`domain list: ${lastError}; asking again`);
    }
  }
  throw new RecallError(`the model gave no usable domain list in 3 tries (${lastError}); pass --domains FILE`);
}

export async function runLlmSynth(o: LlmSynthOptions): Promise<LlmSynthResult> {
  const outDir = resolve(o.outDir);
  mkdirSync(outDir, { recursive: true });
  const prompts = parsePrompts(o.prompts ?? defaultPrompts, o.prompts ? "--prompt_file" : "llm_prompts.txt");
  const domains = await domainList(o, prompts, join(outDir, DOMAINS_FILE));
  const recordsPath = join(outDir, CANDIDATES_FILE);
  // Outcomes by domain index, from earlier runs and this one; written out in domain order, so the files do not depend
  // on which domain finished first (nor on where a run was killed).
  const byDomain = new Map<number, { accepted: Candidate[]; rejects: Reject[] }>();
  const outcome = (i: number) => byDomain.get(i) ?? byDomain.set(i, { accepted: [], rejects: [] }).get(i)!;
  const rejectOf = (r: Record<string, unknown>): Reject => ({ family: LLM_FAMILY, stage: "verify", reason: String(r.reason), ...(typeof r.question === "string" ? { question: r.question } : {}) });
  const done = new Set<number>();
  for (const r of readCandidateLog(recordsPath, o.log)) {
    if (r.type === "domain") done.add(r.index as number);
    else if (r.type === "candidate" && r.status === "accepted") outcome(r.domain_index as number).accepted.push(r.candidate as Candidate);
    else if (r.type === "candidate" && r.status === "rejected") outcome(r.domain_index as number).rejects.push(rejectOf(r));
  }
  let acceptedTotal = [...byDomain.values()].reduce((n, d) => n + d.accepted.length, 0);
  const seen = new Set([...byDomain.values()].flatMap((d) => d.accepted.map(taskKey)));
  if (done.size > 0) o.log(`resuming: ${done.size} domains done, ${acceptedTotal} samples accepted before`);
  const tokens = { prompt: 0, completion: 0 };
  let thisAccepted = 0;
  let thisRejected = 0;
  const t0 = performance.now();
  const todo = domains.map((d, i) => [i, d] as const).filter(([i]) => !done.has(i));
  let next = 0;
  const worker = async () => {
    while (next < todo.length && acceptedTotal < o.n) {
      const [index, domain] = todo[next++]!;
      const r = await runDomain(o, prompts, index, domain, seen, tokens);
      // One whole append per domain: a kill leaves the domain recorded completely, or a tail that the next run cuts off.
      const closing = { type: "domain", index, domain, accepted: r.accepted.length, rejected: r.rejected };
      appendWhole(recordsPath, [...r.records, closing].map((x) => JSON.stringify(x) + "\n").join(""));
      outcome(index).accepted.push(...r.accepted);
      for (const rec of r.records) if (rec.status === "rejected") outcome(index).rejects.push(rejectOf(rec));
      acceptedTotal += r.accepted.length;
      thisAccepted += r.accepted.length;
      thisRejected += r.rejected;
      const rate = thisAccepted + thisRejected === 0 ? 0 : thisAccepted / (thisAccepted + thisRejected);
      o.log(
        `domain ${index + 1}/${domains.length} '${domain}': +${r.accepted.length} accepted, ${r.rejected} rejected; total ${acceptedTotal}/${o.n}, acceptance ${(100 * rate).toFixed(0)}%, tokens ${tokens.prompt} in / ${tokens.completion} out, ${((performance.now() - t0) / 1000).toFixed(0)} s`,
      );
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.concurrency) }, worker));
  if (acceptedTotal === 0) throw new RecallError(`no sample accepted over ${domains.length} domains; see ${recordsPath} for the reasons`);

  const indices = [...byDomain.keys()].sort((x, y) => x - y);
  const rejects = indices.flatMap((i) => byDomain.get(i)!.rejects);
  // Domains run concurrently; a task two of them accepted at once is kept once (the lower domain's).
  const unique = new Map<string, Candidate>();
  for (const i of indices) for (const c of byDomain.get(i)!.accepted) if (!unique.has(taskKey(c))) unique.set(taskKey(c), c);
  const kept = [...unique.values()].slice(0, o.n);
  const order = makeRng(streamSeed(o.seed, `${LLM_FAMILY}:split`)).shuffle(kept.map((_, i) => i));
  const nTest = o.testRatio === 0 || kept.length < 2 ? 0 : Math.min(kept.length - 1, Math.max(1, Math.round(kept.length * o.testRatio)));
  const train: Sample[] = [];
  const test: Sample[] = [];
  order.forEach((k, pos) => {
    const split = pos < nTest ? "test" : "train";
    (split === "test" ? test : train).push({ ...kept[k]!, id: `${LLM_FAMILY}-${k}`, dataSource: dataSourceOf(LLM_FAMILY), split });
  });
  const stats = writeSynthOutputs(outDir, { ...o.settings, system_prompt: o.systemPrompt }, {
    train,
    test,
    rejects,
    families: [{ name: LLM_FAMILY, weight: 1, requested: o.n, generated: acceptedTotal + rejects.length, duplicates: 0, rejected: rejects.length, files: o.domains ? [CANDIDATES_FILE] : [CANDIDATES_FILE, DOMAINS_FILE] }],
    timing: { generate_s: (performance.now() - t0) / 1000, verify_s: 0, total_s: (performance.now() - t0) / 1000, verified: acceptedTotal + rejects.length },
  });
  return { train, test, stats, accepted: thisAccepted, rejected: thisRejected, tokens };
}
