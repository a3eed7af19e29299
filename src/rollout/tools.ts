/**
 * Running a tool call: the `ToolRunner` interface the conversation loop uses, and the runner that sends
 * calls to a sandbox (ReCall's `/execute` semantics: run `env`, then evaluate `response = <call>`).
 */
import { flattenAnswer, type ExecuteAnswer, type ToolExecutor } from "./sandbox_contract.ts";
import type { ToolCall } from "./tool_calls.ts";

/** A retrieved passage, as a search tool returns it (FlashRAG corpus rows: `id`, `contents`, …). */
export interface RetrievedDoc {
  id: string;
  contents: string;
  [key: string]: unknown;
}

export type ValidToolCall = Extract<ToolCall, { ok: true }>;

export interface ToolRunResult {
  /** RESULT: the text the model sees for this call. */
  result: string;
  /** Passages a search tool returned, kept for retrieval metrics. */
  docs?: RetrievedDoc[];
}

export interface ToolRunner {
  /** Runs one well-formed call. Throws only when the tool backend itself is unreachable. */
  run(call: ValidToolCall, signal?: AbortSignal): Promise<ToolRunResult>;
  close?(): Promise<void>;
}

/** Calls executed by a sandbox (local or remote) against one Python `env`, answers flattened. */
export class SandboxToolRunner implements ToolRunner {
  constructor(
    private readonly executor: ToolExecutor,
    private readonly env: string,
    private readonly timeoutSeconds?: number,
  ) {}

  async run(call: ValidToolCall): Promise<ToolRunResult> {
    const answer: ExecuteAnswer = await this.executor.execute({ env: this.env, call: call.expr, timeout: this.timeoutSeconds });
    return { result: flattenAnswer(answer) };
  }
}
