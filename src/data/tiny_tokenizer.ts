/**
 * A tiny byte-level BPE tokenizer for test and demo models: the 256 byte tokens (id = byte value, in
 * GPT-2's byte-to-unicode alphabet) with no merges, then Qwen's added tokens (<|endoftext|>, ChatML,
 * <tool_call>, <tool_response>, <think> …, with Qwen's `special` flags), the same normalizer,
 * pre-tokenizer and decoder as Qwen2.5/Qwen3, and Qwen2.5's ChatML chat template. It is an ordinary Hugging
 * Face `tokenizer.json` + `tokenizer_config.json` pair, so a tiny model's vocabulary is 282 tokens
 * rather than 151,936 and every code path (added tokens, chat template, decoding) is the real one.
 */
import { QWEN25_CHAT_TEMPLATE } from "./chat_template.ts";

/** Qwen's added tokens in Qwen's order; `special: false` ones (tool_call, think…) survive skip_special_tokens. */
export const QWEN_ADDED_TOKENS: readonly { content: string; special: boolean }[] = [
  { content: "<|endoftext|>", special: true },
  { content: "<|im_start|>", special: true },
  { content: "<|im_end|>", special: true },
  { content: "<|object_ref_start|>", special: true },
  { content: "<|object_ref_end|>", special: true },
  { content: "<|box_start|>", special: true },
  { content: "<|box_end|>", special: true },
  { content: "<|quad_start|>", special: true },
  { content: "<|quad_end|>", special: true },
  { content: "<|vision_start|>", special: true },
  { content: "<|vision_end|>", special: true },
  { content: "<|vision_pad|>", special: true },
  { content: "<|image_pad|>", special: true },
  { content: "<|video_pad|>", special: true },
  { content: "<tool_call>", special: false },
  { content: "</tool_call>", special: false },
  { content: "<|fim_prefix|>", special: false },
  { content: "<|fim_middle|>", special: false },
  { content: "<|fim_suffix|>", special: false },
  { content: "<|fim_pad|>", special: false },
  { content: "<|repo_name|>", special: false },
  { content: "<|file_sep|>", special: false },
  { content: "<tool_response>", special: false },
  { content: "</tool_response>", special: false },
  { content: "<think>", special: false },
  { content: "</think>", special: false },
];

/** Qwen2's pre-tokenizer split pattern (also Qwen3's). */
const QWEN_SPLIT_PATTERN = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** GPT-2's reversible byte → printable character map used by byte-level BPE. */
export function byteToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const map: string[] = new Array(256);
  for (const b of bs) map[b] = String.fromCharCode(b);
  let n = 0;
  for (let b = 0; b < 256; b++) if (map[b] === undefined) map[b] = String.fromCharCode(256 + n++);
  return map;
}

export interface TokenizerFiles {
  /** Contents of tokenizer.json. */
  tokenizer: Record<string, unknown>;
  /** Contents of tokenizer_config.json. */
  tokenizerConfig: Record<string, unknown>;
}

/** Builds the tiny tokenizer's two files. Its size is 256 + QWEN_ADDED_TOKENS.length = 282 ids. */
export function tinyByteTokenizer(): TokenizerFiles {
  const chars = byteToUnicode();
  const vocab: Record<string, number> = {};
  chars.forEach((c, b) => (vocab[c] = b));
  const added = QWEN_ADDED_TOKENS.map((t, i) => ({
    id: 256 + i,
    content: t.content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: t.special,
  }));
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false };
  const tokenizer = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: { type: "NFC" },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [{ type: "Split", pattern: { Regex: QWEN_SPLIT_PATTERN }, behavior: "Isolated", invert: false }, byteLevel],
    },
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: [] as string[][],
    },
  };
  const decoderMap: Record<string, unknown> = {};
  for (const a of added) {
    decoderMap[String(a.id)] = { content: a.content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: a.special };
  }
  const tokenizerConfig = {
    add_bos_token: false,
    add_prefix_space: false,
    added_tokens_decoder: decoderMap,
    additional_special_tokens: QWEN_ADDED_TOKENS.filter((t) => t.special && t.content !== "<|endoftext|>").map((t) => t.content),
    bos_token: null,
    chat_template: QWEN25_CHAT_TEMPLATE,
    clean_up_tokenization_spaces: false,
    eos_token: "<|im_end|>",
    errors: "replace",
    model_max_length: 32768,
    pad_token: "<|endoftext|>",
    split_special_tokens: false,
    tokenizer_class: "Qwen2Tokenizer",
    unk_token: null,
  };
  return { tokenizer, tokenizerConfig };
}
