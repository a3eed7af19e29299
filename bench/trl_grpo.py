"""The TRL peer of bench/train.ts: TRL's GRPOTrainer (PyTorch CPU, HF `generate`) on the same model folder,
prompts, group size, lengths, reward and hyperparameters as the recall run it is compared with. Reads a JSON job
on stdin, prints {"step_s": [...], "completion_mean": ..., "versions": ...} on stdout (TRL's own logs go to stderr).

Needs torch, transformers and trl, e.g. a venv:
    python3 -m venv /work/venv2 && /work/venv2/bin/pip install torch transformers trl peft
"""
import json
import sys
import time
import contextlib

job = json.load(sys.stdin)

with contextlib.redirect_stdout(sys.stderr):
    import torch
    import transformers
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.manual_seed(0)

    def letters(completions, **kwargs):
        """The bench's toy reward: the fraction of a completion's characters that are a-z."""
        out = []
        for c in completions:
            text = c[0]["content"] if isinstance(c, list) else c
            out.append(sum(1 for ch in text if "a" <= ch <= "z") / len(text) if text else 0.0)
        return out

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times, self.t0 = [], None

        def on_step_begin(self, args, state, control, **kwargs):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self.t0)

    n, prompts, steps = job["n"], job["prompts"], job["steps"]
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": q}]} for q in job["questions"]])
    model = AutoModelForCausalLM.from_pretrained(job["model"], torch_dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(job["model"])
    cfg = GRPOConfig(
        output_dir=job["out"],
        use_cpu=True,
        bf16=False,
        fp16=False,
        per_device_train_batch_size=prompts * n,  # one optimizer step per GRPO step, like ppo_mini_batch_size = train_batch_size
        gradient_accumulation_steps=1,
        num_generations=n,
        max_completion_length=job["response"],
        max_steps=steps,
        learning_rate=job["lr"],
        beta=job["kl_coef"],  # KL to the reference (verl: use_kl_loss, kl_loss_coef) → TRL keeps a reference model
        epsilon=job["clip_ratio"],
        num_iterations=1,  # ppo_epochs
        temperature=job["temperature"],
        top_p=job["top_p"],
        weight_decay=job["weight_decay"],
        max_grad_norm=job["grad_clip"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        gradient_checkpointing=job["checkpointing"],
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        shuffle_dataset=False,
        seed=0,
        disable_tqdm=True,
    )
    timer = StepTimes()
    trainer = GRPOTrainer(model=model, reward_funcs=letters, args=cfg, train_dataset=data, processing_class=tok, callbacks=[timer])
    trainer.train()
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]

print(json.dumps({
    "step_s": timer.times,
    "completion_mean": sum(lengths) / len(lengths) if lengths else None,
    "versions": f"trl {trl.__version__}, transformers {transformers.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads",
}))
