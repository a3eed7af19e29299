/**
 * Rows of a data file as plain objects: JSONL (one JSON object per line, blank lines skipped), a JSON array of
 * objects, or parquet (nested structs and lists as pyarrow writes them). Each row keeps where it came from
 * (`file line N` / `file row N`, 1-based) so a bad row is refused by name.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { parquetReadObjects } from "hyparquet";
import { RecallError, errorMessage } from "../errors.ts";

export interface DataRow {
  value: Record<string, unknown>;
  /** `file line 3` (JSONL) or `file row 3` (parquet, JSON array). */
  where: string;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Parquet int64 columns come back as bigint; JSON cannot hold them, so small ones become numbers. */
function plain(v: unknown): unknown {
  if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (Array.isArray(v)) return v.map(plain);
  if (isRecord(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

export async function readDataRows(file: string): Promise<DataRow[]> {
  if (!existsSync(file)) throw new RecallError(`data file '${file}' not found`);
  if (statSync(file).isDirectory()) throw new RecallError(`data file '${file}' is a directory, not a .jsonl or .parquet file`);
  if (file.endsWith(".parquet")) {
    let rows: unknown[];
    try {
      const buf = readFileSync(file);
      rows = await parquetReadObjects({ file: buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer });
    } catch (e) {
      throw new RecallError(`${file}: not a readable parquet file (${errorMessage(e)})`);
    }
    return rows.map((r, i) => ({ value: plain(r) as Record<string, unknown>, where: `${file} row ${i + 1}` }));
  }
  const text = readFileSync(file, "utf8");
  if (file.endsWith(".json")) {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (e) {
      throw new RecallError(`${file}: not valid JSON (${errorMessage(e)})`);
    }
    if (!Array.isArray(v)) throw new RecallError(`${file}: a .json data file must hold an array of objects`);
    return v.map((r, i) => {
      if (!isRecord(r)) throw new RecallError(`${file} row ${i + 1}: not a JSON object`);
      return { value: r, where: `${file} row ${i + 1}` };
    });
  }
  const out: DataRow[] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    const where = `${file} line ${i + 1}`;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw new RecallError(`${where}: not valid JSON (${errorMessage(e)})`);
    }
    if (!isRecord(v)) throw new RecallError(`${where}: not a JSON object`);
    out.push({ value: v, where });
  });
  return out;
}
