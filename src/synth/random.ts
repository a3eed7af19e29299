/** Seeded choices for the generators: everything a family draws comes from one mulberry32 stream. */
import { mulberry32 } from "../util/prng.ts";

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number;
  pick<T>(items: readonly T[]): T;
  /** `k` distinct items in random order. */
  sample<T>(items: readonly T[], k: number): T[];
  shuffle<T>(items: T[]): T[];
}

export function makeRng(seed: number): Rng {
  const next = mulberry32(seed);
  const rng: Rng = {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (items) => items[Math.floor(next() * items.length)]!,
    sample: (items, k) => rng.shuffle([...items]).slice(0, k),
    shuffle: (items) => {
      for (let i = items.length - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1));
        [items[i], items[j]] = [items[j]!, items[i]!];
      }
      return items;
    },
  };
  return rng;
}

/** A seed for one named stream (family, split) derived from the run seed, so adding a family leaves others' data alone. */
export function streamSeed(seed: number, name: string): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

const ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kl", "tr", "st", "th", "sh", "gr"];
const VOWELS = ["a", "e", "i", "o", "u", "ai", "ou", "ei"];
const CODAS = ["", "", "", "n", "r", "l", "s", "th", "x", "m"];

/** A pronounceable made-up word (capitalised), e.g. `Drovenal`: names that no model has memorised. */
export function madeUpName(rng: Rng, syllables = rng.int(2, 3)): string {
  let w = "";
  for (let i = 0; i < syllables; i++) w += rng.pick(ONSETS) + rng.pick(VOWELS) + (i === syllables - 1 ? rng.pick(CODAS) : "");
  return w[0]!.toUpperCase() + w.slice(1);
}

const KEY_CHARS = "abcdefghjkmnpqrstuvwxyz23456789";
/** A random lowercase key such as `k7qm`. */
export function randomKey(rng: Rng, length: number): string {
  let k = "";
  for (let i = 0; i < length; i++) k += KEY_CHARS[rng.int(0, KEY_CHARS.length - 1)]!;
  return k;
}
