/**
 * Rewards: SQuAD normalisation and F1 on tricky cases, boxed extraction, ReCall's gating order (SPEC 2),
 * ReSearch's format, the answer-only kinds, and a user scorer module.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { extractBoxed, lastBoxedOnlyString } from "../src/reward/boxed.ts";
import { createReward, kindForDataSource } from "../src/reward/index.ts";
import { reCallReward } from "../src/reward/re_call.ts";
import { reSearchReward } from "../src/reward/re_search.ts";
import { exactMatch, f1Score, normalizeAnswer, substringMatch, tokenScores } from "../src/reward/squad.ts";
import { RecallError } from "../src/errors.ts";

describe("SQuAD normalisation", () => {
  test("lowercase, ASCII punctuation, articles, whitespace", () => {
    expect(normalizeAnswer("  The  Eiffel-Tower, (Paris)! ")).toBe("eiffeltower paris");
    expect(normalizeAnswer("A cat an apple the end")).toBe("cat apple end");
    expect(normalizeAnswer("theater anthem")).toBe("theater anthem"); // articles only as whole words
  });
  test("unicode: letters are word characters, non-ASCII punctuation stays, Python whitespace", () => {
    expect(normalizeAnswer("Wilhelm Conrad Röntgen")).toBe("wilhelm conrad röntgen");
    expect(normalizeAnswer("éthe the")).toBe("éthe"); // Python's \b: é is a word character
    expect(normalizeAnswer("«Paris»")).toBe("«paris»");
    expect(normalizeAnswer("a\u3000b\u00a0c")).toBe("b c");
    expect(normalizeAnswer("ÉCOLE")).toBe("école");
  });
});

describe("metrics", () => {
  test("em / acc with multiple golds", () => {
    expect(exactMatch("the Titan IIIE.", ["Titan IIIE", "x"])).toBe(1);
    expect(exactMatch("Titan", ["Titan IIIE"])).toBe(0);
    expect(substringMatch("It was the Titan IIIE rocket", ["titan iiie"])).toBe(1);
    expect(substringMatch("Titan", ["titan iiie"])).toBe(0);
  });
  test("f1, precision, recall: max over golds, each independently", () => {
    const s = tokenScores("james madison president", ["James Madison", "president of the united states"]);
    // vs gold 1: p=2/3, r=1, f1=0.8; vs gold 2: p=1/3, r=1/4 → max p=2/3, r=1, f1=0.8
    expect(s.precision).toBeCloseTo(2 / 3, 12);
    expect(s.recall).toBe(1);
    expect(s.f1).toBeCloseTo(0.8, 12);
    expect(f1Score("x y y", "y y z")).toBeCloseTo(2 / 3, 12); // bag overlap: both y count
    expect(f1Score("y y y", "y z")).toBeCloseTo(0.4, 12); // only one y of the gold matches
  });
  test("yes/no/noanswer rule", () => {
    expect(f1Score("yes", "no")).toBe(0);
    expect(f1Score("yes it is", "yes")).toBe(0); // gold is special and differs
    expect(f1Score("no", ["no", "maybe"])).toBe(1);
    expect(f1Score("No.", "no")).toBe(1);
  });
  test("empty prediction scores 0 everywhere", () => {
    expect(exactMatch("", ["x"])).toBe(0);
    expect(f1Score("", ["x"])).toBe(0);
    expect(substringMatch("", ["x"])).toBe(0);
    expect(exactMatch("", [""])).toBe(1); // FlashRAG: empty equals empty
  });
});

describe("boxed extraction", () => {
  test("brace matched, last one wins", () => {
    expect(extractBoxed("\\boxed{a} then \\boxed{\\frac{1}{2}}")).toBe("\\frac{1}{2}");
    expect(extractBoxed("\\[ \\boxed{James Madison} \\]")).toBe("James Madison");
  });
  test("\\boxed with a space, up to $", () => {
    expect(extractBoxed("so $\\boxed 42$ done")).toBe("42");
  });
  test("\\fbox fallback; unbalanced → none", () => {
    expect(extractBoxed("\\fbox{x}")).toBe("x");
    expect(extractBoxed("\\boxed{x")).toBeUndefined();
    expect(lastBoxedOnlyString("nothing")).toBeUndefined();
  });
});

const P = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>";
const TOOL = '<tool_call>\n{"name": "wikipedia_search", "arguments": {"query": "x"}}\n</tool_call>';
const ENV = '\n<|im_start|>user\n<tool_response>{}\nresult: \nR\n</tool_response>\n<|im_end|>\n<|im_start|>assistant\n<think>';

describe("ReCall reward gating order", () => {
  const good = P + ` a </think>\n${TOOL}<|im_end|>` + ENV + " b </think> \\boxed{James Madison}<|im_end|>";
  test("well-formed and right → F1", () => {
    expect(reCallReward({ text: good, groundTruth: ["james madison"] })).toMatchObject({ score: 1, answer: "James Madison" });
    expect(reCallReward({ text: good, groundTruth: "Madison" }).score).toBeCloseTo(2 / 3, 12);
  });
  test("well-formed but wrong → 0.1", () => {
    expect(reCallReward({ text: good, groundTruth: "Jefferson" })).toMatchObject({ score: 0.1 });
  });
  test("1. no EOS at the end → 0 before anything else (even with a right answer)", () => {
    expect(reCallReward({ text: good.slice(0, -"<|im_end|>".length), groundTruth: "james madison" })).toEqual({ score: 0, reason: "over length" });
    expect(reCallReward({ text: good + "<|im_start|>", groundTruth: "james madison" }).score).toBe(0);
  });
  test("2. format failures → 0", () => {
    const cases = [
      P.replace("<think>", "") + " a \\boxed{James Madison}<|im_end|>", // no <think> in the only span
      P + " a </think></think> \\boxed{James Madison}<|im_end|>", // unbalanced think
      P + ` a </think>\n<tool_call>{"name": "x"}</tool_call> \\boxed{James Madison}<|im_end|>`, // no "arguments"
      P + ` a </think>\n<tool_call>{"name": "x", "arguments": {</tool_call> \\boxed{James Madison}<|im_end|>`, // bad JSON
      P + ` a </think>\n<tool_call>{"name": "x", "arguments": {}} \\boxed{James Madison}<|im_end|>`, // unbalanced tool_call
      P + ` a </think>\n${TOOL}<|im_end|>` + ENV + " b </think> James Madison<|im_end|>", // last span without \box
      "<|im_start|>user\nQ<|im_end|>", // no assistant span
    ];
    for (const text of cases) expect(reCallReward({ text, groundTruth: "james madison" }).score).toBe(0);
  });
  test("3. \\box present but no extractable \\boxed{} → 0", () => {
    expect(reCallReward({ text: P + " a </think> \\boxed{James<|im_end|>", groundTruth: "james" })).toEqual({ score: 0, reason: "cannot extract answer" });
  });
  test("answer comes from the last span only", () => {
    const t = P + ` a </think> \\boxed{James Madison}\n${TOOL}<|im_end|>` + ENV + " b </think> \\boxed{Jefferson}<|im_end|>";
    expect(reCallReward({ text: t, groundTruth: "james madison" }).score).toBe(0.1);
  });
});

describe("ReSearch reward", () => {
  const prompt = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n";
  const ok = prompt + "<think>a</think> <search> q </search> <result>\nR\n</result> <think>b</think> <answer> \\boxed{1812} </answer><|im_end|>";
  test("right / wrong / format / length", () => {
    expect(reSearchReward({ text: ok, groundTruth: "1812" }).score).toBe(1);
    expect(reSearchReward({ text: ok, groundTruth: "1999" }).score).toBe(0.1);
    expect(reSearchReward({ text: ok.replace(" <result>\nR\n</result>", ""), groundTruth: "1812" }).score).toBe(0);
    expect(reSearchReward({ text: ok.replace("<answer> \\boxed{1812} </answer>", "<answer> 1812 </answer>"), groundTruth: "1812" }).score).toBe(0);
    expect(reSearchReward({ text: ok.slice(0, -10), groundTruth: "1812" })).toMatchObject({ score: 0, reason: "over length" });
  });
  test("base-model prompt (Assistant:) ends with <|endoftext|>", () => {
    const base = "User: Q. Assistant: <think>a</think> <answer> \\boxed{x} </answer><|endoftext|>";
    expect(reSearchReward({ text: base, groundTruth: "x" }).score).toBe(1);
  });
});

describe("reward kinds", () => {
  const dir = mkdtempSync(join(tmpdir(), "recall-reward-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  test("auto picks by data_source", async () => {
    expect(kindForDataSource("musique_re_call")).toBe("re_call");
    expect(kindForDataSource("hotpotqa_research")).toBe("research");
    expect(kindForDataSource("nq")).toBe("f1");
    const auto = await createReward("auto");
    const text = P + " a </think> \\boxed{x}<|im_end|>";
    expect((await auto({ text, groundTruth: "x", dataSource: "syntool_re_call" })).score).toBe(1);
    expect((await auto({ text: text.slice(0, -10), groundTruth: "x", dataSource: "syntool_re_call" })).score).toBe(0);
    expect((await auto({ text: text.slice(0, -10), groundTruth: "x", dataSource: "nq" })).score).toBe(1); // no format gate
  });
  test("boxed_em and f1", async () => {
    const em = await createReward("boxed_em");
    expect((await em({ text: "\\boxed{The Paris}", groundTruth: "paris" })).score).toBe(1);
    expect((await em({ text: "Paris", groundTruth: "paris" })).score).toBe(0);
    const f1 = await createReward("f1");
    expect((await f1({ text: P + " x </think> Paris France<|im_end|>", groundTruth: "paris" })).score).toBeCloseTo(2 / 3, 12);
  });
  test("user scorer module (TS), number or {score, reason}", async () => {
    const mod = join(dir, "scorer.ts");
    writeFileSync(mod, "export default (i: { text: string; groundTruth: unknown }) => ({ score: i.text.length, reason: 'len' });\n");
    const fn = await createReward(`module:${mod}`);
    expect(await fn({ text: "abcd", groundTruth: "" })).toEqual({ score: 4, reason: "len" });
    const mod2 = join(dir, "s2.mjs");
    writeFileSync(mod2, "export function computeScore() { return 0.5 }\n");
    expect((await (await createReward(mod2))({ text: "", groundTruth: "" })).score).toBe(0.5);
  });
  test("bad kinds are RecallErrors naming the problem", async () => {
    await expect(createReward("nope")).rejects.toThrow(/unknown reward kind 'nope'/);
    await expect(createReward("module:/nonexistent/x.ts")).rejects.toBeInstanceOf(RecallError);
    const bad = join(dir, "bad.ts");
    writeFileSync(bad, "export const x = 1;\n");
    await expect(createReward(bad)).rejects.toThrow(/exports no function/);
  });
});
