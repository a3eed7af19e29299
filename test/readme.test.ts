/** Every command and flag a user can type is documented in the README (and has --help examples). */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { ArgsDef } from "citty";
import type { RecallCommand } from "../src/cli/command.ts";
import { PROJECT_ROOT } from "./harness.ts";

type Resolvable<V> = V | Promise<V> | (() => V) | (() => Promise<V>);
const resolve = async <V>(v: Resolvable<V> | undefined): Promise<V | undefined> => (typeof v === "function" ? await (v as () => V | Promise<V>)() : await v);

async function walk(cmd: RecallCommand, path: string[], out: { path: string[]; cmd: RecallCommand }[]): Promise<void> {
  out.push({ path, cmd });
  const subs = await resolve(cmd.subCommands as Resolvable<Record<string, Resolvable<RecallCommand>>>);
  for (const [name, sub] of Object.entries(subs ?? {})) {
    const c = (await resolve(sub))!;
    const meta = await resolve(c.meta as Resolvable<{ hidden?: boolean }>);
    if (meta?.hidden) continue;
    await walk(c, [...path, name], out);
  }
}

test("README documents every command and every flag; every command has examples", async () => {
  // cmd/main.ts runs the CLI on import; read its command table without running it.
  const source = readFileSync(join(PROJECT_ROOT, "cmd/main.ts"), "utf8");
  const names = [...source.matchAll(/^\s+([\w-]+): \(\) => import\("\.\/([\w-]+)\.ts"\)/gm)];
  expect(names.length).toBeGreaterThan(5);
  const readme = readFileSync(join(PROJECT_ROOT, "README.md"), "utf8");
  const missing: string[] = [];
  let checked = 0;
  for (const [, name, file] of names) {
    const mod = (await import(join(PROJECT_ROOT, "cmd", `${file}.ts`))) as { default: RecallCommand };
    const all: { path: string[]; cmd: RecallCommand }[] = [];
    await walk(mod.default, [name!], all);
    for (const { path, cmd } of all) {
      const title = `recall ${path.join(" ")}`;
      if (!readme.includes(title)) missing.push(`command '${title}'`);
      const args = ((await resolve(cmd.args as Resolvable<ArgsDef>)) ?? {}) as ArgsDef;
      if (cmd.run && !cmd.examples?.length) missing.push(`examples of '${title}'`);
      for (const [flag, def] of Object.entries(args)) {
        if (def.type === "positional") continue;
        checked++;
        if (!readme.includes(`--${flag}`)) missing.push(`flag --${flag} of '${title}'`);
      }
    }
  }
  expect(checked).toBeGreaterThan(60);
  expect(missing).toEqual([]);
});
