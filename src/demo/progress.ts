/**
 * The demo's one progress line: which stage, how far it is, how far the whole run is, and an ETA for the whole run.
 * Stages are weighted by their nominal seconds on a 2-core CPU (measured; only their ratios matter): the run's rate
 * (wall seconds per nominal second so far) times the nominal seconds left gives the ETA, so a faster machine, or a
 * busier one, corrects the estimate as it goes. On a terminal the line is redrawn in place; otherwise (logs, tests)
 * it is printed at most every `everyMs`.
 */
import { formatDuration } from "../util/duration.ts";

export interface StagePlan {
  name: string;
  /** Nominal seconds of the stage on the reference machine. */
  seconds: number;
}

export class DemoProgress {
  private readonly t0 = performance.now();
  private readonly plan: StagePlan[];
  private readonly total: number;
  private current = -1;
  private fraction = 0;
  private detail = "";
  private lastPrinted = 0;
  private drawn = false;

  constructor(
    plan: readonly StagePlan[],
    private readonly write: (line: string) => void,
    private readonly tty: { draw(line: string): void; clear(): void } | undefined,
    private readonly everyMs = 10_000,
  ) {
    this.plan = [...plan];
    this.total = plan.reduce((a, s) => a + s.seconds, 0);
  }

  /** Enters the named stage (stages are entered in plan order; one not in the plan is an error in the caller). */
  stage(name: string): void {
    const i = this.plan.findIndex((s, k) => k > this.current && s.name === name);
    if (i < 0) throw new Error(`demo progress: stage '${name}' is not next in the plan`);
    this.current = i;
    this.fraction = 0;
    this.detail = "";
    this.show(true);
  }

  /** How far the current stage is (0–1) and a short note (e.g. `step 12/30 · score 0.41`). */
  update(fraction: number, detail: string): void {
    this.fraction = Math.min(1, Math.max(0, fraction));
    this.detail = detail;
    this.show(false);
  }

  /** Nominal seconds done so far. */
  private done(): number {
    let d = 0;
    for (let k = 0; k < this.current; k++) d += this.plan[k]!.seconds;
    if (this.current >= 0) d += this.plan[this.current]!.seconds * this.fraction;
    return d;
  }

  /** Seconds left for the whole run, from the rate so far (nominal until a little work is done). */
  etaSeconds(): number {
    const elapsed = (performance.now() - this.t0) / 1000;
    const done = this.done();
    const left = this.total - done;
    const rate = done >= 0.03 * this.total && elapsed > 0 ? elapsed / done : 1;
    return left * rate;
  }

  line(): string {
    const elapsed = (performance.now() - this.t0) / 1000;
    const s = this.plan[this.current];
    const pct = Math.round((100 * this.done()) / this.total);
    const head = s ? `[${this.current + 1}/${this.plan.length}] ${s.name}` : "starting";
    return `${head}${this.detail ? ` · ${this.detail}` : ""} · demo ${pct}% · ${formatDuration(elapsed)} elapsed · ETA ${formatDuration(this.etaSeconds())}`;
  }

  private show(force: boolean): void {
    if (this.tty) {
      this.tty.draw(this.line());
      this.drawn = true;
      return;
    }
    const now = performance.now();
    if (force || now - this.lastPrinted >= this.everyMs) {
      this.lastPrinted = now;
      this.write(this.line());
    }
  }

  /** Clears a drawn line before other output, so log lines never mix with it. */
  clear(): void {
    if (this.tty && this.drawn) {
      this.tty.clear();
      this.drawn = false;
    }
  }
}
