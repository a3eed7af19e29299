/**
 * Runs one public `recall` command as a child process of this same executable (the compiled binary, or Bun with
 * cmd/main.ts from source), its output streamed line by line to a log file and to a callback (progress). A child of
 * its own per stage keeps a crash of one stage from taking the demo down: the stage is rerun, and `recall sft` /
 * `recall train` resume from their last checkpoint (a safety net; the leak that made long GPU runs segfault is fixed).
 */
import { join } from "node:path";
import { RecallError } from "../errors.ts";
import { appendWhole } from "../util/fs.ts";

/** argv prefix that starts this recall: the executable itself when compiled, else Bun running cmd/main.ts. */
export function selfCommand(): string[] {
  const compiled = Bun.main.includes("$bunfs") || Bun.main.includes("~BUN");
  return compiled ? [process.execPath] : [process.execPath, join(import.meta.dir, "../../cmd/main.ts")];
}

export interface StageRun {
  code: number;
  signal: string | null;
  /** The last lines of output (for an error message). */
  tail: string[];
}

/** Runs `recall <argv>`; every output line goes to `logFile` and `onLine`. */
export async function runStageProcess(argv: readonly string[], logFile: string, onLine: (line: string) => void): Promise<StageRun> {
  const child = Bun.spawn([...selfCommand(), ...argv], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    // Info level whatever the environment says (consola goes quiet under NODE_ENV=test): the demo reads the lines.
    env: { ...process.env, NO_COLOR: "1", FORCE_COLOR: "0", CONSOLA_LEVEL: "3" },
  });
  const tail: string[] = [];
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    let buf = "";
    const emit = (line: string) => {
      appendWhole(logFile, line + "\n");
      tail.push(line);
      if (tail.length > 20) tail.shift();
      onLine(line);
    };
    for await (const chunk of stream) {
      buf += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        emit(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    }
    if (buf !== "") emit(buf);
  };
  await Promise.all([pump(child.stdout), pump(child.stderr)]);
  const code = await child.exited;
  return { code, signal: child.signalCode === null ? null : String(child.signalCode), tail };
}

/**
 * Runs a stage's command, rerunning it after a crash (a signal, or an exit code other than 0 and the CLI's 1 for bad
 * input) up to `retries` times; a refused command (exit 1) or a crash too many stops the demo with its last lines.
 */
export async function runStage(argv: readonly string[], logFile: string, onLine: (line: string) => void, warn: (line: string) => void, retries = 2): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const r = await runStageProcess(argv, logFile, onLine);
    if (r.code === 0) return;
    const what = r.signal ? `was killed by ${r.signal}` : `exited with code ${r.code}`;
    const last = r.tail.filter((l) => l.trim() !== "").slice(-3).join(" | ");
    if (r.code === 1 || attempt >= retries) throw new RecallError(`recall ${argv[0]} ${what}: ${last}`, { hint: `its whole output is in ${logFile}` });
    warn(`recall ${argv[0]} ${what}; running the same command again (it resumes from its last checkpoint); log: ${logFile}`);
  }
}
