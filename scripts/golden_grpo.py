#!/usr/bin/env python3
"""Golden fixtures for the GRPO math (src/train/advantages.ts, loss.ts, schedule.ts): an independent PyTorch
implementation of verl's formulas (SPEC §6, §6a), written here from those formulas, importing nothing of ours.

    python3 scripts/golden_grpo.py            # rewrites fixtures/grpo/{advantages,loss,schedule}.json
    python3 scripts/golden_grpo.py --check    # recomputes from the committed inputs, compares, writes nothing

Needs PyTorch only (Debian's python3-torch 1.13 works, as does a venv: `python3 -m venv /work/venv &&
/work/venv/bin/pip install torch numpy`, then run it with /work/venv/bin/python). Inputs come from Python's own
`random` with a fixed seed (stable across versions) and are rounded to float32, so every fixture is reproducible.

What is computed, and how:
  - advantages: GRPO (group mean, unbiased std + 1e-6, group of one = mean 0 std 1; also without the division,
    Dr.GRPO), RLOO (score·n/(n−1) − mean·n/(n−1)) and REINFORCE++ (discounted returns reset where the mask is 0,
    whitened over the batch's masked tokens, unbiased), all on float32 tensors exactly as verl does them;
    also with KL in the reward (score on the last valid token − coef·kl per masked token).
  - policy loss for one micro-batch: ratio = exp(logp − old) (upstream clamps logp − old to ±20), clipped
    surrogate max(−A·r, −A·clip(r, 1−low, 1+high)) with the dual clip min(·, −A·c) for A < 0; entropy and KL
    terms; every loss_agg_mode for both compat variants (ReCall's: policy term always token-mean, raw 0/0 on
    empty masks; upstream: all terms follow the mode, fully masked rows left out); every KL estimator; the loss
    scaled by the micro-batch weight. Values and gradients (autograd w.r.t. logp and entropy) in float64 from
    the float32 inputs; the float32 run is compared with it as a check.
  - the lr schedule: verl's constant and cosine warmup lambdas stepped by torch's LambdaLR, lr read before
    each step as verl logs it.
Self-checks before anything is written: autograd against central finite differences in float64 at every
masked-in token, zero gradient at every masked-out token, float32 against float64, every clip branch hit.
"""
import json
import math
import os
import random
import struct
import sys
from collections import defaultdict

import torch

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "fixtures", "grpo")
HORIZON = 20  # the padded response width (data.max_response_length) for seq-mean-token-sum-norm
MODES = ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
KL_TYPES = ["kl", "abs", "mse", "low_var_kl"]


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def num(x):
    """JSON has no NaN: write it as null."""
    x = float(x)
    return None if math.isnan(x) else x


# ----------------------------------------------------------------------------------------------- inputs
def make_inputs():
    r = random.Random(20240917)
    # Ragged loss masks: tool spans (interior zeros), a one-token row, a row with a single token on.
    masks = [
        [1] * 4 + [0] * 3 + [1] * 6,
        [1],
        [1] * 9,
        [1, 1] + [0] * 8 + [1] * 7,
        [0, 0, 1, 0, 0],
        [1] * 7 + [0, 0] + [1] * 2,
        [1] * 8,
    ]
    rows = []
    for i, m in enumerate(masks):
        n = len(m)
        old = [f32(-abs(r.gauss(0, 1.5)) - 0.05) for _ in range(n)]
        delta = [r.gauss(0, 0.3) for _ in range(n)]
        adv = [f32(r.gauss(0, 1.0)) for _ in range(n)]
        ref = [f32(old[t] + r.gauss(0, 0.8)) for t in range(n)]
        ent = [f32(abs(r.gauss(1.5, 0.8))) for _ in range(n)]
        rows.append({"mask": m, "old": old, "delta": delta, "adv": adv, "ref": ref, "entropy": ent})
    # Pin tokens onto every branch: (row, token, delta = logp − old, advantage)
    pins = [
        (0, 1, 1.5, -0.8),    # A < 0, ratio 4.5 > c = 3: dual clip
        (0, 2, -0.5, -1.1),   # A < 0, ratio 0.61 < 0.8: clipped low
        (0, 3, 0.24, 0.9),    # A > 0, ratio 1.27: clipped at high = 0.2, not at 0.28 (clip-higher)
        (2, 0, 0.4, 1.3),     # A > 0, ratio 1.49: clipped either way
        (2, 4, -0.6, 0.7),    # A > 0, ratio 0.55: unclipped (pessimistic branch is −A·r)
        (3, 12, 21.0, 0.5),   # logp − old beyond upstream's ±20 clamp
        (3, 13, 0.0, 0.0),    # A = 0 exactly
        (5, 3, 1.2, -0.4),    # dual clip again
        (6, 5, 0.1, -2.0),    # inside the clip range
    ]
    for row, t, d, a in pins:
        rows[row]["delta"][t] = d
        rows[row]["adv"][t] = f32(a)
    # Reference log-probs pinned onto the k3 clamps: ref − logp beyond 20 (upstream clamp) and k3 > 10.
    for row in rows:
        row["logp"] = [f32(o + d) for o, d in zip(row["old"], row["delta"])]
        del row["delta"]
    rows[6]["ref"][2] = f32(rows[6]["logp"][2] + 21.0)
    rows[6]["ref"][3] = f32(rows[6]["logp"][3] + 3.0)   # k3 = e^3 − 4 ≈ 16: clamped to 10
    rows[6]["ref"][4] = f32(rows[6]["logp"][4] + 2.5)   # k3 ≈ 8.7: inside
    rows[2]["ref"][3] = f32(rows[2]["logp"][3])         # k1 = 0 exactly (abs has slope 0)

    # Advantages: groups of uneven sizes (one of one), mixed key types, ragged response masks.
    lens = [13, 1, 9, 17, 5, 11, 8, 6, 12, 4, 7, 10, 3, 9, 8, 8, 8, 8, 8, 8, 8, 8]
    groups = ["p0"] * 5 + ["p1"] * 3 + [7] + ["p3"] * 4 + ["dup"] * 8 + [42]
    assert len(groups) == len(lens)
    scores = [f32(r.choice([0.0, 1.0, r.random(), round(r.random(), 2), -0.5])) for _ in lens]
    for i in range(13, 21):
        scores[i] = f32(0.1)  # eight identical non-dyadic scores: verl's float32 sum is inexact here
    response_masks = [[1] * n for n in lens]
    response_masks[3][15:] = [0, 0]  # a ragged tail: zeros at the end of a row
    adv_inputs = {
        "scores": scores,
        "groups": groups,
        "response_masks": response_masks,
        "old": [[f32(-abs(r.gauss(0, 1))) for _ in range(n)] for n in lens],
        "ref": [[f32(-abs(r.gauss(0, 1))) for _ in range(n)] for n in lens],
    }
    return rows, adv_inputs


def pad(rows, width, fill_seed, dtype):
    """Right-pad ragged rows to `width`, filling the padding with junk (masked out, it must not matter)."""
    r = random.Random(fill_seed)
    out = torch.empty(len(rows), width, dtype=dtype)
    for i, row in enumerate(rows):
        for t in range(width):
            out[i, t] = row[t] if t < len(row) else r.uniform(-3, 3)
    return out


def pad_mask(rows, width, dtype):
    out = torch.zeros(len(rows), width, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=dtype)
    return out


def unpad(t, rows):
    return [[float(v) for v in t[i, : len(row)]] for i, row in enumerate(rows)]


# ----------------------------------------------------------------------------------------------- advantages
def grpo_advantages(scores, groups, norm_by_std, eps=1e-6):
    """verl's GRPO outcome advantage on a float32 score vector (one value per sequence)."""
    members = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    out = scores.clone()
    for g, idx in members.items():
        if len(idx) == 1:
            mean, std = torch.tensor(0.0), torch.tensor(1.0)
        else:
            group = torch.stack([scores[i] for i in idx])
            mean, std = torch.mean(group), torch.std(group)
        for i in idx:
            out[i] = (scores[i] - mean) / (std + eps) if norm_by_std else scores[i] - mean
    return out


def rloo_advantages(scores, groups):
    members = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    out = scores.clone()
    for g, idx in members.items():
        n = len(idx)
        if n == 1:
            continue
        mean = torch.mean(torch.stack([scores[i] for i in idx]))
        for i in idx:
            out[i] = scores[i] * n / (n - 1) - mean * n / (n - 1)
    return out


def masked_whiten(values, mask):
    """Batch whitening over the masked tokens, unbiased variance, as verl's masked_whiten."""
    count = mask.sum()
    mean = (values * mask).sum() / count
    centered = values - mean
    var = (centered * centered * mask).sum() / count
    var = var * (count / (count - 1))
    return (values - mean) * torch.rsqrt(var + 1e-8)


def reinforce_pp(token_rewards, mask, gamma):
    returns = torch.zeros_like(token_rewards)
    running = torch.zeros(token_rewards.shape[0], dtype=token_rewards.dtype)
    for t in reversed(range(token_rewards.shape[1])):
        running = token_rewards[:, t] + gamma * running
        returns[:, t] = running
        running = running * mask[:, t]
    return masked_whiten(returns, mask) * mask, returns


def last_token_scores(scores, mask):
    out = torch.zeros_like(mask)
    for i in range(mask.shape[0]):
        on = torch.nonzero(mask[i]).flatten()
        if len(on):
            out[i, int(on[-1])] = scores[i]
    return out


def kl_estimate(logp, ref, kind, compat):
    k1 = logp - ref
    if kind == "kl":
        return k1
    if kind == "abs":
        return k1.abs()
    if kind == "mse":
        return 0.5 * k1 * k1
    d = ref - logp  # low_var_kl (k3)
    if compat == "verl":
        d = torch.clamp(d, -20.0, 20.0)
    return torch.clamp(torch.exp(d) - d - 1, -10.0, 10.0)


def advantage_cases(inp):
    width = max(len(m) for m in inp["response_masks"])
    mask = pad_mask(inp["response_masks"], width, torch.float32)
    scores = torch.tensor(inp["scores"], dtype=torch.float32)
    groups = inp["groups"]
    token_scores = last_token_scores(scores, mask)
    cases = []

    def broadcast(per_seq):
        return per_seq.unsqueeze(-1) * mask

    for norm in (True, False):
        a = broadcast(grpo_advantages(token_scores.sum(-1), groups, norm))
        cases.append({"name": f"grpo norm_by_std={norm}", "estimator": "grpo", "normByStd": norm, "advantages": unpad(a, inp["response_masks"])})
    a = broadcast(rloo_advantages(token_scores.sum(-1), groups))
    cases.append({"name": "rloo", "estimator": "rloo", "normByStd": True, "advantages": unpad(a, inp["response_masks"])})
    for gamma in (1.0, 0.9):
        a, ret = reinforce_pp(token_scores, mask, gamma)
        cases.append({"name": f"reinforce_plus_plus gamma={gamma}", "estimator": "reinforce_plus_plus", "normByStd": True, "gamma": gamma,
                      "advantages": unpad(a, inp["response_masks"]), "returns": unpad(ret, inp["response_masks"])})

    # KL in the reward: token rewards, then GRPO on their sums and REINFORCE++ on them.
    old = pad(inp["old"], width, 5, torch.float32)
    ref = pad(inp["ref"], width, 6, torch.float32)
    coef = 0.05
    kld = kl_estimate(old, ref, "kl", "recall") * mask
    token_rewards = token_scores - coef * kld
    per_row_kl = (kld * mask).sum(-1) / mask.sum(-1)
    kl_case = {"coef": coef, "klType": "kl", "tokenRewards": unpad(token_rewards, inp["response_masks"]), "klMean": float(per_row_kl.mean())}
    a = broadcast(grpo_advantages(token_rewards.sum(-1), groups, True))
    kl_case["grpo"] = unpad(a, inp["response_masks"])
    a, _ = reinforce_pp(token_rewards, mask, 1.0)
    kl_case["reinforce_plus_plus"] = unpad(a, inp["response_masks"])
    return {"inputs": inp, "cases": cases, "klInReward": kl_case}


# ----------------------------------------------------------------------------------------------- loss
def masked_mean(values, mask, compat):
    n = mask.sum()
    s = torch.where(mask > 0, values, torch.zeros_like(values)).mul(mask).sum() if compat == "verl" else (values * mask).sum()
    if compat == "recall":
        return s / n  # NaN on an empty mask, as ReCall's verl
    return s / torch.where(n > 0, n, torch.ones_like(n))  # upstream's n + 1e-8: exactly n in float32, 0/ε = 0 when empty


def aggregate(values, mask, mode, compat, horizon=HORIZON):
    if compat == "verl":
        values = torch.where(mask > 0, values, torch.zeros_like(values))
    token_sum = (values * mask).sum(-1)
    count = mask.sum(-1)
    if mode == "token-mean":
        return masked_mean(values, mask, compat)
    if mode == "seq-mean-token-sum-norm":
        return token_sum.sum() / horizon
    nonempty = (count > 0).to(values.dtype)
    if mode == "seq-mean-token-sum":
        row = token_sum
    else:
        row = token_sum / count if compat == "recall" else token_sum / torch.where(count > 0, count, torch.ones_like(count))
    if compat == "recall":
        return row.mean()
    return (row * nonempty).sum() / torch.where(nonempty.sum() > 0, nonempty.sum(), torch.ones_like(nonempty.sum()))


def actor_loss(t, s, compat, scale):
    """verl's actor loss for one micro-batch; t holds padded tensors (logp, entropy require grad)."""
    mask = t["mask"]
    neg_kl = t["logp"] - t["old"]
    if compat == "verl":
        neg_kl = torch.clamp(neg_kl, -20.0, 20.0)
    ratio = torch.exp(neg_kl)
    adv = t["adv"]
    l1 = -adv * ratio
    l2 = -adv * torch.clamp(ratio, 1 - s["clipRatioLow"], 1 + s["clipRatioHigh"])
    c1 = torch.maximum(l1, l2)
    l3 = -adv * s["clipRatioC"]
    c2 = torch.minimum(l3, c1)
    per_token = torch.where(adv < 0, c2, c1)
    pg = aggregate(per_token, mask, "token-mean" if compat == "recall" else s["lossAggMode"], compat)
    ent = aggregate(t["entropy"], mask, s["lossAggMode"], compat)
    total = pg - s["entropyCoeff"] * ent
    kl = torch.zeros((), dtype=mask.dtype)
    if s["useKlLoss"]:
        kl = aggregate(kl_estimate(t["logp"], t["ref"], s["klType"], compat), mask, s["lossAggMode"], compat)
        total = total + s["klCoef"] * kl
    metrics = {
        "pg_loss": pg.item(),
        "pg_clipfrac": masked_mean((l2 > l1).to(mask.dtype), mask, compat).item(),
        "pg_clipfrac_lower": masked_mean(((c1 > l3) & (adv < 0)).to(mask.dtype), mask, compat).item(),
        "ppo_kl": masked_mean(-neg_kl, mask, compat).item(),
        "entropy": ent.item(),
        "kl_loss": kl.item(),
    }
    branches = {
        "clipped_high": bool(((l2 > l1) & (adv > 0) & (mask > 0)).any()),
        "clipped_low": bool(((l2 > l1) & (adv < 0) & (mask > 0)).any()),
        "dual_clip": bool(((c1 > l3) & (adv < 0) & (mask > 0)).any()),
        "unclipped": bool(((l1 > l2) & (mask > 0)).any()),
    }
    return scale * total, metrics, branches


def tensors(rows, dtype, width):
    t = {
        "mask": pad_mask([r["mask"] for r in rows], width, dtype),
        "logp": pad([r["logp"] for r in rows], width, 1, dtype),
        "old": pad([r["old"] for r in rows], width, 2, dtype),
        "adv": pad([r["adv"] for r in rows], width, 3, dtype),
        "ref": pad([r["ref"] for r in rows], width, 4, dtype),
        "entropy": pad([r["entropy"] for r in rows], width, 5, dtype),
    }
    t["logp"].requires_grad_(True)
    t["entropy"].requires_grad_(True)
    return t


def run_case(rows, s, compat, scale, checks):
    width = HORIZON
    t64 = tensors(rows, torch.float64, width)
    loss, metrics, branches = actor_loss(t64, s, compat, scale)
    finite = math.isfinite(loss.item())
    out = {"loss": num(loss.item()), "metrics": {k: num(v) for k, v in metrics.items()}}
    masks = [r["mask"] for r in rows]
    if finite:
        g_logp, g_ent = torch.autograd.grad(loss, [t64["logp"], t64["entropy"]])
        out["dLogprob"] = unpad(g_logp, masks)
        out["dEntropy"] = unpad(g_ent, masks)
        # Finite differences in float64 at every masked-in token; exact zeros where the mask is 0.
        worst = 0.0
        for name, grad in (("logp", g_logp), ("entropy", g_ent)):
            for i, row in enumerate(masks):
                for tok in range(width):
                    on = tok < len(row) and row[tok] == 1
                    if not on:
                        assert grad[i, tok].item() == 0.0, f"masked-out token ({i},{tok}) has gradient {grad[i, tok].item()}"
                        continue
                    h = 1e-6
                    base = t64[name].detach().clone()

                    def at(v):
                        tt = dict(t64)
                        x = base.clone()
                        x[i, tok] = v
                        tt[name] = x
                        return actor_loss(tt, s, compat, scale)[0].item()

                    fd = (at(base[i, tok].item() + h) - at(base[i, tok].item() - h)) / (2 * h)
                    err = abs(fd - grad[i, tok].item()) / (1e-6 + abs(fd))
                    worst = max(worst, err)
        assert worst < 1e-4, f"finite differences disagree with autograd by {worst}"
        checks["fd_worst_rel"] = max(checks.get("fd_worst_rel", 0.0), worst)
        # float32 (verl's dtype) against float64
        t32 = tensors(rows, torch.float32, width)
        loss32, _, _ = actor_loss(t32, s, compat, scale)
        g32 = torch.autograd.grad(loss32, [t32["logp"]])[0].double()
        rel = abs(loss32.item() - loss.item()) / max(1e-12, abs(loss.item()))
        grel = ((g32 - g_logp).abs().max() / g_logp.abs().max().clamp(min=1e-12)).item()
        assert rel < 1e-5 and grel < 1e-5, f"float32 disagrees with float64: loss {rel}, grad {grel}"
        checks["f32_worst_rel"] = max(checks.get("f32_worst_rel", 0.0), rel, grel)
    return out, branches


def loss_cases(rows):
    base = {"clipRatioLow": 0.2, "clipRatioHigh": 0.2, "clipRatioC": 3.0, "entropyCoeff": 0.001, "useKlLoss": True,
            "klCoef": 0.001, "klType": "low_var_kl", "lossAggMode": "token-mean", "horizon": HORIZON}
    cases = []
    checks = {}
    seen = defaultdict(bool)

    def add(name, rows_, s, compat, scale):
        out, branches = run_case(rows_, s, compat, scale, checks)
        for k, v in branches.items():
            seen[k] |= v
        cases.append({"name": name, "settings": dict(s, compat=compat), "scale": scale, "rows": "empty_row" if rows_ is not rows else "main", **out})

    for compat in ("recall", "verl"):
        for mode in MODES:
            # ReCall-like coefficients would hide the entropy/KL gradients in the noise: use visible ones.
            add(f"{mode} {compat}", rows, dict(base, lossAggMode=mode, entropyCoeff=0.01, klCoef=0.1), compat, 0.375)
        for kind in KL_TYPES:
            add(f"kl {kind} {compat}", rows, dict(base, klType=kind, klCoef=0.5, lossAggMode="seq-mean-token-mean"), compat, 1.0)
        add(f"clip-higher {compat}", rows, dict(base, clipRatioHigh=0.28), compat, 1.0)
        add(f"dual-clip c=1.5 {compat}", rows, dict(base, clipRatioC=1.5), compat, 1.0)
        add(f"no kl, no entropy {compat}", rows, dict(base, useKlLoss=False, entropyCoeff=0.0), compat, 0.5)
        add(f"recall defaults {compat}", rows, base, compat, 0.25)
    # A micro-batch with a fully masked row: ReCall's verl gives NaN where it divides by its zero count.
    empty = rows + [{"mask": [0] * 6, "logp": [-1.0] * 6, "old": [-1.2] * 6, "adv": [0.5] * 6, "ref": [-0.9] * 6, "entropy": [2.0] * 6}]
    for compat in ("recall", "verl"):
        for mode in MODES:
            add(f"empty row {mode} {compat}", empty, dict(base, lossAggMode=mode, entropyCoeff=0.01, klCoef=0.1), compat, 1.0)
    assert all(seen[k] for k in ("clipped_high", "clipped_low", "dual_clip", "unclipped")), f"not every clip branch was hit: {dict(seen)}"

    # Per-token KL values and plain aggregations of one value matrix.
    width = HORIZON
    t = tensors(rows, torch.float64, width)
    kl_values = {}
    for compat in ("recall", "verl"):
        for kind in KL_TYPES:
            kl_values[f"{kind} {compat}"] = unpad(kl_estimate(t["logp"].detach(), t["ref"], kind, compat), [r["mask"] for r in rows])
    aggregates = {}
    for compat in ("recall", "verl"):
        for mode in MODES:
            aggregates[f"{mode} {compat}"] = num(aggregate(t["ref"], t["mask"], mode, compat).item())
    return {"horizon": HORIZON, "rows": rows, "emptyRow": empty[-1], "cases": cases, "kl": kl_values,
            "aggregateOfRef": aggregates, "checks": checks}


# ----------------------------------------------------------------------------------------------- schedule
def schedule_cases():
    def constant(warmup):
        return lambda step: min(1.0, float(step) / float(max(1, warmup)))

    def cosine(warmup, total, min_ratio, cycles):
        coef, intercept = (1 - min_ratio) * 0.5, (1 + min_ratio) * 0.5

        def f(step):
            if step < warmup:
                return float(step) / float(max(1, warmup))
            progress = float(step - warmup) / float(max(1, total - warmup))
            return max(0.0, math.cos(math.pi * cycles * 2.0 * progress) * coef + intercept)
        return f

    specs = [
        {"style": "constant", "lr": 1e-6, "warmupSteps": 0, "totalSteps": 12},
        {"style": "constant", "lr": 1e-6, "warmupSteps": 4, "totalSteps": 12},
        {"style": "cosine", "lr": 3e-4, "warmupSteps": 3, "totalSteps": 17, "minLrRatio": 0.0, "numCycles": 0.5},
        {"style": "cosine", "lr": 3e-4, "warmupSteps": 0, "totalSteps": 10, "minLrRatio": 0.1, "numCycles": 0.5},
        {"style": "cosine", "lr": 1e-5, "warmupSteps": 2, "totalSteps": 9, "minLrRatio": 0.2, "numCycles": 1.5},
    ]
    out = []
    for spec in specs:
        param = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([param], lr=spec["lr"])
        fn = constant(spec["warmupSteps"]) if spec["style"] == "constant" else cosine(spec["warmupSteps"], spec["totalSteps"], spec["minLrRatio"], spec["numCycles"])
        sched = torch.optim.lr_scheduler.LambdaLR(opt, fn)
        lrs = []
        for _ in range(spec["totalSteps"] + 3):  # a few past the end too
            lrs.append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
        out.append(dict(spec, lrs=lrs))
    return {"cases": out}


def overlong_cases():
    out = []
    for length, max_len, buf, factor in [(100, 200, 50, 1.0), (160, 200, 50, 1.0), (175, 200, 50, 1.0), (200, 200, 50, 1.0), (190, 200, 40, 0.5), (10, 16, 16, 2.0)]:
        expected = max_len - buf
        out.append({"responseLength": length, "maxResponseLength": max_len, "bufferLen": buf, "penaltyFactor": factor,
                    "penalty": min(-(length - expected) / buf * factor, 0)})
    return {"cases": out}


# ----------------------------------------------------------------------------------------------- main
def main():
    check = "--check" in sys.argv[1:]
    torch.set_grad_enabled(True)
    rows, adv_inputs = make_inputs()
    if check:
        with open(os.path.join(OUT, "loss.json")) as f:
            rows = json.load(f)["rows"]
        with open(os.path.join(OUT, "advantages.json")) as f:
            adv_inputs = json.load(f)["inputs"]
    outputs = {
        "advantages.json": advantage_cases(adv_inputs),
        "loss.json": loss_cases(rows),
        "schedule.json": schedule_cases(),
        "overlong.json": overlong_cases(),
    }
    print("checks:", outputs["loss.json"]["checks"])
    if check:
        bad = []
        for name, data in outputs.items():
            with open(os.path.join(OUT, name)) as f:
                if json.load(f) != json.loads(json.dumps(data)):
                    bad.append(name)
        if bad:
            print("differs from the committed fixtures:", ", ".join(bad))
            sys.exit(1)
        print("fixtures/grpo: all match")
        return
    os.makedirs(OUT, exist_ok=True)
    for name, data in outputs.items():
        path = os.path.join(OUT, name)
        with open(path + ".tmp", "w") as f:
            json.dump(data, f, separators=(",", ":"))
            f.write("\n")
        os.replace(path + ".tmp", path)
        print("wrote", os.path.relpath(path, ROOT))


if __name__ == "__main__":
    main()
