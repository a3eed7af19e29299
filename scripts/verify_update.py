#!/usr/bin/env python3
"""Recomputes one `recall train` actor update in PyTorch, independently, and compares it with the run's checkpoint.

    python3 scripts/verify_update.py RUN STEP [--json OUT.json]   # RUN: the run folder (metrics.jsonl, config.yaml)
    python3 scripts/verify_update.py RUN STEP --partition recall  # micro-batches packed as recall packs them
    python3 scripts/verify_update.py --fixture fixtures/grpo/update_tiny.json           # (re)writes the golden fixture
    python3 scripts/verify_update.py --fixture fixtures/grpo/update_tiny.json --check   # recomputes it, writes nothing

Needs PyTorch only (Debian's python3-torch 1.13 or a venv with torch); PyYAML is used for RUN/config.yaml when it is
installed, otherwise the same settings tree is read from global_step_STEP/trainer_state.json. The model is the plain
torch implementation of Qwen2 / Qwen3 / Llama in scripts/golden.py (not transformers); the update is written here from
SPEC §6 / §6a (verl's dp_actor.update_policy as ReCall runs it), importing nothing of recall's TypeScript.

A run needs `trainer.save_batches=true` and `trainer.save_freq=1`. Step STEP starts from global_step_{STEP-1}
(weights, AdamW moments exp_avg.* / exp_avg_sq.*, optimizer step count) or, for STEP 1, from the base model, and
takes batches/step_{STEP}.{json,safetensors} (the sequences, loss mask, old and reference log-probs, advantages):
  - mini-batches: consecutive chunks of ppo_mini_batch_size × rollout.n sequences, ppo_epochs passes, one AdamW step
    each (torch.optim.AdamW, the moments loaded into its state) after torch.nn.utils.clip_grad_norm_(grad_clip);
    a non-finite norm skips the step;
  - micro-batches: with use_dynamic_bsz, verl's rearrange_micro_batches (Karmarkar–Karp largest differencing into
    ceil(tokens / ppo_max_token_len_per_gpu) parts, by prompt+response length) and loss × len(micro)/mini;
    otherwise consecutive chunks of ppo_micro_batch_size_per_gpu and loss / (mini // micro);
  - per micro-batch: log-probs and entropy of the response tokens at the rollout temperature (logits / T); the
    PPO surrogate with clip_ratio_low/high and dual clip c; entropy and KL (kl/abs/mse/low_var_kl) terms; the policy
    term always token-mean under loss_compat=recall, loss_agg_mode otherwise; the loss mask for every term;
  - the lr is the run's logged `actor/lr` for STEP.
Everything is computed twice, in float64 (the reference) and float32 (to show how far float32 alone drifts), and
compared with global_step_{STEP}: every parameter and both moments (max abs / max rel), the grad norm of the last
mini-batch against `actor/grad_norm` (SPEC §6a), pg_loss / entropy / kl_loss / ppo_kl against their metrics (means
over micro-batches), and, as side checks, the saved old and reference log-probs against a forward of the model
before the update and of the base model, and the GRPO advantages against the scores.
Exit status 1 when a figure is outside the tolerances stated in TOL below.
"""
import argparse
import json
import math
import os
import random
import struct
import sys
import heapq

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden  # noqa: E402  (the independent PyTorch model)

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# Tolerances (GPU float32 vs the float64 reference). Weights move by at most ~lr per AdamW step, so the weight
# tolerance is in units of the step's lr; moments and norms are relative to the tensor's largest magnitude.
TOL = {
    "logprob_abs": 1e-4,        # old / reference log-probs and the recomputed ones
    "metric_rel": 1e-4,         # pg_loss, entropy, kl_loss, ppo_kl, grad norm (relative, with an absolute floor)
    "metric_abs": 1e-6,
    "exp_avg_rel": 1e-4,        # max |Δ| / max |reference|, per tensor
    "exp_avg_sq_rel": 2e-4,
    "param_lr_units": 0.02,     # max |Δ| / (lr · AdamW steps of this update)
    "param_abs_no_lr": 1e-7,    # when the step's lr is 0 the weights must not move
}


# ----------------------------------------------------------------------------------------------- files
DTYPES = {"F32": ("<f4", 4), "F64": ("<f8", 8), "F16": ("<f2", 2), "BF16": (None, 2)}


def st_read(path):
    """safetensors → {name: float64 tensor} (F32, F64, F16, BF16)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = bytearray(data[b:end])
        if e["dtype"] == "BF16":
            t = torch.frombuffer(raw, dtype=torch.int16).to(torch.int32) << 16
            t = t.view(torch.float32)
        elif e["dtype"] == "F16":
            t = torch.frombuffer(raw, dtype=torch.float16)
        elif e["dtype"] == "F32":
            t = torch.frombuffer(raw, dtype=torch.float32)
        elif e["dtype"] == "F64":
            t = torch.frombuffer(raw, dtype=torch.float64)
        else:
            raise SystemExit(f"{path}: tensor {name} has dtype {e['dtype']}; expected a float type")
        out[name] = t.reshape(e["shape"]).double().clone()
    return out


def read_json(path):
    with open(path) as f:
        return json.load(f)


def load_settings(run, step):
    """The run's settings tree: config.yaml (PyYAML) or the checkpoint's trainer_state.json (same tree)."""
    path = os.path.join(run, "config.yaml")
    try:
        import yaml  # noqa: F401
        with open(path) as f:
            return yaml.safe_load(f), path
    except ImportError:
        state = os.path.join(run, f"global_step_{step}", "trainer_state.json")
        return read_json(state)["settings"], state


def flat_settings(tree):
    """The settings an update needs, from verl's key tree (YAML 1.1 reads 1e-8 as text: floats are coerced)."""
    a, r = tree["actor_rollout_ref"]["actor"], tree["actor_rollout_ref"]["rollout"]
    o = a["optim"]
    clip = float(a["clip_ratio"])
    return {
        "n": int(r["n"]),
        "temperature": float(r["temperature"]),
        "mini_batch_prompts": int(a["ppo_mini_batch_size"]),
        "ppo_epochs": int(a["ppo_epochs"]),
        "dynamic": bool(a["use_dynamic_bsz"]),
        "max_token_len": int(a["ppo_max_token_len_per_gpu"]),
        "micro_batch_size": None if a["ppo_micro_batch_size_per_gpu"] is None else int(a["ppo_micro_batch_size_per_gpu"]),
        "grad_clip": float(a["grad_clip"]),
        "clip_low": clip if a["clip_ratio_low"] is None else float(a["clip_ratio_low"]),
        "clip_high": clip if a["clip_ratio_high"] is None else float(a["clip_ratio_high"]),
        "clip_c": float(a["clip_ratio_c"]),
        "loss_agg_mode": a["loss_agg_mode"],
        "compat": a["loss_compat"],
        "entropy_coeff": float(a["entropy_coeff"]),
        "use_kl_loss": bool(a["use_kl_loss"]) and float(a["kl_loss_coef"]) != 0,
        "kl_coef": float(a["kl_loss_coef"]),
        "kl_type": a["kl_loss_type"],
        "horizon": int(tree["data"]["max_response_length"]),
        "betas": [float(b) for b in o["betas"]],
        "eps": float(o["eps"]),
        "weight_decay": float(o["weight_decay"]),
        "adv_estimator": tree["algorithm"]["adv_estimator"],
        "norm_adv_by_std": bool(tree["algorithm"]["norm_adv_by_std_in_grpo"]),
        "kl_in_reward": bool(tree["algorithm"]["use_kl_in_reward"]),
    }


# ----------------------------------------------------------------------------------------------- verl's pieces
def karmarkar_karp(lengths, k):
    """verl's balanced partition of sequence lengths into k parts (largest differencing method), each part sorted.

    States hold k part sums in decreasing order; the two states with the largest spread are merged, pairing the
    largest part of one with the smallest of the other, until one state is left. Ties break as verl's heap does:
    larger spread first, then the larger leading part (compared by sum, size, then items)."""
    class Part:
        __slots__ = ("sum", "items")

        def __init__(self, items=()):
            self.items = list(items)
            self.sum = sum(v for _, v in self.items)

        def key(self):
            return (self.sum, len(self.items), self.items)

    class State:
        __slots__ = ("parts",)

        def __init__(self, parts):
            self.parts = sorted(parts, key=Part.key, reverse=True)

        def spread(self):
            return self.parts[0].sum - self.parts[-1].sum

        def __lt__(self, other):  # heapq pops the smallest: make it the largest spread, then the largest part
            if self.spread() != other.spread():
                return self.spread() > other.spread()
            return self.parts[0].key() > other.parts[0].key()

    heap = []
    for length, idx in sorted((l, i) for i, l in enumerate(lengths)):
        heapq.heappush(heap, State([Part([(idx, length)])] + [Part() for _ in range(k - 1)]))
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        merged = [Part(a.parts[i].items + b.parts[k - 1 - i].items) for i in range(k)]
        heapq.heappush(heap, State(merged))
    parts = [sorted(i for i, _ in p.items) for p in heap[0].parts]
    assert all(parts), f"an empty micro-batch from lengths {lengths} into {k} parts"
    return parts


def fitting_parts(lengths, budget):
    """recall's documented packing (src/data/packing.ts), for --partition recall: the fewest parts, from
    ceil(tokens / budget) up, such that placing sequences longest first (ties: lower index) into the currently
    lightest part (ties: the first) leaves every part within the budget; each part sorted."""
    k = -(-sum(lengths) // budget)
    while True:
        parts, load = [[] for _ in range(min(k, len(lengths)))], [0] * min(k, len(lengths))
        for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
            j = min(range(len(parts)), key=lambda j: (load[j], j))
            parts[j].append(i)
            load[j] += lengths[i]
        if all(l <= budget for l in load):
            return [sorted(p) for p in parts if p]
        k += 1


def micro_batches(lengths, s):
    """Index lists (into the mini-batch) of its micro-batches, and each one's loss scale."""
    mini = len(lengths)
    if s["dynamic"]:
        assert max(lengths) <= s["max_token_len"], "a sequence longer than ppo_max_token_len_per_gpu"
        if s.get("partition", "verl") == "recall":
            parts = fitting_parts(lengths, s["max_token_len"])
        else:
            parts = karmarkar_karp(lengths, -(-sum(lengths) // s["max_token_len"]))
        return [(p, len(p) / (s["mini_batch_prompts"] * s["n"])) for p in parts]
    size = s["micro_batch_size"] or mini
    accumulation = (s["mini_batch_prompts"] * s["n"]) // size
    return [(list(range(i, min(i + size, mini))), 1.0 / accumulation) for i in range(0, mini, size)]


def kl_estimate(logp, ref, kind, compat):
    if kind == "kl":
        return logp - ref
    if kind == "abs":
        return (logp - ref).abs()
    if kind == "mse":
        return 0.5 * (logp - ref) ** 2
    d = ref - logp
    if compat == "verl":
        d = d.clamp(-20, 20)
    return (d.exp() - d - 1).clamp(-10, 10)


def aggregate(values, mask, mode, compat, horizon):
    rows = mask.sum(-1)
    if mode == "token-mean":
        return (values * mask).sum() / mask.sum()
    if mode == "seq-mean-token-sum":
        seq = (values * mask).sum(-1)
        return seq.mean() if compat == "recall" else seq[rows > 0].sum() / max(1, int((rows > 0).sum()))
    if mode == "seq-mean-token-mean":
        if compat == "recall":
            return ((values * mask).sum(-1) / rows).mean()
        keep = rows > 0
        return ((values * mask).sum(-1)[keep] / rows[keep]).sum() / max(1, int(keep.sum()))
    if mode == "seq-mean-token-sum-norm":
        return (values * mask).sum() / horizon
    raise SystemExit(f"unknown loss_agg_mode {mode}")


def micro_loss(logp, entropy, old, ref, adv, mask, s):
    """verl's actor loss for one micro-batch (unscaled) and its logged terms. All [B, W] tensors."""
    neg_kl = logp - old
    if s["compat"] == "verl":
        neg_kl = neg_kl.clamp(-20, 20)
    ratio = neg_kl.exp()
    l1 = -adv * ratio
    l2 = -adv * ratio.clamp(1 - s["clip_low"], 1 + s["clip_high"])
    c1 = torch.maximum(l1, l2)
    c2 = torch.minimum(-adv * s["clip_c"], c1)
    pg_losses = torch.where(adv < 0, c2, c1)
    pg_mode = "token-mean" if s["compat"] == "recall" else s["loss_agg_mode"]
    pg = aggregate(pg_losses, mask, pg_mode, s["compat"], s["horizon"])
    ent = aggregate(entropy, mask, s["loss_agg_mode"], s["compat"], s["horizon"])
    loss = pg - s["entropy_coeff"] * ent
    kl = torch.zeros((), dtype=logp.dtype)
    if s["use_kl_loss"]:
        kl = aggregate(kl_estimate(logp, ref, s["kl_type"], s["compat"]), mask, s["loss_agg_mode"], s["compat"], s["horizon"])
        loss = loss + s["kl_coef"] * kl
    token_mean = lambda x: (x * mask).sum() / mask.sum()  # noqa: E731
    metrics = {"pg_loss": float(pg.detach()), "entropy": float(ent.detach()), "kl_loss": float(kl.detach()),
               "ppo_kl": float(token_mean(-neg_kl).detach()), "pg_clipfrac": float(token_mean((l2 > l1).to(logp.dtype)))}
    return loss, metrics


def response_stats(params, d, seqs, temperature):
    """Log-probs and entropies [B, W] of the response tokens (rows responseStart−1 … len−2 of the forward)."""
    lengths = [len(q["ids"]) for q in seqs]
    T, W = max(lengths), max(len(q["ids"]) - q["response_start"] for q in seqs)
    ids = torch.zeros((len(seqs), T), dtype=torch.int64)
    for b, q in enumerate(seqs):
        ids[b, :lengths[b]] = torch.tensor(q["ids"])
    logits = golden.forward(params, d, ids, lengths)
    logp_all = torch.log_softmax(logits / temperature, dim=-1)
    rows, targets, cols = [], [], []
    for b, q in enumerate(seqs):
        for j in range(len(q["ids"]) - q["response_start"]):
            rows.append((b, q["response_start"] - 1 + j))
            targets.append(q["ids"][q["response_start"] + j])
            cols.append((b, j))
    bi = torch.tensor([r[0] for r in rows])
    ti = torch.tensor([r[1] for r in rows])
    lp_rows = logp_all[bi, ti]  # [N, V]
    lp = lp_rows.gather(-1, torch.tensor(targets)[:, None])[:, 0]
    ent = -(lp_rows.exp() * lp_rows).sum(-1)
    logp = torch.zeros((len(seqs), W), dtype=logits.dtype)
    entropy = torch.zeros((len(seqs), W), dtype=logits.dtype)
    ci, cj = torch.tensor([c[0] for c in cols]), torch.tensor([c[1] for c in cols])
    logp = logp.index_put((ci, cj), lp)
    entropy = entropy.index_put((ci, cj), ent)
    return logp, entropy


def padded(seqs, key, W, dtype):
    out = torch.zeros((len(seqs), W), dtype=dtype)
    for b, q in enumerate(seqs):
        v = q[key]
        out[b, :len(v)] = torch.tensor(v, dtype=dtype)
    return out


def actor_update(params0, d, seqs, s, lr, moments, optimizer_steps, dtype):
    """The whole update of one training step. Returns new params, moments, metrics, per-mini-batch grad norms."""
    P = {k: v.to(dtype).clone().requires_grad_(True) for k, v in params0.items()}
    names = list(P.keys())
    opt = torch.optim.AdamW([P[k] for k in names], lr=lr, betas=tuple(s["betas"]), eps=s["eps"], weight_decay=s["weight_decay"])
    if moments is not None and optimizer_steps > 0:
        for k in names:
            opt.state[P[k]] = {"step": torch.tensor(float(optimizer_steps)), "exp_avg": moments["m"][k].to(dtype).clone(),
                               "exp_avg_sq": moments["v"][k].to(dtype).clone()}
    mini = s["mini_batch_prompts"] * s["n"]
    per_micro, norms, partitions, steps = [], [], [], optimizer_steps
    for _ in range(s["ppo_epochs"]):
        for m0 in range(0, len(seqs), mini):
            idx = list(range(m0, min(m0 + mini, len(seqs))))
            micros = micro_batches([len(seqs[i]["ids"]) for i in idx], s)
            partitions.append([[idx[j] for j in part] for part, _ in micros])
            opt.zero_grad()
            for part, scale in micros:
                mb = [seqs[idx[j]] for j in part]
                W = max(len(q["ids"]) - q["response_start"] for q in mb)
                logp, entropy = response_stats(P, d, mb, s["temperature"])
                old = padded(mb, "old_log_probs", W, dtype)
                ref = padded(mb, "ref_log_prob", W, dtype) if s["use_kl_loss"] else None
                adv = padded(mb, "advantages", W, dtype)
                mask = padded(mb, "loss_mask", W, dtype)
                loss, metrics = micro_loss(logp, entropy, old, ref, adv, mask, s)
                (loss * scale).backward()
                per_micro.append(metrics)
            norm = float(torch.nn.utils.clip_grad_norm_([P[k] for k in names], s["grad_clip"]))
            norms.append(norm)
            if math.isfinite(norm):
                opt.step()
                steps += 1
            opt.zero_grad()
    new = {k: P[k].detach().double() for k in names}
    m = {k: (opt.state[P[k]]["exp_avg"].double() if P[k] in opt.state else torch.zeros_like(new[k])) for k in names}
    v = {k: (opt.state[P[k]]["exp_avg_sq"].double() if P[k] in opt.state else torch.zeros_like(new[k])) for k in names}
    mean = lambda key: sum(x[key] for x in per_micro) / len(per_micro)  # noqa: E731
    metrics = {f"actor/{k}": mean(k) for k in ("pg_loss", "entropy", "kl_loss", "ppo_kl", "pg_clipfrac")}
    metrics["actor/grad_norm"] = norms[-1]
    return {"params": new, "m": m, "v": v, "metrics": metrics, "grad_norms": norms, "partitions": partitions,
            "optimizer_steps": steps}


def grpo_advantages(scores, uids, norm_by_std):
    """GRPO outcome advantage per sequence: (score − group mean) / (unbiased std + 1e-6), float32 as in ReCall."""
    groups = {}
    for i, u in enumerate(uids):
        groups.setdefault(u, []).append(i)
    out = [0.0] * len(scores)
    for members in groups.values():
        x = torch.tensor([scores[i] for i in members], dtype=torch.float32)
        mean, std = (x.mean(), x.std()) if len(members) > 1 else (torch.tensor(0.0), torch.tensor(1.0))
        a = (x - mean) / (std + 1e-6) if norm_by_std else x - mean
        for j, i in enumerate(members):
            out[i] = float(a[j])
    return out


# ----------------------------------------------------------------------------------------------- comparison
def tensor_diff(got, want):
    diff = float((got - want).abs().max()) if got.numel() else 0.0
    scale = float(want.abs().max()) if want.numel() else 0.0
    return {"max_abs": diff, "max_rel": diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf), "scale": scale}


def compare_metric(got, want):
    return {"got": got, "want": want, "ok": abs(got - want) <= TOL["metric_abs"] + TOL["metric_rel"] * abs(want)}


def verify_run(run, step, partition="verl"):
    tree, settings_file = load_settings(run, step)
    s = flat_settings(tree)
    s["partition"] = partition
    base = tree["actor_rollout_ref"]["model"]["path"]
    before_dir = base if step == 1 else os.path.join(run, f"global_step_{step - 1}")
    after_dir = os.path.join(run, f"global_step_{step}")
    for p in (before_dir, after_dir, os.path.join(run, "batches", f"step_{step}.json")):
        if not os.path.exists(p):
            raise SystemExit(f"{p} is missing (the run needs trainer.save_batches=true and trainer.save_freq=1)")
    cfg = read_json(os.path.join(after_dir, "config.json"))
    d = golden.derived(cfg)
    weights_file = lambda folder: os.path.join(folder, "model.safetensors")  # noqa: E731
    before = st_read(weights_file(before_dir))
    after = st_read(weights_file(after_dir))
    names = [n for n, _ in golden.param_shapes(d)]
    missing = [n for n in names if n not in before or n not in after]
    if missing:
        raise SystemExit(f"checkpoint lacks {missing[:3]}")
    params0 = {n: before[n] for n in names}
    moments, steps0 = None, 0
    if step > 1:
        opt = st_read(os.path.join(before_dir, "optimizer.safetensors"))
        moments = {"m": {n: opt[f"exp_avg.{n}"] for n in names}, "v": {n: opt[f"exp_avg_sq.{n}"] for n in names}}
        steps0 = read_json(os.path.join(before_dir, "trainer_state.json"))["optimizerSteps"]
    logged = None
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if row.get("step") == step and "actor/lr" in row:
                logged = row
    if logged is None:
        raise SystemExit(f"{run}/metrics.jsonl has no training line for step {step}")
    lr = float(logged["actor/lr"])

    batch = read_json(os.path.join(run, "batches", f"step_{step}.json"))["sequences"]
    tensors = st_read(os.path.join(run, "batches", f"step_{step}.safetensors"))
    seqs = []
    for i, q in enumerate(batch):
        n = len(q["response_ids"])
        seq = {"ids": q["prompt_ids"] + q["response_ids"], "response_start": q["response_start"], "loss_mask": q["loss_mask"],
               "uid": q["uid"], "score": q["score"]}
        assert q["response_start"] == len(q["prompt_ids"]), f"sequence {i}: response_start != len(prompt_ids)"
        for key in ("old_log_probs", "advantages", "ref_log_prob"):
            if key in tensors:
                seq[key] = tensors[key][i, :n].tolist()
        if tensors["loss_mask"][i, :n].tolist() != [float(x) for x in q["loss_mask"]]:
            raise SystemExit(f"batch step {step}: sequence {i}'s loss mask differs between the JSON and safetensors")
        seqs.append(seq)
    if s["use_kl_loss"] and "ref_log_prob" not in tensors:
        raise SystemExit("use_kl_loss is on but the batch has no ref_log_prob")

    report = {"run": run, "step": step, "settings_from": settings_file, "partition": partition, "lr": lr, "sequences": len(seqs),
              "model": "scripts/golden.py (plain PyTorch Qwen2/Qwen3/Llama)", "torch": torch.__version__, "checks": {}}
    checks = report["checks"]
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))

    # Side checks: the saved old / reference log-probs against forwards of the weights they came from.
    with torch.no_grad():
        worst = {"old_log_probs": 0.0, "ref_log_prob": 0.0}
        sources = [("old_log_probs", params0)]
        if "ref_log_prob" in tensors:
            b = st_read(weights_file(base))
            sources.append(("ref_log_prob", {n: b[n] for n in names}))
        for key, P in sources:
            for i0 in range(0, len(seqs), 8):
                mb = seqs[i0:i0 + 8]
                W = max(len(q["ids"]) - q["response_start"] for q in mb)
                lp, _ = response_stats(P, d, mb, s["temperature"])
                valid = torch.tensor([[1.0 if j < len(q["ids"]) - q["response_start"] else 0.0 for j in range(W)] for q in mb], dtype=torch.float64)
                worst[key] = max(worst[key], float(((lp - padded(mb, key, W, torch.float64)).abs() * valid).max()))
        for key, _ in sources:
            checks[f"{key} vs forward"] = {"max_abs": worst[key], "ok": worst[key] <= TOL["logprob_abs"]}
    if s["adv_estimator"] == "grpo" and not s["kl_in_reward"]:
        want = grpo_advantages([q["score"] for q in seqs], [q["uid"] for q in seqs], s["norm_adv_by_std"])
        got = [q["advantages"][0] if q["advantages"] else 0.0 for q in seqs]
        flat_ok = all(all(a == q["advantages"][0] for a in q["advantages"]) for q in seqs)
        diff = max(abs(a - b) for a, b in zip(got, want))
        checks["advantages vs grpo(scores)"] = {"max_abs": diff, "broadcast": flat_ok, "ok": diff <= 1e-5 and flat_ok}

    ref64 = actor_update(params0, d, seqs, s, lr, moments, steps0, torch.float64)
    ref32 = actor_update(params0, d, seqs, s, lr, moments, steps0, torch.float32)
    report["partitions"] = ref64["partitions"]
    report["grad_norms"] = ref64["grad_norms"]
    mini_steps = ref64["optimizer_steps"] - steps0

    state = read_json(os.path.join(after_dir, "trainer_state.json"))
    checks["optimizer steps"] = {"got": state["optimizerSteps"], "want": ref64["optimizer_steps"],
                                 "ok": state["optimizerSteps"] == ref64["optimizer_steps"]}
    for key in ("actor/pg_loss", "actor/entropy", "actor/ppo_kl", "actor/grad_norm") + (("actor/kl_loss",) if s["use_kl_loss"] else ()):
        c = compare_metric(float(logged[key]), ref64["metrics"][key])
        c["float32"] = ref32["metrics"][key]
        checks[key] = c

    opt_after = st_read(os.path.join(after_dir, "optimizer.safetensors"))
    per_tensor, worst = {}, {"param_lr_units": 0.0, "param_abs": 0.0, "exp_avg_rel": 0.0, "exp_avg_sq_rel": 0.0}
    f32 = {"param_lr_units": 0.0, "exp_avg_rel": 0.0, "exp_avg_sq_rel": 0.0}
    moved = 0.0
    unit = lr * max(1, mini_steps)
    for n in names:
        p = tensor_diff(after[n], ref64["params"][n])
        m = tensor_diff(opt_after[f"exp_avg.{n}"], ref64["m"][n])
        v = tensor_diff(opt_after[f"exp_avg_sq.{n}"], ref64["v"][n])
        p32 = tensor_diff(ref32["params"][n], ref64["params"][n])
        per_tensor[n] = {"param_max_abs": p["max_abs"], "param_lr_units": p["max_abs"] / unit if unit > 0 else None,
                         "exp_avg_max_rel": m["max_rel"], "exp_avg_sq_max_rel": v["max_rel"]}
        worst["param_abs"] = max(worst["param_abs"], p["max_abs"])
        if unit > 0:
            worst["param_lr_units"] = max(worst["param_lr_units"], p["max_abs"] / unit)
            f32["param_lr_units"] = max(f32["param_lr_units"], p32["max_abs"] / unit)
        worst["exp_avg_rel"] = max(worst["exp_avg_rel"], m["max_rel"])
        worst["exp_avg_sq_rel"] = max(worst["exp_avg_sq_rel"], v["max_rel"])
        f32["exp_avg_rel"] = max(f32["exp_avg_rel"], tensor_diff(ref32["m"][n], ref64["m"][n])["max_rel"])
        f32["exp_avg_sq_rel"] = max(f32["exp_avg_sq_rel"], tensor_diff(ref32["v"][n], ref64["v"][n])["max_rel"])
        moved = max(moved, float((ref64["params"][n] - params0[n]).abs().max()))
    report["tensors"] = per_tensor
    report["float32_vs_float64"] = f32
    report["largest_weight_change"] = moved
    if unit > 0:
        checks["weights"] = {"max_lr_units": worst["param_lr_units"], "max_abs": worst["param_abs"], "ok": worst["param_lr_units"] <= TOL["param_lr_units"]}
    else:
        checks["weights"] = {"max_abs": worst["param_abs"], "ok": worst["param_abs"] <= TOL["param_abs_no_lr"]}
    checks["exp_avg"] = {"max_rel": worst["exp_avg_rel"], "ok": worst["exp_avg_rel"] <= TOL["exp_avg_rel"]}
    checks["exp_avg_sq"] = {"max_rel": worst["exp_avg_sq_rel"], "ok": worst["exp_avg_sq_rel"] <= TOL["exp_avg_sq_rel"]}
    report["ok"] = all(c["ok"] for c in checks.values())
    return report


def print_report(r):
    print(f"{r['run']} step {r['step']}: {r['sequences']} sequences, lr {r['lr']:g}, torch {r['torch']}, model {r['model']}")
    print(f"  micro-batches per mini-batch ({r['partition']}'s partition): {r['partitions']}")
    print(f"  grad norm per mini-batch: {['%.6g' % x for x in r['grad_norms']]}; largest weight change {r['largest_weight_change']:.3g}")
    for name, c in r["checks"].items():
        figures = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in c.items() if k != "ok")
        print(f"  {'ok  ' if c['ok'] else 'FAIL'} {name}: {figures}")
    f = r["float32_vs_float64"]
    print(f"  (PyTorch float32 vs float64: weights {f['param_lr_units']:.3g} lr, exp_avg rel {f['exp_avg_rel']:.3g}, exp_avg_sq rel {f['exp_avg_sq_rel']:.3g})")


# ----------------------------------------------------------------------------------------------- golden fixture
FIXTURE_MODEL = "fixtures/golden/qwen2_gqa_tied/model"
FIXTURE_SLICE = 12  # values per tensor kept as the expected update


def fixture_inputs():
    """Two updates of the golden qwen2 model on made-up batches: dynamic micro-batches with ReCall's loss, and fixed
    micro-batches with upstream's seq-mean-token-mean, mse KL and clip-higher. Old log-probs are the model's own
    plus noise (so every clip branch is reachable); tool spans (mask 0) carry wild values that must not matter."""
    r = random.Random(4242)
    cfg = read_json(os.path.join(ROOT, FIXTURE_MODEL, "config.json"))
    d = golden.derived(cfg)
    params = st_read(os.path.join(ROOT, FIXTURE_MODEL, "model.safetensors"))
    V = d["V"]

    def batch(groups, n, temperature, lengths=None):
        seqs = []
        for g in range(groups):
            prompt = [r.randrange(V) for _ in range(6 if lengths else r.randint(3, 7))]
            scores = [r.random() for _ in range(n)]
            adv = grpo_advantages(scores, [0] * n, True)
            order = r.sample(lengths, n) if lengths else None
            for k in range(n):
                length = order[k] if order else r.randint(4, 12)
                mask = [1] * length
                if length > 6 and r.random() < 0.6:  # a tool response span
                    a = r.randint(2, length - 3)
                    for t in range(a, min(length - 1, a + r.randint(1, 3))):
                        mask[t] = 0
                seqs.append({"ids": prompt + [r.randrange(V) for _ in range(length)], "response_start": len(prompt),
                             "loss_mask": mask, "advantages": [golden_f32(adv[k])] * length, "uid": g, "score": scores[k]})
        with torch.no_grad():
            for i0 in range(0, len(seqs), 8):
                mb = seqs[i0:i0 + 8]
                lp, _ = response_stats(params, d, mb, temperature)
                for b, q in enumerate(mb):
                    n_resp = len(q["ids"]) - q["response_start"]
                    own = lp[b, :n_resp].tolist()
                    q["old_log_probs"] = [golden_f32(x + r.gauss(0, 0.25)) for x in own]
                    q["ref_log_prob"] = [golden_f32(x + r.gauss(0, 0.4)) for x in own]
                    for t in range(n_resp):
                        if q["loss_mask"][t] == 0:
                            q["old_log_probs"][t] = golden_f32(-30 + 60 * r.random())
                            q["ref_log_prob"][t] = golden_f32(-30 + 60 * r.random())
                            q["advantages"][t] = golden_f32(-50 + 100 * r.random())
        return seqs

    common = dict(partition="verl", ppo_epochs=1, grad_clip=1.0, clip_c=3.0, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.01, kl_in_reward=False,
                  adv_estimator="grpo", norm_adv_by_std=True)
    cases = [
        {"name": "dynamic micro-batches, ReCall's loss (token-mean, low_var_kl)", "lr": 1e-3,
         "settings": dict(common, n=4, temperature=1.0, mini_batch_prompts=1, dynamic=True, max_token_len=48, micro_batch_size=None,
                          clip_low=0.2, clip_high=0.2, loss_agg_mode="token-mean", compat="recall", entropy_coeff=0.01,
                          use_kl_loss=True, kl_coef=0.1, kl_type="low_var_kl", horizon=12),
         "sequences": batch(2, 4, 1.0, lengths=[12, 10, 4, 2])},
        {"name": "fixed micro-batches, upstream verl's loss (seq-mean-token-mean, mse, clip-higher, temperature 0.7)", "lr": 5e-4,
         "settings": dict(common, n=4, temperature=0.7, mini_batch_prompts=1, dynamic=False, max_token_len=0, micro_batch_size=2,
                          clip_low=0.2, clip_high=0.28, loss_agg_mode="seq-mean-token-mean", compat="verl", entropy_coeff=0.003,
                          use_kl_loss=True, kl_coef=0.05, kl_type="mse", horizon=12),
         "sequences": batch(2, 4, 0.7)},
    ]
    # The dynamic case's response lengths are chosen, and its token budget is the smallest, at which verl's partition
    # and recall's packing agree, so the fixture checks everything else exactly (where they differ, compare a run
    # with --partition recall).
    dyn = cases[0]
    lengths = [len(q["ids"]) for q in dyn["sequences"]]
    mini = dyn["settings"]["mini_batch_prompts"] * dyn["settings"]["n"]
    for budget in range(max(lengths), sum(lengths)):
        chunks = [lengths[i:i + mini] for i in range(0, len(lengths), mini)]
        kk = [karmarkar_karp(c, -(-sum(c) // budget)) for c in chunks]
        same = all(sorted(a) == sorted(fitting_parts(c, budget)) for a, c in zip(kk, chunks))  # order of parts is immaterial
        if all(len(p) > 1 for p in kk) and same:
            dyn["settings"]["max_token_len"] = budget
            break
    else:
        raise SystemExit("no token budget gives the same partition in verl and recall; change the fixture's seed")
    return d, params, cases


def golden_f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def fixture_expected(d, params, case):
    out = actor_update(params, d, case["sequences"], case["settings"], case["lr"], None, 0, torch.float64)
    o32 = actor_update(params, d, case["sequences"], case["settings"], case["lr"], None, 0, torch.float32)
    gen = random.Random(99)
    slices = {}
    for name, tensor in out["params"].items():
        flat = tensor.reshape(-1)
        # The elements with the largest moments (well-conditioned: far from AdamW's eps) plus a few at random.
        top = torch.argsort(out["m"][name].reshape(-1).abs(), descending=True)[:FIXTURE_SLICE // 2].tolist()
        rest = sorted(set(gen.sample(range(flat.numel()), min(flat.numel(), FIXTURE_SLICE))) - set(top))[:FIXTURE_SLICE - len(top)]
        idx = sorted(top + rest)
        slices[name] = {"index": idx, "before": [params[name].reshape(-1)[i].item() for i in idx],
                        "after": [flat[i].item() for i in idx], "exp_avg": [out["m"][name].reshape(-1)[i].item() for i in idx],
                        "exp_avg_sq": [out["v"][name].reshape(-1)[i].item() for i in idx]}
    f32 = max(tensor_diff(o32["params"][n], out["params"][n])["max_abs"] for n in out["params"]) / (case["lr"] * len(out["grad_norms"]))
    return {"partitions": out["partitions"], "grad_norms": out["grad_norms"], "metrics": out["metrics"], "tensors": slices,
            "float32_vs_float64_weights_lr_units": f32}


def write_fixture(path, check):
    d, params, cases = fixture_inputs()
    doc = {"description": "One GRPO actor update of the golden qwen2 model per case, recomputed by scripts/verify_update.py "
                          "(PyTorch float64, verl's mini/micro-batching and loss scaling, clip_grad_norm_, torch.optim.AdamW "
                          "from zero moments). Sequences are prompt+response ids; old/ref log-probs, advantages and the loss "
                          "mask are per response token. Expected tensors: selected flat indices of each parameter.",
           "model": FIXTURE_MODEL, "cases": []}
    for case in cases:
        doc["cases"].append(dict(case, expected=fixture_expected(d, params, case)))
    text = json.dumps(doc, separators=(",", ":")) + "\n"
    if check:
        with open(path) as f:
            old = json.load(f)
        worst = 0.0
        for a, b in zip(old["cases"], doc["cases"]):
            if a["sequences"] != json.loads(json.dumps(b["sequences"])) or a["expected"]["partitions"] != b["expected"]["partitions"]:
                print(f"{path}: case '{a['name']}' inputs differ")
                sys.exit(1)
            for name, t in b["expected"]["tensors"].items():
                for key in ("after", "exp_avg", "exp_avg_sq"):
                    worst = max(worst, max(abs(x - y) for x, y in zip(a["expected"]["tensors"][name][key], t[key])))
        print(f"{path}: recomputed, largest difference {worst:.3g}")
        sys.exit(0 if worst < 1e-9 else 1)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    for case in doc["cases"]:
        e = case["expected"]
        print(f"{case['name']}: partitions {e['partitions']}, grad norms {['%.5g' % x for x in e['grad_norms']]}, "
              f"pg_loss {e['metrics']['actor/pg_loss']:.6g}, float32 vs float64 weights {e['float32_vs_float64_weights_lr_units']:.2g} lr")
    print("wrote", os.path.relpath(path, ROOT))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", nargs="?", help="run folder")
    ap.add_argument("step", nargs="?", type=int, help="global step to verify (1-based)")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--fixture", help="write (or with --check, recompute) the golden update fixture")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--partition", choices=["verl", "recall"], default="verl",
                    help="dynamic micro-batches: verl's Karmarkar-Karp into ceil(tokens/budget) parts (default), or recall's "
                         "documented packing (fewest parts that each fit the budget), to check the rest of the update alone")
    a = ap.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    if a.fixture:
        write_fixture(a.fixture, a.check)
        return
    if a.run is None or a.step is None or a.step < 1:
        ap.error("give RUN and STEP (>= 1), or --fixture PATH")
    r = verify_run(a.run, a.step, a.partition)
    print_report(r)
    if a.json:
        with open(a.json + ".tmp", "w") as f:
            json.dump(r, f, indent=1)
        os.replace(a.json + ".tmp", a.json)
    sys.exit(0 if r["ok"] else 1)


if __name__ == "__main__":
    main()
