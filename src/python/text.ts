/**
 * Python's str methods where they differ from JavaScript's, so that text handled here reads as
 * ReCall's Python handles it: `str.isspace()` is true for a slightly different set than JavaScript's
 * `\s` (it includes U+001C–U+001F and U+0085, and excludes U+FEFF), which `strip()` and `split()` use.
 */

const PY_WHITESPACE = new Set<number>([
  0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680,
  0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a,
  0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
]);

/** Python `ch.isspace()` for one UTF-16 code unit (every Python whitespace character is in the BMP). */
export function pyIsSpace(codeUnit: number): boolean {
  return PY_WHITESPACE.has(codeUnit);
}

/** Python `s.strip()` (no argument). */
export function pyStrip(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && pyIsSpace(s.charCodeAt(a))) a++;
  while (b > a && pyIsSpace(s.charCodeAt(b - 1))) b--;
  return s.slice(a, b);
}

/** Python `s.split()` (no argument): runs of whitespace separate, no empty strings. */
export function pySplit(s: string): string[] {
  const out: string[] = [];
  let start = -1;
  for (let i = 0; i < s.length; i++) {
    if (pyIsSpace(s.charCodeAt(i))) {
      if (start >= 0) out.push(s.slice(start, i));
      start = -1;
    } else if (start < 0) {
      start = i;
    }
  }
  if (start >= 0) out.push(s.slice(start));
  return out;
}

/** Python `s.count(sub)` (non-overlapping occurrences; an empty `sub` counts len(s) + 1, len in code points). */
export function pyCount(s: string, sub: string): number {
  if (sub.length === 0) {
    let n = 1;
    for (const _ of s) n++;
    return n;
  }
  let n = 0;
  for (let i = s.indexOf(sub); i >= 0; i = s.indexOf(sub, i + sub.length)) n++;
  return n;
}
