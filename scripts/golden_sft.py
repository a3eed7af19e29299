#!/usr/bin/env python3
"""Golden fixture for `recall sft`: the masked SFT loss, its gradients and one optimizer step of a tiny model, in PyTorch.

    /usr/bin/python3 scripts/golden_sft.py            # rewrites fixtures/sft/
    /usr/bin/python3 scripts/golden_sft.py --check    # recomputes and compares with the committed files, writes nothing

The model is the independent PyTorch implementation in scripts/golden.py (Qwen2 config `qwen2_gqa_tied`, its seeded
weights). The batch: three sequences of different lengths, right-padded, each with a loss mask of 0/1 per token that
marks "assistant" spans (mask[0] = 0: nothing predicts the first token). The loss is recall's SFT loss, the mean of
-log p(token | prefix) over every masked token of the whole batch:

    L = -(1/N) * sum_b sum_{t >= 1, mask[b][t] = 1} log softmax(logits[b, t-1])[ids[b][t]],   N = sum of the masks

Then one optimizer step as recall runs it (= verl's SFT trainer): torch.nn.utils.clip_grad_norm_(max_norm) and
torch.optim.AdamW (decoupled weight decay on every parameter) at the given lr.

Writes fixtures/sft/:
  inputs.json              ids, lengths, masks, N, the optimizer settings, the loss and the pre-clip gradient norm
  grads.safetensors        dL/dtheta per parameter (HF names; the tied embedding holds both of its gradients)
  updated.safetensors      the parameters after clip + AdamW
Expected values are computed in float64 from the F32 weights (stored as F32). Self-check before writing: the float32
run agrees with float64, and central finite differences of L in float64 match autograd at a few coordinates.
Compatible with Debian's python3-torch (1.13).
"""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden  # noqa: E402  (scripts/golden.py: the model, safetensors by hand)

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "fixtures", "sft")
CONFIG = "qwen2_gqa_tied"
SEED = 1000  # golden.py's seed for this config: the same weights as fixtures/golden/qwen2_gqa_tied
LENGTHS = [13, 9, 6]
# 1 on the tokens trained on: spans like assistant turns (several per sequence), never position 0.
MASKS = [
    [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1],
    [0, 0, 1, 1, 1, 1, 0, 1, 1],
    [0, 1, 1, 1, 1, 1],
]
OPTIM = dict(lr=0.01, betas=[0.9, 0.95], eps=1e-8, weight_decay=0.01, max_norm=1.0)


def sft_loss(params, d, ids, lengths, mask, n_tokens):
    logits = golden.forward(params, d, ids, lengths)  # [B, T, V]
    logp = torch.log_softmax(logits, dim=-1)
    B, T = ids.shape
    # row t-1 predicts token t
    pred = logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]  # [B, T-1]
    m = mask[:, 1:].to(pred.dtype)
    return -(pred * m).sum() / n_tokens


def main():
    check_only = "--check" in sys.argv
    torch.set_num_threads(1)
    cfg = golden.CONFIGS[CONFIG]
    d = golden.derived(cfg)
    gen = torch.Generator().manual_seed(SEED)
    params32 = golden.random_params(d, gen)
    B, T = len(LENGTHS), max(LENGTHS)
    tgen = torch.Generator().manual_seed(4242)
    ids = torch.full((B, T), golden.PAD_ID, dtype=torch.int64)
    mask = torch.zeros((B, T), dtype=torch.int64)
    for b, n in enumerate(LENGTHS):
        assert len(MASKS[b]) == n and MASKS[b][0] == 0
        ids[b, :n] = torch.randint(0, d["V"], (n,), generator=tgen)
        mask[b, :n] = torch.tensor(MASKS[b])
    n_tokens = int(mask[:, 1:].sum())

    results = {}
    for dtype in (torch.float32, torch.float64):
        P = {k: v.to(dtype).clone().requires_grad_(True) for k, v in params32.items()}
        L = sft_loss(P, d, ids, LENGTHS, mask, n_tokens)
        g = torch.autograd.grad(L, list(P.values()))
        results[dtype] = (float(L.detach()), dict(zip(P.keys(), g)))
    L64, g64 = results[torch.float64]
    L32, g32 = results[torch.float32]
    assert abs(L32 - L64) < 1e-5 * abs(L64), (L32, L64)
    worst = max(golden.max_rel(g32[k], g64[k]) for k in params32)
    assert worst < 1e-4, worst

    # Finite differences of L in float64 at one coordinate of a few tensors.
    P64 = {k: v.double() for k, v in params32.items()}
    fgen = torch.Generator().manual_seed(7)
    for k in ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight", "model.norm.weight"]:
        nz = g64[k].view(-1).nonzero()[:, 0]
        i = int(nz[int(torch.randint(0, nz.numel(), (1,), generator=fgen))])
        flat, h = P64[k].view(-1), 1e-6
        orig = float(flat[i])
        flat[i] = orig + h
        up = float(sft_loss(P64, d, ids, LENGTHS, mask, n_tokens))
        flat[i] = orig - h
        down = float(sft_loss(P64, d, ids, LENGTHS, mask, n_tokens))
        flat[i] = orig
        num, ana = (up - down) / (2 * h), float(g64[k].view(-1)[i])
        assert abs(num - ana) <= 1e-6 + 1e-6 * abs(ana), (k, i, num, ana)

    # One step: clip_grad_norm_ then AdamW, in float64 from the F32 weights and the float64 gradients.
    P = {k: v.double().clone().requires_grad_(True) for k, v in params32.items()}
    for k, p in P.items():
        p.grad = g64[k].clone()
    norm = float(torch.nn.utils.clip_grad_norm_(list(P.values()), OPTIM["max_norm"]))
    opt = torch.optim.AdamW(list(P.values()), lr=OPTIM["lr"], betas=tuple(OPTIM["betas"]), eps=OPTIM["eps"], weight_decay=OPTIM["weight_decay"])
    opt.step()
    updated = {k: p.detach() for k, p in P.items()}

    inputs = {
        "description": "B sequences right-padded to T with pad_id; mask[b][t] = 1: token t is trained on (predicted by row t-1)",
        "model": f"fixtures/golden/{CONFIG}/model",
        "pad_id": golden.PAD_ID, "ids": ids.tolist(), "lengths": LENGTHS, "mask": mask.tolist(), "trained_tokens": n_tokens,
        "loss": L64, "grad_norm": norm, "optim": OPTIM,
    }
    if check_only:
        old = golden.st_read(os.path.join(OUT, "grads.safetensors"))
        bad = [k for k in g64 if not torch.allclose(old[k].double(), g64[k].float().double(), rtol=1e-5, atol=1e-7)]
        old_u = golden.st_read(os.path.join(OUT, "updated.safetensors"))
        bad += [k for k in updated if not torch.allclose(old_u[k].double(), updated[k].float().double(), rtol=1e-6, atol=1e-7)]
        print("sft golden fixture matches" if not bad else f"differs: {bad}")
        sys.exit(1 if bad else 0)
    os.makedirs(OUT, exist_ok=True)
    golden.write_json(os.path.join(OUT, "inputs.json"), inputs)
    golden.st_write(os.path.join(OUT, "grads.safetensors"), g64)
    golden.st_write(os.path.join(OUT, "updated.safetensors"), updated)
    print(f"sft: loss {L64:.6f} over {n_tokens} tokens, grad norm {norm:.4f} (clip {OPTIM['max_norm']}), f32 vs f64 grads rel {worst:.1e}")


if __name__ == "__main__":
    main()
