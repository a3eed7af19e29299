/**
 * How an assistant turn ended, worked out the same way for every backend:
 * - `eos` — the model wrote the EOS token (`<|im_end|>`): the turn is complete;
 * - `tool_stop` — it wrote a protocol stop string (ReSearch's `</search>`): run the tool, then continue;
 * - `foreign_stop` — it wrote a stop that must end the conversation without EOS: `<|im_start|>` (a turn
 *   must never open a new message) or `<|endoftext|>`;
 * - `length` — it ran out of new tokens.
 * The returned text is the turn as sampled, the stop included — servers that trim stop strings get it
 * put back, servers that ignore a stop get cut there.
 */
import type { TextCompletion, TokenCompletion } from "./generator.ts";

export type TurnEndKind = "eos" | "tool_stop" | "foreign_stop" | "length";

export interface TurnEnd {
  kind: TurnEndKind;
  /** The stop string that ended the turn (not for `length`). */
  stop?: string;
}

export interface StopSet {
  /** The accepted end-of-turn token's text, e.g. `<|im_end|>`. */
  eos: string;
  /** Stops that end the conversation without EOS, e.g. `<|im_start|>`, `<|endoftext|>`. */
  foreign: readonly string[];
  /** Protocol stops after which a tool runs, e.g. `</search>`. */
  tool: readonly string[];
}

function kindOf(stop: string, stops: StopSet): TurnEndKind {
  if (stop === stops.eos) return "eos";
  if (stops.tool.includes(stop)) return "tool_stop";
  return "foreign_stop";
}

/** All stop strings to send to a text server, EOS first. */
export function allStops(stops: StopSet): string[] {
  return [...new Set([stops.eos, ...stops.foreign, ...stops.tool])];
}

/**
 * Settles a text server's answer. `inferTrimmed` names the stop string a turn most likely ended on when
 * the server trimmed it without saying which (only protocols with tool stops need it).
 */
export function settleTextTurn(
  c: TextCompletion,
  stops: StopSet,
  inferTrimmed?: (text: string) => string | undefined,
): { text: string; end: TurnEnd } {
  let best: { at: number; stop: string } | undefined;
  for (const s of allStops(stops)) {
    const at = c.text.indexOf(s);
    if (at >= 0 && (!best || at < best.at)) best = { at, stop: s };
  }
  if (best) return { text: c.text.slice(0, best.at + best.stop.length), end: { kind: kindOf(best.stop, stops), stop: best.stop } };
  if (c.finishReason === "length") return { text: c.text, end: { kind: "length" } };
  let stop: string;
  if (typeof c.matchedStop === "string" && allStops(stops).includes(c.matchedStop)) stop = c.matchedStop;
  else if (typeof c.matchedStop === "string") stop = c.matchedStop; // a stop we did not ask for: treat as foreign
  else stop = (c.matchedStop === null || c.matchedStop === undefined ? inferTrimmed?.(c.text) : undefined) ?? stops.eos;
  const kind = allStops(stops).includes(stop) ? kindOf(stop, stops) : "foreign_stop";
  return { text: c.text + stop, end: { kind, stop } };
}

/** Token ids of a StopSet's special tokens, for a token engine. */
export interface StopIds {
  eos: readonly number[];
  foreign: readonly number[];
}

/** Settles a token engine's answer: the ids are kept as sampled; only the text is derived. */
export function settleTokenTurn(
  c: TokenCompletion,
  decode: (ids: readonly number[]) => string,
  stops: StopSet,
  ids: StopIds,
): { text: string; end: TurnEnd } {
  const text = decode(c.tokenIds);
  const last = c.tokenIds[c.tokenIds.length - 1];
  if (last !== undefined && ids.eos.includes(last)) return { text, end: { kind: "eos", stop: stops.eos } };
  const foreignAt = c.tokenIds.findIndex((t) => ids.foreign.includes(t));
  if (foreignAt >= 0) return { text, end: { kind: "foreign_stop", stop: decode([c.tokenIds[foreignAt]!]) } };
  for (const s of stops.tool) if (text.includes(s)) return { text, end: { kind: "tool_stop", stop: s } };
  for (const s of stops.foreign) if (text.includes(s)) return { text, end: { kind: "foreign_stop", stop: s } };
  if (text.endsWith(stops.eos)) return { text, end: { kind: "eos", stop: stops.eos } };
  return { text, end: { kind: "length" } };
}
