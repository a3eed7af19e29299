/**
 * Writing verl parquet in ReCall's schema (SPEC §5) with real nested structs, as pyarrow writes them, so verl's
 * own dataset (and pandas) read our files and our reader reads theirs:
 *
 *   data_source: string, question: string, ability: string,
 *   reward_model: struct<ground_truth: string | list<string>, style: string>,
 *   extra_info: struct<index: int64, split: string, env: string, func_schemas: string, ...extra string fields>
 *
 * Written to a temp name and renamed.
 */
import { parquetWriteBuffer } from "hyparquet-writer";
import { RecallError } from "../errors.ts";
import { writeFileAtomic } from "../util/fs.ts";

export interface VerlRow {
  data_source: string;
  question: string;
  ability: string;
  /** One answer, or a list of accepted answers (MuSiQue's `golden_answers`); every row of a file the same kind. */
  ground_truth: string | readonly string[];
  index: number;
  split: string;
  env: string;
  func_schemas: string;
  /** More `extra_info` string fields (same keys on every row), e.g. a JSON-encoded golden trace. */
  extra?: Record<string, string>;
}

const str = (name: string) => ({ name, type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" }) as const;

export function verlParquetBytes(rows: readonly VerlRow[]): ArrayBuffer {
  if (rows.length === 0) throw new RecallError("refusing to write a parquet file with no rows");
  const extraKeys = Object.keys(rows[0]!.extra ?? {});
  rows.forEach((r, i) => {
    const keys = Object.keys(r.extra ?? {});
    if (keys.join("\u0000") !== extraKeys.join("\u0000")) throw new RecallError(`row ${i + 1}: extra_info fields ${keys.join(",")} differ from row 1's ${extraKeys.join(",")}`);
  });
  const listTruth = Array.isArray(rows[0]!.ground_truth);
  rows.forEach((r, i) => {
    if (Array.isArray(r.ground_truth) !== listTruth) throw new RecallError(`row ${i + 1}: ground_truth is ${listTruth ? "a string" : "a list"}, row 1's is ${listTruth ? "a list" : "a string"}`);
  });
  const extraInfo = rows.map((r) => ({ index: BigInt(r.index), split: r.split, env: r.env, func_schemas: r.func_schemas, ...(r.extra ?? {}) }));
  return parquetWriteBuffer({
    columnData: [
      { name: "data_source", data: rows.map((r) => r.data_source) },
      { name: "question", data: rows.map((r) => r.question) },
      { name: "ability", data: rows.map((r) => r.ability) },
      { name: "reward_model", data: rows.map((r) => ({ ground_truth: r.ground_truth, style: "rule" })) },
      { name: "extra_info", data: extraInfo },
    ],
    schema: [
      { name: "schema", num_children: 5 },
      str("data_source"),
      str("question"),
      str("ability"),
      { name: "reward_model", repetition_type: "OPTIONAL", num_children: 2 },
      // pyarrow's list<string>: an optional LIST group around a repeated `list` group of optional `element`s.
      ...(listTruth
        ? [{ name: "ground_truth", repetition_type: "OPTIONAL", converted_type: "LIST", num_children: 1 } as const, { name: "list", repetition_type: "REPEATED", num_children: 1 } as const, str("element")]
        : [str("ground_truth")]),
      str("style"),
      { name: "extra_info", repetition_type: "OPTIONAL", num_children: 4 + extraKeys.length },
      { name: "index", type: "INT64", repetition_type: "OPTIONAL" },
      str("split"),
      str("env"),
      str("func_schemas"),
      ...extraKeys.map(str),
    ],
  });
}

export function writeVerlParquet(path: string, rows: readonly VerlRow[]): void {
  const bytes = verlParquetBytes(rows);
  writeFileAtomic(path, new Uint8Array(bytes));
}
