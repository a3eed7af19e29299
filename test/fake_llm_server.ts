/**
 * A scripted OpenAI-compatible chat server for `recall synth llm` tests: the domain list request gets `domains`,
 * each environment request a fixed answer chosen by its domain name — a good one, or one broken in one way:
 * - `good`: a fruit stall with two good tasks, a repeat of the first (a duplicate) and a call to a missing tool;
 * - `shopN`: a stall of its own (prices scaled by N, so its env differs from every other) with two good tasks;
 * - `malformed`: JSON that does not parse; `syntax`: tool code that does not compile; `hang`: tool code that never
 *   returns; `wrong`: an answer that is not in the tool's result.
 * `delayMs` holds every answer back that long (a slow model), so a test can kill a run while requests are in flight.
 * Runs in the test's own process: the code under test must run as a child spawned without blocking (Bun.spawn).
 */

type Schema = { type: "function"; function: { name: string; description: string; parameters: Record<string, unknown> } };

function stall(scale: number): { scenario: string; env: string; func_schemas: Schema[] } {
  return {
    scenario: "A fruit stall.",
    env: `_PRICES = {'apple': ${3 * scale}, 'pear': ${5 * scale}}\n\ndef price(item: str):\n    return _PRICES[item]\n\ndef total(unit: int, count: int):\n    return unit * count\n`,
    func_schemas: ["price", "total"].map((name) => ({ type: "function", function: { name, description: name, parameters: { type: "object", properties: {}, required: [] } } })),
  };
}

function goodTasks(scale: number) {
  return [
    { question: "What does a pear cost?", calls: [{ name: "price", arguments: { item: "pear" } }], answer: String(5 * scale) },
    { question: "What do 4 apples cost?", calls: [{ name: "price", arguments: { item: "apple" } }, { name: "total", arguments: { unit: 3 * scale, count: 4 } }], answer: String(12 * scale) },
  ];
}

/** The scripted answer to an environment request for `domain`. */
function answerFor(domain: string): string {
  const shop = stall(1);
  const [pear, apples] = goodTasks(1);
  const numbered = /^shop(\d+)$/.exec(domain);
  if (numbered) {
    const scale = Number(numbered[1]) + 2;
    return JSON.stringify({ ...stall(scale), tasks: goodTasks(scale) });
  }
  switch (domain) {
    case "good":
      return JSON.stringify({ ...shop, tasks: [pear, apples, pear, { question: "Use nope?", calls: [{ name: "nope", arguments: {} }], answer: "1" }] });
    case "malformed":
      return '{"env": "x", tasks: [';
    case "syntax":
      return JSON.stringify({ ...shop, env: "def price(:\n", tasks: [pear] });
    case "hang":
      return JSON.stringify({ ...shop, env: shop.env + "\nwhile True:\n    pass\n", tasks: [pear] });
    case "wrong":
      return JSON.stringify({ ...shop, tasks: [{ ...pear, answer: "7" }] });
    default:
      throw new Error(`fake LLM server: no script for domain '${domain}'`);
  }
}

export interface FakeLlmServer {
  url: string;
  /** Requests in arrival order: the domain asked about, or `list` for the domain list. */
  hits: string[];
  stop(): void;
}

export function fakeLlmServer(opts: { domains?: string[]; delayMs?: number } = {}): FakeLlmServer {
  const domains = opts.domains ?? ["good", "malformed", "syntax", "hang", "wrong"];
  const hits: string[] = [];
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      const body = (await req.json()) as { messages: { content: string }[] };
      const domain = /Domain: (\w+)/.exec(body.messages[0]!.content)?.[1];
      hits.push(domain ?? "list");
      if (opts.delayMs) await Bun.sleep(opts.delayMs);
      const text = domain === undefined ? "```json\n" + JSON.stringify(domains) + "\n```" : answerFor(domain);
      return Response.json({ choices: [{ message: { content: text }, finish_reason: "stop" }], usage: { prompt_tokens: 10, completion_tokens: 20 } });
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, hits, stop: () => server.stop(true) };
}
