/**
 * bench/synth: verified samples per second of `recall synth`, per family and for a mix, through the same runSynth a
 * user's command runs (each run opens its own sandbox pool, as the command does).
 *
 *   ./node_modules/.bin/bun bench/synth.ts [--n 2000] [--families calc,lookup,search,units]
 *                                          [--mix calc:0.4,lookup:0.3,search:0.3] [--hops 1] [--kb_entities 1000]
 *                                          [--workers 2] [--repeat 1]
 *
 * Prints a line per run with the load average before it: samples, generation seconds (candidates drawn, duplicates
 * included), seconds until the sandbox pool was ready, verification seconds (from the pool being ready to the last
 * verdict; generation of later batches overlaps it),
 * `verified/s` (samples ÷ verification seconds, the figure stats.json reports) and `end-to-end/s` (samples ÷ the
 * whole run: sandbox start, knowledge base and index for search, generation, verification, writing the files).
 * Every sample counted was verified in the sandbox by running its golden calls. Timings vary with the machine's
 * load; repeat and compare runs made at the same load.
 */
import { loadavg, tmpdir } from "node:os";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseSynthCommandLine } from "../src/config/synth.ts";
import { runSynth } from "../src/synth/run.ts";

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : dflt;
};
const N = opt("n", "2000");
const FAMILY_LIST = opt("families", "calc,lookup,search,units").split(",").filter((f) => f !== "");
const MIX = opt("mix", "calc:0.4,lookup:0.3,search:0.3");
const HOPS = opt("hops", "1");
// The search family needs a knowledge base big enough for n distinct questions (200 people give about 1,100 at 1 hop).
const KB = opt("kb_entities", "1000");
const WORKERS = opt("workers", "");
const REPEAT = Number(opt("repeat", "1"));

const load = () => loadavg().map((x) => x.toFixed(2)).join(" ");
const root = mkdtempSync(join(tmpdir(), "recall-bench-synth-"));

async function one(label: string, mix: string): Promise<void> {
  const out = join(root, label.replace(/[^A-Za-z0-9]+/g, "_"));
  const args = ["--mix", mix, "--n", N, "--hops", HOPS, "--kb_entities", KB, "--out", out, ...(WORKERS ? ["--workers", WORKERS] : [])];
  const before = load();
  const t0 = performance.now();
  const r = await runSynth(parseSynthCommandLine(args).settings, { log: () => {} });
  const wall = (performance.now() - t0) / 1000;
  const n = r.train.length + r.test.length;
  const t = r.stats.timing;
  console.log(
    `${label.padEnd(34)} n=${n}  generate ${t.generate_s.toFixed(2)} s  pool ready ${(t.sandbox_ready_s ?? 0).toFixed(2)} s  verify ${t.verify_s.toFixed(2)} s  ` +
      `verified/s ${String(t.verified_per_s).padStart(5)}  end-to-end ${wall.toFixed(2)} s = ${String(Math.round(n / wall)).padStart(5)}/s  (load ${before})`,
  );
  rmSync(out, { recursive: true, force: true });
}

console.log(`recall synth, --n ${N} --hops ${HOPS} --kb_entities ${KB}${WORKERS ? ` --workers ${WORKERS}` : ""}; load average (1/5/15 min) before each run`);
try {
  for (let k = 0; k < REPEAT; k++) {
    for (const f of FAMILY_LIST) await one(f, f);
    if (MIX) await one(`mix ${MIX}`, MIX);
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
