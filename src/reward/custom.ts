/**
 * A reward written by the user as a JS/TS module: it default-exports (or exports as `computeScore`) a
 * function taking a RewardInput and returning a number, `{score, reason?}`, or a promise of either.
 *
 *   // my_reward.ts
 *   export default ({ text, groundTruth }) => (text.includes(String(groundTruth)) ? 1 : 0);
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { RecallError, errorMessage } from "../errors.ts";
import type { RewardFn, RewardInput, RewardResult } from "./types.ts";

export async function loadCustomReward(modulePath: string): Promise<RewardFn> {
  const abs = resolve(modulePath);
  if (!existsSync(abs)) throw new RecallError(`reward module '${modulePath}' does not exist`);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(abs).href)) as Record<string, unknown>;
  } catch (e) {
    throw new RecallError(`reward module '${modulePath}' failed to load: ${errorMessage(e)}`);
  }
  const fn = (typeof mod.default === "function" ? mod.default : mod.computeScore) as ((i: RewardInput) => unknown) | undefined;
  if (typeof fn !== "function") {
    throw new RecallError(`reward module '${modulePath}' exports no function`, { hint: "export default (input) => number, or export function computeScore(input)" });
  }
  return async (input: RewardInput): Promise<RewardResult> => {
    const out = await fn(input);
    if (typeof out === "number" && Number.isFinite(out)) return { score: out, reason: "custom" };
    if (out !== null && typeof out === "object" && typeof (out as { score?: unknown }).score === "number") {
      const o = out as { score: number; reason?: unknown };
      return { score: o.score, reason: typeof o.reason === "string" ? o.reason : "custom" };
    }
    throw new RecallError(`reward module '${modulePath}' returned ${JSON.stringify(out)}; expected a number or {score, reason}`);
  };
}
