/**
 * An SFT row as the plain system / user / assistant turns ReCall's format is made of (SPEC §1):
 *
 *   {"messages": [...], "tools"?: [...]}   role/content messages, as TRL and LLaMA-Factory read them
 *   {"prompt": "...", "response": "..."}   one user turn and one assistant turn
 *
 * OpenAI-style tool use becomes ReCall's text, exactly what a ReCall rollout holds:
 *   - an assistant message's `tool_calls` are appended to its content as `<tool_call>\n{"name": …, "arguments": …}\n</tool_call>`
 *     blocks, one per line, the way Qwen's chat template writes them (`json.dumps` spacing, non-ASCII kept);
 *   - the `tool` messages answering a turn become ONE user turn whose content is, for each call,
 *     `<tool_response>{CALL_JSON_TEXT}\n{RESULT}\n</tool_response>\n` — CALL_JSON_TEXT being the stripped text inside
 *     the call's `<tool_call>` tags, found as the rollout finds it. Rendered as ChatML this is byte for byte the block
 *     `reCallToolResponseBlock` appends in a rollout.
 * Assistant text that already holds `<tool_call>` blocks (what `recall synth` writes) is kept as is, and `tool`
 * messages after it are matched to its calls in order.
 *
 * With `tools` (a list of schemas, or the schema JSON text as verl parquet carries it in `extra_info.func_schemas`),
 * the system turn is ReCall's template with the schemas, as `recall train` builds prompts.
 */
import { RecallError } from "../errors.ts";
import { pyJsonDumps, pyJsonLoads, PyJsonError } from "../python/json.ts";
import { fromJsValue, isPyDict, pyDict, type PyValue } from "../python/value.ts";
import { reCallSystemPrompt, type ChatMessage } from "../rollout/chatml.ts";
import { extractToolCallTexts } from "../rollout/tool_calls.ts";

export interface SftConversation {
  /** Plain turns: system (at most one, first), user and assistant; at least one assistant turn. */
  messages: ChatMessage[];
}

export interface ConversationKeys {
  messagesKey: string;
  toolsKey: string;
  promptKey: string;
  responseKey: string;
}

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** The schema string of a row's tools: text verbatim, a list as `json.dumps(tools, indent=4)` (ReCall's MuSiQue layout). */
export function funcSchemasText(tools: unknown, at: string): string {
  if (typeof tools === "string") return tools;
  if (Array.isArray(tools)) return pyJsonDumps(fromJsValue(tools), { indent: 4 });
  throw new RecallError(`${at}: 'tools' must be a list of tool schemas or their JSON text`);
}

/** `{"name": NAME, "arguments": ARGS}` as Qwen's template writes a call (`tojson`: `, `/`: ` separators, non-ASCII kept). */
export function toolCallJson(name: string, args: PyValue): string {
  return pyJsonDumps(pyDict([["name", name], ["arguments", args]]), { ensureAscii: false });
}

/** One OpenAI-style `tool_calls` entry as a `<tool_call>` block. */
function toolCallBlock(call: unknown, at: string): { id?: string; block: string } {
  const fn = isRecord(call) && isRecord(call.function) ? call.function : isRecord(call) ? call : undefined;
  if (!fn || typeof fn.name !== "string" || fn.name === "") throw new RecallError(`${at}: a tool call needs function.name (a non-empty string)`);
  let args: PyValue;
  const raw = fn.arguments ?? {};
  if (typeof raw === "string") {
    try {
      args = raw.trim() === "" ? pyDict([]) : pyJsonLoads(raw);
    } catch (e) {
      if (e instanceof PyJsonError) throw new RecallError(`${at}: the arguments of tool call '${fn.name}' are not valid JSON (${e.message})`);
      throw e;
    }
  } else args = fromJsValue(raw);
  if (!isPyDict(args)) throw new RecallError(`${at}: the arguments of tool call '${fn.name}' must be a JSON object`);
  const id = isRecord(call) && typeof call.id === "string" ? call.id : undefined;
  return { id, block: `<tool_call>\n${toolCallJson(fn.name, args)}\n</tool_call>` };
}

function contentOf(m: Json, at: string, allowEmpty: boolean): string {
  if (typeof m.content === "string") return m.content;
  if ((m.content === null || m.content === undefined) && allowEmpty) return "";
  throw new RecallError(`${at}: 'content' must be a string`);
}

/** The plain turns of one row; throws RecallError naming `at` (file and line) and the message. */
export function rowConversation(row: Json, keys: ConversationKeys, at: string): SftConversation {
  const tools = row[keys.toolsKey];
  const hasTools = tools !== undefined && tools !== null && !(Array.isArray(tools) && tools.length === 0) && tools !== "";
  let raw: unknown[];
  if (row[keys.messagesKey] !== undefined && row[keys.messagesKey] !== null) {
    raw = row[keys.messagesKey] as unknown[];
    if (!Array.isArray(raw) || raw.length === 0) throw new RecallError(`${at}: '${keys.messagesKey}' must be a non-empty list of messages`);
  } else if (row[keys.promptKey] !== undefined && row[keys.responseKey] !== undefined) {
    const prompt = row[keys.promptKey], response = row[keys.responseKey];
    if (typeof prompt !== "string" || typeof response !== "string") throw new RecallError(`${at}: '${keys.promptKey}' and '${keys.responseKey}' must be strings`);
    raw = [{ role: "user", content: prompt }, { role: "assistant", content: response }];
  } else {
    const have = Object.keys(row).slice(0, 8).join(", ");
    throw new RecallError(`${at}: no '${keys.messagesKey}' list and no '${keys.promptKey}'/'${keys.responseKey}' pair (the row has: ${have || "nothing"})`);
  }

  const out: ChatMessage[] = [];
  if (hasTools) out.push({ role: "system", content: reCallSystemPrompt(funcSchemasText(tools, at)) });
  /** The calls of the latest assistant turn (texts as the rollout extracts them; ids of OpenAI calls), and which were answered. */
  let calls: { texts: string[]; ids: (string | undefined)[]; answered: boolean[] } | undefined;
  // tool_response parts waiting to become one user turn, in the order of the calls they answer (as a rollout writes them)
  let pending: { call: number; text: string }[] = [];
  const flushTools = () => {
    if (pending.length === 0) return;
    out.push({ role: "user", content: pending.sort((a, b) => a.call - b.call).map((p) => p.text).join("") });
    pending = [];
  };
  raw.forEach((m, i) => {
    const where = `${at}, message ${i + 1}`;
    if (!isRecord(m) || typeof m.role !== "string") throw new RecallError(`${where}: a message needs a string 'role'`);
    if (m.role !== "tool") flushTools();
    switch (m.role) {
      case "system":
        if (i !== 0) throw new RecallError(`${where}: a system message may only come first`);
        if (hasTools) throw new RecallError(`${where}: the row has '${keys.toolsKey}', so its system prompt is ReCall's template with the tool schemas; drop the system message or the tools`);
        out.push({ role: "system", content: contentOf(m, where, false) });
        calls = undefined;
        break;
      case "user":
        out.push({ role: "user", content: contentOf(m, where, false) });
        calls = undefined;
        break;
      case "assistant": {
        const toolCalls = m.tool_calls ?? [];
        if (!Array.isArray(toolCalls)) throw new RecallError(`${where}: 'tool_calls' must be a list`);
        const blocks = toolCalls.map((c, k) => toolCallBlock(c, `${where}, tool call ${k + 1}`));
        const content = contentOf(m, where, blocks.length > 0);
        const text = [content, ...blocks.map((b) => b.block)].filter((x) => x !== "").join("\n");
        out.push({ role: "assistant", content: text });
        const texts = extractToolCallTexts(text);
        // Ids belong to the OpenAI calls, which are the last blocks of the turn.
        const ids = [...new Array<undefined>(texts.length - blocks.length).fill(undefined), ...blocks.map((b) => b.id)];
        calls = { texts, ids, answered: texts.map(() => false) };
        break;
      }
      case "tool": {
        if (!calls) throw new RecallError(`${where}: a tool message must follow an assistant turn with tool calls`);
        const id = typeof m.tool_call_id === "string" ? m.tool_call_id : undefined;
        let k = id !== undefined ? calls.ids.indexOf(id) : -1;
        if (k < 0) k = calls.answered.indexOf(false);
        if (k < 0 || calls.answered[k]) {
          throw new RecallError(`${where}: this tool message answers no call of the assistant turn before it (${calls.texts.length} call(s)${id !== undefined ? `, none with id '${id}' left` : ""})`);
        }
        calls.answered[k] = true;
        pending.push({ call: k, text: `<tool_response>${calls.texts[k]}\n${contentOf(m, where, false)}\n</tool_response>\n` });
        break;
      }
      default:
        throw new RecallError(`${where}: unknown role '${m.role}' (system, user, assistant or tool)`);
    }
  });
  flushTools();
  if (!out.some((m) => m.role === "assistant")) throw new RecallError(`${at}: the conversation has no assistant turn to learn from`);
  const firstAssistant = out.findIndex((m) => m.role === "assistant");
  if (!out.slice(0, firstAssistant).some((m) => m.role === "user")) throw new RecallError(`${at}: the first assistant turn has no user turn before it`);
  return { messages: out };
}
