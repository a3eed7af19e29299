/**
 * src/util/fs.ts and the CLI's handling of filesystem failures: one line naming the path (never a stack),
 * and nothing half-written. A full disk is a 64 KiB tmpfs, which only root can mount: those tests are
 * skipped for other users.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RecallError } from "../src/errors.ts";
import { appendWhole, decodeUtf8, fileError, readJson, readText, writeFileAtomic } from "../src/util/fs.ts";
import { runRecall } from "./harness.ts";

const tmp = mkdtempSync(join(tmpdir(), "recall-fs-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The error `f` throws. */
function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error("expected a throw");
}

/** A CLI failure as the user sees it: exit 1, one error line that says all of `mentions`, no stack frame. */
function expectOneLineError(r: { code: number | null; stderr: string }, ...mentions: string[]): void {
  expect(r.stderr).not.toMatch(/^\s+at /m);
  expect(r.stderr.split("\n").filter((l) => mentions.every((m) => l.includes(m)))).toHaveLength(1);
  expect(r.code).toBe(1);
}

describe("fileError", () => {
  test("turns system errors into one line naming the path, with the reason in words", () => {
    const e = fileError(Object.assign(new Error("EACCES: permission denied, open '/x/y'"), { code: "EACCES", syscall: "open", path: "/x/y" }));
    expect(e).toBeInstanceOf(RecallError);
    expect((e as RecallError).message).toBe("cannot open /x/y: permission denied (EACCES)");
    const dir = thrown(() => readFileSync(tmp));
    expect((fileError(dir, tmp) as RecallError).message).toBe(`cannot read ${tmp}: it is a folder, not a file (EISDIR)`);
  });
  test("leaves other errors alone (they are bugs, reported with their stack)", () => {
    const bug = new TypeError("x is undefined");
    expect(fileError(bug)).toBe(bug);
    const odd = Object.assign(new Error("odd"), { code: "ERR_SOMETHING" });
    expect(fileError(odd)).toBe(odd);
  });
});

describe("reading", () => {
  test("invalid UTF-8 is refused with file:line, not turned into U+FFFD", () => {
    const f = join(tmp, "latin1.jsonl");
    writeFileSync(f, Buffer.concat([Buffer.from('{"a": "ok"}\n{"a": "ans'), Buffer.from([0xff]), Buffer.from('2"}\n')]));
    const e = thrown(() => readText(f)) as RecallError;
    expect(e).toBeInstanceOf(RecallError);
    expect(e.message).toStartWith(`${f}:2: invalid UTF-8 (byte 0xff`);
    // overlong and surrogate encodings are invalid too; the line counts from firstLine
    expect(() => decodeUtf8(new Uint8Array([0x61, 0x0a, 0xc0, 0x80]), "x")).toThrow("x:2: invalid UTF-8");
    expect(() => decodeUtf8(new Uint8Array([0xed, 0xa0, 0x80]), "x", 5)).toThrow("x:5: invalid UTF-8");
    expect(decodeUtf8(new TextEncoder().encode("héllo €𝄞"), "x")).toBe("héllo €𝄞");
  });
  test("a JSON file that is not JSON is refused naming the file", () => {
    const f = join(tmp, "bad.json");
    writeFileSync(f, "{nope");
    expect(() => readJson(f)).toThrow(`${f} is not valid JSON`);
  });
});

describe("writing", () => {
  test("writeFileAtomic replaces the file and leaves no temp file behind", () => {
    const f = join(tmp, "out.txt");
    writeFileAtomic(f, "one");
    writeFileAtomic(f, new TextEncoder().encode("two"));
    expect(readFileSync(f, "utf8")).toBe("two");
    expect(readdirSync(tmp).filter((n) => n.startsWith("out.txt"))).toEqual(["out.txt"]);
  });
  test("writing under a path whose folder is a file fails in one line naming the path (ENOTDIR)", () => {
    const file = join(tmp, "plain");
    writeFileSync(file, "x");
    const e = thrown(() => writeFileAtomic(join(file, "a.txt"), "y")) as RecallError;
    expect(e).toBeInstanceOf(RecallError);
    expect(e.message).toBe(`cannot write ${join(file, "a.txt")}: a part of the path is a file, not a folder (ENOTDIR)`);
  });
});

const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot)("a full disk (64 KiB tmpfs)", () => {
  const disk = join(tmp, "disk");
  beforeAll(() => {
    mkdirSync(disk);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", disk]);
  });
  afterAll(() => execFileSync("umount", [disk]));
  const fill = () => {
    // Leaves well under 4 KiB free (tmpfs allocates whole pages).
    for (let i = 0; ; i++) {
      try {
        writeFileSync(join(disk, `filler${i}`), Buffer.alloc(4096));
      } catch {
        return;
      }
    }
  };
  const unfill = () => {
    for (const f of readdirSync(disk)) if (f.startsWith("filler")) rmSync(join(disk, f));
  };

  test("writeFileAtomic keeps the previous file and removes its temp file", () => {
    const f = join(disk, "state.json");
    writeFileAtomic(f, "previous");
    fill();
    const e = thrown(() => writeFileAtomic(f, "x".repeat(200_000))) as RecallError;
    unfill();
    expect(e).toBeInstanceOf(RecallError);
    expect(e.message).toBe(`cannot write ${f}: no space left on the device (ENOSPC)`);
    expect(readFileSync(f, "utf8")).toBe("previous");
    expect(readdirSync(disk)).toEqual(["state.json"]);
    rmSync(f);
  });

  test("appendWhole appends all or nothing: no torn last line", () => {
    const f = join(disk, "items.jsonl");
    appendWhole(f, '{"id": "1"}\n');
    fill();
    const e = thrown(() => appendWhole(f, JSON.stringify({ id: "2", pad: "y".repeat(100_000) }) + "\n")) as RecallError;
    unfill();
    expect(e.message).toBe(`cannot write ${f}: no space left on the device (ENOSPC)`);
    expect(readFileSync(f, "utf8")).toBe('{"id": "1"}\n');
    rmSync(f);
  });

  test("recall init on a full disk leaves no --out folder and says so in one line", () => {
    const out = join(disk, "model");
    // 64 KiB is too small for the tiny preset's weights (0.4 MB): the disk fills part way through.
    const r = runRecall(["init", "--arch", "qwen2", "--preset", "tiny", "--out", out]);
    expectOneLineError(r, "no space left on the device (ENOSPC)", out);
    expect(readdirSync(disk)).toEqual([]);
  });
});

describe("the CLI reports filesystem failures in one line", () => {
  let model = "";
  beforeAll(() => {
    model = join(tmp, "m");
    const r = runRecall(["init", "--arch", "qwen2", "--preset", "tiny", "--out", model]);
    expect(r.code).toBe(0);
  });

  test("init writes the whole folder and no staging folder is left", () => {
    expect(readdirSync(model).sort()).toEqual(["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]);
    expect(readdirSync(tmp).filter((n) => n.includes(".partial"))).toEqual([]);
  });

  test("generation_config.json that is not JSON", () => {
    const m = join(tmp, "m_badgen");
    execFileSync("cp", ["-r", model, m]);
    writeFileSync(join(m, "generation_config.json"), "{nope");
    const r = runRecall(["generate", "--model", m, "--prompt", "hi", "--max_new_tokens", "1"]);
    expectOneLineError(r, join(m, "generation_config.json"), "not valid JSON");
  });

  test("model.safetensors that is a folder (EISDIR)", () => {
    const m = join(tmp, "m_dir");
    execFileSync("cp", ["-r", model, m]);
    rmSync(join(m, "model.safetensors"));
    mkdirSync(join(m, "model.safetensors"));
    const r = runRecall(["score", "--model", m, "--text", "hi there"]);
    expectOneLineError(r, join(m, "model.safetensors"), "(EISDIR)");
  });

  test("a corpus path that is a folder (EISDIR)", () => {
    const r = runRecall(["retriever", "index", "--corpus_path", tmp, "--index_path", join(tmp, "idx")]);
    expectOneLineError(r, tmp, "(EISDIR)");
  });

  test("--out of init under a file (ENOTDIR)", () => {
    const file = join(tmp, "a_file");
    writeFileSync(file, "x");
    expectOneLineError(runRecall(["init", "--arch", "qwen2", "--preset", "tiny", "--out", join(file, "model")]), `cannot create the folder ${file}: a file is there, not a folder`);
    expectOneLineError(runRecall(["init", "--arch", "qwen2", "--preset", "tiny", "--out", join(file, "a", "model")]), join(file, "a"), "(ENOTDIR)");
  });

  test.skipIf(isRoot)("an output folder without write permission (EACCES)", () => {
    const ro = join(tmp, "readonly");
    mkdirSync(ro);
    chmodSync(ro, 0o555);
    const r = runRecall(["init", "--arch", "qwen2", "--preset", "tiny", "--out", join(ro, "model")]);
    expectOneLineError(r, join(ro, "model"), "(EACCES)");
    expect(existsSync(join(ro, "model"))).toBe(false);
  });
});
