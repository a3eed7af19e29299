/**
 * Builds the single-file executable: `bun build --compile` bundles the CLI, every WGSL shader (text imports) and Dawn's
 * shared library (bun-webgpu's per-platform package, which Bun resolves for the target platform and embeds) into dist/.
 *
 *   bun scripts/build.ts          → dist/recall for this machine
 *   bun scripts/build.ts --all    → also darwin-arm64, darwin-x64, windows-x64, linux-arm64 where a Dawn build exists
 *
 * Cross-targets need that platform's Dawn package, which npm does not install on this host; --all fetches it from the npm
 * registry with `npm pack` into node_modules, and checks that the library exports every symbol the binding calls.
 */
import { $ } from "bun";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";

const root = new URL("..", import.meta.url).pathname;
const all = process.argv.includes("--all");

// Bun target, Dawn package, output name.
const CROSS: [string, string, string][] = [
  ["bun-darwin-arm64", "bun-webgpu-darwin-arm64", "recall-darwin-arm64"],
  ["bun-darwin-x64", "bun-webgpu-darwin-x64", "recall-darwin-x64"],
  ["bun-windows-x64", "bun-webgpu-win32-x64", "recall-windows-x64.exe"],
  ["bun-linux-arm64", "bun-webgpu-linux-arm64", "recall-linux-arm64"],
];

/** Worker-thread entry points: `bun build --compile` only embeds a worker given as an extra entry point. */
const WORKERS = ["src/retrieval/retriever_worker.ts", "src/retrieval/corpus_decoder_worker.ts"];

mkdirSync(`${root}/dist`, { recursive: true });

async function compile(target: string | undefined, out: string): Promise<void> {
  const tmp = `${root}/dist/.tmp-${out}`; // keeps the .exe suffix Bun insists on for Windows
  rmSync(tmp, { force: true });
  const targetArgs = target ? [`--target=${target}`] : [];
  const workers = WORKERS.map((w) => `${root}/${w}`);
  // NODE_ENV is inlined at build time: a build started from `bun test` (NODE_ENV=test) would otherwise ship a
  // binary whose logger believes it runs under a test runner and stays silent.
  await $`${process.execPath} build --compile --minify-syntax ${targetArgs} ${root}/cmd/main.ts ${workers} --outfile ${tmp}`
    .cwd(root)
    .env({ ...process.env, NODE_ENV: "production" })
    .quiet();
  renameSync(tmp, `${root}/dist/${out}`);
  console.log(`built dist/${out}`);
}

/** Fetches a platform's Dawn package into node_modules (npm installs only the host's). Returns why not, on failure. */
async function fetchDawn(pkg: string): Promise<string | undefined> {
  if (existsSync(`${root}/node_modules/${pkg}`)) return undefined;
  const cache = `${root}/node_modules/.cache/recall-dawn`;
  mkdirSync(cache, { recursive: true });
  const packed = await $`npm pack ${pkg} --silent`.cwd(cache).quiet().nothrow();
  if (packed.exitCode !== 0) return `${pkg} is not published on the npm registry`;
  const tgz = packed.stdout.toString().trim().split("\n").pop()!;
  mkdirSync(`${root}/node_modules/${pkg}`, { recursive: true });
  await $`tar xzf ${cache}/${tgz} -C ${root}/node_modules/${pkg} --strip-components=1`.quiet();
  return undefined;
}

/** Symbols the binding dlopens that the platform library does not contain (a version mismatch would fail at start). */
function missingSymbols(pkg: string): string[] {
  const binding = readFileSync(`${root}/node_modules/bun-webgpu/index.js`, "utf8");
  const block = binding.slice(binding.indexOf("const { symbols } = dlopen"));
  const wanted = [...new Set([...block.slice(0, block.indexOf("\n  });")).matchAll(/^\s+((?:zw|wgpu)\w+):/gm)].map((m) => m[1]!))];
  const dir = `${root}/node_modules/${pkg}`;
  const lib = ["libwebgpu_wrapper.dylib", "libwebgpu_wrapper.so", "webgpu_wrapper.dll", "libwebgpu_wrapper.dll"].find((f) => existsSync(`${dir}/${f}`));
  if (!lib) return ["(no library file in package)"];
  const bytes = readFileSync(`${dir}/${lib}`).toString("latin1");
  return wanted.filter((s) => !bytes.includes(s));
}

await compile(undefined, "recall");

if (all) {
  for (const [target, dawnPkg, out] of CROSS) {
    const why = await fetchDawn(dawnPkg);
    if (why) {
      console.log(`skipped ${out}: ${why}`);
      continue;
    }
    const missing = missingSymbols(dawnPkg);
    if (missing.length) {
      console.log(`skipped ${out}: ${dawnPkg} lacks ${missing.length} symbols the binding uses (${missing.slice(0, 3).join(", ")}…)`);
      continue;
    }
    try {
      await compile(target, out);
    } catch (e) {
      console.log(`skipped ${out}: ${(e as Error).message.split("\n")[0]}`);
    }
  }
}
