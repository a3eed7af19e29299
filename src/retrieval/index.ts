/** recall's retrieval library: BM25 indexing, in-process search, the HTTP server and a remote client. */
export type { Doc, Retriever, RetrieverPoolStatus, SearchResult } from "./types.ts";
export { openBm25Retriever, Bm25Retriever } from "./bm25_retriever.ts";
export { RemoteRetriever, type RemoteRetrieverOptions } from "./remote_retriever.ts";
export { startRetrieverServer, type RetrieverServerOptions, type RunningRetrieverServer } from "./server.ts";
export { buildBm25Index, type BuildOptions, type BuildProgress } from "./index_builder.ts";
export { WorkerPoolRetriever } from "./worker_pool.ts";
export { DEFAULT_BM25, type Bm25Params } from "./bm25_formula.ts";
export { ENGLISH_STOPWORDS } from "./stopwords.ts";
