/**
 * SFT data: rows of JSONL/JSON/parquet files → plain turns (conversation.ts) → token ids and loss mask (render.ts),
 * cut to `max_length` as `truncation` says, with a count of everything cut or dropped so nothing is lost silently.
 * The held-out set is its own files, or a seeded share of the training rows.
 */
import { RecallError } from "../errors.ts";
import { readDataRows } from "../data/rows.ts";
import { epochOrder } from "../data/sampler.ts";
import type { RecallTokenizer } from "../data/tokenizer.ts";
import { rowConversation, type ConversationKeys } from "./conversation.ts";
import { renderConversation, type RenderOptions } from "./render.ts";

export interface SftExample {
  ids: number[];
  /** 1 where the token is trained on. */
  mask: number[];
  /** `file line N`. */
  where: string;
}

export interface TruncationReport {
  /** Conversations longer than max_length (cut, or dropped when nothing trainable was left). */
  truncated: number;
  /** Of those, dropped because no trained token survived the cut. */
  dropped: number;
  /** Trained tokens lost to the cut (including those of dropped conversations). */
  trainedTokensCut: number;
}

export interface SftSplit {
  examples: SftExample[];
  truncation: TruncationReport;
}

export interface SftDataOptions extends ConversationKeys, RenderOptions {
  maxLength: number;
  truncation: "error" | "right" | "left";
}

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

/** Reads, renders and cuts the conversations of `files`, in file order. */
export async function loadSftFiles(files: readonly string[], tokenizer: RecallTokenizer, o: SftDataOptions): Promise<SftSplit> {
  const examples: SftExample[] = [];
  const report: TruncationReport = { truncated: 0, dropped: 0, trainedTokensCut: 0 };
  for (const file of files) {
    for (const row of await readDataRows(file)) {
      const conversation = rowConversation(row.value, o, row.where);
      let { ids, mask } = renderConversation(conversation.messages, tokenizer, o, row.where);
      if (ids.length > o.maxLength) {
        if (o.truncation === "error") {
          throw new RecallError(`${row.where}: the conversation has ${ids.length} tokens, over data.max_length ${o.maxLength}`, {
            hint: "raise --max_length, or set --truncation right|left",
          });
        }
        const before = sum(mask);
        if (o.truncation === "right") {
          ids = ids.slice(0, o.maxLength);
          mask = mask.slice(0, o.maxLength);
        } else {
          ids = ids.slice(ids.length - o.maxLength);
          mask = mask.slice(mask.length - o.maxLength);
          mask[0] = 0; // the new first token has nothing before it
        }
        report.truncated++;
        report.trainedTokensCut += before - sum(mask);
        if (sum(mask) === 0) {
          report.dropped++;
          continue;
        }
      }
      examples.push({ ids, mask, where: row.where });
    }
  }
  if (files.length > 0 && examples.length === 0) throw new RecallError(`${files.join(", ")}: no conversation with a trained token`);
  return { examples, truncation: report };
}

/** A seeded held-out share of `examples` (at least one when the share is positive): [train, held out], order kept. */
export function splitHeldOut(examples: readonly SftExample[], share: number, seed: number): [SftExample[], SftExample[]] {
  if (share <= 0) return [[...examples], []];
  const n = examples.length;
  const count = Math.max(1, Math.round(n * share));
  if (count >= n) throw new RecallError(`data.val_split ${share} of ${n} conversations leaves none to train on`);
  // A permutation stream of its own (not one of the epochs' shuffles).
  const held = new Set(epochOrder(n, (seed ^ 0x5eed5017) >>> 0, 0, true).slice(0, count));
  return [examples.filter((_, i) => !held.has(i)), examples.filter((_, i) => held.has(i))];
}

/** One line about what max_length did, or undefined when nothing was cut. */
export function describeTruncation(name: string, r: TruncationReport, maxLength: number, mode: string): string | undefined {
  if (r.truncated === 0) return undefined;
  return `${name}: ${r.truncated} conversation(s) over max_length ${maxLength} cut (${mode}); ${r.trainedTokensCut} trained token(s) lost` + (r.dropped ? `, ${r.dropped} dropped with nothing left to train on` : "");
}
