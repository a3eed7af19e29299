/**
 * One corpus row, FlashRAG style: `{"id", "contents", ...}` (the wiki corpus puts a quoted title, a
 * newline, then the text in `contents`), or `{"id", "title", "text", ...}`, whose `contents` becomes
 * `"<title>"\n<text>` the same way. Other fields are kept and returned with the document.
 */
import { RecallError } from "../errors.ts";
import type { Doc } from "./types.ts";

/** Normalises a parsed row into a Doc; `where` names the file and row for the error message. */
export function corpusRowToDoc(value: unknown, where: string): Doc {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new RecallError(`${where}: expected a JSON object with "id" and "contents" (or "title"/"text")`);
  }
  const row = value as Record<string, unknown>;
  const id = row.id;
  if (typeof id !== "string" && typeof id !== "number") {
    throw new RecallError(`${where}: missing "id" (a string or number)`);
  }
  let contents: string;
  if (typeof row.contents === "string") contents = row.contents;
  else if (typeof row.text === "string") {
    contents = typeof row.title === "string" && row.title !== "" ? `"${row.title}"\n${row.text}` : row.text;
  } else {
    throw new RecallError(`${where}: missing "contents" (or "text") string`);
  }
  return { ...row, id: String(id), contents };
}

/** Parses one JSONL line into a Doc. */
export function parseCorpusLine(line: string, where: string): Doc {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    throw new RecallError(`${where}: not valid JSON (${(e as Error).message})`);
  }
  return corpusRowToDoc(value, where);
}
