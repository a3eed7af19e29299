/**
 * The CPU peer for benchmarks: runs a Python snippet with Debian's python3 (numpy / PyTorch with OpenBLAS) in the same
 * run, so ratios compare work done on the same machine at the same time. Returns undefined (and says why) when python3 or
 * the module is missing — the bench then prints its own figures without a ratio.
 */
export function runPythonPeer(script: string, input: unknown): unknown | undefined {
  const python = ["/usr/bin/python3", "python3"].find((p) => Bun.which(p) !== null) ?? "python3";
  try {
    const p = Bun.spawnSync([python, "-c", script], { stdin: Buffer.from(JSON.stringify(input)), stderr: "pipe" });
    if (p.exitCode !== 0) {
      console.warn(`CPU peer unavailable: ${p.stderr.toString().trim().split("\n").pop()}`);
      return undefined;
    }
    return JSON.parse(p.stdout.toString());
  } catch (e) {
    console.warn(`CPU peer unavailable: ${(e as Error).message}`);
    return undefined;
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
