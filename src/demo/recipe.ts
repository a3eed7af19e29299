/**
 * The demo's recipe: sizes and hyperparameters of each stage, tuned on this engine (README, `recall demo`, has the
 * measurements behind them). The `*SecondsPer*` figures are nominal stage costs on a busy 2-core CPU (lavapipe),
 * used only to weight the stages in the progress line's ETA.
 */
export interface DemoRecipe {
  systemPrompt: string;
  /** Verified calc tasks (train + held out) and the held-out share. */
  samples: number;
  testRatio: number;
  /**
   * SFT on tool traces: conversations per step, lr; at most sftSteps, in chunks of sftCheckEvery (each a `recall sft`
   * that resumes the last), stopping once the held-out token accuracy reaches sftStopTokenAcc; sftNominalSteps is the
   * usual length (for the ETA).
   */
  sftBatch: number;
  sftLr: number;
  sftSteps: number;
  sftCheckEvery: number;
  sftStopTokenAcc: number;
  sftNominalSteps: number;
  /** SFT on the mix: share of traces answered without the tool, lr, steps. */
  directShare: number;
  mixLr: number;
  mixSteps: number;
  /** GRPO: prompts × samples per step (one mini-batch), lr, steps, temperature, entropy bonus. */
  grpoPrompts: number;
  grpoSamples: number;
  grpoLr: number;
  grpoSteps: number;
  grpoTemperature: number;
  grpoEntropyCoeff: number;
  /** Checkpoint every N GRPO steps (a crashed run resumes from the last). */
  grpoSaveFreq: number;
  /** Rollouts and evaluation: assistant turns, tokens per turn, response budget; held-out tasks evaluated. */
  maxTurns: number;
  maxTokensPerTurn: number;
  maxResponseLength: number;
  evalItems: number;
  synthSeconds: number;
  /** A command's start-up (Bun, the GPU, the model). */
  startSeconds: number;
  sftSecondsPerStep: number;
  grpoSecondsPerStep: number;
  evalSecondsPerItem: number;
}

export const DEMO_RECIPE: DemoRecipe = {
  systemPrompt: "Use calc.",
  samples: 2000,
  testRatio: 0.05,
  sftBatch: 16,
  sftLr: 3e-3,
  sftSteps: 1500,
  sftCheckEvery: 100,
  sftStopTokenAcc: 0.995,
  sftNominalSteps: 600,
  directShare: 0.6,
  mixLr: 1e-3,
  mixSteps: 100,
  grpoPrompts: 8,
  grpoSamples: 8,
  grpoLr: 5e-4,
  grpoSteps: 30,
  grpoTemperature: 1,
  grpoEntropyCoeff: 0,
  grpoSaveFreq: 10,
  maxTurns: 3,
  maxTokensPerTurn: 96,
  maxResponseLength: 256,
  evalItems: 100,
  synthSeconds: 10,
  startSeconds: 4,
  sftSecondsPerStep: 1.5,
  grpoSecondsPerStep: 6,
  evalSecondsPerItem: 0.2,
};
