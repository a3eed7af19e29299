/** safetensors reading and writing: round trips, dtypes, sharding, header validation, >2 GiB offsets, PyTorch interop. */
import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RecallError } from "../src/errors.ts";
import { parseModelConfig } from "../src/model/config.ts";
import {
  INDEX_FILE,
  SafetensorsModel,
  checkWeightsMatchConfig,
  decodeToF32,
  f32ToBf16,
  writeSafetensors,
  writeSafetensorsModel,
  type TensorSource,
} from "../src/model/safetensors.ts";
import { PROJECT_ROOT, randn } from "./harness.ts";

const dir = mkdtempSync(join(tmpdir(), "recall-st-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function tensors(): TensorSource[] {
  return [
    { name: "model.embed_tokens.weight", shape: [13, 7], data: randn(91, 1) },
    { name: "model.norm.weight", shape: [7], data: randn(7, 2) },
    { name: "scalar", shape: [], data: Float32Array.of(3.5) },
    { name: "empty", shape: [0, 4], data: new Float32Array(0) },
    { name: "lm_head.weight", shape: [13, 7], data: () => randn(91, 3) },
  ];
}

/** The data of a test tensor (the callbacks here are synchronous). */
function plain(t: TensorSource): Float32Array {
  return typeof t.data === "function" ? (t.data() as Float32Array) : t.data;
}

/** A safetensors file from a header object and a data blob, for malformed-input tests. */
function rawFile(name: string, header: unknown, data: Uint8Array, headerText?: string): string {
  const json = new TextEncoder().encode(headerText ?? JSON.stringify(header));
  const buf = new Uint8Array(8 + json.length + data.length);
  new DataView(buf.buffer).setBigUint64(0, BigInt(json.length), true);
  buf.set(json, 8);
  buf.set(data, 8 + json.length);
  const p = join(dir, name);
  writeFileSync(p, buf);
  return p;
}

const torchAvailable = Bun.spawnSync(["/usr/bin/python3", "-c", "import torch"], { stdout: "ignore", stderr: "ignore" }).exitCode === 0;

function torchHelper(args: string[]): unknown {
  const p = Bun.spawnSync(["/usr/bin/python3", `${PROJECT_ROOT}/test/torch_safetensors.py`, ...args]);
  if (p.exitCode !== 0) throw new Error(`torch helper failed: ${p.stderr.toString()}`);
  return JSON.parse(p.stdout.toString());
}

describe("safetensors round trip", () => {
  test("F32: every tensor reads back bit-exactly, header padded to 8, __metadata__ format pt", async () => {
    const path = join(dir, "rt.safetensors");
    const src = tensors();
    await writeSafetensors(path, src, { metadata: { note: "x" } });
    const bytes = readFileSync(path);
    const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const m = SafetensorsModel.open(path);
    expect(m.files[0]!.metadata).toEqual({ format: "pt", note: "x" });
    expect(m.names).toEqual(src.map((t) => t.name));
    for (const t of src) {
      const want = plain(t);
      expect(m.info(t.name).shape).toEqual([...t.shape]);
      expect(m.readF32(t.name)).toEqual(want);
    }
    expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  test("BF16: round-to-nearest-even, within 2^-8 relative, special values kept", async () => {
    const path = join(dir, "bf16.safetensors");
    const x = Float32Array.of(1, -2.5, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.4e38, -0, Infinity, NaN, 1e-40, ...randn(50, 4));
    await writeSafetensors(path, [{ name: "x", shape: [x.length], data: x }], { dtype: "BF16" });
    const m = SafetensorsModel.open(path);
    expect(m.info("x").dtype).toBe("BF16");
    const y = m.readF32("x");
    expect(y[0]).toBe(1);
    expect(y[1]).toBe(-2.5);
    expect(y[2]).toBe(1); // tie → even
    expect(y[3]).toBe(1 + 4 * 2 ** -8); // tie → even (up)
    expect(Object.is(y[5], -0)).toBe(true);
    expect(y[6]).toBe(Infinity);
    expect(Number.isNaN(y[7])).toBe(true);
    for (let i = 9; i < x.length; i++) expect(Math.abs(y[i]! - x[i]!)).toBeLessThanOrEqual(Math.abs(x[i]!) * 2 ** -8);
  });

  test("F16 and BF16 bit patterns decode to the IEEE values", () => {
    const f16 = new Uint8Array(Uint16Array.of(0x3c00, 0xc000, 0x7bff, 0x0001, 0x0400, 0x7c00, 0xfc00, 0x3555, 0x8000).buffer);
    const v = decodeToF32(f16, "F16");
    expect([...v]).toEqual([1, -2, 65504, 2 ** -24, 2 ** -14, Infinity, -Infinity, 0.333251953125, -0]);
    expect(Number.isNaN(decodeToF32(new Uint8Array(Uint16Array.of(0x7e00).buffer), "F16")[0])).toBe(true);
    const bf = new Uint8Array(Uint16Array.of(0x3f80, 0xc020, 0x7f80).buffer);
    expect([...decodeToF32(bf, "BF16")]).toEqual([1, -2.5, Infinity]);
    expect([...f32ToBf16(Float32Array.of(1, -2.5))]).toEqual([0x3f80, 0xc020]);
  });

  test("element ranges read only that part", async () => {
    const path = join(dir, "range.safetensors");
    const data = randn(1000, 5);
    await writeSafetensors(path, [{ name: "a", shape: [10, 100], data }], { dtype: "BF16" });
    const m = SafetensorsModel.open(path);
    const all = m.readF32("a");
    expect(m.readF32("a", { start: 250, count: 100 })).toEqual(all.slice(250, 350));
    expect(() => m.readF32("a", { start: 950, count: 100 })).toThrow(/element range \[950, 1050\) is outside its 1000 elements/);
  });

  test("sharded: shards + index above the threshold, read back through the index, stale files replaced", async () => {
    const out = join(dir, "sharded");
    mkdirSync(out);
    const src = tensors();
    await writeSafetensorsModel(out, src); // single file first
    expect(readdirSync(out).sort()).toEqual(["model.safetensors"]);
    const files = await writeSafetensorsModel(out, src, { maxShardBytes: 400 });
    expect(files).toEqual([
      "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors",
      INDEX_FILE,
    ]);
    expect(readdirSync(out).sort()).toEqual([...files].sort()); // the stale single file is gone
    const index = JSON.parse(readFileSync(join(out, INDEX_FILE), "utf8"));
    expect(index.metadata.total_size).toBe((91 + 7 + 1 + 0 + 91) * 4);
    expect(index.weight_map["lm_head.weight"]).toBe("model-00002-of-00002.safetensors");
    const m = SafetensorsModel.open(out);
    expect(m.files.length).toBe(2);
    for (const t of src) expect(m.readF32(t.name)).toEqual(plain(t));
  });

  test("writes refuse a data length that does not match the shape, leaving no file", async () => {
    const path = join(dir, "bad-write.safetensors");
    await expect(writeSafetensors(path, [{ name: "a", shape: [3], data: new Float32Array(4) }])).rejects.toThrow(/'a' has 4 values for shape \[3\]/);
    expect(readdirSync(dir).some((f) => f.startsWith("bad-write"))).toBe(false);
  });
});

describe("safetensors validation names the file and tensor", () => {
  const ok = { dtype: "F32", shape: [2], data_offsets: [0, 8] };
  test.each([
    ["malformed JSON", () => rawFile("m1.safetensors", null, new Uint8Array(8), "{not json"), /m1.safetensors: header is not valid JSON/],
    ["offsets out of range", () => rawFile("m2.safetensors", { w: { ...ok, data_offsets: [0, 16] } }, new Uint8Array(8)), /m2.safetensors: tensor 'w': data_offsets \[0, 16\] out of range/],
    ["unknown dtype", () => rawFile("m3.safetensors", { w: { ...ok, dtype: "F12" } }, new Uint8Array(8)), /m3.safetensors: tensor 'w': unknown dtype "F12"/],
    ["size mismatch", () => rawFile("m4.safetensors", { w: { ...ok, shape: [3] } }, new Uint8Array(8)), /m4.safetensors: tensor 'w': 8 bytes for F32 \[3\], expected 12/],
    ["overlap", () => rawFile("m5.safetensors", { a: ok, b: { ...ok, data_offsets: [4, 12] }, c: { dtype: "F32", shape: [0], data_offsets: [12, 12] } }, new Uint8Array(12)), /m5.safetensors: tensors 'a' and 'b' overlap/],
    ["header past the end", () => rawFile("m6.safetensors", null, new Uint8Array(0), "{}"), null],
    ["bad offsets", () => rawFile("m7.safetensors", { w: { ...ok, data_offsets: [8, 0] } }, new Uint8Array(8)), /m7.safetensors: tensor 'w': data_offsets \[8,0\] must be \[begin, end\]/],
  ] as const)("%s", (_name, make, pattern) => {
    const path = make();
    if (pattern === null) {
      // A valid empty header is fine; truncating the header length is not.
      expect(SafetensorsModel.open(path).names).toEqual([]);
      const bytes = readFileSync(path);
      new DataView(bytes.buffer, bytes.byteOffset).setBigUint64(0, 1000n, true);
      writeFileSync(path, bytes);
      expect(() => SafetensorsModel.open(path)).toThrow(/header length 1000 runs past the end of the 10-byte file/);
      return;
    }
    expect(() => SafetensorsModel.open(path)).toThrow(RecallError);
    expect(() => SafetensorsModel.open(path)).toThrow(pattern);
  });

  test("non-float dtypes load as headers but refuse to read as weights", () => {
    const p = rawFile("i64.safetensors", { ids: { dtype: "I64", shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8));
    const m = SafetensorsModel.open(p);
    expect(() => m.readF32("ids")).toThrow(/tensor 'ids' has dtype I64; only F32, F16, BF16 and F64/);
    expect(() => m.readF32("nope")).toThrow(/no tensor named 'nope'/);
  });

  test("index pointing at a missing shard or tensor", async () => {
    const out = join(dir, "bad-index");
    mkdirSync(out);
    await writeSafetensors(join(out, "a.safetensors"), [{ name: "x", shape: [1], data: Float32Array.of(1) }]);
    writeFileSync(join(out, INDEX_FILE), JSON.stringify({ weight_map: { x: "a.safetensors", y: "b.safetensors" } }));
    expect(() => SafetensorsModel.open(out)).toThrow(/shard 'b.safetensors' \(holding 'y'\) does not exist/);
    writeFileSync(join(out, INDEX_FILE), JSON.stringify({ weight_map: { x: "a.safetensors", y: "a.safetensors" } }));
    expect(() => SafetensorsModel.open(out)).toThrow(/weight_map says 'y' is in a.safetensors, but that file has no such tensor/);
    expect(() => SafetensorsModel.open(join(dir, "nowhere"))).toThrow(/no model.safetensors or model.safetensors.index.json/);
  });

  test("weights checked against the config: missing, wrong shape, unexpected", async () => {
    const cfg = parseModelConfig({ architectures: ["LlamaForCausalLM"], hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, vocab_size: 10 });
    const out = join(dir, "mismatch.safetensors");
    await writeSafetensors(out, [
      { name: "model.embed_tokens.weight", shape: [10, 8], data: new Float32Array(80) },
      { name: "model.norm.weight", shape: [4], data: new Float32Array(4) },
      { name: "extra", shape: [1], data: new Float32Array(1) },
    ]);
    const m = SafetensorsModel.open(out);
    let msg = "";
    try {
      checkWeightsMatchConfig(cfg, m);
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toContain("missing 'model.layers.0.self_attn.q_proj.weight' [8, 8]");
    expect(msg).toContain("'model.norm.weight' is [4] in mismatch.safetensors, config.json implies [8]");
    expect(msg).toContain("more"); // more than 8 problems are summarised
  });
});

describe("files over 2 GiB", () => {
  test("a tensor stored past byte 2^31 (sparse file) reads correctly, by range, without reading the rest", () => {
    const path = join(dir, "big.safetensors");
    const padElems = 700_000_000; // 2.8 GB of F32 zeros before the tensor we read (a hole on disk)
    const tail = randn(64, 9);
    const header = {
      __metadata__: { format: "pt" },
      pad: { dtype: "F32", shape: [padElems], data_offsets: [0, padElems * 4] },
      tail: { dtype: "F32", shape: [8, 8], data_offsets: [padElems * 4, padElems * 4 + 256] },
    };
    let json = JSON.stringify(header);
    json += " ".repeat((8 - (json.length % 8)) % 8);
    const fd = openSync(path, "w");
    const head = new Uint8Array(8 + json.length);
    new DataView(head.buffer).setBigUint64(0, BigInt(json.length), true);
    head.set(new TextEncoder().encode(json), 8);
    writeSync(fd, head, 0, head.length, 0);
    const tailBytes = new Uint8Array(tail.buffer);
    writeSync(fd, tailBytes, 0, tailBytes.length, head.length + padElems * 4);
    closeSync(fd);
    expect(statSync(path).size).toBeGreaterThan(2 ** 31 + 256);
    const rss0 = process.memoryUsage().rss;
    const m = SafetensorsModel.open(path);
    expect(m.info("tail").dataStart).toBeGreaterThan(2 ** 31);
    expect(m.readF32("tail")).toEqual(tail);
    expect(m.readF32("tail", { start: 60, count: 4 })).toEqual(tail.slice(60));
    expect(m.readF32("pad", { start: padElems - 3, count: 3 })).toEqual(new Float32Array(3));
    expect(process.memoryUsage().rss - rss0).toBeLessThan(200 * 2 ** 20);
    rmSync(path);
  });
});

describe.skipIf(!torchAvailable)("PyTorch reads what recall writes (torch.frombuffer over a hand-parsed header)", () => {
  test("F32 and BF16 single files, and a sharded folder", async () => {
    const src = tensors();
    const want = new Map(src.map((t) => [t.name, plain(t)]));
    const f32 = join(dir, "torch-f32.safetensors");
    const bf16 = join(dir, "torch-bf16.safetensors");
    await writeSafetensors(f32, src);
    await writeSafetensors(bf16, src, { dtype: "BF16" });
    type Read = { metadata: Record<string, string>; header_len: number; tensors: Record<string, { dtype: string; shape: number[]; values: number[] }> };
    const a = torchHelper(["read", f32]) as Read;
    expect(a.metadata).toEqual({ format: "pt" });
    expect(a.header_len % 8).toBe(0);
    for (const t of src) {
      expect(a.tensors[t.name]!.shape).toEqual([...t.shape]);
      expect(a.tensors[t.name]!.values).toEqual([...want.get(t.name)!]);
    }
    const b = torchHelper(["read", bf16]) as Read;
    for (const t of src) {
      expect(b.tensors[t.name]!.dtype).toBe("BF16");
      // torch's bf16 → f32 of our bytes equals our own reading of them
      expect(b.tensors[t.name]!.values).toEqual([...SafetensorsModel.open(bf16).readF32(t.name)]);
    }
    const out = join(dir, "torch-sharded");
    mkdirSync(out);
    await writeSafetensorsModel(out, src, { maxShardBytes: 400 });
    const c = torchHelper(["read", out]) as Read;
    expect(Object.keys(c.tensors).sort()).toEqual(src.map((t) => t.name).sort());
    expect(c.tensors["lm_head.weight"]!.values).toEqual([...want.get("lm_head.weight")!]);
  });

  test("F16 and BF16 files written by PyTorch load to torch's values; BF16 rounding equals torch's", () => {
    const golden = `${PROJECT_ROOT}/fixtures/golden/qwen2_gqa_tied/model/model.safetensors`;
    const out = mkdtempSync(join(dir, "halves-"));
    const ref = torchHelper(["halves", golden, out]) as Record<string, { f16: number[]; bf16: number[] }>;
    const f32 = SafetensorsModel.open(golden);
    const f16 = SafetensorsModel.open(join(out, "model.f16.safetensors"));
    const bf16 = SafetensorsModel.open(join(out, "model.bf16.safetensors"));
    for (const name of f32.names) {
      expect([...f16.readF32(name)]).toEqual(ref[name]!.f16);
      expect([...bf16.readF32(name)]).toEqual(ref[name]!.bf16);
      const ours = f32ToBf16(f32.readF32(name));
      const theirs = new Uint16Array(bf16.readBytes(name).buffer);
      expect([...ours]).toEqual([...theirs]);
    }
  });
});
