/**
 * `units`: unit conversions with a `convert` tool whose result (two decimals, as text) the model must copy exactly.
 * Length, mass, volume and temperature. The expected text is computed here with the same floating-point steps as
 * the Python tool; verification in the sandbox rejects any sample where the two disagree (rounding ties).
 */
import { finalTurn } from "./trace.ts";
import { toolsetText, withDistractors, type ToolDef } from "./tools.ts";
import type { Rng } from "./random.ts";
import type { Candidate, Family, FamilyKnobs } from "./types.ts";

/** Factor to the dimension's base unit (m, kg, l). */
const LINEAR: Record<string, [dimension: string, factor: number, name: string]> = {
  km: ["length", 1000, "kilometers"],
  m: ["length", 1, "meters"],
  cm: ["length", 0.01, "centimeters"],
  mi: ["length", 1609.344, "miles"],
  ft: ["length", 0.3048, "feet"],
  in: ["length", 0.0254, "inches"],
  kg: ["mass", 1, "kilograms"],
  g: ["mass", 0.001, "grams"],
  lb: ["mass", 0.45359237, "pounds"],
  oz: ["mass", 0.028349523125, "ounces"],
  l: ["volume", 1, "liters"],
  ml: ["volume", 0.001, "milliliters"],
  gal: ["volume", 3.785411784, "US gallons"],
};
const TEMPERATURE: Record<string, string> = { C: "degrees Celsius", F: "degrees Fahrenheit", K: "kelvins" };

const pyNumber = (x: number) => (Number.isInteger(x) ? `${x}.0` : String(x));

const CONVERT_TOOL: ToolDef = {
  name: "convert",
  description: "Convert a quantity between units (km, m, cm, mi, ft, in, kg, g, lb, oz, l, ml, gal, C, F, K). Returns the value with two decimals.",
  params: [
    { name: "value", type: "number", description: "The quantity to convert." },
    { name: "from_unit", type: "string", description: "Unit of the value." },
    { name: "to_unit", type: "string", description: "Unit to convert to." },
  ],
  source: `_LINEAR = {
${Object.entries(LINEAR).map(([u, [d, f]]) => `    '${u}': ('${d}', ${pyNumber(f)}),`).join("\n")}
}

def _to_kelvin(value, unit):
    if unit == 'C':
        return value + 273.15
    if unit == 'F':
        return (value - 32) * 5 / 9 + 273.15
    return value

def _from_kelvin(value, unit):
    if unit == 'C':
        return value - 273.15
    if unit == 'F':
        return (value - 273.15) * 9 / 5 + 32
    return value

def convert(value: float, from_unit: str, to_unit: str):
    if from_unit in ('C', 'F', 'K') and to_unit in ('C', 'F', 'K'):
        result = _from_kelvin(_to_kelvin(value, from_unit), to_unit)
    elif from_unit in _LINEAR and to_unit in _LINEAR and _LINEAR[from_unit][0] == _LINEAR[to_unit][0]:
        result = value * _LINEAR[from_unit][1] / _LINEAR[to_unit][1]
    else:
        return 'cannot convert ' + str(from_unit) + ' to ' + str(to_unit)
    return f'{result:.2f}'
`,
};

/** The same arithmetic as the Python tool, in the same order. */
function convertValue(value: number, from: string, to: string): number {
  if (from in TEMPERATURE) {
    const k = from === "C" ? value + 273.15 : from === "F" ? ((value - 32) * 5) / 9 + 273.15 : value;
    return to === "C" ? k - 273.15 : to === "F" ? ((k - 273.15) * 9) / 5 + 32 : k;
  }
  return (value * LINEAR[from]![1]) / LINEAR[to]![1];
}

/**
 * Python's `f"{x:.2f}"`: like toFixed(2), except that an exact tie (2.125 is a double) rounds to even, where
 * toFixed rounds up. Verification still compares with the tool's own text.
 */
export function pyFixed2(x: number): string {
  const fixed = x.toFixed(2);
  const exact = Math.abs(x).toPrecision(40);
  const m = /^(\d+)\.(\d\d)(5)(0*)$/.exec(exact);
  if (m === null) return fixed;
  const down = (x < 0 ? "-" : "") + `${m[1]}.${m[2]}`;
  const lastDigit = Number(m[2]![1]);
  return lastDigit % 2 === 0 ? down : fixed;
}

function unitName(u: string): string {
  return LINEAR[u]?.[2] ?? TEMPERATURE[u]!;
}

export const unitsFamily: Family = {
  name: "units",
  description: "unit conversions (length, mass, volume, temperature) with a convert tool whose two-decimal text is the answer",
  async open({ knobs }) {
    return {
      generate(rng): Candidate | string {
        const temperature = rng.next() < 0.2;
        let from: string, to: string;
        if (temperature) [from, to] = rng.sample(Object.keys(TEMPERATURE), 2) as [string, string];
        else {
          const dim = rng.pick(["length", "mass", "volume"]);
          [from, to] = rng.sample(Object.keys(LINEAR).filter((u) => LINEAR[u]![0] === dim), 2) as [string, string];
        }
        const max = 10 ** Math.max(1, knobs.digits) - 1;
        const value = rng.int(1, max);
        const answer = pyFixed2(convertValue(value, from, to));
        const q = questionText(rng, knobs.style, value, from, to);
        const { env, funcSchemas } = toolsetText(withDistractors(rng, [CONVERT_TOOL], knobs.distractors));
        return {
          family: "units",
          question: q,
          env,
          funcSchemas,
          groundTruth: answer,
          golden: {
            turns: [
              {
                think: knobs.style === "compact" ? "" : ` I convert ${value} ${from} to ${to} with the convert tool. `,
                calls: [{ name: "convert", arguments: { value, from_unit: from, to_unit: to }, result: `result: \n${answer}` }],
              },
            ],
            ...finalTurn(knobs.style, answer, `The tool says ${value} ${from} is ${answer} ${to}.`),
          },
          meta: { hops: 1, dimension: temperature ? "temperature" : LINEAR[from]![0] },
        };
      },
      async close() {},
    };
  },
};

function questionText(rng: Rng, style: FamilyKnobs["style"], value: number, from: string, to: string): string {
  if (style === "compact") return rng.pick([`${value} ${from} in ${to}?`, `Convert ${value} ${from} to ${to}.`, `${value}${from} = ? ${to}`]);
  return rng.pick([
    `How many ${unitName(to)} are ${value} ${unitName(from)}? Give two decimals.`,
    `Convert ${value} ${unitName(from)} to ${unitName(to)} (two decimals).`,
    `A measurement reads ${value} ${unitName(from)}. What is it in ${unitName(to)}, to two decimals?`,
  ]);
}
