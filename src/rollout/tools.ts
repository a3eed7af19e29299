/**
 * Running a tool call: the `ToolRunner` interface the conversation loop uses, and the runner that sends
 * calls to a sandbox (ReCall's `/execute` semantics: run `env`, then evaluate `response = <call>`).
 */
import { flattenAnswer } from "../sandbox/flatten.ts";
import type { ExecuteAnswer, ToolExecutor } from "../sandbox/types.ts";
import type { ToolCall } from "./tool_calls.ts";

/** A retrieved passage, as a search tool returns it (FlashRAG corpus rows: `id`, `contents`, …). */
export interface RetrievedDoc {
  id: string;
  contents: string;
  [key: string]: unknown;
}

export type ValidToolCall = Extract<ToolCall, { ok: true }>;
/** A call whose JSON did not parse; `result` is ReCall's `Parse tool call failed: …` text. */
export type UnparsedToolCall = Extract<ToolCall, { ok: false }>;

/**
 * The file name ReCall's sandbox compiles `response = <call>` under (recall's harness.py uses the same);
 * Python's SyntaxError text names it.
 */
export const SANDBOX_CALL_FILENAME = "<call>";

/** `str()` of the SyntaxError Python raises compiling a one-line call in the sandbox. */
export function callSyntaxError(message: string): string {
  return `${message} (${SANDBOX_CALL_FILENAME}, line 1)`;
}

export interface ToolRunResult {
  /** RESULT: the text the model sees for this call. */
  result: string;
  /** Passages a search tool returned, kept for retrieval metrics. */
  docs?: RetrievedDoc[];
}

export interface ToolRunner {
  /** Runs one well-formed call. Throws only when the tool backend itself is unreachable. */
  run(call: ValidToolCall, signal?: AbortSignal): Promise<ToolRunResult>;
  /**
   * ReCall's evaluation loop only: what the backend answers when a call's failure text (`Parse tool call
   * failed: …`) is sent to it as the call expression, as `ReCall.run` does (see conversation.ts).
   */
  runUnparsed?(call: UnparsedToolCall, signal?: AbortSignal): Promise<ToolRunResult>;
  /** false when results never carry `docs` (retrieval metrics are then not reported). */
  readonly reportsDocs?: boolean;
  close?(): Promise<void>;
}

/**
 * Calls executed by a sandbox (local or remote) against one Python `env`, answers flattened.
 * `docsOf`, when given, recovers the passages a search call retrieved (e.g. from a recording retriever
 * behind the server the tool queried).
 */
export class SandboxToolRunner implements ToolRunner {
  readonly reportsDocs: boolean;

  constructor(
    private readonly executor: ToolExecutor,
    private readonly env: string,
    private readonly opts: { timeoutSeconds?: number; docsOf?: (call: ValidToolCall) => RetrievedDoc[] | undefined } = {},
  ) {
    this.reportsDocs = opts.docsOf !== undefined;
  }

  async run(call: ValidToolCall): Promise<ToolRunResult> {
    const answer: ExecuteAnswer = await this.executor.execute({ env: this.env, call: call.expr, timeout: this.opts.timeoutSeconds });
    const docs = this.opts.docsOf?.(call);
    return docs ? { result: flattenAnswer(answer), docs } : { result: flattenAnswer(answer) };
  }

  async runUnparsed(call: UnparsedToolCall): Promise<ToolRunResult> {
    const answer = await this.executor.execute({ env: this.env, call: call.result, timeout: this.opts.timeoutSeconds });
    return { result: flattenAnswer(answer) };
  }
}
