/**
 * `recall synth sft-from-rollouts`: rejection-sampling fine-tuning data from a run's rollout dumps
 * (`RUN/rollout/{train,val}_{step}.jsonl`, rows `{data_source, sequences_str, ground_truth, score, …}`). A row is
 * kept when its score reaches `min_score` and its text is a complete ChatML conversation (it ends with
 * `<|im_end|>` and re-renders to exactly the same text); its turns become `{"messages": [...]}` with the system turn
 * as the rollout had it. With `max_per_prompt`, the best-scored rows of each prompt are kept (ties: first seen), so
 * a prompt the model already solves every time does not crowd out the others.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { RecallError } from "../errors.ts";
import { IM_END, renderChatML, type ChatMessage } from "../rollout/chatml.ts";
import { writeFileAtomic } from "../util/fs.ts";

export interface FromRolloutsOptions {
  inputs: readonly string[];
  output: string;
  minScore: number;
  /** Rows kept per prompt (0: all that pass). */
  maxPerPrompt: number;
  /** Which dump files of a folder: `train_*`, `val_*` or both. */
  split: "train" | "val" | "all";
  log: (line: string) => void;
}

const TURN = /<\|im_start\|>(system|user|assistant)\n([\s\S]*?)<\|im_end\|>/g;

/** The turns of a complete ChatML text, or the reason it is not one. */
export function chatmlMessages(text: string): ChatMessage[] | string {
  if (!text.endsWith(IM_END)) return "does not end with <|im_end|> (cut off)";
  const messages = [...text.matchAll(TURN)].map((m) => ({ role: m[1] as ChatMessage["role"], content: m[2]! }));
  if (messages.length === 0 || messages[messages.length - 1]!.role !== "assistant") return "no final assistant turn";
  if (renderChatML(messages, false) !== text + "\n") return "not plain ChatML turns (text outside the turns)";
  return messages;
}

function dumpFiles(inputs: readonly string[], split: FromRolloutsOptions["split"]): string[] {
  const files: string[] = [];
  for (const p of inputs) {
    if (!existsSync(p)) throw new RecallError(`--input '${p}' not found`);
    if (!statSync(p).isDirectory()) {
      files.push(p);
      continue;
    }
    const dir = existsSync(join(p, "rollout")) && statSync(join(p, "rollout")).isDirectory() ? join(p, "rollout") : p;
    const step = (f: string) => Number(/_(\d+)\.jsonl$/.exec(f)?.[1] ?? 0);
    const found = readdirSync(dir)
      .filter((f) => /^(train|val)_\d+\.jsonl$/.test(f) && (split === "all" || f.startsWith(`${split}_`)))
      .sort((a, b) => a.split("_")[0]!.localeCompare(b.split("_")[0]!) || step(a) - step(b));
    if (found.length === 0) throw new RecallError(`--input '${p}': no ${split === "all" ? "" : split + "_"}{step}.jsonl rollout dumps in ${dir}`);
    files.push(...found.map((f) => join(dir, f)));
  }
  return files;
}

export function sftFromRollouts(o: FromRolloutsOptions): { read: number; kept: number; skipped: Record<string, number> } {
  const byPrompt = new Map<string, { score: number; row: Record<string, unknown> }[]>();
  const skipped: Record<string, number> = {};
  const skip = (why: string) => (skipped[why] = (skipped[why] ?? 0) + 1);
  let read = 0;
  for (const file of dumpFiles(o.inputs, o.split)) {
    readFileSync(file, "utf8").split("\n").forEach((line, i) => {
      if (line.trim() === "") return;
      read++;
      let row: Record<string, unknown>;
      try {
        row = JSON.parse(line);
      } catch {
        throw new RecallError(`${file}:${i + 1}: not valid JSON`);
      }
      if (typeof row.sequences_str !== "string" || typeof row.score !== "number") throw new RecallError(`${file}:${i + 1}: needs 'sequences_str' (text) and 'score' (number)`);
      if (row.score < o.minScore) return skip(`score below ${o.minScore}`);
      const messages = chatmlMessages(row.sequences_str);
      if (typeof messages === "string") return skip(messages);
      // The prompt is everything up to the first assistant turn.
      const prompt = JSON.stringify(messages.slice(0, messages.findIndex((m) => m.role === "assistant")));
      const kept = byPrompt.get(prompt) ?? [];
      kept.push({ score: row.score, row: { data_source: row.data_source, score: row.score, ground_truth: row.ground_truth, messages } });
      byPrompt.set(prompt, kept);
    });
  }
  const out: Record<string, unknown>[] = [];
  for (const rows of byPrompt.values()) {
    const best = [...rows].sort((a, b) => b.score - a.score);
    const keep = o.maxPerPrompt === 0 ? best : best.slice(0, o.maxPerPrompt);
    if (keep.length < best.length) skipped[`over ${o.maxPerPrompt} per prompt`] = (skipped[`over ${o.maxPerPrompt} per prompt`] ?? 0) + best.length - keep.length;
    out.push(...keep.map((k) => k.row));
  }
  writeFileAtomic(o.output, out.map((r) => JSON.stringify(r) + "\n").join(""));
  o.log(`${out.length} of ${read} rollouts kept → ${o.output}` + (Object.keys(skipped).length ? `; skipped: ${Object.entries(skipped).map(([k, v]) => `${v} ${k}`).join(", ")}` : ""));
  return { read, kept: out.length, skipped };
}
