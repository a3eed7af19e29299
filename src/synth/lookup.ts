/**
 * `lookup`: a key–value store tool over random keys, so the answer cannot be guessed without the calls. With
 * `hops` > 1 the first key's value is another key (a chain of 1–3 lookups). The store also holds `lookup_keys`
 * other entries, some of them chains of their own, so the table cannot be read off by position.
 */
import { pyReprStr } from "../python/repr.ts";
import { finalTurn } from "./trace.ts";
import { toolsetText, withDistractors, type ToolDef } from "./tools.ts";
import { madeUpName, randomKey, type Rng } from "./random.ts";
import type { Candidate, Family, FamilyKnobs, GoldenTurn } from "./types.ts";

function lookupTool(table: Map<string, string>): ToolDef {
  const entries = [...table].map(([k, v]) => `    ${pyReprStr(k)}: ${pyReprStr(v)},`).join("\n");
  return {
    name: "lookup",
    description: "Look up the value stored under a key in the key-value store.",
    params: [{ name: "key", type: "string", description: "The key to look up." }],
    source: `_STORE = {\n${entries}\n}\n\ndef lookup(key: str):\n    if key in _STORE:\n        return _STORE[key]\n    return 'no entry for key ' + repr(key)\n`,
  };
}

/** A value a question asks for: a made-up word with a number, e.g. `tavrin-42`. */
function finalValue(rng: Rng): string {
  return `${madeUpName(rng).toLowerCase()}-${rng.int(10, 99)}`;
}

const WHAT = ["passcode", "locker code", "password", "serial", "tag"];

function question(rng: Rng, style: FamilyKnobs["style"], key: string, hops: number): string {
  const q = `'${key}'`;
  if (style === "compact") {
    if (hops === 1) return rng.pick([`Value of key ${q}?`, `lookup ${q} = ?`, `What is stored at ${q}?`]);
    return rng.pick([`Follow ${hops} lookups from ${q}. Final value?`, `Key ${q} -> ${hops} hops. Value?`]);
  }
  const what = rng.pick(WHAT);
  if (hops === 1) return rng.pick([`What value does the store hold under the key ${q}?`, `The ${what} is stored under the key ${q}. What is the ${what}?`]);
  const via = hops === 2 ? "that key holds" : `following the keys ${hops - 1} times leads to the entry that holds`;
  return rng.pick([
    `The key ${q} holds the name of another key, and ${via} the ${what}. What is the ${what}?`,
    `Start at the key ${q}: its value is another key. After ${hops} lookups you reach the ${what}. What is it?`,
  ]);
}

export const lookupFamily: Family = {
  name: "lookup",
  description: "a key-value store tool over random keys; 1-3 chained lookups (the value of one key is the next key)",
  async open({ knobs }) {
    return {
      generate(rng): Candidate | string {
        const hops = knobs.hops;
        const table = new Map<string, string>();
        const fresh = () => {
          for (;;) {
            const k = randomKey(rng, 4);
            if (!table.has(k)) return k;
          }
        };
        // The chain asked about, then noise entries (values or other short chains).
        const chain = Array.from({ length: hops }, fresh);
        chain.forEach((k) => table.set(k, ""));
        chain.forEach((k, i) => table.set(k, i + 1 < hops ? chain[i + 1]! : finalValue(rng)));
        while (table.size < Math.max(knobs.lookupKeys, hops)) {
          const k = fresh();
          const keys = [...table.keys()];
          table.set(k, rng.next() < 0.4 ? rng.pick(keys) : finalValue(rng));
        }
        const shuffled = new Map(rng.shuffle([...table]));
        const turns: GoldenTurn[] = chain.map((k, i) => ({
          think: knobs.style === "compact" ? "" : i === 0 ? ` I need the value under '${k}', so I look it up. ` : ` That value is a key; I look up '${k}' next. `,
          calls: [{ name: "lookup", arguments: { key: k }, result: `result: \n${table.get(k)!}` }],
        }));
        const answer = table.get(chain[hops - 1]!)!;
        const { env, funcSchemas } = toolsetText(withDistractors(rng, [lookupTool(shuffled)], knobs.distractors));
        return {
          family: "lookup",
          question: question(rng, knobs.style, chain[0]!, hops),
          env,
          funcSchemas,
          groundTruth: answer,
          golden: { turns, ...finalTurn(knobs.style, answer, `The lookup returned ${answer}.`) },
          meta: { hops },
        };
      },
      async close() {},
    };
  },
};
