/**
 * `calc`: arithmetic and short word problems answered with a `calc` tool call; the answer is the tool's output.
 * Knobs: operand range (`calc_min`/`calc_max`, or `digits`), operations (`calc_ops`), chained steps (`hops`: each
 * step's call uses the previous result), distractor tools, style. With operands 32–99 and `mul`, every product has
 * four digits (the learning demo's task).
 */
import { RecallError } from "../errors.ts";
import { finalTurn } from "./trace.ts";
import { toolsetText, withDistractors, type ToolDef } from "./tools.ts";
import type { Rng } from "./random.ts";
import type { Candidate, Family, FamilyKnobs, GoldenTurn } from "./types.ts";

export const CALC_OPS = ["mul", "add", "sub", "div"] as const;
export type CalcOp = (typeof CALC_OPS)[number];

const CALC_TOOL: ToolDef = {
  name: "calc",
  description: "Evaluate an arithmetic expression with integers and + - * / ( ).",
  params: [{ name: "expression", type: "string", description: "The expression, e.g. 12*34." }],
  source: `import ast
import operator

_CALC_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}

def _calc_eval(node):
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _CALC_OPS:
        return _CALC_OPS[type(node.op)](_calc_eval(node.left), _calc_eval(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_calc_eval(node.operand)
    raise ValueError("unsupported expression")

def calc(expression: str):
    value = _calc_eval(ast.parse(str(expression), mode="eval").body)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value
`,
};

const SYMBOL: Record<CalcOp, string> = { mul: "*", add: "+", sub: "-", div: "/" };

/** Operand range from the knobs: `calc_min`..`calc_max`, else all numbers with `digits` digits. */
export function operandRange(k: FamilyKnobs): [number, number] {
  const lo = k.calcMin ?? (k.digits === 1 ? 1 : 10 ** (k.digits - 1));
  const hi = k.calcMax ?? 10 ** k.digits - 1;
  return [lo, hi];
}

interface Step {
  op: CalcOp;
  /** Left operand (the previous result after the first step) and right operand. */
  a: number;
  b: number;
  value: number;
}

function apply(op: CalcOp, a: number, b: number): number {
  return op === "mul" ? a * b : op === "add" ? a + b : op === "sub" ? a - b : a / b;
}

/** Operands for one step; division is made exact (the dividend is a multiple of the divisor). */
function step(rng: Rng, op: CalcOp, lo: number, hi: number, prev: number | undefined): Step {
  let b = rng.int(lo, hi);
  let a = prev ?? rng.int(lo, hi);
  if (op === "div") {
    if (prev === undefined) a = b * rng.int(lo, hi);
    else {
      const divisors = [];
      for (let d = Math.max(2, lo); d <= Math.min(hi, Math.abs(a)); d++) if (a % d === 0) divisors.push(d);
      if (divisors.length === 0) return step(rng, "sub", lo, hi, prev);
      b = rng.pick(divisors);
    }
  }
  if (op === "sub" && prev === undefined && b > a) [a, b] = [b, a];
  // A result of 0 would flatten to an empty tool response (Python's falsy result is left out).
  if (apply(op, a, b) === 0) return step(rng, op === "sub" ? "add" : op, lo, hi, prev);
  return { op, a, b, value: apply(op, a, b) };
}

const COMPACT_ONE = ["What is {e}?", "{e}=?", "Compute {e}.", "{e}"];
const NATURAL_ONE: Record<CalcOp, string[]> = {
  mul: [
    "What is {a} multiplied by {b}?",
    "A box holds {b} pencils. How many pencils are in {a} boxes?",
    "Each of {a} students pays {b} dollars for a trip. How many dollars is that in total?",
    "A train travels {b} km every day. How many km does it travel in {a} days?",
  ],
  add: ["What is {a} plus {b}?", "A library had {a} books and received {b} more. How many books does it have now?", "Add {a} and {b}."],
  sub: ["What is {a} minus {b}?", "A tank holds {a} liters and {b} liters are drained. How many liters remain?", "Subtract {b} from {a}."],
  div: ["What is {a} divided by {b}?", "{a} candies are shared equally among {b} children. How many candies does each child get?"],
};
const CHAIN_WORDS: Record<CalcOp, string> = { mul: "multiply it by {b}", add: "add {b}", sub: "subtract {b}", div: "divide it by {b}" };
const FIRST_WORDS: Record<CalcOp, string> = { mul: "multiply {a} by {b}", add: "add {a} and {b}", sub: "subtract {b} from {a}", div: "divide {a} by {b}" };

function fill(t: string, s: Step): string {
  return t.replaceAll("{e}", `${s.a}${SYMBOL[s.op]}${s.b}`).replaceAll("{a}", String(s.a)).replaceAll("{b}", String(s.b));
}

function question(rng: Rng, style: FamilyKnobs["style"], steps: Step[]): string {
  if (steps.length === 1) return fill(rng.pick(style === "compact" ? COMPACT_ONE : NATURAL_ONE[steps[0]!.op]), steps[0]!);
  if (style === "compact") {
    // Left to right with brackets, so the expression means the chain of steps.
    let e = `${steps[0]!.a}${SYMBOL[steps[0]!.op]}${steps[0]!.b}`;
    for (const s of steps.slice(1)) e = `(${e})${SYMBOL[s.op]}${s.b}`;
    return rng.pick(["What is {e}?", "{e}=?", "Compute {e}."]).replace("{e}", e);
  }
  const parts = [fill(FIRST_WORDS[steps[0]!.op], steps[0]!), ...steps.slice(1).map((s) => fill(CHAIN_WORDS[s.op], s))];
  const lead = rng.pick(["First {p0}, then {rest}. What is the result?", "Start by taking the result when you {p0}; then {rest}. What number do you get?"]);
  return lead.replace("{p0}", parts[0]!).replace("{rest}", parts.slice(1).join(", then "));
}

function think(style: FamilyKnobs["style"], s: Step, i: number): string {
  if (style === "compact") return "";
  const e = `${s.a} ${SYMBOL[s.op]} ${s.b}`;
  return i === 0 ? ` I need ${e}; I will use the calc tool. ` : ` The tool gave ${s.a}. Next I compute ${e} with calc. `;
}

export const calcFamily: Family = {
  name: "calc",
  description: "arithmetic and word problems solved by a calc tool call (the answer is the tool's output)",
  async open({ knobs }) {
    const [lo, hi] = operandRange(knobs);
    if (lo > hi) throw new RecallError(`calc: the operand range ${lo}..${hi} is empty (check --calc_min, --calc_max, --digits)`);
    return {
      generate(rng): Candidate | string {
        const steps: Step[] = [];
        for (let h = 0; h < knobs.hops; h++) steps.push(step(rng, rng.pick(knobs.calcOps as CalcOp[]), lo, hi, steps[h - 1]?.value));
        const turns: GoldenTurn[] = steps.map((s, i) => ({
          think: think(knobs.style, s, i),
          calls: [{ name: "calc", arguments: { expression: `${s.a}${SYMBOL[s.op]}${s.b}` }, result: `result: \n${s.value}` }],
        }));
        const answer = String(steps[steps.length - 1]!.value);
        const { env, funcSchemas } = toolsetText(withDistractors(rng, [CALC_TOOL], knobs.distractors));
        return {
          family: "calc",
          question: question(rng, knobs.style, steps),
          env,
          funcSchemas,
          groundTruth: answer,
          golden: { turns, ...finalTurn(knobs.style, answer, `The calc tool returned ${answer}, so that is the answer.`) },
          meta: { hops: steps.length, ops: steps.map((s) => s.op).join("+") },
        };
      },
      async close() {},
    };
  },
};
