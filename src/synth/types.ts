/**
 * What a task family produces and what `recall synth` writes: a question with its tools (Python `env` + JSON
 * schemas), the ground truth, and the golden solution trace (tool calls in order with the results they must return,
 * then the final answer), before and after verification in the sandbox.
 */
import type { Rng } from "./random.ts";

/** One tool call of a golden trace. */
export interface GoldenCall {
  name: string;
  /** The arguments in the order they are written into the call's JSON. */
  arguments: Record<string, string | number>;
  /** RESULT as the model sees it inside `<tool_response>` (the flattened sandbox answer, SPEC §3). */
  result: string;
}

/** One assistant turn of a golden trace: reasoning, then the calls it makes (none in the final turn). */
export interface GoldenTurn {
  think: string;
  calls: GoldenCall[];
}

export interface GoldenTrace {
  /** Turns with tool calls, in order. */
  turns: GoldenTurn[];
  /** The final turn's reasoning and the text around the boxed answer. */
  finalThink: string;
  /** The final answer (what goes inside `\boxed{}`). */
  answer: string;
  /** The text after the final `</think>`: holds `\boxed{answer}` once. */
  finalText: string;
}

/** A generated task before verification. */
export interface Candidate {
  family: string;
  question: string;
  /** Python source defining the tools. */
  env: string;
  /** The tools' schema list as a JSON string (indent 4, as ReCall's MuSiQue rows carry it). */
  funcSchemas: string;
  groundTruth: string;
  golden: GoldenTrace;
  /** Facts about the task for stats (hops, operation …). */
  meta: Record<string, string | number>;
}

/** A verified sample, numbered. */
export interface Sample extends Candidate {
  id: string;
  dataSource: string;
  split: "train" | "test";
}

/** Difficulty knobs shared by the families (each reads the ones it has). */
export interface FamilyKnobs {
  style: "natural" | "compact";
  hops: number;
  digits: number;
  /** Operand range of `calc` (inclusive); null: from `digits`. */
  calcMin: number | null;
  calcMax: number | null;
  calcOps: readonly string[];
  distractors: number;
  lookupKeys: number;
  kbEntities: number;
  searchTopN: number;
}

/** What opening a family gets: the knobs, the run's seed and output folder (the search family writes its corpus there). */
export interface FamilyOpenOptions {
  knobs: FamilyKnobs;
  seed: number;
  outDir: string;
  log: (line: string) => void;
}

/** A family ready to generate. */
export interface FamilyGenerator {
  /** A new candidate from the family's own stream, or the reason none could be made this time. */
  generate(rng: Rng): Candidate | string;
  /** `env` as the sandbox must run it for verification (the search family puts its local retriever's URL in). */
  verificationEnv?(env: string): string;
  /** Origins tool code may reach during verification. */
  allowUrls?: string[];
  /** Files written next to the data (corpus, index), relative to the output folder. */
  files?: string[];
  close(): Promise<void>;
}

export interface Family {
  name: string;
  /** One line for `--help` and README. */
  description: string;
  open(o: FamilyOpenOptions): Promise<FamilyGenerator>;
}
