/**
 * The sandbox's public contract, shared by the local worker pool, the remote client and the HTTP
 * server. Wire shapes follow ReCall's `/execute` API (SPEC.md section 3).
 */

/** One tool call: Python source defining the tools, and the call expression to evaluate after it. */
export interface ExecuteRequest {
  env: string;
  call: string;
  /** Wall-clock limit in seconds (ReCall's default is 5); clamped to the sandbox's maximum. */
  timeout?: number;
}

/**
 * ReCall's answer: captured stdout, the JSON-encodable value of `response` (or null), and
 * `str(exception)` (or null).
 */
export interface ExecuteAnswer {
  output: string;
  result: unknown;
  error: string | null;
}

/** Anything that runs tool calls: the local pool, a remote sandbox URL. */
export interface ToolExecutor {
  execute(req: ExecuteRequest): Promise<ExecuteAnswer>;
  close(): Promise<void>;
}

/** The `error` of an answer whose call ran past its wall-clock limit. */
export const TIMEOUT_ERROR = "execution timed out";
