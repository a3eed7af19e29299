/** The CLI contract: help, version, one-line errors with non-zero exits, snake_case and kebab-case flags. */
import { describe, expect, test } from "bun:test";
import { defineRecallCommand, listFlag, normalizeFlags, numberFlag, repeatedValues, runCli } from "../src/cli/command.ts";
import { RecallError } from "../src/errors.ts";
import { runRecall } from "./harness.ts";

describe("recall CLI", () => {
  test("--version prints the package version", () => {
    const r = runRecall(["--version"]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });
  test("--help lists commands and examples", () => {
    const r = runRecall(["--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("doctor");
    expect(r.stdout).toContain("Examples:");
  });
  test("subcommand --help shows its flags", () => {
    const r = runRecall(["doctor", "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("--json");
  });
  test("unknown command: one line, suggestion, exit 1, no stack", () => {
    const r = runRecall(["doctr"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("unknown command 'doctr'");
    expect(r.stderr).toContain("did you mean 'doctor'");
    expect(r.stderr).not.toContain("    at ");
  });
  test("unknown flag: named, exit 1", () => {
    const r = runRecall(["doctor", "--jsn"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("unknown flag '--jsn'");
    expect(r.stderr).not.toContain("    at ");
  });
  test("a flag that takes a value, given none, is refused rather than defaulted (issue 17.13)", () => {
    for (const argv of [
      ["generate", "--model", "m", "--prompt", "hi", "--max_new_tokens"],
      ["generate", "--model", "m", "--max_new_tokens", "--prompt", "hi"],
    ]) {
      const r = runRecall(argv);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("flag --max_new_tokens needs a value");
      expect(r.stderr).not.toContain("    at ");
    }
    // a negative number is a value, not a flag
    expect(runRecall(["generate", "--model", "/nonexistent", "--prompt", "hi", "--seed", "-1"]).stderr).not.toContain("needs a value");
  });
});

describe("flag normalisation", () => {
  const args = {
    max_new_tokens: { type: "string" as const },
    chat: { type: "boolean" as const },
    model: { type: "string" as const, alias: "m" },
  };
  test("kebab-case and snake_case map to the declared name", () => {
    expect(normalizeFlags(["--max-new-tokens", "5"], args, "x")).toEqual(["--max_new_tokens", "5"]);
    expect(normalizeFlags(["--max_new_tokens=5"], args, "x")).toEqual(["--max_new_tokens=5"]);
    expect(normalizeFlags(["-m", "dir"], args, "x")).toEqual(["--model", "dir"]);
    expect(normalizeFlags(["--no-chat"], args, "x")).toEqual(["--no-chat"]);
  });
  test("values after -- and negative numbers are not flags", () => {
    expect(normalizeFlags(["--max_new_tokens", "-1"], args, "x")).toEqual(["--max_new_tokens", "-1"]);
    expect(normalizeFlags(["--", "--whatever"], args, "x")).toEqual(["--", "--whatever"]);
  });
  test("unknown flags throw RecallError naming the flag", () => {
    expect(() => normalizeFlags(["--max-new-token", "5"], args, "recall gen")).toThrow(/unknown flag '--max-new-token' for 'recall gen' \(did you mean --max_new_tokens\?\)/);
  });
  test("number flags are checked", () => {
    expect(numberFlag({ n: "12" }, "n", { integer: true })).toBe(12);
    expect(numberFlag({}, "n", { default: 3 })).toBe(3);
    expect(() => numberFlag({ n: "abc" }, "n")).toThrow(RecallError);
    expect(() => numberFlag({ n: "1.5" }, "n", { integer: true })).toThrow(/--n expects an integer, got '1.5'/);
    expect(() => numberFlag({ n: "0" }, "n", { min: 1 })).toThrow(/must be >= 1/);
  });
});

describe("repeated flags", () => {
  test("every value of a repeated string flag reaches the command, in order", () => {
    expect(repeatedValues(["--a", "1", "--b", "x", "--a=2", "--a", "3"], "a")).toEqual(["1", "2", "3"]);
    expect(repeatedValues(["--a", "1", "--", "--a", "2"], "a")).toEqual(["1"]);
  });
  test("listFlag sees all of them through defineRecallCommand", async () => {
    let seen: string[] = [];
    const cmd = defineRecallCommand({
      meta: { name: "t" },
      args: { stop: { type: "string" } },
      run({ args }) {
        seen = listFlag(args, "stop");
      },
    });
    const code = await runCli(cmd, ["--stop", "a", "--stop", "b,c"], "0");
    expect(code).toBe(0);
    expect(seen).toEqual(["a", "b", "c"]);
  });
});
