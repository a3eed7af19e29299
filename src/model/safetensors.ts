/**
 * Hugging Face safetensors, read and written by hand.
 *
 * Format: 8 bytes little-endian u64 N, then N bytes of JSON `{name: {dtype, shape, data_offsets: [begin, end]},
 * "__metadata__": {string: string}}`, then the data; offsets are relative to the first data byte. A sharded
 * model has `model.safetensors.index.json` `{"metadata": {"total_size": bytes}, "weight_map": {name: file}}`.
 *
 * Reading is tensor by tensor (or a range of elements of one tensor) with positioned file reads: nothing
 * holds a whole file in memory, and offsets beyond 2 GiB work. F32, F16, BF16 (and F64) convert to f32.
 * Writing takes each tensor's data from a callback when it is its turn, so a caller can read weights back
 * from the GPU one at a time; files go to a temp name and are renamed when complete.
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, readdirSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileError, openForReading } from "../util/fs.ts";
import { RecallError, errorMessage } from "../errors.ts";
import { parameterSpecs, type ModelConfig } from "./config.ts";
import { f32ToBf16 } from "../ops/cast.ref.ts";

/** Every dtype the safetensors format defines, with its size in bytes. */
export const SAFETENSORS_DTYPE_BYTES = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8,
} as const;
export type SafetensorsDType = keyof typeof SAFETENSORS_DTYPE_BYTES;

/** dtypes that read into f32. */
export const FLOAT_DTYPES: readonly SafetensorsDType[] = ["F32", "F16", "BF16", "F64"];

/** Where one tensor lives. `dataStart` is an absolute byte position in `file`. */
export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  numel: number;
  file: string;
  dataStart: number;
  byteLength: number;
}

/** Safetensors' own cap on the header size (100 MB). */
const MAX_HEADER_BYTES = 100_000_000;

function fail(file: string, what: string, hint?: string): never {
  throw new RecallError(`${file}: ${what}`, hint ? { hint } : {});
}

function readAt(fd: number, file: string, position: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    // Chunks below 1 GiB: some platforms cap a single read at 2 GiB − 1.
    const n = readSync(fd, out, done, Math.min(length - done, 1 << 30), position + done);
    if (n === 0) fail(file, `unexpected end of file at byte ${position + done} (wanted ${length} bytes from ${position})`);
    done += n;
  }
  return out;
}

/** One `.safetensors` file: its validated header. Data is read on demand. */
export class SafetensorsFile {
  private constructor(
    readonly path: string,
    readonly tensors: Map<string, TensorInfo>,
    readonly metadata: Record<string, string>,
    readonly fileSize: number,
  ) {}

  static open(path: string): SafetensorsFile {
    let fd: number;
    fd = openForReading(path);
    try {
      const size = fstatSync(fd).size;
      if (size < 8) fail(path, `file is ${size} bytes, too short for a safetensors header`);
      const lenBytes = readAt(fd, path, 0, 8);
      const n = Number(new DataView(lenBytes.buffer).getBigUint64(0, true));
      if (n > MAX_HEADER_BYTES) fail(path, `header length ${n} is over the 100 MB limit (not a safetensors file?)`);
      if (8 + n > size) fail(path, `header length ${n} runs past the end of the ${size}-byte file`);
      let header: unknown;
      try {
        header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(readAt(fd, path, 8, n)));
      } catch (e) {
        fail(path, `header is not valid JSON: ${errorMessage(e)}`);
      }
      if (typeof header !== "object" || header === null || Array.isArray(header)) fail(path, "header is not a JSON object");
      const dataStart = 8 + n;
      const dataSize = size - dataStart;
      const tensors = new Map<string, TensorInfo>();
      let metadata: Record<string, string> = {};
      const spans: [number, number, string][] = [];
      for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
        if (name === "__metadata__") {
          if (typeof raw !== "object" || raw === null || Array.isArray(raw)) fail(path, "__metadata__ must be an object of strings");
          metadata = raw as Record<string, string>;
          continue;
        }
        const t = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
        if (typeof t !== "object" || t === null) fail(path, `tensor '${name}': entry is not an object`);
        if (typeof t.dtype !== "string" || !(t.dtype in SAFETENSORS_DTYPE_BYTES)) fail(path, `tensor '${name}': unknown dtype ${JSON.stringify(t.dtype)}`);
        const dtype = t.dtype as SafetensorsDType;
        if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isInteger(d) && d >= 0)) {
          fail(path, `tensor '${name}': shape ${JSON.stringify(t.shape)} is not a list of non-negative integers`);
        }
        const shape = t.shape as number[];
        const off = t.data_offsets;
        if (!Array.isArray(off) || off.length !== 2 || !off.every((x) => Number.isSafeInteger(x) && x >= 0) || off[0] > off[1]) {
          fail(path, `tensor '${name}': data_offsets ${JSON.stringify(off)} must be [begin, end] with 0 <= begin <= end`);
        }
        const [begin, end] = off as [number, number];
        if (end > dataSize) fail(path, `tensor '${name}': data_offsets [${begin}, ${end}] out of range (the file has ${dataSize} data bytes)`, "the file is truncated or corrupt");
        const numel = shape.reduce((a, b) => a * b, 1);
        const want = numel * SAFETENSORS_DTYPE_BYTES[dtype];
        if (end - begin !== want) fail(path, `tensor '${name}': ${end - begin} bytes for ${dtype} [${shape.join(", ")}], expected ${want}`);
        tensors.set(name, { name, dtype, shape, numel, file: path, dataStart: dataStart + begin, byteLength: want });
        spans.push([begin, end, name]);
      }
      spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      for (let i = 1; i < spans.length; i++) {
        if (spans[i]![0] < spans[i - 1]![1]) fail(path, `tensors '${spans[i - 1]![2]}' and '${spans[i]![2]}' overlap`);
      }
      return new SafetensorsFile(path, tensors, metadata, size);
    } finally {
      closeSync(fd);
    }
  }
}

/** f16 bits → f32, via a 64K-entry table built on first use. */
let F16_TABLE: Float32Array | null = null;
function f16Table(): Float32Array {
  if (F16_TABLE) return F16_TABLE;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) t[h] = s * m * 2 ** -24;
    else if (e === 31) t[h] = m ? NaN : s * Infinity;
    else t[h] = s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return (F16_TABLE = t);
}

/** Decodes little-endian raw bytes of a float dtype to f32. */
export function decodeToF32(bytes: Uint8Array, dtype: SafetensorsDType, label = "tensor"): Float32Array {
  const n = bytes.byteLength / SAFETENSORS_DTYPE_BYTES[dtype];
  // `bytes` comes from readAt (offset 0 of its own buffer) or is copied so typed views are aligned.
  const buf = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  switch (dtype) {
    case "F32":
      return new Float32Array(buf.buffer, buf.byteOffset, n);
    case "BF16": {
      const src = new Uint16Array(buf.buffer, buf.byteOffset, n);
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = src[i]! << 16;
      return out;
    }
    case "F16": {
      const src = new Uint16Array(buf.buffer, buf.byteOffset, n);
      const table = f16Table();
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = table[src[i]!]!;
      return out;
    }
    case "F64":
      return Float32Array.from(new Float64Array(buf.buffer, buf.byteOffset, n));
    default:
      throw new RecallError(`${label}: dtype ${dtype} cannot be read as floating point (F32, F16, BF16, F64 are)`);
  }
}

/** f32 → bf16 bits as torch rounds them (BF16 files are written with it); it lives with the GPU cast it is the reference of. */
export { f32ToBf16 };

export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";

/**
 * The weights of a model: a single `model.safetensors`, or the shards named by `model.safetensors.index.json`
 * (the single file wins when both exist, as in transformers). Tensors are looked up by their HF name.
 */
export class SafetensorsModel {
  private constructor(
    /** The file the user pointed at (the .safetensors file or the index), for messages. */
    readonly source: string,
    readonly files: SafetensorsFile[],
    private readonly byName: Map<string, TensorInfo>,
  ) {}

  /** Opens a model folder, a `.safetensors` file, or an index `.json` file; validates every header. */
  static open(path: string): SafetensorsModel {
    let target = path;
    if (!path.endsWith(".safetensors") && !path.endsWith(".json")) {
      if (existsSync(join(path, SINGLE_FILE))) target = join(path, SINGLE_FILE);
      else if (existsSync(join(path, INDEX_FILE))) target = join(path, INDEX_FILE);
      else throw new RecallError(`${path}: no ${SINGLE_FILE} or ${INDEX_FILE} found`, { hint: "point --model at a Hugging Face model folder" });
    }
    if (target.endsWith(".safetensors")) {
      const f = SafetensorsFile.open(target);
      return new SafetensorsModel(target, [f], new Map(f.tensors));
    }
    return SafetensorsModel.openIndex(target);
  }

  private static openIndex(indexPath: string): SafetensorsModel {
    let index: unknown;
    try {
      index = JSON.parse(readFileSync(indexPath, "utf8"));
    } catch (e) {
      throw new RecallError(`cannot read safetensors index ${indexPath}: ${errorMessage(e)}`);
    }
    const map = (index as { weight_map?: unknown })?.weight_map;
    if (typeof map !== "object" || map === null || Array.isArray(map)) fail(indexPath, "missing 'weight_map' object");
    const dir = dirname(indexPath);
    const files = new Map<string, SafetensorsFile>();
    const byName = new Map<string, TensorInfo>();
    for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
      if (typeof shard !== "string" || shard.includes("/") || shard.includes("\\")) fail(indexPath, `weight_map['${name}'] must be a file name in the same folder, got ${JSON.stringify(shard)}`);
      let f = files.get(shard);
      if (!f) {
        if (!existsSync(join(dir, shard))) fail(indexPath, `shard '${shard}' (holding '${name}') does not exist`);
        f = SafetensorsFile.open(join(dir, shard));
        files.set(shard, f);
      }
      const info = f.tensors.get(name);
      if (!info) fail(indexPath, `weight_map says '${name}' is in ${shard}, but that file has no such tensor`);
      byName.set(name, info);
    }
    return new SafetensorsModel(indexPath, [...files.values()], byName);
  }

  get names(): string[] {
    return [...this.byName.keys()];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.byName.get(name);
    if (!t) throw new RecallError(`${this.source}: no tensor named '${name}'`);
    return t;
  }

  /** Reads a tensor's raw bytes (or elements [start, start+count) of it). */
  readBytes(name: string, range: { start?: number; count?: number } = {}): Uint8Array {
    const t = this.info(name);
    const start = range.start ?? 0;
    const count = range.count ?? t.numel - start;
    if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > t.numel) {
      throw new RecallError(`${t.file}: tensor '${name}': element range [${start}, ${start + count}) is outside its ${t.numel} elements`);
    }
    const size = SAFETENSORS_DTYPE_BYTES[t.dtype];
    const fd = openSync(t.file, "r");
    try {
      return readAt(fd, t.file, t.dataStart + start * size, count * size);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * A tensor (or elements [start, start+count) of it, in row-major order) converted to f32. Reading in
   * ranges lets a caller upload a tensor larger than it wants in memory at once (e.g. the embedding of
   * a 151,936-token vocabulary) in pieces.
   */
  readF32(name: string, range: { start?: number; count?: number } = {}): Float32Array {
    const t = this.info(name);
    if (!FLOAT_DTYPES.includes(t.dtype)) {
      throw new RecallError(`${t.file}: tensor '${name}' has dtype ${t.dtype}; only F32, F16, BF16 and F64 weights are supported`);
    }
    return decodeToF32(this.readBytes(name, range), t.dtype, `${t.file}: tensor '${name}'`);
  }
}

/** One tensor to write: its HF name, shape, and its f32 data (or a function producing it when its turn comes). */
export interface TensorSource {
  name: string;
  shape: readonly number[];
  data: Float32Array | (() => Float32Array | Promise<Float32Array>);
}

export type WriteDType = "F32" | "BF16";

export interface WriteOptions {
  dtype?: WriteDType;
  /** Extra `__metadata__` entries; `format: "pt"` is always written (transformers requires it). */
  metadata?: Record<string, string>;
}

function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The header bytes (length prefix included) for the given tensors, padded with spaces to a multiple of 8. */
function encodeHeader(tensors: readonly TensorSource[], dtype: WriteDType, metadata: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: { format: "pt", ...metadata } };
  let offset = 0;
  const elemBytes = SAFETENSORS_DTYPE_BYTES[dtype];
  for (const t of tensors) {
    const bytes = numelOf(t.shape) * elemBytes;
    header[t.name] = { dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + padded).fill(0x20);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return out;
}

function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.byteLength) {
    done += writeSync(fd, bytes, done, Math.min(bytes.byteLength - done, 1 << 30), position + done);
  }
}

/** Writes tensors to a `.tmp` file beside `path`; returns the temp path (the caller renames). */
async function writeFileTemp(path: string, tensors: readonly TensorSource[], opts: WriteOptions): Promise<string> {
  const dtype = opts.dtype ?? "F32";
  const names = new Set<string>();
  for (const t of tensors) {
    if (t.name === "__metadata__" || names.has(t.name)) throw new RecallError(`${path}: tensor name '${t.name}' is reserved or repeated`);
    names.add(t.name);
  }
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, "w");
  try {
    const header = encodeHeader(tensors, dtype, opts.metadata ?? {});
    writeAll(fd, header, 0);
    let pos = header.byteLength;
    for (const t of tensors) {
      const data = typeof t.data === "function" ? await t.data() : t.data;
      const n = numelOf(t.shape);
      if (data.length !== n) throw new RecallError(`${path}: tensor '${t.name}' has ${data.length} values for shape [${t.shape.join(", ")}] (${n})`);
      const raw = dtype === "F32" ? data : f32ToBf16(data);
      const bytes = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
      writeAll(fd, bytes, pos);
      pos += bytes.byteLength;
    }
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw fileError(e, path, "write");
  }
  closeSync(fd);
  return tmp;
}

/** Writes one `.safetensors` file (temp name, then rename). */
export async function writeSafetensors(path: string, tensors: readonly TensorSource[], opts: WriteOptions = {}): Promise<void> {
  const tmp = await writeFileTemp(path, tensors, opts);
  renameSync(tmp, path);
}

export interface WriteModelOptions extends WriteOptions {
  /** Start a new shard when the next tensor would take a shard past this many bytes (transformers' default is 5 GB). */
  maxShardBytes?: number;
}

export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;

/**
 * Writes a model's weights into `dir` as transformers' `save_pretrained` does: `model.safetensors`, or, when the
 * total passes `maxShardBytes`, `model-00001-of-0000N.safetensors` shards plus `model.safetensors.index.json`.
 * Weight files of the other layout left in `dir` are removed so that loaders cannot pick up stale weights.
 * Returns the file names written.
 */
export async function writeSafetensorsModel(dir: string, tensors: readonly TensorSource[], opts: WriteModelOptions = {}): Promise<string[]> {
  const dtype = opts.dtype ?? "F32";
  const maxShard = opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  const elemBytes = SAFETENSORS_DTYPE_BYTES[dtype];
  const shards: TensorSource[][] = [[]];
  let current = 0;
  let total = 0;
  for (const t of tensors) {
    const bytes = numelOf(t.shape) * elemBytes;
    if (current > 0 && current + bytes > maxShard) {
      shards.push([]);
      current = 0;
    }
    shards[shards.length - 1]!.push(t);
    current += bytes;
    total += bytes;
  }
  const stale = (f: string) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f) || f === INDEX_FILE || f === SINGLE_FILE;
  const removeStale = (keep: Set<string>) => {
    for (const f of readdirSync(dir)) if (stale(f) && !keep.has(f)) rmSync(join(dir, f), { force: true });
  };
  if (shards.length === 1) {
    await writeSafetensors(join(dir, SINGLE_FILE), tensors, opts);
    removeStale(new Set([SINGLE_FILE]));
    return [SINGLE_FILE];
  }
  const n = shards.length;
  const names = shards.map((_, i) => `model-${String(i + 1).padStart(5, "0")}-of-${String(n).padStart(5, "0")}.safetensors`);
  const temps: string[] = [];
  try {
    for (let i = 0; i < n; i++) temps.push(await writeFileTemp(join(dir, names[i]!), shards[i]!, opts));
  } catch (e) {
    for (const t of temps) rmSync(t, { force: true });
    throw e;
  }
  const weightMap: Record<string, string> = {};
  shards.forEach((s, i) => s.forEach((t) => (weightMap[t.name] = names[i]!)));
  temps.forEach((t, i) => renameSync(t, join(dir, names[i]!)));
  const indexTmp = join(dir, `${INDEX_FILE}.${process.pid}.tmp`);
  await Bun.write(indexTmp, JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + "\n");
  renameSync(indexTmp, join(dir, INDEX_FILE));
  removeStale(new Set([...names, INDEX_FILE]));
  return [...names, INDEX_FILE];
}

/** A short description of a weights source for messages: "model.safetensors (F32, 24 tensors)". */
export function describeWeights(m: SafetensorsModel): string {
  const dtypes = new Set(m.names.map((n) => m.info(n).dtype));
  return `${basename(m.source)} (${[...dtypes].join("/")}, ${m.names.length} tensors in ${m.files.length} file${m.files.length === 1 ? "" : "s"})`;
}

/**
 * Checks that the weights hold exactly the tensors the config calls for, with the right shapes and float
 * dtypes. Tolerated extras: `lm_head.weight` of a tied model (some exporters write it) and RoPE
 * `rotary_emb.inv_freq` buffers of old Llama checkpoints. Throws one RecallError listing what is wrong.
 */
export function checkWeightsMatchConfig(config: ModelConfig, weights: SafetensorsModel, configFile = "config.json"): void {
  const wrong: string[] = [];
  const missing: string[] = [];
  const unexpected: string[] = [];
  const expected = parameterSpecs(config);
  const wanted = new Set(expected.map((p) => p.name));
  for (const p of expected) {
    if (!weights.has(p.name)) {
      missing.push(`missing '${p.name}' [${p.shape.join(", ")}]`);
      continue;
    }
    const t = weights.info(p.name);
    if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
      wrong.push(`'${p.name}' is [${t.shape.join(", ")}] in ${basename(t.file)}, ${configFile} implies [${p.shape.join(", ")}]`);
    }
    if (!FLOAT_DTYPES.includes(t.dtype)) wrong.push(`'${p.name}' has dtype ${t.dtype} (F32, F16, BF16 or F64 needed)`);
  }
  for (const name of weights.names) {
    if (wanted.has(name)) continue;
    if (name.endsWith("rotary_emb.inv_freq")) continue;
    if (name === "lm_head.weight" && config.tieWordEmbeddings) continue;
    unexpected.push(`unexpected tensor '${name}'`);
  }
  // Shape errors first: they say the most about a config/weights mix-up.
  const problems = [...wrong, ...unexpected, ...missing];
  if (problems.length > 0) {
    const shown = problems.slice(0, 8).join("; ") + (problems.length > 8 ? `; … ${problems.length - 8} more` : "");
    throw new RecallError(`${weights.source} does not match ${configFile}: ${shown}`);
  }
}
