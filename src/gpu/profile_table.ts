/**
 * A GPU profile (profiler.ts) as a text table: per kernel family its dispatches, GPU milliseconds and share of the
 * GPU total, then the total beside the wall time of the same span — the gap is CPU work, submission and waiting.
 */
import type { ProfileSnapshot } from "./profiler.ts";

/** `rows` families at most (largest GPU time first); the rest are summed into one line. */
export function formatProfile(p: ProfileSnapshot, wallMs: number, rows = 15): string {
  const shown = p.families.slice(0, rows);
  const rest = p.families.slice(rows);
  const lines: [string, number, number][] = shown.map(([name, f]) => [name, f.dispatches, f.ms]);
  if (rest.length) lines.push([`(${rest.length} more families)`, rest.reduce((a, [, f]) => a + f.dispatches, 0), rest.reduce((a, [, f]) => a + f.ms, 0)]);
  const width = Math.max(24, ...lines.map(([n]) => n.length)) + 2;
  const share = (ms: number) => (p.ms > 0 ? `${((100 * ms) / p.ms).toFixed(1)}%` : "-");
  const row = (name: string, n: number | string, ms: string, sh: string) => name.padEnd(width) + String(n).padStart(11) + ms.padStart(12) + sh.padStart(8);
  const out = [row("kernel family", "dispatches", "GPU ms", "share")];
  for (const [name, n, ms] of lines) out.push(row(name, n, ms.toFixed(2), share(ms)));
  out.push(row("GPU total", p.dispatches, p.ms.toFixed(2), share(p.ms)));
  const busy = wallMs > 0 ? ` (GPU busy ${((100 * p.ms) / wallMs).toFixed(0)}% of it)` : "";
  out.push(row("wall time", "", wallMs.toFixed(2), "") + busy);
  return out.join("\n");
}

/** Metrics keys of a profile: `profile/<family>_ms` per family and `profile/gpu_ms`, `profile/dispatches` in all. */
export function profileMetrics(p: ProfileSnapshot): Record<string, number> {
  const out: Record<string, number> = { "profile/gpu_ms": p.ms, "profile/dispatches": p.dispatches };
  for (const [name, f] of p.families) out[`profile/${name}_ms`] = f.ms;
  return out;
}
