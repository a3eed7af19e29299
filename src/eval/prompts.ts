/**
 * The prompt of each evaluation method. With `apply_chat` (default) prompts are Qwen ChatML; without it
 * (base models) the system and user parts are joined by a blank line, as FlashRAG does for non-chat
 * generators, followed by `\nAnswer:`; ReSearch has its own base-model template.
 *
 * - naive:        user = the question itself; no system message.
 * - zero-shot:    ReCall's run_eval zero-shot: system "Answer the question based on your own knowledge.
 *                 Only give me the answer and do not output any other words.", user "Question: {question}".
 * - standard-rag: FlashRAG's default RAG prompt: system "Answer the question based on the given document.Only
 *                 give me the answer and do not output any other words.\nThe following are given
 *                 documents.\n\n{reference}", user "Question: {question}"; reference lines
 *                 `Doc {i}(Title: {title}) {text}` (title = first line of `contents`).
 * - re-call:      ReCall's evaluation system prompt (RE_CALL_EVAL_SYS, src/rollout/templates.ts) with the
 *                 wikipedia_search schema.
 * - research:     ReSearch's templates (instruct: system prompt + ChatML; base: one text ending "Assistant:").
 */
import { renderChatML, type ChatMessage } from "../rollout/chatml.ts";
import type { DocLike } from "./metrics.ts";
import { docText } from "./metrics.ts";

export const ZERO_SHOT_SYSTEM = "Answer the question based on your own knowledge. Only give me the answer and do not output any other words.";
// FlashRAG writes this as adjacent string literals with no space between the first two sentences.
export const RAG_SYSTEM = "Answer the question based on the given document.Only give me the answer and do not output any other words.\nThe following are given documents.\n\n{reference}";
export const QUESTION_USER = "Question: {question}";

export const RESEARCH_SYSTEM =
  "You are a helpful assistant that can solve the given question step by step with the help of the wikipedia search tool. " +
  "Given a question, you need to first think about the reasoning process in the mind and then provide the answer. " +
  "During thinking, you can invoke the wikipedia search tool to search for fact information about specific topics if needed. " +
  "The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags respectively, " +
  "and the search query and result are enclosed within <search> </search> and <result> </result> tags respectively. " +
  "For example, <think> This is the reasoning process. </think> <search> search query here </search> <result> search result here </result> " +
  "<think> This is the reasoning process. </think> <answer> The final answer is \\[ \\boxed{answer here} \\] </answer>. " +
  "In the last part of the answer, the final exact answer is enclosed within \\boxed{} with latex format.";

export const RESEARCH_BASE =
  "A conversation between User and Assistant. The user asks a question, and the assistant solves it. " +
  "The assistant first thinks about the reasoning process in the mind and then provides the user with the answer. " +
  "During thinking, the assistant can invoke the wikipedia search tool to search for fact information about specific topics if needed. " +
  "The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags respectively, " +
  "and the search query and result are enclosed within <search> </search> and <result> </result> tags respectively. " +
  "For example, <think> This is the reasoning process. </think> <search> search query here </search> <result> search result here </result> " +
  "<think> This is the reasoning process. </think> <answer> The final answer is \\[ \\boxed{answer here} \\] </answer>. " +
  "In the last part of the answer, the final exact answer is enclosed within \\boxed{} with latex format. " +
  "User: {question}. Assistant:";

const fill = (template: string, vars: Record<string, string>) => template.replace(/\{(\w+)\}/g, (m, k: string) => (k in vars ? vars[k]! : m));

/** FlashRAG's reference block. */
export function formatReference(docs: readonly DocLike[]): string {
  return docs
    .map((d, i) => {
      const lines = docText(d).split("\n");
      return `Doc ${i + 1}(Title: ${lines[0]}) ${lines.slice(1).join("\n")}\n`;
    })
    .join("");
}

/** The messages of a one-shot method. */
export function oneShotMessages(method: "naive" | "zero-shot" | "standard-rag", question: string, docs: readonly DocLike[] = []): ChatMessage[] {
  if (method === "naive") return [{ role: "user", content: question }];
  const user = fill(QUESTION_USER, { question });
  if (method === "zero-shot") return [{ role: "system", content: ZERO_SHOT_SYSTEM }, { role: "user", content: user }];
  return [{ role: "system", content: fill(RAG_SYSTEM, { reference: formatReference(docs) }) }, { role: "user", content: user }];
}

/** Messages → one prompt string: ChatML with the assistant header, or plain text for base models. */
export function renderPrompt(messages: readonly ChatMessage[], applyChat: boolean): string {
  if (applyChat) return renderChatML(messages);
  return messages.map((m) => m.content).filter((c) => c !== "").join("\n\n") + "\nAnswer:";
}

export function researchPrompt(question: string, applyChat: boolean): string {
  if (!applyChat) return fill(RESEARCH_BASE, { question });
  return renderChatML([{ role: "system", content: RESEARCH_SYSTEM }, { role: "user", content: question }]);
}
