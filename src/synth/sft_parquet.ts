/**
 * SFT conversations as parquet, the way `datasets` / pyarrow store them: `id`, `data_source`,
 * `messages: list<struct<role: string, content: string>>`, and `tools` as the schema list's JSON text (absent when
 * the rows carry a system turn instead). Written to a temp name and renamed.
 */
import { parquetWriteBuffer } from "hyparquet-writer";
import { RecallError } from "../errors.ts";
import type { ChatMessage } from "../rollout/chatml.ts";
import { writeFileAtomic } from "../util/fs.ts";

export interface SftRow {
  id: string;
  data_source: string;
  messages: ChatMessage[];
  /** The tools' schema list (a JSON value), or undefined on every row. */
  tools?: unknown;
}

const str = (name: string) => ({ name, type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" }) as const;

export function writeSftParquet(path: string, rows: readonly SftRow[]): void {
  if (rows.length === 0) throw new RecallError(`refusing to write ${path} with no rows`);
  const withTools = rows[0]!.tools !== undefined;
  if (rows.some((r) => (r.tools !== undefined) !== withTools)) throw new RecallError(`${path}: either every row has tools or none`);
  const bytes = parquetWriteBuffer({
    columnData: [
      { name: "id", data: rows.map((r) => r.id) },
      { name: "data_source", data: rows.map((r) => r.data_source) },
      { name: "messages", data: rows.map((r) => r.messages.map((m) => ({ role: m.role, content: m.content }))) },
      ...(withTools ? [{ name: "tools", data: rows.map((r) => JSON.stringify(r.tools)) }] : []),
    ],
    schema: [
      { name: "schema", num_children: withTools ? 4 : 3 },
      str("id"),
      str("data_source"),
      { name: "messages", repetition_type: "OPTIONAL", converted_type: "LIST", num_children: 1 },
      { name: "list", repetition_type: "REPEATED", num_children: 1 },
      { name: "element", repetition_type: "OPTIONAL", num_children: 2 },
      str("role"),
      str("content"),
      ...(withTools ? [str("tools")] : []),
    ],
  });
  writeFileAtomic(path, new Uint8Array(bytes));
}
