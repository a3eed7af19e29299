/**
 * Sandboxed execution of ReCall tool code. Training and evaluation use `openSandbox` (a local warm
 * pool, or a remote `/execute` URL) and `runToolCall`, which returns the flattened RESULT text a
 * model sees inside `<tool_response>`.
 */
import { flattenAnswer } from "./flatten.ts";
import { createLocalSandbox, type LocalSandboxOptions } from "./local-sandbox.ts";
import { RemoteSandbox, type RemoteSandboxOptions } from "./remote-sandbox.ts";
import type { ExecuteRequest, ToolExecutor } from "./types.ts";

export type { ExecuteAnswer, ExecuteRequest, ToolExecutor } from "./types.ts";
export { TIMEOUT_ERROR } from "./types.ts";
export { flattenAnswer, TIMEOUT_RESULT } from "./flatten.ts";
export { createLocalSandbox, LocalSandbox, type CallInfo, type LocalSandboxOptions, type SandboxStats } from "./local-sandbox.ts";
export { RemoteSandbox, type RemoteSandboxOptions } from "./remote-sandbox.ts";
export { serveSandbox, type SandboxServer, type SandboxServerOptions } from "./server.ts";
export { detectOsSandbox, type OsSandbox } from "./os-sandbox.ts";

/** A remote sandbox when `url` is given (ReCall's --sandbox_url), else a local warm pool. */
export async function openSandbox(opts: { url?: string; remote?: RemoteSandboxOptions } & LocalSandboxOptions = {}): Promise<ToolExecutor> {
  if (opts.url) return new RemoteSandbox(opts.url, opts.remote);
  return createLocalSandbox(opts);
}

/** Runs one tool call and returns ReCall's flattened RESULT string (SPEC.md section 3). */
export async function runToolCall(executor: ToolExecutor, req: ExecuteRequest): Promise<string> {
  return flattenAnswer(await executor.execute(req));
}
