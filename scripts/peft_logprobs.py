#!/usr/bin/env python3
"""Per-token log-probs of a batch under a base model with a LoRA adapter folder, as transformers + PEFT compute them.

    python scripts/peft_logprobs.py batch.json     # {"base": DIR, "adapter": DIR, "ids": [[...]], "lengths": [...]}

Prints {"logprobs": [[...]]}: row (b, t) is log p(ids[b][t+1] | ids[b][<=t]) for t < lengths[b] - 1, else 0. Used by
test/lora.test.ts to check that peft.PeftModel.from_pretrained loads the adapters recall saves (needs transformers and
peft; the test skips when they do not import). The model runs in float64.
"""
import json
import sys

import peft
import torch
import transformers


def main():
    with open(sys.argv[1]) as f:
        req = json.load(f)
    base = transformers.AutoModelForCausalLM.from_pretrained(req["base"], torch_dtype=torch.float64, attn_implementation="eager")
    model = peft.PeftModel.from_pretrained(base, req["adapter"])
    ids = torch.tensor(req["ids"])
    lengths = torch.tensor(req["lengths"])
    mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits, dim=-1)
    targets = torch.cat([ids[:, 1:], torch.zeros_like(ids[:, :1])], dim=1)
    lp = logp.gather(-1, targets[..., None])[..., 0]
    valid = torch.arange(ids.shape[1])[None, :] < (lengths[:, None] - 1)
    lp = torch.where(valid, lp, torch.zeros((), dtype=lp.dtype))
    print(json.dumps({"logprobs": lp.tolist()}))


if __name__ == "__main__":
    main()
