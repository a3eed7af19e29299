/**
 * The demo's second SFT phase needs conversations where the model answers without the tool: the golden traces of
 * `recall synth` (sft.jsonl) with a seeded share rewritten to one assistant turn that writes the ground truth in
 * `\boxed{}` straight away, in the same compact format as the trace's own final turn. A tiny model cannot multiply,
 * so after this phase its direct answers are mostly wrong: the starting point from which RL teaches it to call the tool.
 */
import { RecallError } from "../errors.ts";
import { readDataRows } from "../data/rows.ts";
import { writeFileAtomic } from "../util/fs.ts";
import { mulberry32 } from "../util/prng.ts";

interface Message {
  role: string;
  content: string;
}

interface SftRow {
  id?: unknown;
  messages: Message[];
  [key: string]: unknown;
}

/** The row answered directly: its system and first user turn, then the trace's last assistant turn alone. */
export function directAnswerRow(row: SftRow, at: string): SftRow {
  const firstUser = row.messages.findIndex((m) => m.role === "user");
  const lastAssistant = row.messages.findLastIndex((m) => m.role === "assistant");
  if (firstUser < 0 || lastAssistant < firstUser) throw new RecallError(`${at}: a golden trace needs a user turn and a final assistant turn`);
  const final = row.messages[lastAssistant]!;
  if (!final.content.includes("\\boxed{") || final.content.includes("<tool_call>")) throw new RecallError(`${at}: the last assistant turn is not a final \\boxed{} answer`);
  return { ...row, messages: [...row.messages.slice(0, firstUser + 1), final] };
}

/**
 * Reads golden SFT rows from `input` and writes them to `output` with `directShare` of them (seeded choice, exact
 * count rounded) answered directly. Returns the counts.
 */
export async function writeDirectMix(input: string, output: string, directShare: number, seed: number): Promise<{ rows: number; direct: number }> {
  if (!(directShare >= 0 && directShare <= 1)) throw new RecallError(`direct share must be in [0, 1], got ${directShare}`);
  const read = await readDataRows(input);
  const rows = read.map(({ value, where }) => {
    if (!Array.isArray(value.messages)) throw new RecallError(`${where}: not an SFT conversation (no messages)`);
    return value as SftRow;
  });
  // A seeded permutation; its first round(share × n) rows are answered directly. (Its own stream, not the data
  // sampler's epochOrder: the embedded warm start was made with this one.)
  const order = rows.map((_, i) => i);
  const rand = mulberry32(seed);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const direct = new Set(order.slice(0, Math.round(directShare * rows.length)));
  const out = rows.map((r, i) => (direct.has(i) ? directAnswerRow(r, read[i]!.where) : r));
  writeFileAtomic(output, out.map((r) => JSON.stringify(r) + "\n").join(""));
  return { rows: rows.length, direct: direct.size };
}
