/**
 * RL prompts from verl parquet files (or JSONL/JSON rows of the same shape) in ReCall's schema (SPEC §5): `data_source`, `question` (or verl's generic
 * `prompt`, a list of chat messages), `reward_model.ground_truth`, `extra_info.func_schemas` / `extra_info.env`.
 *
 * The prompt is built as ReCall's dataset builds it: the system template with the tools' schema string put in
 * verbatim, the user question, the chat template's assistant opener, then the literal `<think>` (SPEC §1). Rows
 * whose prompt is longer than `maxPromptLength` tokens are dropped (verl's `filter_overlong_prompts`) or, with the
 * filter off, handled by verl's `truncation` rule (`error` refuses, `left`/`right` cut tokens). For `*re_call`
 * rows the `<search-url-placeholder>` in `env` becomes the configured search URL, as ReCall does for MuSiQue.
 * A row that cannot be used is refused with its file and row number.
 */
import { RecallError } from "../errors.ts";
import { readDataRows } from "./rows.ts";
import { renderChatML, THINK_OPEN } from "../rollout/chatml.ts";
import { FUNC_SCHEMAS_PLACEHOLDER, RE_CALL_TEMPLATE_SYS, SEARCH_URL_PLACEHOLDER } from "../rollout/templates.ts";
import type { GroundTruth } from "../reward/squad.ts";
import type { RecallTokenizer } from "./tokenizer.ts";

/** One training or validation prompt, ready for rollouts. */
export interface RlExample {
  /** Position in the concatenated files (after filtering): the data cursor walks these. */
  index: number;
  /** `file row N` (1-based), for messages and dumps. */
  where: string;
  dataSource: string;
  /** The user turn (the question, or the last user message of a `prompt` list). */
  question: string;
  prompt: string;
  promptIds: number[];
  groundTruth: GroundTruth;
  /** Python source of the tools (run in the sandbox before each call); "" when the row has none. */
  env: string;
  /** The schema string put into the system prompt ("" without tools). */
  funcSchemas: string;
  extraInfo: Record<string, unknown>;
}

export interface RlDatasetOptions {
  promptKey: string;
  maxPromptLength: number;
  filterOverlongPrompts: boolean;
  truncation: "error" | "left" | "right";
  /** Build ReCall prompts (system template + tools + `<think>`); false: the row's chat as is. */
  useReCall: boolean;
  /** ReCall's template name; only `re_call_template_sys` exists. */
  promptTemplateName: string;
  /** A system template of the user's own ({func_schemas} replaced); "" uses the named template. */
  systemPrompt?: string;
  /** Replaces `<search-url-placeholder>` in `env` of `*re_call` rows ("" leaves it). */
  searchUrl: string;
}

export interface RlDataset {
  examples: RlExample[];
  files: string[];
  /** Rows dropped by the prompt-length filter. */
  dropped: number;
  /** Rows that carry no tools (`extra_info.func_schemas` absent). */
  withoutTools: number;
}

const TEMPLATES: Record<string, string> = { re_call_template_sys: RE_CALL_TEMPLATE_SYS };

type Row = Record<string, unknown>;

/** Reads JSON text or returns an object as is (pyarrow writes structs; some writers use JSON strings). */
function asRecord(v: unknown, at: string, what: string): Row {
  if (v === null || v === undefined) return {};
  if (typeof v === "string") {
    try {
      v = JSON.parse(v);
    } catch {
      throw new RecallError(`${at}: '${what}' is a string that is not JSON`);
    }
  }
  if (typeof v !== "object" || Array.isArray(v)) throw new RecallError(`${at}: '${what}' must be a struct`);
  return v as Row;
}

function groundTruthOf(rm: Row, at: string): GroundTruth {
  const gt = rm.ground_truth;
  if (typeof gt === "string") return gt;
  if (typeof gt === "number") return String(gt);
  if (Array.isArray(gt) && gt.length > 0 && gt.every((g) => typeof g === "string")) return gt as string[];
  throw new RecallError(`${at}: 'reward_model.ground_truth' must be a string or a non-empty list of strings, got ${JSON.stringify(gt)?.slice(0, 80)}`);
}

interface Chat {
  messages: { role: string; content: string }[];
  question: string;
}

/** The chat a row asks for: `prompt_key` as a plain question, or verl's list of {role, content}. */
function chatOf(row: Row, key: string, at: string): Chat {
  const v = row[key] ?? (key === "question" ? row.prompt : undefined);
  if (typeof v === "string") return { messages: [{ role: "user", content: v }], question: v };
  if (Array.isArray(v) && v.length > 0) {
    const messages = v.map((m, i) => {
      const r = m as Row;
      if (!r || typeof r.role !== "string" || typeof r.content !== "string") throw new RecallError(`${at}: message ${i + 1} of '${key}' needs string 'role' and 'content'`);
      return { role: r.role, content: r.content };
    });
    const lastUser = [...messages].reverse().find((m) => m.role === "user");
    return { messages, question: lastUser?.content ?? messages[messages.length - 1]!.content };
  }
  throw new RecallError(`${at}: no '${key}' column with a question string (or a list of chat messages)`);
}

function renderPrompt(tokenizer: RecallTokenizer, messages: { role: string; content: string }[]): string {
  // Qwen's templates render exactly ChatML for system/user turns; a model without a template gets ChatML too.
  return tokenizer.hasChatTemplate ? tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true }) : renderChatML(messages as never);
}

/** Loads and tokenizes the prompts of one or more verl parquet files, in file order. */
export async function loadRlDataset(files: readonly string[], tokenizer: RecallTokenizer, o: RlDatasetOptions): Promise<RlDataset> {
  if (files.length === 0) throw new RecallError("no data files given");
  const template = o.systemPrompt ? o.systemPrompt : TEMPLATES[o.promptTemplateName];
  if (o.useReCall && template === undefined) {
    throw new RecallError(`data.prompt_template_name '${o.promptTemplateName}' is unknown`, { hint: `templates: ${Object.keys(TEMPLATES).join(", ")}` });
  }
  const examples: RlExample[] = [];
  let dropped = 0;
  let withoutTools = 0;
  for (const file of files) {
    for (const { value: row, where: at } of await readDataRows(file)) {
      const chat = chatOf(row, o.promptKey, at);
      const extraInfo = asRecord(row.extra_info, at, "extra_info");
      const rewardModel = asRecord(row.reward_model, at, "reward_model");
      if (!("ground_truth" in rewardModel)) throw new RecallError(`${at}: no 'reward_model.ground_truth'`);
      const groundTruth = groundTruthOf(rewardModel, at);
      const dataSource = typeof row.data_source === "string" ? row.data_source : "";
      if (dataSource === "") throw new RecallError(`${at}: 'data_source' must be a non-empty string (rewards are chosen by it)`);
      const schemas = extraInfo.func_schemas;
      if (schemas !== undefined && schemas !== null && typeof schemas !== "string") throw new RecallError(`${at}: 'extra_info.func_schemas' must be a JSON string`);
      const envRaw = extraInfo.env;
      if (envRaw !== undefined && envRaw !== null && typeof envRaw !== "string") throw new RecallError(`${at}: 'extra_info.env' must be Python source text`);
      const funcSchemas = (schemas as string | undefined) ?? "";
      if (funcSchemas === "") withoutTools++;
      let env = (envRaw as string | undefined) ?? "";
      if (o.searchUrl !== "" && dataSource.includes("re_call")) env = env.split(SEARCH_URL_PLACEHOLDER).join(o.searchUrl);

      let messages = chat.messages;
      if (o.useReCall) {
        const system = template!.replace(FUNC_SCHEMAS_PLACEHOLDER, () => funcSchemas);
        messages = [{ role: "system", content: system }, ...messages.filter((m) => m.role !== "system")];
      }
      let prompt = renderPrompt(tokenizer, messages) + (o.useReCall ? THINK_OPEN : "");
      let promptIds = tokenizer.encode(prompt, { addSpecialTokens: false });
      if (promptIds.length > o.maxPromptLength) {
        if (o.filterOverlongPrompts) {
          dropped++;
          continue;
        }
        if (o.truncation === "error") {
          throw new RecallError(`${at}: the prompt has ${promptIds.length} tokens, over data.max_prompt_length ${o.maxPromptLength}`, {
            hint: "raise data.max_prompt_length, set data.filter_overlong_prompts=true, or data.truncation=left|right",
          });
        }
        promptIds = o.truncation === "left" ? promptIds.slice(promptIds.length - o.maxPromptLength) : promptIds.slice(0, o.maxPromptLength);
        prompt = tokenizer.decode(promptIds);
      }
      examples.push({ index: examples.length, where: at, dataSource, question: chat.question, prompt, promptIds, groundTruth, env, funcSchemas, extraInfo });
    }
  }
  return { examples, files: [...files], dropped, withoutTools };
}
