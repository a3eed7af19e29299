/**
 * Progress of a long evaluation: done/total, items per second, ETA, the running mean of the first
 * metric, and failures — one line at most every `everyMs`, and one at the end.
 */

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${String(r).padStart(2, "0")}` : `${m}:${String(r).padStart(2, "0")}`;
}

export class EvalProgress {
  private done = 0;
  private failed = 0;
  private sum = 0;
  private scored = 0;
  private last = 0;
  private readonly t0 = performance.now();

  constructor(
    private readonly total: number,
    /** Items finished before this run started (resume): counted in done, not in the rate. */
    private readonly already: number,
    private readonly metric: string,
    private readonly log: (line: string) => void,
    private readonly everyMs = 2000,
  ) {}

  update(ok: boolean, score: number | undefined): void {
    this.done++;
    if (!ok) this.failed++;
    if (score !== undefined) {
      this.sum += score;
      this.scored++;
    }
    const now = performance.now();
    const finished = this.already + this.done >= this.total;
    if (finished || now - this.last >= this.everyMs) {
      this.last = now;
      this.log(this.line(now));
    }
  }

  line(now = performance.now()): string {
    const elapsed = (now - this.t0) / 1000;
    const rate = elapsed > 0 ? this.done / elapsed : 0;
    const left = this.total - this.already - this.done;
    const pct = ((100 * (this.already + this.done)) / this.total).toFixed(1);
    const parts = [`${this.already + this.done}/${this.total} (${pct}%)`, `${rate.toFixed(2)} items/s`, `ETA ${left === 0 ? "0:00" : rate > 0 ? formatDuration(left / rate) : "?"}`];
    if (this.scored > 0) parts.push(`${this.metric} ${(this.sum / this.scored).toFixed(3)}`);
    if (this.failed > 0) parts.push(`failed ${this.failed}`);
    return parts.join(" · ");
  }
}
