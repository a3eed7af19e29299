/**
 * Qwen's ChatML conversation format and the ReCall prompt built on it (SPEC section 1):
 *
 *   <|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n<think>
 *
 * and the block that answers a turn with tool calls:
 *
 *   \n<|im_start|>user\n<tool_response>{CALL_JSON_TEXT}\n{RESULT}\n</tool_response>\n…<|im_end|>\n<|im_start|>assistant\n<think>
 */
import { FUNC_SCHEMAS_PLACEHOLDER, RE_CALL_TEMPLATE_SYS } from "./templates.ts";

export const IM_START = "<|im_start|>";
export const IM_END = "<|im_end|>";
/** Qwen's end-of-text token: the EOS of base models, a turn end that ReCall's reward does not accept. */
export const END_OF_TEXT = "<|endoftext|>";
export const THINK_OPEN = "<think>";

/** What follows a tool-response block: a fresh assistant header and the literal `<think>`. */
export const ASSISTANT_THINK_PREFIX = `\n${IM_START}assistant\n${THINK_OPEN}`;

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** ChatML for the messages, ending with the assistant header (`add_generation_prompt=True`). */
export function renderChatML(messages: readonly ChatMessage[], addGenerationPrompt = true): string {
  let out = messages.map((m) => `${IM_START}${m.role}\n${m.content}${IM_END}\n`).join("");
  if (addGenerationPrompt) out += `${IM_START}assistant\n`;
  return out;
}

/**
 * ReCall's system prompt with the tools' schema string put in verbatim. `template` is the training
 * template (default, `recall train`) or RE_CALL_EVAL_SYS (ReCall's evaluation loop, `recall eval`).
 */
export function reCallSystemPrompt(funcSchemas: string, template: string = RE_CALL_TEMPLATE_SYS): string {
  return template.replace(FUNC_SCHEMAS_PLACEHOLDER, () => funcSchemas);
}

/** The ReCall prompt: system (template + schemas), user (question), assistant header, `<think>`. */
export function reCallPrompt(question: string, funcSchemas: string, template: string = RE_CALL_TEMPLATE_SYS): string {
  return renderChatML([
    { role: "system", content: reCallSystemPrompt(funcSchemas, template) },
    { role: "user", content: question },
  ]) + THINK_OPEN;
}

/** One tool call's answer inside a tool-response block. */
export interface ToolResponsePart {
  /** CALL_JSON_TEXT: the stripped text that stood between the `<tool_call>` tags. */
  callText: string;
  /** RESULT: the flattened sandbox answer, or `Parse tool call failed: …`. */
  result: string;
}

/** The exact text appended after a turn with tool calls. */
export function reCallToolResponseBlock(parts: readonly ToolResponsePart[]): string {
  const body = parts.map((p) => `<tool_response>${p.callText}\n${p.result}\n</tool_response>\n`).join("");
  return `\n${IM_START}user\n${body}${IM_END}${ASSISTANT_THINK_PREFIX}`;
}
