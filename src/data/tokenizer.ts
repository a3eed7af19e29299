/**
 * A model's tokenizer: `tokenizer.json` run by Hugging Face's tokenizers.js (@huggingface/tokenizers), with
 * `tokenizer_config.json` for special tokens and the chat template, rendered by @huggingface/jinja (the Jinja
 * made for HF chat templates). Added tokens (<|im_start|>, <tool_call>, <think> …) encode to their single ids.
 */
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { RecallError, errorMessage } from "../errors.ts";

/** A chat message as HF chat templates take it; tool calls and extra fields pass through to the template. */
export interface ChatMessage {
  role: string;
  content: string;
  tool_calls?: { type?: string; function: { name: string; arguments: unknown } }[];
  [key: string]: unknown;
}

export interface ChatTemplateOptions {
  /** Append the assistant turn opener (`<|im_start|>assistant\n` for ChatML). */
  addGenerationPrompt?: boolean;
  /** Tool schemas (JSON objects, OpenAI function format) for templates that list tools. */
  tools?: unknown[];
  /** Extra template variables (e.g. Qwen3's `enable_thinking`). */
  extra?: Record<string, unknown>;
}

type Json = Record<string, unknown>;

function readJson(file: string): Json {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new RecallError(`cannot read ${file}: ${errorMessage(e)}`);
  }
  try {
    const v = JSON.parse(text);
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not a JSON object");
    return v as Json;
  } catch (e) {
    throw new RecallError(`${file} is not a valid JSON object: ${errorMessage(e)}`);
  }
}

/** A special token in tokenizer_config.json is a string or an AddedToken object `{content: ...}`. */
function tokenText(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (typeof v === "object" && v !== null && typeof (v as Json).content === "string") return (v as Json).content as string;
  return null;
}

export class RecallTokenizer {
  private readonly tok: Tokenizer;
  /** Size of the id space: largest id (vocabulary or added token) + 1. */
  readonly size: number;
  /** Ids of added tokens flagged `special` (removed by `skipSpecialTokens`). */
  readonly specialIds: ReadonlySet<number>;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly padToken: string | null;
  private readonly chatTemplates: Map<string, string>;
  private readonly compiled = new Map<string, Template>();

  constructor(
    tokenizerJson: Json,
    readonly tokenizerConfig: Json,
    /** Where it was loaded from, for messages. */
    readonly source = "tokenizer.json",
    chatTemplateOverride?: string,
  ) {
    try {
      this.tok = new Tokenizer(tokenizerJson, tokenizerConfig);
    } catch (e) {
      throw new RecallError(`${source}: cannot build the tokenizer: ${errorMessage(e)}`);
    }
    let maxId = -1;
    for (const id of this.tok.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.size = maxId + 1;
    const special = new Set<number>();
    for (const [id, t] of this.tok.get_added_tokens_decoder()) if (t.special) special.add(id);
    this.specialIds = special;
    this.bosToken = tokenText(tokenizerConfig.bos_token);
    this.eosToken = tokenText(tokenizerConfig.eos_token);
    this.padToken = tokenText(tokenizerConfig.pad_token);
    this.chatTemplates = new Map();
    const ct = chatTemplateOverride ?? tokenizerConfig.chat_template;
    if (typeof ct === "string") this.chatTemplates.set("default", ct);
    else if (Array.isArray(ct)) {
      for (const entry of ct as { name?: unknown; template?: unknown }[]) {
        if (typeof entry?.name === "string" && typeof entry.template === "string") this.chatTemplates.set(entry.name, entry.template);
      }
    }
  }

  /**
   * Loads `tokenizer.json` (+ `tokenizer_config.json`, + `chat_template.jinja` when present) from a model or
   * tokenizer folder, or from a path to a tokenizer.json (its folder is searched for the other two).
   */
  static load(path: string): RecallTokenizer {
    let dir = path;
    let tokFile = join(path, "tokenizer.json");
    if (existsSync(path) && statSync(path).isFile()) {
      tokFile = path;
      dir = dirname(path);
    }
    if (!existsSync(tokFile)) {
      throw new RecallError(`${path}: no tokenizer.json found`, { hint: "a Hugging Face model folder has tokenizer.json and tokenizer_config.json" });
    }
    const configFile = join(dir, "tokenizer_config.json");
    const config = existsSync(configFile) ? readJson(configFile) : {};
    const jinjaFile = join(dir, "chat_template.jinja");
    const template = existsSync(jinjaFile) ? readFileSync(jinjaFile, "utf8") : undefined;
    return new RecallTokenizer(readJson(tokFile), config, tokFile, template);
  }

  /** Token ids of `text`. `addSpecialTokens` runs the post-processor (e.g. a BOS for Llama), as HF's default. */
  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    return this.tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  /** Text of `ids`; `skipSpecialTokens` drops added tokens flagged special (<|im_end|>, not <tool_call>). */
  decode(ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    return this.tok.decode([...ids], { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }

  /** The id of a token that must exist (e.g. `<|im_end|>`), or a RecallError naming the tokenizer. */
  requireId(token: string): number {
    const id = this.tokenToId(token);
    if (id === undefined) throw new RecallError(`${this.source}: token '${token}' is not in the vocabulary`);
    return id;
  }

  get eosTokenId(): number | null {
    return this.eosToken === null ? null : (this.tokenToId(this.eosToken) ?? null);
  }

  get bosTokenId(): number | null {
    return this.bosToken === null ? null : (this.tokenToId(this.bosToken) ?? null);
  }

  get padTokenId(): number | null {
    return this.padToken === null ? null : (this.tokenToId(this.padToken) ?? null);
  }

  get hasChatTemplate(): boolean {
    return this.chatTemplates.size > 0;
  }

  /**
   * Renders a conversation with the model's chat template, as transformers' `apply_chat_template(tokenize=False)`:
   * the template sees `messages`, `tools`, `add_generation_prompt`, the special tokens (`bos_token`, `eos_token`…)
   * and `extra`. A template named `tool_use` is preferred when tools are given and the config has several.
   */
  applyChatTemplate(messages: readonly ChatMessage[], opts: ChatTemplateOptions = {}): string {
    if (!this.hasChatTemplate) {
      throw new RecallError(`${this.source}: the tokenizer has no chat template (tokenizer_config.json 'chat_template' or chat_template.jinja)`);
    }
    const name = opts.tools && this.chatTemplates.has("tool_use") ? "tool_use" : this.chatTemplates.has("default") ? "default" : [...this.chatTemplates.keys()][0]!;
    let tpl = this.compiled.get(name);
    if (!tpl) {
      try {
        tpl = new Template(this.chatTemplates.get(name)!);
      } catch (e) {
        throw new RecallError(`${this.source}: chat template '${name}' does not parse: ${errorMessage(e)}`);
      }
      this.compiled.set(name, tpl);
    }
    const specials: Record<string, string> = {};
    for (const key of ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]) {
      const t = tokenText(this.tokenizerConfig[key]);
      if (t !== null) specials[key] = t;
    }
    try {
      return tpl.render({
        messages: messages as unknown as Record<string, unknown>[],
        add_generation_prompt: opts.addGenerationPrompt ?? false,
        ...(opts.tools ? { tools: opts.tools } : {}),
        ...specials,
        ...opts.extra,
      });
    } catch (e) {
      throw new RecallError(`${this.source}: rendering the chat template failed: ${errorMessage(e)}`);
    }
  }

  /** Renders a conversation and encodes it without adding special tokens again (the template already has them). */
  encodeChat(messages: readonly ChatMessage[], opts: ChatTemplateOptions = {}): number[] {
    return this.encode(this.applyChatTemplate(messages, opts), { addSpecialTokens: false });
  }
}
