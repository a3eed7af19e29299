/**
 * One evaluation item under one method: build the prompt, generate (one shot, or the multi-turn tool
 * loop of src/rollout), extract the prediction. Predictions:
 * - one-shot methods: the generated text up to EOS, stripped (as FlashRAG stores it);
 * - re-call: ReCall's evaluation rule — the last *closed* assistant turn (`<|im_start|>assistant\n` … `<|im_end|>`,
 *   stripped) with `<think>…</think>` removed, then the content of its last `\boxed{}`; empty when there is
 *   none. At the turn cap the conversation ends with an open `<think>` after the last tool answers, so the
 *   answer comes from the turn before them;
 * - research: the last `\boxed{}` inside `<answer>…</answer>` (or anywhere in the response when there is
 *   no answer tag); empty when there is none.
 */
import { END_OF_TEXT, IM_END, IM_START, reCallPrompt, type ChatMessage } from "../rollout/chatml.ts";
import { runConversation, type Conversation } from "../rollout/conversation.ts";
import type { ChatGenerator, Generator, SamplingParams } from "../rollout/generator.ts";
import { RE_CALL, RE_SEARCH } from "../rollout/protocols.ts";
import { pyStrip } from "../python/text.ts";
import { PlainSearchTool, WikipediaSearchTool, type SearchBackend } from "../rollout/search_tool.ts";
import { RE_CALL_EVAL_SYS, WIKIPEDIA_SEARCH_FUNC_SCHEMAS } from "../rollout/templates.ts";
import { settleTextTurn } from "../rollout/turn_end.ts";
import type { RetrievedDoc, ToolRunner } from "../rollout/tools.ts";
import { extractBoxed } from "../reward/boxed.ts";
import { assistantSpans, reCallFormatError } from "../reward/re_call.ts";
import { reSearchFormatError } from "../reward/re_search.ts";
import { RecallError } from "../errors.ts";
import type { EvalConfig } from "./config.ts";
import type { EvalItem } from "./dataset.ts";
import { oneShotMessages, renderPrompt, researchPrompt } from "./prompts.ts";

export interface MethodBackends {
  generator: Generator | ChatGenerator;
  /** The model's own chat template for one-shot prompts (`--chat_template model`), rendering with the generation prompt. */
  chatTemplate?: (messages: readonly ChatMessage[]) => string;
  retriever?: SearchBackend;
  /** Tool calls for re-call go here when set (a sandbox running wikipedia_search's Python source). */
  reCallTools?: ToolRunner;
  /** A runner for a row's own tool source (rows that carry `extra_info.env`). */
  rowTools?: (env: string) => ToolRunner;
}

/** What a method produced for one item (stored under `output` in intermediate_data.json). */
export interface MethodOutput {
  pred: string;
  prompt: string;
  final_response: string;
  retrieval_result?: RetrievedDoc[];
  /** Tool methods: assistant turns, tool calls, calls that failed to parse, how the loop ended, format ok. */
  turns?: number;
  tool_calls?: number;
  tool_call_parse_failures?: number;
  finish?: string;
  format_ok?: boolean;
  generated_tokens?: number;
}

/** ReCall's evaluation prediction from the full text (prompt + response). */
export function reCallPrediction(fullText: string): string {
  const last = assistantSpans(fullText).at(-1);
  if (last === undefined) return "";
  const noThink = pyStrip(last.replace(/<think>[\s\S]*?<\/think>/g, ""));
  return pyStrip(extractBoxed(noThink) ?? "");
}

export function reSearchPrediction(response: string): string {
  const m = /<answer>([\s\S]*?)<\/answer>/.exec(response);
  return pyStrip(extractBoxed(m ? m[1]! : response) ?? "");
}

function sampling(cfg: EvalConfig): Omit<SamplingParams, "maxNewTokens" | "stop"> {
  return { temperature: cfg.temperature, topP: cfg.top_p, topK: cfg.top_k, seed: undefined };
}

function uniqueDocs(conv: Conversation): RetrievedDoc[] {
  const seen = new Set<string>();
  const out: RetrievedDoc[] = [];
  for (const r of conv.toolCalls) for (const d of r.docs ?? []) if (!seen.has(d.id)) (seen.add(d.id), out.push(d));
  return out;
}

function needRetriever(b: MethodBackends, method: string): SearchBackend {
  if (!b.retriever) throw new RecallError(`method '${method}' needs a retriever`, { hint: "pass --remote_retriever_url URL, or --index_path DIR (a 'recall retriever index' output)" });
  return b.retriever;
}

async function oneShot(prompt: string, messages: ReturnType<typeof oneShotMessages>, cfg: EvalConfig, b: MethodBackends, signal?: AbortSignal): Promise<string> {
  const params: SamplingParams = { ...sampling(cfg), maxNewTokens: cfg.max_new_tokens, stop: [IM_END, IM_START, END_OF_TEXT] };
  const g = b.generator;
  if (g.kind === "chat") return pyStrip((await g.chat(messages, params, signal)).text);
  if (g.kind === "tokens") {
    const eos = [IM_END, IM_START, END_OF_TEXT].map((t) => g.tokenizer.tokenId(t)).filter((x): x is number => x !== undefined);
    const ids = g.tokenizer.encode(prompt);
    // An item-level failure, not a configuration error: other items may fit.
    if (ids.length >= cfg.context_length) throw new Error(`prompt of ${ids.length} tokens does not fit --context_length ${cfg.context_length}`);
    const c = await g.completeTokens(ids, { ...params, maxNewTokens: Math.min(params.maxNewTokens, cfg.context_length - ids.length), stopTokenIds: eos }, signal);
    return pyStrip(g.tokenizer.decode(c.tokenIds).replace(/(<\|im_end\|>|<\|im_start\|>|<\|endoftext\|>)[\s\S]*$/, ""));
  }
  const c = await g.complete(prompt, params, signal);
  const { text } = settleTextTurn(c, { eos: IM_END, foreign: [IM_START, END_OF_TEXT], tool: [] });
  return pyStrip(text.replace(/(<\|im_end\|>|<\|im_start\|>|<\|endoftext\|>)$/, ""));
}

export async function runMethod(item: EvalItem, cfg: EvalConfig, b: MethodBackends, signal?: AbortSignal): Promise<MethodOutput> {
  const method = cfg.method_name;
  if (method === "naive" || method === "zero-shot" || method === "standard-rag") {
    let docs: RetrievedDoc[] | undefined;
    if (method === "standard-rag") docs = (await needRetriever(b, method).search(item.question, cfg.retrieval_topk)).docs;
    const messages = oneShotMessages(method, item.question, docs);
    const prompt =
      b.generator.kind === "chat" ? JSON.stringify(messages) : cfg.apply_chat && b.chatTemplate ? b.chatTemplate(messages) : renderPrompt(messages, cfg.apply_chat);
    const text = await oneShot(prompt, messages, cfg, b, signal);
    return { pred: text, prompt, final_response: text, ...(docs ? { retrieval_result: docs } : {}) };
  }
  const g = b.generator;
  if (g.kind === "chat") {
    throw new RecallError(`method '${method}' needs raw-prompt continuation; --openai_api chat cannot run it`, { hint: "use --openai_api completions (the default) or --sgl_remote_url" });
  }
  // ReCall.run asks for its own per-turn budget, not FlashRAG's generation_params (see config.ts).
  const limits = { maxTurns: cfg.max_turns, maxTokensPerTurn: cfg.max_tokens_per_turn, maxResponseTokens: cfg.max_response_length ?? Infinity, maxContextTokens: cfg.context_length };
  if (method === "re-call") {
    // A row with its own tools runs them (in the sandbox); otherwise ReCall's wikipedia_search.
    const own = item.tools && b.rowTools ? item.tools : undefined;
    const tools = own ? b.rowTools!(own.env) : (b.reCallTools ?? new WikipediaSearchTool(needRetriever(b, method)));
    // ReCall's evaluation loop and prompt, not its training rollout's (see TurnRules in conversation.ts).
    const prompt = reCallPrompt(item.question, own ? own.funcSchemas : WIKIPEDIA_SEARCH_FUNC_SCHEMAS, cfg.system_prompt || RE_CALL_EVAL_SYS);
    const conv = await runConversation(prompt, { generator: g, protocol: RE_CALL, tools, sampling: sampling(cfg), limits, rules: "recall_eval", signal });
    const full = prompt + conv.response;
    return {
      pred: reCallPrediction(full),
      prompt,
      final_response: conv.response,
      ...(tools.reportsDocs === false ? {} : { retrieval_result: uniqueDocs(conv) }),
      turns: conv.turns,
      tool_calls: conv.toolCalls.length,
      tool_call_parse_failures: conv.toolCalls.filter((c) => !c.call.ok).length,
      finish: conv.end,
      // The reward's gate, on the conversation as the model ended it (a closing `<|im_end|>` the loop
      // added to a truncated turn does not count).
      format_ok: conv.end === "answer" && full.endsWith(IM_END) && reCallFormatError(full) === undefined,
      generated_tokens: conv.generatedTokens,
    };
  }
  // research
  const prompt = researchPrompt(item.question, cfg.apply_chat);
  const eos = cfg.apply_chat ? IM_END : END_OF_TEXT;
  const conv = await runConversation(prompt, {
    generator: g,
    protocol: RE_SEARCH,
    tools: new PlainSearchTool(needRetriever(b, method), cfg.retrieval_topk),
    sampling: sampling(cfg),
    limits,
    eos,
    foreignStops: [IM_START, IM_END, END_OF_TEXT],
    signal,
  });
  const response = conv.response;
  return {
    pred: reSearchPrediction(conv.response),
    prompt,
    final_response: conv.response,
    retrieval_result: uniqueDocs(conv),
    turns: conv.turns,
    tool_calls: conv.toolCalls.length,
    tool_call_parse_failures: 0,
    finish: conv.end,
    format_ok: response.endsWith(eos) && reSearchFormatError(response) === undefined,
    generated_tokens: conv.generatedTokens,
  };
}
