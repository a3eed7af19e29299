/**
 * Builds the single-file executable: `bun build --compile` bundles the CLI, every WGSL shader (text
 * imports) and Dawn's shared library (bun-webgpu's per-platform package, a file import) into dist/.
 *
 *   bun scripts/build.ts                 → dist/recall for this machine
 *   bun scripts/build.ts --all           → also darwin-arm64, darwin-x64, windows-x64, linux-arm64 where possible
 */
import { $ } from "bun";
import { existsSync, mkdirSync, renameSync, rmSync } from "node:fs";

const root = new URL("..", import.meta.url).pathname;
const all = process.argv.includes("--all");

// Bun target name, Dawn package it needs, output name.
const CROSS: [string, string, string][] = [
  ["bun-darwin-arm64", "bun-webgpu-darwin-arm64", "recall-darwin-arm64"],
  ["bun-darwin-x64", "bun-webgpu-darwin-x64", "recall-darwin-x64"],
  ["bun-windows-x64", "bun-webgpu-win32-x64", "recall-windows-x64.exe"],
  ["bun-linux-arm64", "bun-webgpu-linux-arm64", "recall-linux-arm64"],
];

mkdirSync(`${root}/dist`, { recursive: true });

async function compile(target: string | undefined, out: string): Promise<void> {
  const tmp = `${root}/dist/.${out}.tmp`;
  rmSync(tmp, { force: true });
  const targetArgs = target ? [`--target=${target}`] : [];
  await $`${process.execPath} build --compile --minify-syntax ${targetArgs} ${root}/cmd/main.ts --outfile ${tmp}`.cwd(root).quiet();
  renameSync(tmp, `${root}/dist/${out}`);
  console.log(`built dist/${out}`);
}

await compile(undefined, "recall");

if (all) {
  for (const [target, dawnPkg, out] of CROSS) {
    if (!existsSync(`${root}/node_modules/${dawnPkg}`)) {
      console.log(`skipped ${out}: Dawn for that platform (${dawnPkg}) is not installed here (npm installs only this platform's optional package)`);
      continue;
    }
    try {
      await compile(target, out);
    } catch (e) {
      console.log(`skipped ${out}: ${(e as Error).message.split("\n")[0]}`);
    }
  }
}
