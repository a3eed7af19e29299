/**
 * verl's `custom_reward_function`: a user's Python file defining
 * `compute_score(data_source, solution_str, ground_truth, extra_info)` that returns a number or a dict with a
 * `score` key. The file runs unchanged — inside the sandbox, since it is user code: each call evaluates
 * `name(data_source=…, solution_str=…, ground_truth=…, extra_info=…)` with the values written as Python literals.
 * As in verl's reward managers, `solution_str` is the decoded response (not the prompt).
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { RecallError } from "../errors.ts";
import { pyRepr } from "../python/repr.ts";
import { fromJsValue } from "../python/value.ts";
import type { ToolExecutor } from "../sandbox/types.ts";
import type { GroundTruth } from "./squad.ts";
import type { RewardResult } from "./types.ts";

export interface PythonRewardInput {
  dataSource: string;
  solutionStr: string;
  groundTruth: GroundTruth;
  extraInfo: Record<string, unknown>;
}

export type PythonReward = (input: PythonRewardInput) => Promise<RewardResult>;

/** A scorer that runs `name` from the Python file at `path` in the sandbox. */
export function loadPythonReward(path: string, name: string, sandbox: ToolExecutor, timeoutSeconds = 30): PythonReward {
  if (!existsSync(path) || !statSync(path).isFile()) throw new RecallError(`custom_reward_function.path '${path}' is not a file`);
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new RecallError(`custom_reward_function.name '${name}' is not a Python function name`);
  const env = readFileSync(path, "utf8");
  return async (i) => {
    const call = `${name}(data_source=${pyRepr(fromJsValue(i.dataSource))}, solution_str=${pyRepr(fromJsValue(i.solutionStr))}, ground_truth=${pyRepr(fromJsValue(i.groundTruth))}, extra_info=${pyRepr(fromJsValue(i.extraInfo))})`;
    const a = await sandbox.execute({ env, call, timeout: timeoutSeconds });
    if (a.error) throw new RecallError(`custom reward ${path}:${name} failed: ${a.error.split("\n").slice(-1)[0]}`);
    const r = a.result;
    const score = typeof r === "number" ? r : r !== null && typeof r === "object" && typeof (r as { score?: unknown }).score === "number" ? (r as { score: number }).score : undefined;
    if (score === undefined || !Number.isFinite(score)) {
      throw new RecallError(`custom reward ${path}:${name} returned ${JSON.stringify(r)?.slice(0, 80)}; expected a number or a dict with a numeric 'score'`);
    }
    return { score, reason: `custom ${name}` };
  };
}
