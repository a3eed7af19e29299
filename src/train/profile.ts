/**
 * `--profile` of `recall train` and `recall sft` (trainer.profile): the GPU time of each step per kernel family
 * (gpu/profiler.ts), as `profile/<family>_ms` metrics of the step, and the run's table at the end beside the wall
 * time of the profiled steps. Each step starts and ends with a sync, so its figures hold its own dispatches only.
 */
import type { Gpu } from "../gpu/runtime.ts";
import { sumProfiles, type ProfileSnapshot } from "../gpu/profiler.ts";
import { formatProfile, profileMetrics } from "../gpu/profile_table.ts";

export class RunProfile {
  private steps: ProfileSnapshot[] = [];
  private wallMs = 0;
  private stepStart = 0;

  private constructor(private readonly gpu: Gpu) {}

  /** Starts timing dispatches; RecallError naming `flag` on an adapter without timestamp-query. */
  static start(gpu: Gpu, flag: string): RunProfile {
    gpu.startProfiling({ flag });
    return new RunProfile(gpu);
  }

  /** Drops what ran before the step (validation, loading). */
  async beginStep(): Promise<void> {
    await this.gpu.sync();
    this.gpu.profiler?.reset();
    this.stepStart = performance.now();
  }

  /** The step's metrics: GPU ms per family, and the GPU total. */
  async endStep(): Promise<Record<string, number>> {
    const p = (await this.gpu.profileSnapshot())!;
    this.wallMs += performance.now() - this.stepStart;
    this.steps.push(p);
    return profileMetrics(p);
  }

  /** The run's profile (every step summed) and the wall time of those steps. */
  total(): { profile: ProfileSnapshot; wallMs: number; steps: number } {
    return { profile: sumProfiles(this.steps), wallMs: this.wallMs, steps: this.steps.length };
  }

  /** The run's table, for the end-of-run log. */
  table(): string {
    const t = this.total();
    return `GPU profile of ${t.steps} step(s):\n${formatProfile(t.profile, t.wallMs)}`;
  }

  async stop(): Promise<void> {
    await this.gpu.stopProfiling();
  }
}
