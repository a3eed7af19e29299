/**
 * The files `recall synth` writes, each to a temp name then renamed:
 * - `train.parquet`, `test.parquet`: verl parquet in ReCall's schema (SPEC §5) with real nested structs; `extra_info`
 *   also carries the sample's `id`, `family` and its `golden` trace (JSON text: turns with calls and results, answer);
 * - `sft.jsonl`, `sft_test.jsonl`: `{"id", "data_source", "messages": [...], "tools": [...]}` conversations of the
 *   golden traces in ReCall's exact turn format (train and test split), and the same as `sft.parquet`,
 *   `sft_test.parquet` (sft_parquet.ts);
 * - `rejects.jsonl`: every rejected candidate with its reason; `stats.json`: counts per family and split, timing.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../util/fs.ts";
import { writeVerlParquet, type VerlRow } from "../data/verl_parquet.ts";
import { writeSftParquet, type SftRow } from "./sft_parquet.ts";
import { sftMessages } from "./trace.ts";
import type { Sample } from "./types.ts";

export interface Reject {
  family: string;
  stage: "generate" | "verify";
  reason: string;
  question?: string;
}

export interface FamilyStats {
  name: string;
  weight: number;
  requested: number;
  generated: number;
  duplicates: number;
  rejected: number;
  files: string[];
}

export interface SynthStats {
  /** The command's resolved settings, as given. */
  settings: { system_prompt: string } & Record<string, unknown>;
  files: string[];
  samples: { train: number; test: number };
  families: (FamilyStats & {
    train: number;
    test: number;
    mean_tool_calls: number;
    mean_question_chars: number;
    reject_reasons: Record<string, number>;
  })[];
  /** Seconds generating candidates, verifying them (overlapping generation; from the pool being ready), from the start until the pool was ready (it starts once the families are open; the first batch is generated meanwhile), in all; verified ÷ verify_s. */
  timing: { generate_s: number; verify_s: number; sandbox_ready_s?: number; total_s: number; verified: number; verified_per_s: number };
}

export function verlRows(samples: readonly Sample[]): VerlRow[] {
  return samples.map((s, index) => ({
    data_source: s.dataSource,
    question: s.question,
    ability: "re_call",
    ground_truth: s.groundTruth,
    index,
    split: s.split,
    env: s.env,
    func_schemas: s.funcSchemas,
    extra: { id: s.id, family: s.family, golden: JSON.stringify(s.golden) },
  }));
}

/**
 * One SFT row. By default the tools go in `tools` and the messages have no system turn: a reader builds ReCall's
 * system prompt from the tools (recall sft does; it refuses a row with both). With a custom system prompt the row
 * carries that system turn and no `tools`.
 */
export function sftRecord(s: Sample, systemPrompt: string): SftRow {
  if (systemPrompt !== "") return { id: s.id, data_source: s.dataSource, messages: sftMessages(s, systemPrompt) };
  return { id: s.id, data_source: s.dataSource, messages: sftMessages(s), tools: JSON.parse(s.funcSchemas) };
}

/** A rejection reason without its specifics (numbers, quoted text), to count reasons of one kind together. */
function reasonKind(reason: string): string {
  return reason.replace(/'[^']*'|"[^"]*"/g, "…").replace(/\d+/g, "N").slice(0, 120);
}

export function writeSynthOutputs(
  outDir: string,
  s: { system_prompt: string } & Record<string, unknown>,
  d: { train: Sample[]; test: Sample[]; rejects: readonly { family: string; reason: string }[]; families: FamilyStats[]; timing: { generate_s: number; verify_s: number; sandbox_ready_s?: number; total_s: number; verified: number } },
): SynthStats {
  const files: string[] = [];
  writeVerlParquet(join(outDir, "train.parquet"), verlRows(d.train));
  files.push("train.parquet");
  if (d.test.length > 0) {
    writeVerlParquet(join(outDir, "test.parquet"), verlRows(d.test));
    files.push("test.parquet");
  } else rmSync(join(outDir, "test.parquet"), { force: true }); // a stale one from an earlier run would mislead
  for (const [name, split] of [["sft", d.train], ["sft_test", d.test]] as const) {
    const records = split.map((x) => sftRecord(x, s.system_prompt));
    writeFileAtomic(join(outDir, `${name}.jsonl`), records.map((r) => JSON.stringify(r) + "\n").join(""));
    if (records.length > 0) writeSftParquet(join(outDir, `${name}.parquet`), records);
    else rmSync(join(outDir, `${name}.parquet`), { force: true });
  }
  writeFileAtomic(join(outDir, "rejects.jsonl"), d.rejects.map((r) => JSON.stringify(r) + "\n").join(""));
  files.push("sft.jsonl", "sft.parquet", "sft_test.jsonl", ...(d.test.length ? ["sft_test.parquet"] : []), "rejects.jsonl", "stats.json", ...d.families.flatMap((f) => f.files));

  const all = [...d.train, ...d.test];
  const stats: SynthStats = {
    settings: s,
    files,
    samples: { train: d.train.length, test: d.test.length },
    families: d.families.map((f) => {
      const mine = all.filter((x) => x.family === f.name);
      const reasons: Record<string, number> = {};
      for (const r of d.rejects) if (r.family === f.name) reasons[reasonKind(r.reason)] = (reasons[reasonKind(r.reason)] ?? 0) + 1;
      const mean = (xs: number[]) => (xs.length ? Number((xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(3)) : 0);
      return {
        ...f,
        train: d.train.filter((x) => x.family === f.name).length,
        test: d.test.filter((x) => x.family === f.name).length,
        mean_tool_calls: mean(mine.map((x) => x.golden.turns.reduce((n, t) => n + t.calls.length, 0))),
        mean_question_chars: mean(mine.map((x) => x.question.length)),
        reject_reasons: reasons,
      };
    }),
    timing: {
      ...d.timing,
      verified_per_s: d.timing.verify_s > 0 ? Math.round(d.timing.verified / d.timing.verify_s) : 0,
    },
  };
  writeFileAtomic(join(outDir, "stats.json"), JSON.stringify(stats, null, 2) + "\n");
  return stats;
}
