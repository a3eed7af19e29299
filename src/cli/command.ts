/**
 * The CLI layer shared by every command: citty parses and runs; this module adds what ReCall users
 * expect on top — flags in snake_case or kebab-case, unknown flags and commands rejected with a
 * one-line error, typed number flags, and help that ends with working examples.
 */
import { defineCommand, renderUsage, runCommand, type ArgsDef, type CommandContext, type CommandDef } from "citty";
import { consola } from "consola";
import { RecallError, errorMessage } from "../errors.ts";
import { fileError } from "../util/fs.ts";

export type RecallCommand = CommandDef<ArgsDef> & { examples?: string[]; overrides?: CommandOverrides };

/** A command that takes dotted `key=value` settings as bare arguments (verl/Hydra overrides, as train.sh passes them). */
export interface CommandOverrides {
  /** Listing of the keys for --help (see settingsHelp in src/config/schema.ts). */
  help: string;
}

interface RecallCommandSpec<T extends ArgsDef> extends CommandDef<T> {
  /** Shell lines shown under "Examples" in --help, each runnable as written. */
  examples?: string[];
  /** Set for commands that accept `key=value` overrides; other commands refuse stray arguments. */
  overrides?: CommandOverrides;
}

export function defineRecallCommand<const T extends ArgsDef>(spec: RecallCommandSpec<T>): RecallCommand {
  const run = spec.run;
  const cmd = defineCommand<T>({
    ...spec,
    // citty keeps only the last value of a repeated flag; hand the command every value (in order) instead.
    run: run && ((ctx: CommandContext<T>) => {
      const args = ctx.args as Record<string, unknown>;
      for (const [name, def] of Object.entries((spec.args ?? {}) as ArgsDef)) {
        if (def.type !== "string") continue;
        const values = repeatedValues(ctx.rawArgs, name);
        if (values.length > 1) args[name] = values;
      }
      return run(ctx);
    }),
  }) as unknown as RecallCommand;
  cmd.examples = spec.examples;
  cmd.overrides = spec.overrides;
  return cmd;
}

/** Every value given to `--name` in (normalised) raw arguments, as `--name v` or `--name=v`, in order. */
export function repeatedValues(rawArgs: readonly string[], name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const tok = rawArgs[i]!;
    if (tok === "--") break;
    if (tok === `--${name}` && rawArgs[i + 1] !== undefined) values.push(rawArgs[++i]!);
    else if (tok.startsWith(`--${name}=`)) values.push(tok.slice(name.length + 3));
  }
  return values;
}

type Resolvable<V> = V | Promise<V> | (() => V) | (() => Promise<V>);
async function resolve<V>(v: Resolvable<V> | undefined): Promise<V | undefined> {
  return typeof v === "function" ? await (v as () => V | Promise<V>)() : await v;
}

/** `--top-k` and `--top_k` are the same flag; the canonical spelling is snake_case (ReCall's). */
export function canonicalFlag(name: string): string {
  return name.replace(/-/g, "_");
}

/**
 * Checks every `--flag` of `rawArgs` against the command's declared args and rewrites them to the
 * canonical spelling citty expects. Throws RecallError on an unknown flag, naming it and the command.
 */
export function normalizeFlags(rawArgs: string[], args: ArgsDef, commandPath: string): string[] {
  const known = new Map<string, { name: string; boolean: boolean; bareAllowed: boolean }>();
  for (const [name, def] of Object.entries(args)) {
    if (def.type === "positional") continue;
    // A setting of type bool (src/config/schema.ts: a string flag shown as true|false) may stand bare, as store_true.
    const entry = { name, boolean: def.type === "boolean", bareAllowed: "valueHint" in def && def.valueHint === "true|false" };
    known.set(canonicalFlag(name), entry);
    const aliases = "alias" in def && def.alias !== undefined ? ([] as string[]).concat(def.alias) : [];
    for (const a of aliases) known.set(canonicalFlag(a), entry);
  }
  const out: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const tok = rawArgs[i]!;
    if (tok === "--") {
      out.push(...rawArgs.slice(i));
      break;
    }
    if (!tok.startsWith("-") || tok === "-" || /^-\d/.test(tok)) {
      out.push(tok);
      continue;
    }
    const long = tok.startsWith("--");
    const body = tok.slice(long ? 2 : 1);
    const eq = body.indexOf("=");
    const rawName = eq >= 0 ? body.slice(0, eq) : body;
    const value = eq >= 0 ? body.slice(eq) : "";
    const name = canonicalFlag(rawName);
    let hit = known.get(name);
    let negated = false;
    if (!hit && name.startsWith("no_")) {
      const base = known.get(name.slice(3));
      if (base?.boolean) {
        hit = base;
        negated = true;
      }
    }
    if (!hit) {
      const suggestion = closest(name, [...new Set([...known.values()].map((k) => k.name))]);
      throw new RecallError(
        `unknown flag '${tok.split("=")[0]}' for '${commandPath}'` + (suggestion ? ` (did you mean --${suggestion}?)` : ""),
        { hint: `see '${commandPath} --help'` },
      );
    }
    // `--max_new_tokens` with nothing after it (or another flag next) would fall back to the default unnoticed.
    if (!hit.boolean && !hit.bareAllowed && eq < 0) {
      const next = rawArgs[i + 1];
      if (next === undefined || next === "--" || (next.startsWith("--") && next.length > 2)) {
        throw new RecallError(`flag ${tok} needs a value`, { hint: `write ${tok} VALUE or ${tok}=VALUE; see '${commandPath} --help'` });
      }
    }
    out.push(negated ? `--no-${hit.name}${value}` : `--${hit.name}${value}`);
  }
  return out;
}

/** The candidate nearest to `name` by edit distance, if near enough to be a likely typo. */
export function closest(name: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Math.max(2, Math.floor(name.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(name, c);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0]!;
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j]!;
      dp[j] = Math.min(dp[j]! + 1, dp[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length]!;
}

type ParsedValue = string | number | boolean | string[] | undefined;

/** A numeric flag, checked: names the flag and the bad value on error. */
export function numberFlag(
  args: Record<string, unknown>,
  name: string,
  opts: { default?: number; integer?: boolean; min?: number; max?: number } = {},
): number {
  const raw = args[name] as ParsedValue;
  if (raw === undefined || raw === "") {
    if (opts.default === undefined) throw new RecallError(`missing required flag --${name}`);
    return opts.default;
  }
  const text = Array.isArray(raw) ? raw[raw.length - 1] : String(raw);
  const v = Number(text);
  const kind = opts.integer ? "an integer" : "a number";
  if (text === undefined || text.trim() === "" || !Number.isFinite(v) || (opts.integer && !Number.isInteger(v))) {
    throw new RecallError(`flag --${name} expects ${kind}, got '${text}'`);
  }
  if (opts.min !== undefined && v < opts.min) throw new RecallError(`flag --${name} must be >= ${opts.min}, got ${v}`);
  if (opts.max !== undefined && v > opts.max) throw new RecallError(`flag --${name} must be <= ${opts.max}, got ${v}`);
  return v;
}

/** A string flag that may be repeated (`--allow_url a --allow_url b`) or comma-separated. */
export function listFlag(args: Record<string, unknown>, name: string): string[] {
  const raw = args[name] as ParsedValue;
  if (raw === undefined || raw === true || raw === false) return [];
  const items = Array.isArray(raw) ? raw : [String(raw)];
  return items.flatMap((s) => s.split(",")).map((s) => s.trim()).filter((s) => s.length > 0);
}

/** The last value of a string flag (citty returns an array when a flag is repeated). */
export function stringFlag(args: Record<string, unknown>, name: string): string | undefined {
  const raw = args[name] as ParsedValue;
  if (raw === undefined || typeof raw === "boolean") return undefined;
  return Array.isArray(raw) ? raw[raw.length - 1] : String(raw);
}

export function requiredStringFlag(args: Record<string, unknown>, name: string): string {
  const v = stringFlag(args, name);
  if (v === undefined || v === "") throw new RecallError(`missing required flag --${name}`);
  return v;
}

async function usageText(cmd: RecallCommand, parent?: RecallCommand): Promise<string> {
  let text = await renderUsage(cmd as CommandDef<ArgsDef>, parent as CommandDef<ArgsDef> | undefined);
  if (cmd.overrides) text += "\n\nSettings (bare key=value arguments, or keys of a --config YAML):\n" + cmd.overrides.help;
  if (cmd.examples?.length) text += "\n\nExamples:\n" + cmd.examples.map((e) => "  " + e).join("\n") + "\n";
  text += "\nFlags may be written --snake_case (as in ReCall's scripts) or --kebab-case.\n";
  return text;
}

/**
 * Entry point: resolves the subcommand chain, handles --help/--version, validates flags, runs the
 * leaf with citty, and turns errors into one line on stderr and a non-zero exit.
 */
export async function runCli(root: RecallCommand, argv: string[], version: string): Promise<number> {
  const helpRequested = argv.some((a) => a === "--help" || a === "-h");
  try {
    let cmd = root;
    let parent: RecallCommand | undefined;
    let rest = argv.filter((a) => a !== "--help" && a !== "-h");
    const path = ["recall"];
    if (rest.length === 1 && (rest[0] === "--version" || rest[0] === "-v")) {
      console.log(version);
      return 0;
    }
    for (;;) {
      const subs = await resolve(cmd.subCommands as Resolvable<Record<string, Resolvable<RecallCommand>>>);
      if (!subs || Object.keys(subs).length === 0) break;
      const first = rest[0];
      if (first === undefined || first.startsWith("-")) {
        if (helpRequested || !cmd.run) {
          process.stdout.write(await usageText(cmd, parent));
          if (helpRequested) return 0;
          throw new RecallError(`'${path.join(" ")}' needs a command: ${Object.keys(subs).join(", ")}`);
        }
        break;
      }
      const next = await resolve(subs[first]);
      if (!next) {
        const suggestion = closest(first, Object.keys(subs));
        throw new RecallError(
          `unknown command '${first}' for '${path.join(" ")}'` + (suggestion ? ` (did you mean '${suggestion}'?)` : ""),
          { hint: `commands: ${Object.keys(subs).join(", ")}` },
        );
      }
      parent = cmd;
      cmd = next;
      path.push(first);
      rest = rest.slice(1);
    }
    if (helpRequested) {
      process.stdout.write(await usageText(cmd, parent));
      return 0;
    }
    const args = (await resolve(cmd.args as Resolvable<ArgsDef>)) ?? {};
    const normalized = normalizeFlags(rest, args, path.join(" "));
    const positionals = Object.values(args).filter((a) => a.type === "positional").length;
    const extra = normalized.filter(
      (t, i) => !t.startsWith("-") && !(i > 0 && isValueOf(normalized, i, args)) && !(cmd.overrides && OVERRIDE_ARG.test(t)),
    );
    if (extra.length > positionals) {
      throw new RecallError(`unexpected argument '${extra[positionals]}' for '${path.join(" ")}'`, {
        hint: `see '${path.join(" ")} --help'`,
      });
    }
    await runCommand(cmd as CommandDef<ArgsDef>, { rawArgs: normalized });
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (caught) {
    // An operating-system error (a missing file, a full disk, no permission) is the user's to fix: one line naming the path.
    const e = fileError(caught);
    if (e instanceof RecallError) {
      consola.error(e.message);
      if (e.hint) consola.info(e.hint);
      return e.exitCode;
    }
    if (e instanceof Error && e.name === "CLIError") {
      consola.error(e.message);
      return 1;
    }
    consola.error(e instanceof Error ? (e.stack ?? e.message) : errorMessage(e));
    return 70; // internal error: a bug in recall
  }
}

/** A bare `key=value` argument (Hydra's `+key=value` and `++key=value` too): groups are the plus signs, key, value. */
export const OVERRIDE_ARG = /^(\+\+|\+)?([A-Za-z_][\w-]*(?:\.[A-Za-z_0-9][\w-]*)*)=([\s\S]*)$/;

/** Whether token i is the value of the string flag before it (`--model DIR`). */
function isValueOf(tokens: string[], i: number, args: ArgsDef): boolean {
  const prev = tokens[i - 1]!;
  if (!prev.startsWith("--") || prev.includes("=")) return false;
  const def = args[prev.slice(2)];
  return def !== undefined && def.type !== "boolean";
}
