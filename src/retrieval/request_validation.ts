/**
 * Request bodies of the retriever HTTP API, validated the way ReCall's FastAPI/pydantic server does:
 * a missing or mistyped field is a 422 whose `detail` lists each problem as
 * `{loc: ["body", field], msg, type}`; an empty query is a 400 with detail
 * "Query content cannot be empty"; a body that is not JSON is a 400 naming the parse error.
 */

export class RequestError extends Error {
  constructor(readonly status: number, readonly detail: unknown) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
}

/**
 * What one request may ask for. Memory grows with queries × top_n (the documents of every answer are held until the
 * response is written, about 1 KiB each), so that product has its own cap; past any limit the request is a 422 that
 * names the limit and the server flag that sets it.
 */
export interface RequestLimits {
  maxTopN: number;
  maxBatch: number;
  maxResults: number;
}

export const DEFAULT_LIMITS: RequestLimits = { maxTopN: 10_000, maxBatch: 10_000, maxResults: 100_000 };

interface FieldError {
  loc: (string | number)[];
  msg: string;
  type: string;
}

export interface SearchRequest {
  query: string;
  topN: number;
  returnScore: boolean;
}

export interface BatchSearchRequest {
  queries: string[];
  topN: number;
  returnScore: boolean;
}

export function parseJsonBody(text: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new RequestError(400, `Invalid JSON body: ${(e as Error).message}`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw new RequestError(422, [{ loc: ["body"], msg: "Input should be a valid dictionary or object", type: "model_attributes_type" }]);
  }
  return v as Record<string, unknown>;
}

class Fields {
  readonly errors: FieldError[] = [];
  constructor(
    readonly body: Record<string, unknown>,
    readonly limits: RequestLimits,
  ) {}

  string(name: string): string {
    const v = this.body[name];
    if (v === undefined) this.errors.push({ loc: ["body", name], msg: "Field required", type: "missing" });
    else if (typeof v !== "string") this.errors.push({ loc: ["body", name], msg: "Input should be a valid string", type: "string_type" });
    return typeof v === "string" ? v : "";
  }

  stringList(name: string): string[] {
    const v = this.body[name];
    if (v === undefined) {
      this.errors.push({ loc: ["body", name], msg: "Field required", type: "missing" });
      return [];
    }
    if (!Array.isArray(v)) {
      this.errors.push({ loc: ["body", name], msg: "Input should be a valid list", type: "list_type" });
      return [];
    }
    const max = this.limits.maxBatch;
    if (v.length > max) this.errors.push({ loc: ["body", name], msg: `List should have at most ${max} items (the server's --max_batch)`, type: "too_long" });
    v.forEach((q, i) => {
      if (typeof q !== "string") this.errors.push({ loc: ["body", name, i], msg: "Input should be a valid string", type: "string_type" });
    });
    return v.filter((q): q is string => typeof q === "string");
  }

  /** pydantic's lax int: integers, integral floats, and numeric strings. */
  int(name: string, dflt: number): number {
    const v = this.body[name];
    if (v === undefined || v === null) return dflt;
    const n = typeof v === "number" ? v : typeof v === "string" && /^\s*-?\d+\s*$/.test(v) ? Number(v) : NaN;
    if (!Number.isInteger(n)) {
      this.errors.push({ loc: ["body", name], msg: "Input should be a valid integer", type: "int_type" });
      return dflt;
    }
    if (n < 0 || n > this.limits.maxTopN) {
      this.errors.push({ loc: ["body", name], msg: `Input should be between 0 and ${this.limits.maxTopN} (the server's --max_top_n)`, type: "range" });
      return dflt;
    }
    return n;
  }

  /** pydantic's lax bool: true/false, 0/1, and the usual strings. */
  bool(name: string, dflt: boolean): boolean {
    const v = this.body[name];
    if (v === undefined || v === null) return dflt;
    if (typeof v === "boolean") return v;
    if (v === 0 || v === 1) return v === 1;
    if (typeof v === "string") {
      const s = v.trim().toLowerCase();
      if (["true", "1", "yes", "on", "t", "y"].includes(s)) return true;
      if (["false", "0", "no", "off", "f", "n"].includes(s)) return false;
    }
    this.errors.push({ loc: ["body", name], msg: "Input should be a valid boolean", type: "bool_type" });
    return dflt;
  }

  /** queries × top_n within --max_results (checked once the fields themselves are valid). */
  results(queries: number, topN: number, listName: string, topName: string): void {
    if (this.errors.length === 0 && queries * topN > this.limits.maxResults) {
      this.errors.push({
        loc: ["body", listName],
        msg: `${queries} queries × ${topName} ${topN} = ${queries * topN} results, over the server's limit of ${this.limits.maxResults} (--max_results); send fewer queries per request or a smaller ${topName}`,
        type: "too_long",
      });
    }
  }

  check(): void {
    if (this.errors.length) throw new RequestError(422, this.errors);
  }
}

/** `POST /search`: {query, top_n = 10, return_score = false}. */
export function parseSearchRequest(body: Record<string, unknown>, limits: RequestLimits = DEFAULT_LIMITS): SearchRequest {
  const f = new Fields(body, limits);
  const query = f.string("query");
  const topN = f.int("top_n", 10);
  const returnScore = f.bool("return_score", false);
  f.check();
  if (query.trim() === "") throw new RequestError(400, "Query content cannot be empty");
  return { query, topN, returnScore };
}

/** `POST /batch_search`: {query: [..], top_n = 10, return_score = false}. */
export function parseBatchSearchRequest(body: Record<string, unknown>, limits: RequestLimits = DEFAULT_LIMITS): BatchSearchRequest {
  const f = new Fields(body, limits);
  const queries = f.stringList("query");
  const topN = f.int("top_n", 10);
  const returnScore = f.bool("return_score", false);
  f.results(queries.length, topN, "query", "top_n");
  f.check();
  return { queries, topN, returnScore };
}

/** Search-R1's `POST /retrieve`: {queries: [..], topk = server default, return_scores = false}. */
export function parseRetrieveRequest(body: Record<string, unknown>, defaultTopK: number, limits: RequestLimits = DEFAULT_LIMITS): BatchSearchRequest {
  const f = new Fields(body, limits);
  const queries = f.stringList("queries");
  const topN = f.int("topk", defaultTopK);
  const returnScore = f.bool("return_scores", false);
  f.results(queries.length, topN, "queries", "topk");
  f.check();
  return { queries, topN, returnScore };
}
