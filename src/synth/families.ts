/** The procedural task families by name, and the `--mix` list that says how many samples each one makes. */
import { closest } from "../cli/command.ts";
import { RecallError } from "../errors.ts";
import { calcFamily } from "./calc.ts";
import { lookupFamily } from "./lookup.ts";
import { searchFamily } from "./search.ts";
import { unitsFamily } from "./units.ts";
import type { Family } from "./types.ts";

export const FAMILIES: Readonly<Record<string, Family>> = {
  calc: calcFamily,
  lookup: lookupFamily,
  search: searchFamily,
  units: unitsFamily,
};

/** verl's `data_source` of a family's rows: contains `re_call`, so ReCall's reward is chosen for them. */
export const dataSourceOf = (family: string) => `re_call_synth_${family}`;

export interface MixEntry {
  family: Family;
  weight: number;
  count: number;
}

/**
 * Parses `FAMILY[:WEIGHT]` items and splits `n` samples by weight (largest remainder, so the counts add up to n).
 * `via` names where the list came from, for errors.
 */
export function parseMix(items: readonly string[], n: number, via: string): MixEntry[] {
  if (items.length === 0) throw new RecallError(`${via}: no family given (families: ${Object.keys(FAMILIES).join(", ")})`);
  const entries: { family: Family; weight: number }[] = [];
  for (const item of items) {
    const [name, w, ...rest] = item.split(":").map((s) => s.trim());
    const family = FAMILIES[name!];
    if (family === undefined) {
      const near = closest(name!, Object.keys(FAMILIES));
      throw new RecallError(`${via}: unknown family '${name}'` + (near ? ` (did you mean '${near}'?)` : ` (families: ${Object.keys(FAMILIES).join(", ")})`));
    }
    const weight = w === undefined ? 1 : Number(w);
    if (rest.length > 0 || !Number.isFinite(weight) || weight <= 0) throw new RecallError(`${via}: '${item}' must be FAMILY or FAMILY:WEIGHT with a weight > 0`);
    if (entries.some((e) => e.family === family)) throw new RecallError(`${via}: family '${name}' is given twice`);
    entries.push({ family, weight });
  }
  const total = entries.reduce((s, e) => s + e.weight, 0);
  const exact = entries.map((e) => (n * e.weight) / total);
  const counts = exact.map(Math.floor);
  const order = exact.map((x, i) => [x - Math.floor(x), i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  const deficit = n - counts.reduce((s, c) => s + c, 0);
  for (let k = 0; k < deficit; k++) counts[order[k]![1]]!++;
  return entries.map((e, i) => ({ ...e, count: counts[i]! }));
}
