/**
 * `search`: multi-hop questions over a generated knowledge base (people, cities, companies, countries with random
 * made-up names and attributes), answered with ReCall's own `wikipedia_search` tool (env and schema exactly as
 * MuSiQue rows carry them) against a BM25 index of the knowledge base's passages. A 2- or 3-hop question needs each
 * answer to form the next query, as MuSiQue's do. Writes `corpus.jsonl` (FlashRAG rows) and the index `bm25/`; the
 * golden results are what the retriever returns, and verification runs the Python tool in the sandbox against a
 * local retriever server over the same index.
 */
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openBm25RetrieverSync, type Bm25Retriever } from "../retrieval/bm25_retriever.ts";
import { buildBm25Index } from "../retrieval/index_builder.ts";
import { startRetrieverServer, type RunningRetrieverServer } from "../retrieval/server.ts";
import { RecallError } from "../errors.ts";
import { passagesText } from "../rollout/search_tool.ts";
import { SEARCH_URL_PLACEHOLDER, WIKIPEDIA_SEARCH_ENV, WIKIPEDIA_SEARCH_FUNC_SCHEMAS } from "../rollout/templates.ts";
import { finalTurn } from "./trace.ts";
import { toolsetText, withDistractors, type JsonValue, type ToolDef } from "./tools.ts";
import { madeUpName, makeRng, streamSeed } from "./random.ts";
import type { Candidate, Family, GoldenTurn } from "./types.ts";

type EntityType = "person" | "city" | "company" | "country";

interface Entity {
  type: EntityType;
  name: string;
  /** Relation name → the related entity's name or a literal. */
  attrs: Record<string, string>;
  passage: string;
}

interface Relation {
  from: EntityType;
  /** The type of the entity it leads to, or `literal` (a year). */
  to: EntityType | "literal";
  query(name: string): string;
}

const RELATIONS: Record<string, Relation> = {
  born_in: { from: "person", to: "city", query: (n) => `${n} born` },
  works_for: { from: "person", to: "company", query: (n) => `${n} works for` },
  birth_year: { from: "person", to: "literal", query: (n) => `${n} born year` },
  country: { from: "city", to: "country", query: (n) => `${n} city country` },
  city_founded: { from: "city", to: "literal", query: (n) => `${n} city founded` },
  hq: { from: "company", to: "city", query: (n) => `${n} headquarters` },
  company_founded: { from: "company", to: "literal", query: (n) => `${n} company founded` },
  capital: { from: "country", to: "city", query: (n) => `${n} capital` },
};

interface QuestionPath {
  rels: string[];
  natural: string[];
  compact: string[];
}

const PATHS: QuestionPath[] = [
  { rels: ["born_in"], natural: ["In which city was {x} born?", "Where was {x} born?"], compact: ["Birth city of {x}?"] },
  { rels: ["works_for"], natural: ["Which company does {x} work for?", "Who is the employer of {x}?"], compact: ["Employer of {x}?"] },
  { rels: ["birth_year"], natural: ["In what year was {x} born?"], compact: ["Birth year of {x}?"] },
  { rels: ["country"], natural: ["In which country is the city of {x}?"], compact: ["Country of {x}?"] },
  { rels: ["hq"], natural: ["In which city is {x} headquartered?"], compact: ["HQ city of {x}?"] },
  { rels: ["capital"], natural: ["What is the capital of {x}?"], compact: ["Capital of {x}?"] },
  { rels: ["born_in", "country"], natural: ["In which country was {x} born?"], compact: ["Birth country of {x}?"] },
  { rels: ["works_for", "hq"], natural: ["In which city is the company that {x} works for headquartered?"], compact: ["HQ city of {x}'s employer?"] },
  { rels: ["born_in", "city_founded"], natural: ["In what year was the birthplace of {x} founded?"], compact: ["Founding year of {x}'s birth city?"] },
  { rels: ["hq", "country"], natural: ["In which country is {x} headquartered?"], compact: ["HQ country of {x}?"] },
  { rels: ["works_for", "company_founded"], natural: ["When was the company that {x} works for founded?"], compact: ["Founding year of {x}'s employer?"] },
  { rels: ["works_for", "hq", "country"], natural: ["In which country is the headquarters of the company that {x} works for?"], compact: ["HQ country of {x}'s employer?"] },
  { rels: ["born_in", "country", "capital"], natural: ["What is the capital of the country where {x} was born?"], compact: ["Capital of {x}'s birth country?"] },
];

const PROFESSIONS = ["painter", "engineer", "chemist", "novelist", "architect", "violinist", "botanist", "lawyer", "pilot", "teacher"];
const INDUSTRIES = ["shipping", "textile", "software", "mining", "food", "glassware", "publishing", "railway"];
const COMPANY_SUFFIXES = ["Works", "Labs", "Group", "Foods", "Motors", "Press", "Holdings"];

const withArticle = (w: string) => (/^[aeiou]/.test(w) ? `an ${w}` : `a ${w}`);

/** The knowledge base: entity names are unique made-up words, attributes random. */
export function buildKnowledgeBase(seed: number, people: number): Entity[] {
  const rng = makeRng(streamSeed(seed, "search-kb"));
  // Every made-up word is used once, so a name's words point at one passage only (BM25 finds it by name).
  const used = new Set<string>();
  const unique = (words: () => string[]) => {
    for (let tries = 0; ; tries++) {
      if (tries > 100_000) throw new RecallError(`search: cannot make ${people} distinct people; lower --kb_entities`);
      const ws = words();
      if (ws.every((w) => !used.has(w.toLowerCase())) && new Set(ws.map((w) => w.toLowerCase())).size === ws.length) {
        for (const w of ws) used.add(w.toLowerCase());
        return ws.join(" ");
      }
    }
  };
  const nCountries = Math.max(4, Math.round(people / 20));
  const nCities = Math.max(8, Math.round(people / 4));
  const nCompanies = Math.max(5, Math.round(people / 5));
  const countries = Array.from({ length: nCountries }, () => unique(() => [madeUpName(rng, 3)]));
  const cities: Entity[] = Array.from({ length: nCities }, (_, i) => {
    const name = unique(() => [madeUpName(rng)]);
    const country = countries[i % nCountries]!; // every country gets a city (its capital)
    const founded = String(rng.int(1100, 1950));
    return { type: "city", name, attrs: { country, city_founded: founded }, passage: `${name} is a city in ${country}, founded in ${founded}.` };
  });
  const countryEntities: Entity[] = countries.map((name) => {
    const capital = rng.pick(cities.filter((c) => c.attrs.country === name)).name;
    return { type: "country", name, attrs: { capital }, passage: `${name} is a country. Its capital is ${capital}.` };
  });
  const companies: Entity[] = Array.from({ length: nCompanies }, () => {
    const name = `${unique(() => [madeUpName(rng)])} ${rng.pick(COMPANY_SUFFIXES)}`;
    const hq = rng.pick(cities).name;
    const founded = String(rng.int(1850, 2015));
    return { type: "company", name, attrs: { hq, company_founded: founded }, passage: `${name} is ${withArticle(rng.pick(INDUSTRIES))} company headquartered in ${hq}. It was founded in ${founded}.` };
  });
  const persons: Entity[] = Array.from({ length: people }, () => {
    const name = unique(() => [madeUpName(rng, 2), madeUpName(rng)]);
    const city = rng.pick(cities).name;
    const company = rng.pick(companies).name;
    const year = String(rng.int(1930, 2004));
    return {
      type: "person",
      name,
      attrs: { born_in: city, works_for: company, birth_year: year },
      passage: `${name} is ${withArticle(rng.pick(PROFESSIONS))} born in ${city} in ${year}. ${name} works for ${company}.`,
    };
  });
  return [...persons, ...cities, ...companies, ...countryEntities];
}

/** FlashRAG's wiki corpus form: a quoted title, a newline, the text. */
const contentsOf = (e: Entity) => `"${e.name}"\n${e.passage}`;

const SEARCH_TOOL: ToolDef = {
  name: "wikipedia_search",
  description: "Search Wikipedia for a given query.",
  params: [],
  source: WIKIPEDIA_SEARCH_ENV,
  schema: (JSON.parse(WIKIPEDIA_SEARCH_FUNC_SCHEMAS) as JsonValue[])[0]!,
};

export const searchFamily: Family = {
  name: "search",
  description: "multi-hop questions over a generated knowledge base, answered with ReCall's wikipedia_search tool against a BM25 index (corpus and index written too)",
  async open({ knobs, seed, outDir, log }) {
    const kb = buildKnowledgeBase(seed, knobs.kbEntities);
    const byName = new Map(kb.map((e) => [e.name, e]));
    mkdirSync(outDir, { recursive: true });
    const corpusPath = join(outDir, "corpus.jsonl");
    const tmp = `${corpusPath}.${process.pid}.tmp`;
    writeFileSync(tmp, kb.map((e, i) => JSON.stringify({ id: String(i), contents: contentsOf(e) }) + "\n").join(""));
    renameSync(tmp, corpusPath);
    const indexPath = join(outDir, "bm25");
    buildBm25Index({ corpusPath, indexPath, overwrite: true, resume: false });
    log(`search: knowledge base of ${kb.length} passages → ${corpusPath}, BM25 index → ${indexPath}`);
    const retriever: Bm25Retriever = openBm25RetrieverSync(indexPath, corpusPath);
    let server: RunningRetrieverServer | undefined = await startRetrieverServer(retriever, { host: "127.0.0.1", port: 0 });
    const url = server.url;
    const paths = PATHS.filter((p) => p.rels.length === knobs.hops);
    // The index does not change during a run, so a query's passages are looked up once (a duplicate-heavy run asks
    // the same questions many times before it has enough distinct ones).
    const searched = new Map<string, ReturnType<Bm25Retriever["searchSync"]>["docs"]>();
    const search = (query: string) => searched.get(query) ?? searched.set(query, retriever.searchSync(query, knobs.searchTopN).docs).get(query)!;
    const ofType = new Map<EntityType, Entity[]>();
    for (const e of kb) ofType.set(e.type, [...(ofType.get(e.type) ?? []), e]);
    return {
      allowUrls: [url],
      files: ["corpus.jsonl", "bm25"],
      verificationEnv: (env) => env.split(SEARCH_URL_PLACEHOLDER).join(url),
      generate(rng): Candidate | string {
        const path = rng.pick(paths);
        const start = rng.pick(ofType.get(RELATIONS[path.rels[0]!]!.from)!);
        const turns: GoldenTurn[] = [];
        let current = start;
        let answer = "";
        for (const [i, rel] of path.rels.entries()) {
          const query = RELATIONS[rel]!.query(current.name);
          const docs = search(query);
          if (!docs.some((d) => d.contents === contentsOf(current))) return `search: the passage about '${current.name}' is not in the top ${knobs.searchTopN} for '${query}'`;
          answer = current.attrs[rel]!;
          turns.push({
            think: knobs.style === "compact" ? "" : i === 0 ? ` I need facts about ${current.name}, so I search for them. ` : ` The result says ${current.name}. Next I search for ${current.name}. `,
            calls: [{ name: "wikipedia_search", arguments: { query, top_n: knobs.searchTopN }, result: `result: \n${passagesText(docs)}` }],
          });
          if (RELATIONS[rel]!.to !== "literal") current = byName.get(answer)!;
        }
        const question = rng.pick(knobs.style === "compact" ? path.compact : path.natural).replace("{x}", start.name);
        const { env, funcSchemas } = toolsetText(withDistractors(rng, [SEARCH_TOOL], knobs.distractors));
        return {
          family: "search",
          question,
          env,
          funcSchemas,
          groundTruth: answer,
          golden: { turns, ...finalTurn(knobs.style, answer, `The search results say the answer is ${answer}.`) },
          meta: { hops: path.rels.length, path: path.rels.join(">") },
        };
      },
      async close() {
        await server?.stop();
        server = undefined;
        await retriever.close();
      },
    };
  },
};
