/**
 * English stemming: the Snowball English ("Porter2") algorithm, through `multilingual-stemmer`
 * (Snowball 3.1 compiled to WebAssembly). It gives the same stems as PyStemmer 3.x, the stemmer
 * FlashRAG's bm25s backend uses (`Stemmer.Stemmer("english")`) — checked on Snowball's 29,417-word
 * English vocabulary (test/retrieval_tokenizer.test.ts).
 *
 * The package's own entry point reads its .wasm from disk next to the module, which a
 * `bun build --compile` binary does not carry; so this file imports the wasm-bindgen glue and the
 * .wasm directly and embeds the .wasm as a file asset.
 */
import { readFileSync } from "node:fs";
import { RecallError } from "../errors.ts";
import { initSync, Languages, Stemmer } from "../../node_modules/multilingual-stemmer/dist/browser/index.js";
// @ts-ignore -- Bun's file loader: the import is the embedded file's path (tsc sees the package's wasm typings instead)
import wasmFile from "../../node_modules/multilingual-stemmer/dist/browser/index_bg.wasm" with { type: "file" };

const wasmPath: string = String(wasmFile);

export type StemmerName = "english" | "none";

let english: Stemmer | undefined;

function englishStemmer(): Stemmer {
  if (!english) {
    initSync({ module: readFileSync(wasmPath) });
    english = new Stemmer(Languages.English);
  }
  return english;
}

/** A stemming function with a bounded memo (corpus vocabularies repeat words constantly). */
export function createStemmer(name: StemmerName, cacheSize = 1 << 20): (word: string) => string {
  if (name === "none") return (w) => w;
  const s = englishStemmer();
  let cache = new Map<string, string>();
  return (word: string) => {
    let stem = cache.get(word);
    if (stem === undefined) {
      stem = s.stem(word);
      if (cache.size >= cacheSize) cache = new Map();
      cache.set(word, stem);
    }
    return stem;
  };
}

export function parseStemmerName(v: string | undefined): StemmerName {
  const s = (v ?? "english").trim().toLowerCase();
  if (s === "english" || s === "en" || s === "porter2" || s === "snowball") return "english";
  if (s === "none" || s === "") return "none";
  throw new RecallError(`--stemmer must be english or none, got '${v}'`);
}
