/**
 * The multi-turn tool loop shared by evaluation and RL rollouts (SPEC section 1).
 *
 * One call runs one conversation: generate a turn, settle how it ended, run the tool calls it asked for,
 * append their answer, repeat — within ReCall's limits (at most `maxTurns` assistant turns, at most
 * `maxTokensPerTurn` new tokens per turn, at most `maxResponseTokens` response tokens in all). Run many
 * conversations concurrently; a token engine batches their pending calls (see generator.ts).
 *
 * With a TokenGenerator the result carries `responseIds` (sampled ids exactly as sampled, appended text
 * tokenized on its own) and `lossMask` (1 on sampled ids, 0 on tool responses and injected prefixes).
 *
 * How a conversation ends (`end`):
 * - `answer` — a turn ended at EOS with no tool request: the final answer;
 * - `truncated` — a turn ran out of new tokens (no EOS at the end);
 * - `max_turns` — the turn cap was reached; the last turn's tool answers are appended (the response then
 *   ends with the injected prefix, not EOS — ReCall scores that 0);
 * - `response_budget` — the response reached `maxResponseTokens` (cut there in token mode);
 * - `context_full` — token mode: prompt + response reached `maxContextTokens` (the engine's cache);
 * - `foreign_stop` — a turn wrote `<|im_start|>` (or another non-EOS stop); it is kept as sampled.
 *
 * Where ReCall's evaluation loop (`ReCall.run`, src/re_call/inference/re_call.py) and its training rollout
 * differ, `rules` picks one (see TurnRules); `recall train` keeps the default, `recall eval` asks for
 * `recall_eval`.
 */
import type { Generator, SamplingParams } from "./generator.ts";
import type { ConversationProtocol, ToolResultText } from "./protocols.ts";
import type { ToolCall } from "./tool_calls.ts";
import type { RetrievedDoc, ToolRunner, ToolRunResult } from "./tools.ts";
import { allStops, settleTextTurn, settleTokenTurn, type StopSet, type TurnEnd } from "./turn_end.ts";
import { END_OF_TEXT, IM_END, IM_START } from "./chatml.ts";

export interface RolloutLimits {
  maxTurns: number;
  maxTokensPerTurn: number;
  maxResponseTokens: number;
  /** Token mode: prompt + response must stay within this many tokens (a local engine's cache size). */
  maxContextTokens?: number;
}

/** ReCall's defaults: 5 turns, 512 new tokens per turn, no overall cap beyond that. */
export const RECALL_LIMITS: RolloutLimits = { maxTurns: 5, maxTokensPerTurn: 512, maxResponseTokens: Infinity };

/**
 * Which of ReCall's two loops a conversation follows where they differ:
 * - `rollout` (default; `recall train`) — ReCall's training rollout: a turn that ends without EOS (out of
 *   tokens, `<|endoftext|>`, `<|im_start|>`) ends the conversation as sampled; a call whose JSON does not
 *   parse is answered `Parse tool call failed: …` and not run.
 * - `recall_eval` (`recall eval`) — ReCall's evaluation loop. SGLang returns each turn without its EOS
 *   and `ReCall.run` appends `<|im_end|>` to whatever came back, then runs the calls it finds:
 *   - a turn ending at `<|endoftext|>` (Qwen2.5-Instruct's second EOS, id 151643) is closed with
 *     `<|im_end|>` instead and goes on like one ending at `<|im_end|>`;
 *   - a turn cut by the per-turn token limit is closed with `<|im_end|>`; its tool calls (balanced tags)
 *     run and the conversation continues; without calls it ends (`truncated`);
 *   - a call whose JSON does not parse is sent to the tool backend with its failure text as the call
 *     expression (ReCall's guard compares a prefix that never matches), so the model sees the
 *     sandbox's SyntaxError (ToolRunner.runUnparsed).
 *   `<|im_start|>` still ends the conversation (`foreign_stop`), and the response and context limits
 *   still apply: ReCall's loop has neither.
 */
export type TurnRules = "rollout" | "recall_eval";

export interface ConversationOptions {
  generator: Generator;
  protocol: ConversationProtocol;
  tools: ToolRunner;
  sampling: Omit<SamplingParams, "maxNewTokens" | "stop">;
  limits?: RolloutLimits;
  /** The accepted end-of-turn text (default `<|im_end|>`). */
  eos?: string;
  /** Stops that end the conversation without EOS (default `<|im_start|>`, `<|endoftext|>`). */
  foreignStops?: readonly string[];
  /** Default `rollout`. */
  rules?: TurnRules;
  /** Text mode only: counts the tokens of appended text toward the response budget. */
  countTokens?: (text: string) => number;
  signal?: AbortSignal;
}

export type ConversationEnd = "answer" | "truncated" | "max_turns" | "response_budget" | "context_full" | "foreign_stop";

export interface Segment {
  /** `policy`: sampled by the model; `env`: tool answers and injected prefixes. */
  source: "policy" | "env";
  text: string;
  tokenIds?: number[];
}

export interface ToolRecord {
  turn: number;
  call: ToolCall;
  result: string;
  docs?: RetrievedDoc[];
  ms: number;
}

export interface Conversation {
  prompt: string;
  /** Everything after the prompt: sampled turns and appended tool answers, in order. */
  response: string;
  segments: Segment[];
  turns: number;
  toolCalls: ToolRecord[];
  end: ConversationEnd;
  /** How the last turn ended. */
  lastTurnEnd: TurnEnd;
  /** Tokens the policy generated (exact for a token engine; as the server reports for text). */
  generatedTokens: number;
  /** Response tokens in all (token mode exact; text mode counts what it could). */
  responseTokens: number;
  promptIds?: number[];
  responseIds?: number[];
  /** 1 where the policy sampled the id, 0 elsewhere; same length as responseIds. */
  lossMask?: number[];
  /** Sampling log-probs per response id (NaN where not sampled), when the engine gives them. */
  logprobs?: number[];
}

/** Runs one conversation from `prompt` (a full prompt string, e.g. reCallPrompt()). */
export async function runConversation(prompt: string, opts: ConversationOptions): Promise<Conversation> {
  const limits = opts.limits ?? RECALL_LIMITS;
  const rules = opts.rules ?? "rollout";
  const gen = opts.generator;
  const stops: StopSet = {
    eos: opts.eos ?? IM_END,
    foreign: (opts.foreignStops ?? [IM_START, END_OF_TEXT]).filter((s) => s !== (opts.eos ?? IM_END)),
    tool: opts.protocol.toolStops,
  };
  const tokenMode = gen.kind === "tokens";
  const tok = gen.kind === "tokens" ? gen.tokenizer : undefined;
  const idsOf = (strings: readonly string[]) =>
    strings.map((s) => tok!.tokenId(s)).filter((x): x is number => x !== undefined);
  const stopIds = tok ? { eos: idsOf([stops.eos]), foreign: idsOf(stops.foreign) } : undefined;
  if (tok && stopIds!.eos.length === 0) throw new Error(`tokenizer has no token for EOS '${stops.eos}'`);

  const segments: Segment[] = [];
  const toolCalls: ToolRecord[] = [];
  const promptIds = tok ? tok.encode(prompt) : undefined;
  const responseIds: number[] = [];
  const lossMask: number[] = [];
  const logprobs: number[] = [];
  let response = "";
  let responseTokens = 0;
  let generatedTokens = 0;
  let turns = 0;
  let end: ConversationEnd = "answer";
  let lastTurnEnd: TurnEnd = { kind: "length" };

  const appendEnv = (text: string) => {
    if (tok) {
      const ids = tok.encode(text);
      segments.push({ source: "env", text, tokenIds: ids });
      responseIds.push(...ids);
      lossMask.push(...ids.map(() => 0));
      logprobs.push(...ids.map(() => NaN));
      responseTokens += ids.length;
    } else {
      segments.push({ source: "env", text });
      responseTokens += opts.countTokens?.(text) ?? 0;
    }
    response += text;
  };

  for (;;) {
    opts.signal?.throwIfAborted();
    if (turns >= limits.maxTurns) {
      end = "max_turns";
      break;
    }
    const budgetLeft = limits.maxResponseTokens - responseTokens;
    if (budgetLeft <= 0) {
      end = "response_budget";
      break;
    }
    const contextLeft = tok && limits.maxContextTokens !== undefined ? limits.maxContextTokens - promptIds!.length - responseIds.length : Infinity;
    if (contextLeft <= 0) {
      end = "context_full";
      break;
    }
    const maxNewTokens = Math.min(limits.maxTokensPerTurn, budgetLeft, contextLeft);
    turns++;

    let text: string;
    let turnEnd: TurnEnd;
    let produced: number;
    // recall_eval: how this turn is closed with EOS text when it did not end at EOS (see TurnRules).
    let closeWithEos = false;
    if (gen.kind === "tokens") {
      const c = await gen.completeTokens([...promptIds!, ...responseIds], { ...opts.sampling, maxNewTokens, stop: stops.tool, stopTokenIds: [...stopIds!.eos, ...stopIds!.foreign] }, opts.signal);
      ({ text, end: turnEnd } = settleTokenTurn(c, (ids) => gen.tokenizer.decode(ids), stops, stopIds!));
      produced = c.tokenIds.length;
      let ids = [...c.tokenIds];
      let lps = c.logprobs && c.logprobs.length === c.tokenIds.length ? [...c.logprobs] : c.tokenIds.map(() => NaN);
      closeWithEos = closesWithEos(rules, turnEnd, stops, maxNewTokens === limits.maxTokensPerTurn);
      if (closeWithEos && turnEnd.kind === "foreign_stop") {
        // The sampled `<|endoftext|>` is the last id: ReCall's text never has it.
        ids = ids.slice(0, -1);
        lps = lps.slice(0, -1);
        text = gen.tokenizer.decode(ids);
      }
      segments.push({ source: "policy", text, tokenIds: ids });
      responseIds.push(...ids);
      lossMask.push(...ids.map(() => 1));
      logprobs.push(...lps);
      responseTokens += ids.length;
    } else {
      const c = await gen.complete(prompt + response, { ...opts.sampling, maxNewTokens, stop: allStops(stops) }, opts.signal);
      ({ text, end: turnEnd } = settleTextTurn(c, stops, opts.protocol.inferTrimmedStop?.bind(opts.protocol)));
      produced = c.completionTokens ?? opts.countTokens?.(text) ?? 0;
      closeWithEos = closesWithEos(rules, turnEnd, stops, maxNewTokens === limits.maxTokensPerTurn);
      if (closeWithEos && turnEnd.kind === "foreign_stop") text = text.slice(0, text.length - turnEnd.stop!.length);
      segments.push({ source: "policy", text });
      responseTokens += produced;
    }
    response += text;
    generatedTokens += produced;
    lastTurnEnd = turnEnd;

    let settled = turnEnd;
    if (closeWithEos) {
      appendEnv(stops.eos);
      settled = { kind: "eos", stop: stops.eos };
    } else if (turnEnd.kind === "foreign_stop") {
      end = "foreign_stop";
      break;
    } else if (turnEnd.kind === "length") {
      end = maxNewTokens === limits.maxTokensPerTurn ? "truncated" : maxNewTokens === contextLeft ? "context_full" : "response_budget";
      break;
    }
    const calls = opts.protocol.callsOf(text + (closeWithEos ? stops.eos : ""), settled);
    if (calls.length === 0) {
      end = settled.kind === "eos" && turnEnd.kind !== "length" ? "answer" : "truncated";
      break;
    }
    const records = await Promise.all(
      calls.map(async (call): Promise<ToolRecord> => {
        const t0 = performance.now();
        let r: ToolRunResult;
        if (call.ok) r = await opts.tools.run(call, opts.signal);
        else if (rules === "recall_eval" && opts.tools.runUnparsed) r = await opts.tools.runUnparsed(call, opts.signal);
        else return { turn: turns, call, result: call.result, ms: 0 };
        return { turn: turns, call, result: r.result, ...(r.docs ? { docs: r.docs } : {}), ms: performance.now() - t0 };
      }),
    );
    toolCalls.push(...records);
    const results: ToolResultText[] = records.map((r) => ({ call: r.call, result: r.result }));
    appendEnv(opts.protocol.renderResults(results));
    if (responseTokens > limits.maxResponseTokens) {
      if (tok) {
        const cut = limits.maxResponseTokens;
        responseIds.length = cut;
        lossMask.length = cut;
        logprobs.length = cut;
        responseTokens = cut;
        // Only the env segment just appended can be cut: rebuild its text from the ids that remain.
        const last = segments[segments.length - 1]!;
        let before = 0;
        for (const seg of segments.slice(0, -1)) before += seg.tokenIds!.length;
        last.tokenIds = last.tokenIds!.slice(0, Math.max(0, cut - before));
        const lastText = tok.decode(last.tokenIds);
        response = response.slice(0, response.length - last.text.length) + lastText;
        last.text = lastText;
      }
      end = "response_budget";
      break;
    }
  }

  const out: Conversation = { prompt, response, segments, turns, toolCalls, end, lastTurnEnd, generatedTokens, responseTokens };
  if (tokenMode) Object.assign(out, { promptIds, responseIds, lossMask, logprobs });
  return out;
}

/**
 * recall_eval: whether a turn that did not end at EOS is closed with EOS and goes on as if it had —
 * one that ended at `<|endoftext|>` (with `<|im_end|>` as EOS), or one cut by the per-turn limit.
 */
function closesWithEos(rules: TurnRules, end: TurnEnd, stops: StopSet, perTurnCut: boolean): boolean {
  if (rules !== "recall_eval") return false;
  if (end.kind === "foreign_stop") return end.stop === END_OF_TEXT && stops.eos === IM_END;
  return end.kind === "length" && perTurnCut;
}
