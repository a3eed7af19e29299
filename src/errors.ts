/**
 * The one error type a user sees. `message` is a complete sentence for the terminal (it names the
 * file, row or flag at fault); `hint` says what to do about it. Anything that is not a RecallError
 * reaching the top level is a bug and is printed with its stack.
 */
export class RecallError extends Error {
  readonly hint?: string;
  readonly exitCode: number;
  constructor(message: string, options: { hint?: string; exitCode?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "RecallError";
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? 1;
  }
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
