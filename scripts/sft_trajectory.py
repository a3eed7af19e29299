#!/usr/bin/env python3
"""Many SFT steps in PyTorch beside recall's: does recall's training follow the same trajectory, not just one step?

    python3 scripts/sft_trajectory.py CASE_DIR

CASE_DIR/case.json (written by test/sft_trajectory.test.ts): the model folder, the optimizer settings and the batches
(each a list of {ids, mask}); CASE_DIR/final.safetensors: recall's weights after those steps. This script trains the
same model folder on the same batches with the independent PyTorch model of scripts/golden.py (float32), the masked
token-mean loss of scripts/golden_sft.py, torch.nn.utils.clip_grad_norm_ and torch.optim.AdamW, then prints
{"tensors": {name: relative L2 error}, "losses": [...]} as JSON. Float32 noise compounds over the steps but stays
orders of magnitude below what a wrong gradient or optimizer term gives. Compatible with Debian's python3-torch (1.13).
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden  # noqa: E402
from golden_sft import sft_loss  # noqa: E402


def main():
    case_dir = sys.argv[1]
    torch.set_num_threads(1)
    case = json.load(open(os.path.join(case_dir, "case.json")))
    cfg = json.load(open(os.path.join(case["model"], "config.json")))
    d = golden.derived(cfg)
    params = {k: v.clone().requires_grad_(True) for k, v in golden.st_read(os.path.join(case["model"], "model.safetensors")).items()}
    o = case["optim"]
    opt = torch.optim.AdamW(list(params.values()), lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"], weight_decay=o["weight_decay"])
    losses = []
    for batch in case["batches"]:
        lengths = [len(x["ids"]) for x in batch]
        T = max(lengths)
        ids = torch.full((len(batch), T), golden.PAD_ID, dtype=torch.int64)
        mask = torch.zeros((len(batch), T), dtype=torch.int64)
        for b, x in enumerate(batch):
            ids[b, : lengths[b]] = torch.tensor(x["ids"])
            mask[b, : lengths[b]] = torch.tensor(x["mask"])
        mask[:, 0] = 0  # nothing predicts the first token
        n_tokens = int(mask[:, 1:].sum())
        loss = sft_loss(params, d, ids, lengths, mask, n_tokens)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), o["max_norm"])
        opt.step()
        losses.append(float(loss))
    ours = golden.st_read(os.path.join(case_dir, "final.safetensors"))
    errors = {k: float((ours[k] - p.detach()).norm() / p.detach().norm()) for k, p in params.items()}
    print(json.dumps({"tensors": errors, "losses": losses}))


if __name__ == "__main__":
    main()
