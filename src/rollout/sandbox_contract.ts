/**
 * TEMPORARY: the sandbox's interface (src/sandbox/types.ts, flatten.ts) as agreed, until that module
 * lands; then this file goes and tools.ts imports the real one.
 */
export interface ExecuteRequest {
  env: string;
  call: string;
  timeout?: number;
}
export interface ExecuteAnswer {
  output: string;
  result: unknown;
  error: string | null;
}
export interface ToolExecutor {
  execute(req: ExecuteRequest): Promise<ExecuteAnswer>;
  close(): Promise<void>;
}
/** SPEC 3: `result: \n{v}\n`, `output: \n{v}\n`, `error: \n{v}\n` for each truthy field, then strip. */
export function flattenAnswer(a: ExecuteAnswer): string {
  const truthy = (v: unknown) => v !== null && v !== undefined && v !== "" && v !== false && v !== 0 && !(Array.isArray(v) && v.length === 0);
  const str = (v: unknown) => (typeof v === "string" ? v : JSON.stringify(v));
  let s = "";
  if (truthy(a.result)) s += `result: \n${str(a.result)}\n`;
  if (truthy(a.output)) s += `output: \n${str(a.output)}\n`;
  if (truthy(a.error)) s += `error: \n${str(a.error)}\n`;
  return s.trim();
}
