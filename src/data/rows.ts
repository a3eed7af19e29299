/**
 * Rows of a data file as plain objects — the one reader behind training prompts (src/data/rl_dataset.ts), SFT
 * conversations (src/sft/dataset.ts) and evaluation items (src/eval/dataset.ts): JSONL (one JSON object per line,
 * blank lines skipped), JSON (an array of objects, or `{"data": [...]}`), or parquet (nested structs and lists as
 * pyarrow writes them). Text must be UTF-8 (a bad byte is refused with its line). Each row keeps where it came from —
 * `file:N` (JSONL line), `file item N` (JSON), `file row N` (parquet), 1-based — so a bad row is refused by name.
 * Parquet int64 values become numbers when exact, else strings (JSON cannot hold BigInt).
 */
import { parquetReadObjects } from "hyparquet";
import { RecallError, errorMessage } from "../errors.ts";
import { readBytes, readText } from "../util/fs.ts";

export interface DataRow {
  value: Record<string, unknown>;
  /** `file:3` (JSONL), `file item 3` (JSON), `file row 3` (parquet). */
  where: string;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Parquet int64 columns come back as bigint; JSON cannot hold them, so exact ones become numbers, others strings. */
export function jsonSafe(v: unknown): unknown {
  if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (Array.isArray(v)) return v.map(jsonSafe);
  if (isRecord(v) && Object.getPrototypeOf(v) === Object.prototype) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, jsonSafe(x)]));
  return v;
}

function objectRow(v: unknown, where: string): DataRow {
  if (!isRecord(v)) throw new RecallError(`${where}: expected a JSON object row, got ${JSON.stringify(v)?.slice(0, 80)}`);
  return { value: v, where };
}

export async function readDataRows(file: string): Promise<DataRow[]> {
  if (file.endsWith(".parquet")) {
    const buf = readBytes(file);
    let rows: unknown[];
    try {
      rows = await parquetReadObjects({ file: buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer });
    } catch (e) {
      throw new RecallError(`${file}: not a readable parquet file (${errorMessage(e)})`);
    }
    return rows.map((r, i) => objectRow(jsonSafe(r), `${file} row ${i + 1}`));
  }
  const text = readText(file);
  if (file.endsWith(".json")) {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (e) {
      throw new RecallError(`${file}: not valid JSON (${errorMessage(e)})`);
    }
    const rows = Array.isArray(v) ? v : isRecord(v) && Array.isArray(v.data) ? v.data : undefined;
    if (!rows) throw new RecallError(`${file}: expected a JSON list of rows (or {"data": [...]})`);
    return rows.map((r, i) => objectRow(r, `${file} item ${i + 1}`));
  }
  const out: DataRow[] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    const where = `${file}:${i + 1}`;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw new RecallError(`${where}: not valid JSON (${errorMessage(e)})`);
    }
    out.push(objectRow(v, where));
  });
  return out;
}
