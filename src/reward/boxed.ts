/**
 * The answer inside the last `\boxed{…}`, found the way ReCall/verl find it: if the text contains the
 * form `\boxed ` (with a space) anywhere, the answer is what follows the last `\boxed ` up to a `$`;
 * otherwise the last `\boxed` (or, failing that, the last `\fbox`) with its braces matched.
 */

/** The last `\boxed{…}` / `\boxed …` / `\fbox{…}` including the command, or undefined. */
export function lastBoxedOnlyString(s: string): string | undefined {
  if (s.includes("\\boxed ")) {
    const parts = s.split("\\boxed ");
    return "\\boxed " + parts[parts.length - 1]!.split("$")[0]!;
  }
  let idx = s.lastIndexOf("\\boxed");
  if (idx < 0) {
    idx = s.lastIndexOf("\\fbox");
    if (idx < 0) return undefined;
  }
  let open = 0;
  for (let i = idx; i < s.length; i++) {
    if (s[i] === "{") open++;
    else if (s[i] === "}") {
      open--;
      if (open === 0) return s.slice(idx, i + 1);
    }
  }
  return undefined;
}

/** Strips the command and braces; undefined when the string is not a boxed form. */
export function removeBoxed(s: string): string | undefined {
  if (s.startsWith("\\boxed ")) return s.slice("\\boxed ".length);
  for (const left of ["\\boxed{", "\\fbox{"]) {
    if (s.startsWith(left) && s.endsWith("}")) return s.slice(left.length, -1);
  }
  return undefined;
}

/** The content of the last boxed answer in `s`, or undefined when there is none. */
export function extractBoxed(s: string): string | undefined {
  const last = lastBoxedOnlyString(s);
  return last === undefined ? undefined : removeBoxed(last);
}
