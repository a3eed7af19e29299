/**
 * One step's rollouts: every prompt of the batch sampled `n` times (verl's `repeat(interleave=True)`: sequence i
 * belongs to prompt ⌊i/n⌋), each a multi-turn ReCall conversation run token-in/token-out on the local engine with
 * the prompt's own tools in the sandbox (src/rollout/conversation.ts). All conversations run concurrently; the
 * engine batches their decode steps and forks a prompt's prefill across its n samples.
 *
 * Each sequence draws from its own random stream (seed of the step, stream = its index), so a step's samples
 * are the same whatever order tool calls finish in — which is what makes a resumed run repeat exactly.
 */
import type { RlExample } from "../data/rl_dataset.ts";
import { Transformer } from "../model/transformer.ts";
import { ParameterSet, outerTensors } from "../model/weights.ts";
import { castToBf16 } from "../ops/cast.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { runConversation, type Conversation, type RolloutLimits } from "../rollout/conversation.ts";
import type { TokenGenerator } from "../rollout/generator.ts";
import { RE_CALL } from "../rollout/protocols.ts";
import { SandboxToolRunner } from "../rollout/tools.ts";
import type { ToolExecutor } from "../sandbox/types.ts";

export interface Trajectory {
  example: RlExample;
  /** The group: the prompt's position in the step's batch. */
  uid: number;
  /** Which of the prompt's n samples. */
  sample: number;
  promptIds: number[];
  responseIds: number[];
  /** 1 on sampled ids, 0 on tool responses and injected prefixes. */
  lossMask: number[];
  conversation: Conversation;
}

export interface RolloutOptions {
  n: number;
  temperature: number;
  topP: number;
  /** 0 = off. */
  topK: number;
  seed: number;
  limits: RolloutLimits;
  /** Seconds per tool call. */
  toolTimeout: number;
  signal?: AbortSignal;
}

/** A seed for one phase of one step, derived from the run's seed (distinct, stable streams per step). */
export function stepSeed(runSeed: number, step: number, phase: "train" | "val"): number {
  let h = (Math.imul(runSeed >>> 0, 0x9e3779b1) ^ Math.imul(step + 1, 0x85ebca6b) ^ (phase === "val" ? 0x27d4eb2f : 0)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  return (h ^ (h >>> 15)) >>> 0;
}

export async function rolloutBatch(examples: readonly RlExample[], generator: TokenGenerator, sandbox: ToolExecutor, o: RolloutOptions): Promise<Trajectory[]> {
  const jobs = examples.flatMap((example, uid) => Array.from({ length: o.n }, (_, sample) => ({ example, uid, sample })));
  return Promise.all(
    jobs.map(async ({ example, uid, sample }, i): Promise<Trajectory> => {
      const conversation = await runConversation(example.prompt, {
        generator,
        protocol: RE_CALL,
        tools: new SandboxToolRunner(sandbox, example.env, { timeoutSeconds: o.toolTimeout }),
        sampling: { temperature: o.temperature, topP: o.topP, topK: o.topK, seed: o.seed, streamId: i },
        limits: o.limits,
        signal: o.signal,
      });
      return {
        example,
        uid,
        sample,
        promptIds: conversation.promptIds!,
        responseIds: conversation.responseIds!,
        lossMask: conversation.lossMask!,
        conversation,
      };
    }),
  );
}

/**
 * The weights a bf16 rollout decodes with (verl's `actor_rollout_ref.rollout.dtype: bfloat16`, what its vLLM rollout
 * runs in): the policy with its projection weights and its LM head in bf16 — rounded as torch's `.to(torch.bfloat16)`,
 * refreshed after every update — and its embedding, norms and biases the policy's own (shared, not copied). The matmul
 * reads bf16 weights at half the bytes (on lavapipe, half the loads: decode-sized products 1.15–1.28×); the old,
 * reference and update passes keep the f32 policy, as verl's actor does.
 */
export class Bf16RolloutWeights {
  readonly model: Transformer;
  /** The bf16 LM head ([V, D]; the embedding's values when tied). */
  private readonly head: Tensor;

  constructor(private readonly policy: Transformer) {
    const gpu = policy.gpu;
    const set = new ParameterSet(gpu, policy.config, "zeros", { projectionDtype: "bf16" });
    set.shareUnlessDtype(policy.params, "bf16");
    this.model = new Transformer(gpu, policy.config, set);
    this.head = gpu.empty([policy.V, policy.D], "bf16", "rollout lm_head (bf16)");
    this.model.decodeHead = this.head;
    this.refresh();
  }

  /** Casts the policy's current weights into the copy (records GPU work; the next decode step runs after it). */
  refresh(): void {
    this.model.params.castFrom(this.policy.params);
    castToBf16(this.policy.gpu, outerTensors(this.policy.params).lmHead, this.head);
  }

  /** Frees the copy's own buffers (the shared ones stay the policy's). */
  release(): void {
    this.model.params.release();
    this.policy.gpu.release(this.head);
  }
}
