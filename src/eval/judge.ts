/**
 * `recall eval judge`: ReCall's LLM-judge pass. An OpenAI-compatible chat model is shown each question,
 * its gold answers and the prediction, and answers JSON `{"rationale": …, "judgement": "correct" |
 * "incorrect"}`. Writes `llm_judge.jsonl` (one row per item) and `llm_judge_metric.txt`
 * (`llm_judge_metric: <fraction judged correct>`) into the folder. Empty predictions are judged
 * incorrect without asking; items the run recorded as failed are skipped; an item whose judge request
 * fails after the retries is recorded with `judgement: "error"` and left out of the fraction.
 */
import { join } from "node:path";
import { errorMessage } from "../errors.ts";
import type { ChatGenerator } from "../rollout/generator.ts";
import { readIntermediate, type StoredItem } from "./intermediate.ts";
import { writeFileAtomic } from "../util/fs.ts";
import { pyReprFloat } from "../python/repr.ts";
import { EvalProgress } from "./progress.ts";

export const JUDGE_FILE = "llm_judge.jsonl";
export const JUDGE_METRIC_FILE = "llm_judge_metric.txt";

export const JUDGE_PROMPT = `You are given a question, a list of ground-truth answers (each one is a correct answer on its own), and a predicted answer.
Decide whether the predicted answer correctly answers the question, that is, whether it means the same as at least one of the ground-truth answers. It does not have to match word for word; differences in form (abbreviations, aliases, date or number formats, extra but consistent detail) are fine, but a different or vaguer answer is not.

Give your rationale first, then your judgement.

question: {question}
ground-truth answers: {golds}
predicted answer: {pred}

Reply with JSON only, in this form:
{"rationale": "your reasoning, as text", "judgement": "correct" or "incorrect"}`;

export type Judgement = "correct" | "incorrect" | "unparsed" | "error";

export interface JudgeRow {
  id: string;
  question: string;
  golden_answers: string[];
  pred: string;
  judgement: Judgement;
  rationale: string;
  raw?: string;
}

/** The judgement in a judge model's reply (JSON, maybe in a ```json block, or loosely written). */
export function parseJudgement(reply: string): { judgement: Judgement; rationale: string } {
  const block = reply.includes("```") ? (reply.split("```json").pop() ?? reply).split("```")[0]! : reply;
  const candidates = [block, block.slice(block.indexOf("{"), block.lastIndexOf("}") + 1)];
  for (const c of candidates) {
    try {
      const v = JSON.parse(c.trim()) as { judgement?: unknown; rationale?: unknown };
      const j = typeof v.judgement === "string" ? v.judgement.trim().toLowerCase() : "";
      if (j === "correct" || j === "incorrect") return { judgement: j, rationale: typeof v.rationale === "string" ? v.rationale : "" };
    } catch {
      // try the next form
    }
  }
  const m = /"?judgement"?\s*:\s*"?(correct|incorrect)/i.exec(reply);
  if (m) return { judgement: m[1]!.toLowerCase() as Judgement, rationale: "" };
  return { judgement: "unparsed", rationale: "" };
}

export interface JudgeSummary {
  file: string;
  metric: number;
  correct: number;
  judged: number;
  unparsed: number;
  errors: number;
  skipped: number;
}

export async function judgeFolder(
  inputDir: string,
  judge: ChatGenerator,
  opts: { workers: number; log: (s: string) => void; warn: (s: string) => void },
): Promise<JudgeSummary> {
  const { file, items } = readIntermediate(inputDir);
  const dir = file.slice(0, file.lastIndexOf("/")) || ".";
  const todo = items.filter((it) => it.error === undefined);
  const rows: (JudgeRow | undefined)[] = new Array(todo.length);
  const progress = new EvalProgress(todo.length, 0, "judged correct", opts.log);
  let next = 0;
  const one = async (it: StoredItem): Promise<JudgeRow> => {
    const base = { id: it.id, question: it.question, golden_answers: it.golden_answers, pred: it.pred };
    if (it.pred.trim() === "") return { ...base, judgement: "incorrect", rationale: "empty prediction" };
    const prompt = JUDGE_PROMPT.replace("{question}", () => it.question)
      .replace("{golds}", () => JSON.stringify(it.golden_answers))
      .replace("{pred}", () => it.pred);
    try {
      const c = await judge.chat([{ role: "user", content: prompt }], { temperature: 0, maxNewTokens: 1024 });
      return { ...base, ...parseJudgement(c.text), raw: c.text };
    } catch (e) {
      opts.warn(`judge failed on item ${it.id}: ${errorMessage(e).slice(0, 200)}`);
      return { ...base, judgement: "error", rationale: errorMessage(e) };
    }
  };
  await Promise.all(
    Array.from({ length: Math.min(opts.workers, Math.max(1, todo.length)) }, async () => {
      while (next < todo.length) {
        const i = next++;
        rows[i] = await one(todo[i]!);
        progress.update(rows[i]!.judgement !== "error", rows[i]!.judgement === "correct" ? 1 : 0);
      }
    }),
  );
  const done = rows as JudgeRow[];
  writeFileAtomic(join(dir, JUDGE_FILE), done.map((r) => JSON.stringify(r)).join("\n") + (done.length ? "\n" : ""));
  const judged = done.filter((r) => r.judgement !== "error");
  const correct = judged.filter((r) => r.judgement === "correct").length;
  const metric = judged.length > 0 ? correct / judged.length : 0;
  writeFileAtomic(join(dir, JUDGE_METRIC_FILE), `llm_judge_metric: ${pyReprFloat(metric)}\n`);
  return {
    file: join(dir, JUDGE_FILE),
    metric,
    correct,
    judged: judged.length,
    unparsed: judged.filter((r) => r.judgement === "unparsed").length,
    errors: done.length - judged.length,
    skipped: items.length - todo.length,
  };
}
