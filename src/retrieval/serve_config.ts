/**
 * What `recall retriever serve` serves: ReCall's retriever YAML (`--config`), overridden by plain flags. Keys read:
 * `retrieval_method` (only `bm25` for now), `index_path`, `corpus_path`, `retrieval_topk` (flag `--topk`), and the
 * server's own settings (`num_retriever`, `port`, `host`, `log_requests`); `faiss_gpu`, `bm25_backend` and FlashRAG's
 * other keys are accepted and ignored.
 */
import { RecallError } from "../errors.ts";
import {
  atLeast,
  defineSettings,
  describeSource,
  dropNulls,
  inRange,
  resolveCommandLine,
  settingsArgs,
  type CommandLineSpec,
  type NullsAsOptional,
  type SettingsOf,
} from "../config/schema.ts";

export const SERVE_SETTINGS = defineSettings({
  retrieval_method: { type: "string", default: "bm25", flags: [], help: "bm25 (dense methods such as e5 are refused)" },
  index_path: { type: "string", nullable: true, default: null, help: "Index directory (overrides the config)" },
  corpus_path: { type: "string", nullable: true, default: null, help: "Corpus JSONL the index was built from (default: the path stored in the index)" },
  retrieval_topk: { type: "int", default: 3, check: atLeast(0), flags: ["topk"], help: "Default topk for /retrieve requests (the config's retrieval_topk)" },
  num_retriever: { type: "int", default: 1, check: inRange(0, 256), help: "Search worker threads (0 searches on the server thread)" },
  port: { type: "int", default: 8000, check: inRange(0, 65535), help: "Port (0 picks a free one)" },
  host: { type: "string", default: "127.0.0.1", help: "Address to bind (0.0.0.0 exposes it to the network)" },
  log_requests: { type: "bool", default: false, help: "Log every request with its status and latency" },
  max_top_n: { type: "int", default: 10_000, check: atLeast(1), help: "Largest top_n (topk) a request may ask for; past it a 422" },
  max_batch: { type: "int", default: 10_000, check: atLeast(1), help: "Most queries in one /batch_search or /retrieve request; past it a 422" },
  max_results: { type: "int", default: 100_000, check: atLeast(1), help: "Most queries × top_n in one request (about 1 KiB of memory each); past it a 422" },
});

export const SERVE_COMMAND_LINE: CommandLineSpec = {
  keyFlags: true,
  overrides: false,
  options: { config: { type: "string", help: "ReCall retriever YAML: retrieval_method (bm25), index_path, corpus_path, retrieval_topk" } },
};

/** citty args of `recall retriever serve`, from the schema. */
export const SERVE_ARGS = settingsArgs(SERVE_SETTINGS, SERVE_COMMAND_LINE);

export type ServeConfig = NullsAsOptional<SettingsOf<typeof SERVE_SETTINGS>> & { index_path: string };

/** Resolves `recall retriever serve`'s arguments (defaults ← `--config` YAML ← flags); refuses dense methods and no index. */
export function parseServeCommandLine(rawArgs: readonly string[]): ServeConfig {
  const r = resolveCommandLine(SERVE_SETTINGS, rawArgs, SERVE_COMMAND_LINE, { keepUnknownFileKeys: true });
  const cfg = dropNulls(r.values);
  const method = cfg.retrieval_method.trim();
  if (method.toLowerCase() !== "bm25") {
    throw new RecallError(`retrieval_method '${method}' (${describeSource(r.sources.retrieval_method)}) is a dense retriever; recall serves only bm25 for now`, {
      hint: "set retrieval_method: bm25 and build an index with 'recall retriever index'",
    });
  }
  const indexPath = cfg.index_path;
  if (!indexPath) throw new RecallError("no index: pass --index_path or --config with index_path");
  return { ...cfg, retrieval_method: "bm25", index_path: indexPath };
}
