/**
 * Verification of generated samples in the sandbox, with ReCall's `/execute` semantics: for every golden call, the
 * sample's `env` runs in fresh globals and then the call expression (built from the call's JSON exactly as a rollout
 * builds it) is evaluated; the flattened answer must equal the result the trace says. Then the final answer must
 * follow from the last response, and ReCall's reward must give the whole golden conversation full marks.
 *
 * `batched` (default) sends many samples to one sandbox call: a small Python driver runs each sample's env and call
 * in fresh globals, as the sandbox does per call (compiling each distinct env once), flattens each answer as ReCall's
 * Python client does and compares it with the trace there, returning only the results of samples that differ.
 * `per_call` sends every golden call on its own (ReCall's path exactly; slower; flattened here by src/sandbox/flatten.ts). A batch that fails as a whole (a hanging tool, a limit) is retried call by call, so one bad
 * sample never sinks others.
 */
import { pyReprStr } from "../python/repr.ts";
import harnessSource from "../sandbox/harness.py" with { type: "text" };
import { reCallReward } from "../reward/re_call.ts";
import { normalizeAnswer } from "../reward/squad.ts";
import { parseToolCall } from "../rollout/tool_calls.ts";
import { flattenAnswer } from "../sandbox/flatten.ts";
import type { ExecuteAnswer, ToolExecutor } from "../sandbox/types.ts";
import { callJsonText, conversationText } from "./trace.ts";
import type { Candidate } from "./types.ts";

export type VerifyMode = "batched" | "per_call";

export interface VerifyOptions {
  executor: ToolExecutor;
  mode: VerifyMode;
  /** Samples per sandbox call in batched mode. */
  batchSize: number;
  /** Seconds a single call may take (per_call, and retries of a failed batch). */
  callTimeout: number;
  /** `env` as the sandbox must run it (the search family's retriever URL), by family. */
  envFor: (c: Candidate) => string;
  /** `data_source` of a family's rows (the reward is chosen by it). */
  dataSourceOf: (c: Candidate) => string;
}

export type Verdict = { ok: true } | { ok: false; reason: string };

/**
 * The Python driver of a batch, run after the sandbox harness's own source (harness.py defines only functions and
 * classes; nothing runs), so a result is encoded exactly as a single call's (`_encode`, FastAPI's rules: tuples as
 * lists, NaN as text …) and an error is its `_safe_str`. Per call: env and call in fresh globals, stdout captured,
 * the answer flattened as ReCall's (Python) client does — `str()` of each truthy part of the JSON-decoded result,
 * output, error, then stripped — and compared with the trace's result there. A sample whose every call matched comes
 * back as None, any other as its flattened results, so the answer stays small and the host parses little.
 */
const BATCH_DRIVER = `
def __recall_flatten(output, result_json, error):
    text = ""
    result = None if result_json is None else _json_loads(result_json)
    if result:
        text += "result: \\n" + str(result) + "\\n"
    if output:
        text += "output: \\n" + output + "\\n"
    if error:
        text += "error: \\n" + error + "\\n"
    return text.strip()

def __recall_verify_batch(jobs_json):
    jobs = _json_loads(jobs_json)
    codes = [compile(env, "<env>", "exec") for env in jobs["envs"]]
    out = []
    for env_index, calls, expected in jobs["items"]:
        got = []
        for call in calls:
            buf = io.StringIO()
            saved = sys.stdout
            sys.stdout = buf
            result_json = None
            error = None
            try:
                g = {"__name__": "__main__"}
                exec(codes[env_index], g)
                exec(compile("response = " + call, "<call>", "exec"), g)
                encoded = _encode(g.get("response"))
                if encoded is not None:
                    result_json = _json_dumps(encoded, ensure_ascii=True, allow_nan=False)
            except BaseException as e:
                error = _safe_str(e)
            finally:
                sys.stdout = saved
            got.append(__recall_flatten(buf.getvalue(), result_json, error))
        out.append(None if got == expected else got)
    return out
`;
const BATCH_ENV = harnessSource + "\n" + BATCH_DRIVER;

/** The Python call expressions of a candidate's golden calls, as a rollout would build them from the call JSON. */
function callExprs(c: Candidate): string[] | string {
  const exprs: string[] = [];
  for (const turn of c.golden.turns) {
    for (const call of turn.calls) {
      const parsed = parseToolCall(callJsonText(call));
      if (!parsed.ok) return `golden call ${callJsonText(call)} does not parse: ${parsed.result}`;
      exprs.push(parsed.expr);
    }
  }
  return exprs;
}

/** Checks that need no sandbox: the tools named exist, the answer is in the last response, the reward is full. */
function staticCheck(c: Candidate, dataSource: string): string | undefined {
  if (c.question.trim() === "") return "empty question";
  let names: string[];
  try {
    names = (JSON.parse(c.funcSchemas) as { function: { name: string } }[]).map((s) => s.function.name);
  } catch {
    return "func_schemas is not a JSON list of function schemas";
  }
  const calls = c.golden.turns.flatMap((t) => t.calls);
  if (calls.length === 0) return "the golden trace makes no tool call";
  for (const call of calls) if (!names.includes(call.name)) return `golden call to '${call.name}', which is not in func_schemas`;
  const last = calls[calls.length - 1]!.result;
  if (normalizeAnswer(c.golden.answer) === "" || !normalizeAnswer(last).includes(normalizeAnswer(c.golden.answer))) {
    return `the final answer '${c.golden.answer}' does not follow from the last tool response`;
  }
  const reward = reCallReward({ text: conversationText(c), groundTruth: c.groundTruth, dataSource });
  if (reward.score !== 1) return `the golden trace gets reward ${reward.score}, not 1 (${reward.reason})`;
  return undefined;
}

function compareResults(c: Candidate, got: string[]): string | undefined {
  const calls = c.golden.turns.flatMap((t) => t.calls);
  for (const [i, call] of calls.entries()) {
    if (got[i] !== call.result) {
      return `golden call ${i + 1} (${callJsonText(call)}) returned ${JSON.stringify(got[i]!.slice(0, 200))}, the trace says ${JSON.stringify(call.result.slice(0, 200))}`;
    }
  }
  return undefined;
}

async function perCall(o: VerifyOptions, c: Candidate, exprs: string[]): Promise<string[]> {
  const env = o.envFor(c);
  return Promise.all(exprs.map(async (call) => flattenAnswer(await o.executor.execute({ env, call, timeout: o.callTimeout }))));
}

/** One sandbox call for many samples: each sample's flattened results; undefined when the batch failed as a whole. */
async function batch(o: VerifyOptions, items: { c: Candidate; exprs: string[] }[]): Promise<string[][] | undefined> {
  // Each distinct env is sent and compiled once; every call still runs it in fresh globals.
  const envs: string[] = [];
  const envIndex = new Map<string, number>();
  const expected = items.map(({ c }) => c.golden.turns.flatMap((t) => t.calls.map((call) => call.result)));
  const jobs = {
    envs,
    items: items.map(({ c, exprs }, i) => {
      const env = o.envFor(c);
      if (!envIndex.has(env)) envIndex.set(env, envs.push(env) - 1);
      return [envIndex.get(env)!, exprs, expected[i]!];
    }),
  };
  const calls = items.reduce((n, it) => n + it.exprs.length, 0);
  const answer: ExecuteAnswer = await o.executor.execute({
    env: BATCH_ENV,
    call: `__recall_verify_batch(${pyReprStr(JSON.stringify(jobs))})`,
    timeout: Math.min(30, o.callTimeout * Math.max(1, Math.ceil(calls / 20))),
  });
  const r = answer.result;
  if (answer.error || !Array.isArray(r) || r.length !== items.length) return undefined;
  const out: string[][] = [];
  for (const [i, got] of (r as unknown[]).entries()) {
    if (got === null) out.push(expected[i]!);
    else if (Array.isArray(got) && got.length === items[i]!.exprs.length && got.every((x) => typeof x === "string")) out.push(got as string[]);
    else return undefined;
  }
  return out;
}

/** Verdicts for the candidates, in order. */
export async function verifyCandidates(candidates: readonly Candidate[], o: VerifyOptions): Promise<Verdict[]> {
  const verdicts: Verdict[] = candidates.map(() => ({ ok: true }));
  const pending: { i: number; c: Candidate; exprs: string[] }[] = [];
  candidates.forEach((c, i) => {
    const exprs = callExprs(c);
    const problem = typeof exprs === "string" ? exprs : staticCheck(c, o.dataSourceOf(c));
    if (problem !== undefined) verdicts[i] = { ok: false, reason: problem };
    else pending.push({ i, c, exprs: exprs as string[] });
  });
  const judge = (i: number, c: Candidate, got: string[]) => {
    const problem = compareResults(c, got);
    if (problem !== undefined) verdicts[i] = { ok: false, reason: problem };
  };
  if (o.mode === "per_call") {
    await Promise.all(pending.map(async ({ i, c, exprs }) => judge(i, c, await perCall(o, c, exprs))));
    return verdicts;
  }
  const groups: (typeof pending)[] = [];
  for (let k = 0; k < pending.length; k += o.batchSize) groups.push(pending.slice(k, k + o.batchSize));
  await Promise.all(
    groups.map(async (g) => {
      const got = await batch(o, g);
      if (got !== undefined) g.forEach(({ i, c }, k) => judge(i, c, got[k]!));
      else await Promise.all(g.map(async ({ i, c, exprs }) => judge(i, c, await perCall(o, c, exprs))));
    }),
  );
  return verdicts;
}
