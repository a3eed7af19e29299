/**
 * One typed settings schema per command, from which its YAML keys, command-line flags, `--help` text and validation
 * all come. A setting is declared once (key, type, default, help, check); a command resolves layers over the defaults
 * in precedence order — a YAML file (a nested key tree or flat dotted keys), flags, then Hydra-style `key=value`
 * overrides — and gets back a value object whose TypeScript type is derived from the declaration.
 *
 * Every value is coerced and checked; an error is one line naming the key and where the value came from
 * (`flag --lr`, `'data.max_prompt_length' in run.yaml`, `override actor_rollout_ref.rollout.n=abc`).
 */
import { existsSync, readFileSync } from "node:fs";
import type { ArgsDef } from "citty";
import { parse as parseYaml } from "yaml";
import { OVERRIDE_ARG, canonicalFlag, closest } from "../cli/command.ts";
import { RecallError } from "../errors.ts";

// ---------------------------------------------------------------------------------------------------------------
// Declarations

interface SettingCommon<V> {
  /** One line for `--help` (the default is appended when it says something). */
  help: string;
  /** Whether `null` (YAML null, `null`/`None` on the command line) is a value of this setting. */
  nullable?: boolean;
  default: V | null;
  /** Returns what is wrong with a value (a phrase such as "must be >= 1, got 0"), or undefined when it is fine. */
  check?(value: V): string | undefined;
  /**
   * Command-line flag names of this setting (snake_case; kebab-case is accepted too). Where the command line
   * declares `keyFlags`, a setting without `flags` gets its key as its flag; `flags: []` means file-only.
   */
  flags?: readonly string[];
  /** Accepted but without effect here: the reason, shown once when the setting is given. */
  ignored?: string;
  /** A one-line note about a given value (e.g. a logger recall does not have), or undefined. */
  explain?(value: V): string | undefined;
  /** Left out of printed and recorded settings; its value is never echoed in messages. */
  secret?: boolean;
}
export interface StringSetting extends SettingCommon<string> {
  type: "string";
}
export interface IntSetting extends SettingCommon<number> {
  type: "int";
}
export interface FloatSetting extends SettingCommon<number> {
  type: "float";
}
export interface BoolSetting extends SettingCommon<boolean> {
  type: "bool";
}
export interface EnumSetting<C extends string = string> extends SettingCommon<C> {
  type: "enum";
  choices: readonly C[];
  /** Other spellings accepted for a choice (verl's `k3` for `low_var_kl`). */
  aliases?: Readonly<Record<string, C>>;
  /** Values known from other tools but refused here: value → the rest of the sentence ("(…) is not implemented"). */
  refused?: Readonly<Record<string, string>>;
}
export interface StringListSetting extends SettingCommon<readonly string[]> {
  type: "list<string>";
}
export interface FloatListSetting extends SettingCommon<readonly number[]> {
  type: "list<float>";
}
export type Setting = StringSetting | IntSetting | FloatSetting | BoolSetting | EnumSetting | StringListSetting | FloatListSetting;
export type SettingsSchema = Readonly<Record<string, Setting>>;

type BaseValue<S> = S extends { type: "string" }
  ? string
  : S extends { type: "int" | "float" }
    ? number
    : S extends { type: "bool" }
      ? boolean
      : S extends { type: "enum"; choices: readonly (infer C)[] }
        ? C
        : S extends { type: "list<string>" }
          ? string[]
          : S extends { type: "list<float>" }
            ? number[]
            : never;
/** The value type of one setting declaration. */
export type SettingValue<S> = S extends { nullable: true } ? BaseValue<S> | null : BaseValue<S>;
/** The resolved values of a schema: `SettingsOf<typeof TRAIN_SETTINGS>["actor_rollout_ref.actor.optim.lr"]` is `number`. */
export type SettingsOf<S extends SettingsSchema> = { -readonly [K in keyof S]: SettingValue<S[K]> };
/** The same values with nullable settings as optional properties (absent instead of null). */
export type NullsAsOptional<T> = { [K in keyof T as null extends T[K] ? never : K]: T[K] } & {
  [K in keyof T as null extends T[K] ? K : never]?: Exclude<T[K], null>;
};

/** The values with null settings left out (for code that reads "unset" as an absent property). */
export function dropNulls<T extends Record<string, unknown>>(values: T): NullsAsOptional<T> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(values)) if (v !== null) out[k] = v;
  return out as NullsAsOptional<T>;
}

/**
 * Declares a schema. The `const` type parameter keeps literal types (`type: "int"`, enum choices, `nullable: true`) so
 * `SettingsOf` can derive the value type. Checks the declaration itself once: a default of the wrong type, a default
 * failing its check, a key that is also the parent of another key, a flag used twice — all bugs in recall.
 */
export function defineSettings<const S extends SettingsSchema>(schema: S): S {
  const flags = new Map<string, string>();
  for (const [key, s] of Object.entries(schema)) {
    if (!/^[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*$/.test(key)) throw new Error(`setting key '${key}' is not a dotted name`);
    if (Object.keys(schema).some((k) => k.startsWith(key + "."))) throw new Error(`setting '${key}' is also a parent of other keys`);
    const source: SettingSource = { kind: "default" };
    const value = s.default === null ? null : coerce(key, s, s.default, source);
    if (value === null && !s.nullable) throw new Error(`setting '${key}' has a null default but is not nullable`);
    const problem = value === null ? undefined : runCheck(s, value);
    if (problem) throw new Error(`default of '${key}' ${problem}`);
    for (const f of s.flags ?? []) {
      if (flags.has(f)) throw new Error(`flag --${f} is declared by both '${flags.get(f)}' and '${key}'`);
      flags.set(f, key);
    }
  }
  return schema;
}

/** Check helpers: each returns the phrase an error message continues with. */
export const atLeast = (min: number) => (v: number) => (v >= min ? undefined : `must be >= ${min}, got ${v}`);
export const above = (min: number) => (v: number) => (v > min ? undefined : `must be > ${min}, got ${v}`);
export const inRange = (lo: number, hi: number) => (v: number) => (v >= lo && v <= hi ? undefined : `must be in [${lo}, ${hi}], got ${v}`);

// ---------------------------------------------------------------------------------------------------------------
// Where a value came from

export type SettingSource =
  | { kind: "default" }
  /** `key` as written in the file (dotted path for nested trees). */
  | { kind: "file"; file: string; key: string }
  /** `text` is the value as typed (left out of messages for secrets). */
  | { kind: "flag"; flag: string; text?: string }
  /** `text` is the whole argument as typed (`actor_rollout_ref.rollout.n=abc`). */
  | { kind: "override"; text: string };

/** One value for one key, before coercion. Layers are lists of entries; later entries win. */
export interface SettingEntry {
  key: string;
  value: unknown;
  source: SettingSource;
}

/** The source as error messages name it: `flag --lr`, `'data.seed' in run.yaml`, `override data.seed=x`, `default`. */
export function describeSource(source: SettingSource, secret = false): string {
  switch (source.kind) {
    case "default":
      return "default";
    case "file":
      return `'${source.key}' in ${source.file}`;
    case "flag":
      return `flag --${source.flag}`;
    case "override":
      return `override ${secret ? source.text.slice(0, source.text.indexOf("=") + 1) + "…" : source.text}`;
  }
}

/** The source as a note starts: `--n_gpus_per_node 8`, `trainer.nnodes=2`, `'trainer.nnodes' in run.yaml`. */
function noteLabel(source: SettingSource, secret: boolean): string {
  if (source.kind === "flag") return secret || source.text === undefined ? `--${source.flag}` : `--${source.flag} ${source.text}`;
  return describeSource(source, secret);
}

// ---------------------------------------------------------------------------------------------------------------
// Coercion

const NULL_WORDS = new Set(["null", "Null", "NULL", "None", "~"]);
const TRUE_RE = /^(true|1|yes)$/i;
const FALSE_RE = /^(false|0|no)$/i;

function shown(raw: unknown): string {
  return typeof raw === "string" ? `'${raw}'` : JSON.stringify(raw);
}

function runCheck(s: Setting, value: unknown): string | undefined {
  return (s.check as ((v: unknown) => string | undefined) | undefined)?.(value);
}

/** A string list from text: Hydra/YAML flow syntax (`[a,b]`, `['a', 'b']`), a comma list, or one item. */
function textList(text: string, where: string): unknown[] {
  const t = text.trim();
  if (t === "") return [];
  if (t.startsWith("[")) {
    let v: unknown;
    try {
      v = parseYaml(t);
    } catch {
      v = undefined;
    }
    if (!Array.isArray(v)) throw new RecallError(`${where} expects a list like [a, b], got '${text}'`);
    return v;
  }
  return t.split(",").map((x) => x.trim()).filter((x) => x.length > 0);
}

function toNumber(raw: unknown, integer: boolean, where: string): number {
  if (typeof raw !== "number" && typeof raw !== "string") throw new RecallError(`${where} expects ${integer ? "an integer" : "a number"}, got ${shown(raw)}`);
  const n = typeof raw === "number" ? raw : Number(raw.trim());
  if ((typeof raw === "string" && raw.trim() === "") || !Number.isFinite(n)) throw new RecallError(`${where} expects a number, got '${raw}'`);
  if (integer && !Number.isInteger(n)) throw new RecallError(`${where} expects an integer, got '${raw}'`);
  return n;
}

/** Coerces one raw value (YAML-typed, or text from the command line) to the setting's type; throws naming `where`. */
function coerce(key: string, s: Setting, raw: unknown, source: SettingSource): unknown {
  const where = describeSource(source, s.secret);
  if (raw === null || (typeof raw === "string" && NULL_WORDS.has(raw.trim()))) {
    if (s.nullable) return null;
    throw new RecallError(`${where} cannot be null (${key} expects ${typeName(s)})`);
  }
  switch (s.type) {
    case "string":
      if (typeof raw !== "string" && typeof raw !== "number") throw new RecallError(`${where} must be a string, got ${shown(raw)}`);
      return String(raw);
    case "int":
    case "float":
      return toNumber(raw, s.type === "int", where);
    case "bool":
      if (typeof raw === "boolean") return raw;
      if ((typeof raw === "string" || typeof raw === "number") && TRUE_RE.test(String(raw).trim())) return true;
      if ((typeof raw === "string" || typeof raw === "number") && FALSE_RE.test(String(raw).trim())) return false;
      throw new RecallError(`${where} expects true or false, got ${shown(raw)}`);
    case "enum": {
      if (typeof raw !== "string" && typeof raw !== "number") throw new RecallError(`${where} must be one of ${s.choices.join(", ")}, got ${shown(raw)}`);
      const v = String(raw).trim();
      if ((s.choices as readonly string[]).includes(v)) return v;
      const alias = s.aliases?.[v];
      if (alias !== undefined) return alias;
      const refusal = s.refused?.[v];
      if (refusal !== undefined) throw new RecallError(`${where}: '${v}' ${refusal}`, { hint: `${key}: ${s.choices.join(", ")}` });
      throw new RecallError(`${where} must be one of ${s.choices.join(", ")}, got '${v}'`);
    }
    case "list<string>":
    case "list<float>": {
      const items = Array.isArray(raw) ? raw : typeof raw === "string" ? textList(raw, where) : typeof raw === "number" ? [raw] : undefined;
      if (items === undefined) throw new RecallError(`${where} expects a list, got ${shown(raw)}`);
      return items.map((item) => {
        if (s.type === "list<float>") {
          const n = typeof item === "number" ? item : typeof item === "string" && item.trim() !== "" ? Number(item.trim()) : NaN;
          if (!Number.isFinite(n)) throw new RecallError(`${where} expects a list of numbers, got ${shown(raw)}`);
          return n;
        }
        if (typeof item !== "string" && typeof item !== "number") throw new RecallError(`${where} expects a list of strings, got ${shown(raw)}`);
        return String(item);
      });
    }
  }
}

function typeName(s: Setting): string {
  switch (s.type) {
    case "string":
      return "a string";
    case "int":
      return "an integer";
    case "float":
      return "a number";
    case "bool":
      return "true or false";
    case "enum":
      return `one of ${s.choices.join(", ")}`;
    case "list<string>":
      return "a list of strings";
    case "list<float>":
      return "a list of numbers";
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Resolution

export interface ResolvedSettings<S extends SettingsSchema> {
  values: SettingsOf<S>;
  /** Where each value came from (the default, or the layer that set it last). */
  sources: { [K in keyof S]: SettingSource };
  /** Unknown file keys, kept as given (only with `keepUnknownFileKeys`). */
  extra: Record<string, unknown>;
  /** One line per given setting that is ignored or explained (`--nnodes 2: recall trains on one device; ignored`). */
  notes: string[];
}

/** A did-you-mean for an unknown key: the nearest key by spelling, else the one key with the same last segment. */
export function suggestKey(schema: SettingsSchema, key: string): string | undefined {
  const keys = Object.keys(schema);
  const near = closest(key, keys);
  if (near) return near;
  const last = key.slice(key.lastIndexOf(".") + 1);
  const same = keys.filter((k) => k === last || k.endsWith("." + last));
  return same.length === 1 ? same[0] : undefined;
}

function unknownKeyError(schema: SettingsSchema, e: SettingEntry): RecallError {
  const suggestion = suggestKey(schema, e.key);
  const at = e.source.kind === "file" ? ` in ${e.source.file}` : e.source.kind === "override" ? ` in override ${e.source.text}` : e.source.kind === "flag" ? ` (flag --${e.source.flag})` : "";
  return new RecallError(`unknown key '${e.key}'${at}` + (suggestion ? ` (did you mean '${suggestion}'?)` : ""));
}

/**
 * Applies `entries` (in precedence order: file, flags, overrides; later wins) over the schema's defaults. Every
 * entry is coerced (so a bad value is refused even when a later layer overrides it); the final value of each key is
 * checked. Unknown keys are refused with a suggestion, except file keys with `keepUnknownFileKeys` (FlashRAG's
 * configs carry keys for other tools), which land in `extra`.
 */
export function resolveSettings<S extends SettingsSchema>(
  schema: S,
  entries: readonly SettingEntry[],
  opts: { keepUnknownFileKeys?: boolean } = {},
): ResolvedSettings<S> {
  const values: Record<string, unknown> = {};
  const sources: Record<string, SettingSource> = {};
  for (const [key, s] of Object.entries(schema)) {
    values[key] = Array.isArray(s.default) ? [...s.default] : s.default;
    sources[key] = { kind: "default" };
  }
  const extra: Record<string, unknown> = {};
  for (const e of entries) {
    const s = Object.hasOwn(schema, e.key) ? schema[e.key] : undefined;
    if (s === undefined) {
      if (opts.keepUnknownFileKeys && e.source.kind === "file") {
        extra[e.key] = e.value;
        continue;
      }
      throw unknownKeyError(schema, e);
    }
    values[e.key] = coerce(e.key, s, e.value, e.source);
    sources[e.key] = e.source;
  }
  const notes: string[] = [];
  for (const [key, s] of Object.entries(schema)) {
    const source = sources[key]!;
    if (source.kind === "default") continue;
    const value = values[key];
    if (value !== null) {
      const problem = runCheck(s, value);
      if (problem) throw new RecallError(`${describeSource(source, s.secret)} ${problem}`);
    }
    if (s.ignored !== undefined) notes.push(`${noteLabel(source, s.secret === true)}: ${s.ignored}`);
    else if (s.explain !== undefined && value !== null) {
      const note = (s.explain as (v: unknown) => string | undefined)(value);
      if (note !== undefined) notes.push(`${noteLabel(source, s.secret === true)}: ${note}`);
    }
  }
  return { values: values as SettingsOf<S>, sources: sources as { [K in keyof S]: SettingSource }, extra, notes };
}

// ---------------------------------------------------------------------------------------------------------------
// YAML files

/** Reads a YAML file that must hold a mapping (an empty file is an empty mapping). `via` names the flag for messages. */
export function readYamlMapping(path: string, via: string): Record<string, unknown> {
  if (!existsSync(path)) throw new RecallError(`${via} '${path}' not found`);
  let v: unknown;
  try {
    v = parseYaml(readFileSync(path, "utf8"));
  } catch (e) {
    throw new RecallError(`${via} '${path}' is not valid YAML: ${(e as Error).message.split("\n")[0]}`);
  }
  if (v === null || v === undefined) return {};
  if (!isPlainObject(v)) throw new RecallError(`${via} '${path}' must be a YAML mapping of keys`);
  return v;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Entries of a YAML mapping: a nested key tree (`data: {max_prompt_length: 512}`), flat dotted keys
 * (`data.max_prompt_length: 512`), or a mix. A mapping under a path that is no key's parent is one unknown entry.
 */
export function treeEntries(schema: SettingsSchema, tree: Record<string, unknown>, file: string): SettingEntry[] {
  const keys = Object.keys(schema);
  const out: SettingEntry[] = [];
  const walk = (node: Record<string, unknown>, prefix: string) => {
    for (const [k, v] of Object.entries(node)) {
      const path = prefix ? `${prefix}.${k}` : k;
      if (Object.hasOwn(schema, path)) out.push({ key: path, value: v, source: { kind: "file", file, key: path } });
      else if (keys.some((key) => key.startsWith(path + "."))) {
        if (isPlainObject(v)) walk(v, path);
        else if (v !== null) throw new RecallError(`'${path}' in ${file} must be a mapping of keys, got ${shown(v)}`);
      } else out.push({ key: path, value: v, source: { kind: "file", file, key: path } });
    }
  };
  walk(tree, "");
  return out;
}

/** The values as a nested key tree (dotted keys split), in schema order; secrets left out. For YAML output. */
export function settingsTree<S extends SettingsSchema>(schema: S, values: SettingsOf<S>): Record<string, unknown> {
  const tree: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(schema)) {
    if (s.secret) continue;
    const parts = key.split(".");
    let node = tree;
    for (const p of parts.slice(0, -1)) node = (node[p] ??= {}) as Record<string, unknown>;
    const v = (values as Record<string, unknown>)[key];
    node[parts[parts.length - 1]!] = Array.isArray(v) ? [...v] : v;
  }
  return tree;
}

// ---------------------------------------------------------------------------------------------------------------
// Command line

/** How a command reads its command line besides the schema's settings. */
export interface CommandLineSpec {
  /** Settings without `flags` get a flag named after their key (eval's FlashRAG names); otherwise only `flags`. */
  keyFlags: boolean;
  /** Whether bare `key=value` arguments (Hydra overrides, `+key=value`, `++key=value`) set settings. */
  overrides: boolean;
  /** Flags that are not settings (`--config FILE`; switches such as `--print_config`, `--json`) and their help. */
  options?: Readonly<Record<string, { type: "string" | "bool"; help: string }>>;
  /** Flags accepted for compatibility that set nothing: flag → the note shown (the value is never echoed). */
  ignoredFlags?: Readonly<Record<string, string>>;
}

export interface ParsedCommandLine {
  /** Setting entries from flags, in argument order. */
  flags: SettingEntry[];
  /** Setting entries from `key=value` arguments, in argument order. */
  overrides: SettingEntry[];
  /** Values of the spec's options: a string, or true for a bool option given. */
  options: Record<string, string | true>;
  /** Notes for ignored flags that were given. */
  notes: string[];
}


/** Flag name → setting key for a schema under a command-line spec. */
export function flagKeys(schema: SettingsSchema, keyFlags: boolean): Map<string, string> {
  const map = new Map<string, string>();
  for (const [key, s] of Object.entries(schema)) for (const f of s.flags ?? (keyFlags ? [key] : [])) map.set(f, key);
  return map;
}

function unquote(text: string): string {
  const t = text.trim();
  return t.length >= 2 && (t[0] === "'" || t[0] === '"') && t[t.length - 1] === t[0] ? t.slice(1, -1) : text;
}

/**
 * Reads `--flag value`, `--flag=value`, bare bool flags (`--apply_chat`: true unless a value follows) and, where
 * allowed, `key=value` overrides. Flags may be snake_case or kebab-case. Unknown flags and stray arguments are refused.
 */
export function parseCommandLine(schema: SettingsSchema, rawArgs: readonly string[], spec: CommandLineSpec): ParsedCommandLine {
  const byFlag = flagKeys(schema, spec.keyFlags);
  const options = spec.options ?? {};
  const ignored = spec.ignoredFlags ?? {};
  const out: ParsedCommandLine = { flags: [], overrides: [], options: {}, notes: [] };
  const isBool = (name: string) => options[name]?.type === "bool" || (byFlag.has(name) && schema[byFlag.get(name)!]!.type === "bool");
  const looksLikeValue = (tok: string | undefined) =>
    tok !== undefined && !(tok.startsWith("--") || (tok.startsWith("-") && !/^-\d|^-\.\d/.test(tok))) && !(spec.overrides && OVERRIDE_ARG.test(tok));
  for (let i = 0; i < rawArgs.length; i++) {
    const tok = rawArgs[i]!;
    if (!tok.startsWith("-") || /^-\d/.test(tok) || tok === "-") {
      const m = spec.overrides ? OVERRIDE_ARG.exec(tok) : null;
      if (!m) throw new RecallError(`unexpected argument '${tok}'` + (spec.overrides ? " (settings are given as key=value)" : ""));
      out.overrides.push({ key: m[2]!, value: unquote(m[3]!), source: { kind: "override", text: tok } });
      continue;
    }
    if (tok === "--") throw new RecallError(`unexpected argument '--'`);
    const body = tok.replace(/^--?/, "");
    const eq = body.indexOf("=");
    let name = canonicalFlag(eq >= 0 ? body.slice(0, eq) : body);
    let text: string | undefined = eq >= 0 ? body.slice(eq + 1) : undefined;
    // Switches (bool options) take no separate value; `--no-json` turns one off.
    if (name.startsWith("no_") && options[name.slice(3)]?.type === "bool" && text === undefined) {
      name = name.slice(3);
      text = "false";
    } else if (options[name]?.type === "bool" && text === undefined) text = "true";
    const known = byFlag.has(name) || Object.hasOwn(options, name) || Object.hasOwn(ignored, name);
    if (!known) {
      const suggestion = closest(name, [...byFlag.keys(), ...Object.keys(options), ...Object.keys(ignored)]);
      throw new RecallError(`unknown flag '${tok.split("=")[0]}'` + (suggestion ? ` (did you mean --${suggestion}?)` : ""));
    }
    if (text === undefined) {
      if (looksLikeValue(rawArgs[i + 1])) text = rawArgs[++i]!;
      else if (isBool(name)) text = "true"; // ReCall's store_true flags: a bare flag means true
      else if (Object.hasOwn(ignored, name)) text = "";
      else throw new RecallError(`flag --${name} needs a value`);
    }
    if (Object.hasOwn(ignored, name)) {
      if (!out.notes.some((n) => n.startsWith(`--${name}:`))) out.notes.push(`--${name}: ${ignored[name]}`);
    } else if (Object.hasOwn(options, name)) {
      if (options[name]!.type === "bool") {
        if (TRUE_RE.test(text)) out.options[name] = true;
        else if (FALSE_RE.test(text)) delete out.options[name];
        else throw new RecallError(`flag --${name} expects true or false, got '${text}'`);
      } else out.options[name] = text;
    } else {
      const key = byFlag.get(name)!;
      out.flags.push({ key, value: text, source: { kind: "flag", flag: name, text: schema[key]!.secret ? undefined : text } });
    }
  }
  return out;
}

function formatDefault(v: unknown): string | undefined {
  if (v === null || v === "" || (Array.isArray(v) && v.length === 0)) return undefined;
  return Array.isArray(v) ? v.join(",") : String(v);
}

function valueHint(s: Setting): string {
  switch (s.type) {
    case "enum":
      return s.choices.join("|");
    case "bool":
      return "true|false";
    case "int":
      return "int";
    case "float":
      return "number";
    case "list<string>":
    case "list<float>":
      return "a,b";
    case "string":
      return "text";
  }
}

/** One flag's help: the setting's help, its default, and its key when the flag is named otherwise. */
function flagDescription(key: string, flag: string, s: Setting): string {
  const d = formatDefault(s.default);
  const more = [d === undefined ? undefined : `default ${d}`, flag === key ? undefined : `= ${key}`].filter((x) => x !== undefined);
  return s.help + (more.length ? ` (${more.join("; ")})` : "") + (s.ignored ? ` [ignored: ${s.ignored}]` : "");
}

/**
 * citty's args for the command: every setting flag is a string (bools too, so `--use_re_call false` reads as ReCall's
 * scripts write it); `parseCommandLine` turns them into typed values. Options come first, in the spec's order; bool
 * options are switches.
 */
export function settingsArgs(schema: SettingsSchema, spec: CommandLineSpec): ArgsDef {
  const args: ArgsDef = {};
  for (const [name, o] of Object.entries(spec.options ?? {})) args[name] = o.type === "bool" ? { type: "boolean", description: o.help } : { type: "string", description: o.help };
  for (const [flag, key] of flagKeys(schema, spec.keyFlags)) {
    const s = schema[key]!;
    args[flag] = { type: "string", description: flagDescription(key, flag, s), valueHint: valueHint(s) };
  }
  for (const [flag, note] of Object.entries(spec.ignoredFlags ?? {})) args[flag] = { type: "string", description: `Accepted for compatibility: ${note}` };
  return args;
}

/** A listing of every key (type, default, help) for `--help` of commands that take `key=value` overrides. */
export function settingsHelp(schema: SettingsSchema): string {
  const rows = Object.entries(schema).map(([key, s]) => {
    const type = s.type === "enum" ? s.choices.join("|") : s.type + (s.nullable ? "?" : "");
    const d = s.default === null ? "null" : Array.isArray(s.default) ? `[${s.default.join(", ")}]` : s.default === "" ? '""' : String(s.default);
    return [key, `${type} = ${d}`, s.help + (s.ignored ? ` [ignored: ${s.ignored}]` : "")];
  });
  const w0 = Math.max(...rows.map((r) => r[0]!.length));
  const w1 = Math.min(28, Math.max(...rows.map((r) => r[1]!.length))); // a long enum list overflows rather than widening every row
  return rows.map(([k, t, h]) => `  ${k!.padEnd(w0)}  ${t!.padEnd(w1)}  ${h}`).join("\n") + "\n";
}

/** A command line resolved against a schema, and the values of its non-setting options. */
export interface ResolvedCommandLine<S extends SettingsSchema> extends ResolvedSettings<S> {
  options: Record<string, string | true>;
}

/**
 * The whole command line of a command on the schema: `--config FILE.yaml` (when the spec has that option) < flags <
 * `key=value` overrides, over the defaults. Notes of ignored flags come before those of ignored keys.
 */
export function resolveCommandLine<S extends SettingsSchema>(
  schema: S,
  rawArgs: readonly string[],
  spec: CommandLineSpec,
  o: { keepUnknownFileKeys?: boolean } = {},
): ResolvedCommandLine<S> {
  const cl = parseCommandLine(schema, rawArgs, spec);
  const configPath = cl.options.config;
  const file = typeof configPath === "string" ? treeEntries(schema, readYamlMapping(configPath, "--config"), configPath) : [];
  const r = resolveSettings(schema, [...file, ...cl.flags, ...cl.overrides], o);
  return { ...r, notes: [...cl.notes, ...r.notes], options: cl.options };
}
