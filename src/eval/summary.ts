/** The summary table printed at the end of an evaluation (plain text, aligned, no colour needed). */

export function renderTable(title: string, rows: readonly [string, string][]): string {
  const w0 = Math.max(title.length, ...rows.map(([k]) => k.length));
  const w1 = Math.max(5, ...rows.map(([, v]) => v.length));
  const line = `+${"-".repeat(w0 + 2)}+${"-".repeat(w1 + 2)}+`;
  const out = [line, `| ${title.padEnd(w0)} | ${"".padStart(w1)} |`, line];
  for (const [k, v] of rows) out.push(`| ${k.padEnd(w0)} | ${v.padStart(w1)} |`);
  out.push(line);
  return out.join("\n");
}
