/**
 * What `recall retriever serve` serves: ReCall's retriever YAML (`--config`), overridden by plain
 * flags. Keys read: `retrieval_method` (only `bm25` for now), `index_path`, `corpus_path`,
 * `retrieval_topk`; `faiss_gpu`, `bm25_backend` and FlashRAG's other keys are accepted and ignored.
 */
import { existsSync, readFileSync } from "node:fs";
import { parse } from "yaml";
import { RecallError } from "../errors.ts";

export interface ServeConfig {
  retrievalMethod: string;
  indexPath: string;
  corpusPath: string | undefined;
  topK: number;
}

export function loadServeConfig(configPath: string | undefined, flags: { indexPath?: string; corpusPath?: string; topK?: number }): ServeConfig {
  let y: Record<string, unknown> = {};
  if (configPath !== undefined) {
    if (!existsSync(configPath)) throw new RecallError(`--config '${configPath}' not found`);
    let v: unknown;
    try {
      v = parse(readFileSync(configPath, "utf8"));
    } catch (e) {
      throw new RecallError(`--config '${configPath}' is not valid YAML: ${(e as Error).message}`);
    }
    if (v !== null && v !== undefined && (typeof v !== "object" || Array.isArray(v))) throw new RecallError(`--config '${configPath}' must be a YAML mapping of keys`);
    y = (v ?? {}) as Record<string, unknown>;
  }
  const where = configPath ? `in ${configPath}` : "";
  const str = (k: string): string | undefined => {
    const v = y[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "string") throw new RecallError(`'${k}' ${where} must be a string, got ${JSON.stringify(v)}`);
    return v;
  };
  const method = (str("retrieval_method") ?? "bm25").trim();
  if (method.toLowerCase() !== "bm25") {
    throw new RecallError(`retrieval_method '${method}' ${where} is a dense retriever; recall serves only bm25 for now`, {
      hint: "set retrieval_method: bm25 and build an index with 'recall retriever index'",
    });
  }
  const indexPath = flags.indexPath ?? str("index_path");
  if (!indexPath) throw new RecallError("no index: pass --index_path or --config with index_path");
  let topK = flags.topK;
  if (topK === undefined && y.retrieval_topk !== undefined) {
    const v = Number(y.retrieval_topk);
    if (!Number.isInteger(v) || v < 0) throw new RecallError(`retrieval_topk ${where} must be a non-negative integer, got ${JSON.stringify(y.retrieval_topk)}`);
    topK = v;
  }
  return { retrievalMethod: "bm25", indexPath, corpusPath: flags.corpusPath ?? str("corpus_path"), topK: topK ?? 3 };
}
