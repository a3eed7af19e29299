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
  /**
   * Then SFT on the same tool traces at a lower lr from that checkpoint (fresh optimizer state): the copy is learned but
   * not yet exact at the stop (seed 0 at 99.22% held-out token accuracy copied the result wrong in half its greedy
   * answers, em 0.51); 100 steps at lr 1e-3 made it 100.00% and em 1.00, where 100 more at lr 3e-3 gave 99.87%.
   */
  annealLr: number;
  annealSteps: number;
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
  sftStopTokenAcc: 0.99,
  sftNominalSteps: 800,
  annealLr: 1e-3,
  annealSteps: 100,
  directShare: 0.8,
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
  sftSecondsPerStep: 0.45,
  grpoSecondsPerStep: 3,
  evalSecondsPerItem: 0.2,
};
