#!/usr/bin/env python3
"""Golden fixtures for LoRA: log-probs, entropies and the adapter's gradients of a tiny model with a PEFT adapter.

    /usr/bin/python3 scripts/golden_lora.py            # rewrites fixtures/lora/<case>/
    /usr/bin/python3 scripts/golden_lora.py --check    # recomputes and compares with the committed files, writes nothing
    /work/venv2/bin/python scripts/golden_lora.py      # the same, plus the cross-check against transformers + PEFT

The base models are the golden ones (fixtures/golden/<case>/model, from scripts/golden.py) and so is the batch
(fixtures/golden/<case>/inputs.json). Each case adds a LoRA adapter with seeded random A and B (B non-zero, so that
every gradient path matters) on some projections, with PEFT's semantics:

    y = x W^T (+ b) + (lora_alpha / r) * (x A^T) B^T,      A [r, in], B [out, r], W frozen

and differentiates L = sum_valid w * logprob + sum_valid' u * entropy (the golden loss and entropy weights) with
respect to every A and B. The same again for a training pass with LoRA dropout (PEFT: y += s * B(A(dropout(x)))),
with the masks recall's keyed dropout draws for the pass seed and p in dropout.json (src/model/lora_dropout.ts and
src/ops/dropout.ref.ts, re-implemented below on Python ints): each adapted projection of each layer has its own mask
over its [B*T, in] input, keep / (1 - p). Writes fixtures/lora/<case>/:
  adapter/adapter_config.json, adapter/adapter_model.safetensors   the adapter as PEFT saves it (F32, PEFT names)
  expected.safetensors                                             logprobs, entropies (padding zeroed), loss
  grads.safetensors                                                dL/dA, dL/dB under the adapter's tensor names
  dropout.json                                                     p and the pass seed of the dropout pass
  expected_dropout.safetensors, grads_dropout.safetensors          the same with those dropout masks
  checks.json                                                      what the self-checks measured
Expected values are float64 (stored as F32). Self-checks: float32 agrees with float64; central finite differences
match autograd at a few coordinates of A and B; and, when `transformers` and `peft` import (not in CI: Debian's
python3-torch 1.13 alone is enough for the rest), peft.PeftModel.from_pretrained loads the adapter folder onto the
transformers model and gives the same log-probs, entropies and adapter gradients, and its save_pretrained writes the
same tensor names; with each LoRA layer's lora_dropout module replaced by the fixed mask, PEFT's own forward gives the
dropout pass's numbers too (where PEFT puts the dropout: on the adapter branch's input only).
"""
import json
import os
import struct
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden  # noqa: E402  (scripts/golden.py: the model, safetensors by hand)

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "fixtures", "lora")
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CASES = {
    # Every projection (verl's all-linear), Qwen2 with q/k/v biases and a tied head.
    "qwen2_gqa_tied": dict(seed=1000, rank=4, alpha=8.0, targets=ALL),
    # Some projections only, Qwen3 with q/k norms after the adapted q_proj, head_dim != hidden/heads.
    "qwen3_qknorm_untied": dict(seed=1001, rank=2, alpha=3.0, targets=["q_proj", "v_proj", "down_proj"]),
}
# The dropout pass: lora_dropout p and the pass's u32 seed (what recall's trainers derive from run seed, step, pass).
DROPOUT = {"qwen2_gqa_tied": dict(p=0.25, seed=0x5EED0001), "qwen3_qknorm_untied": dict(p=0.4, seed=0x5EED0002)}

U32 = 0xFFFFFFFF


def mix32(x):
    """lowbias32, src/util/prng.ts mix32."""
    x &= U32
    x = ((x ^ (x >> 16)) * 0x7FEB352D) & U32
    x = ((x ^ (x >> 15)) * 0x846CA68B) & U32
    return x ^ (x >> 16)


def dropout_key(seed, l, m):
    """src/model/lora_dropout.ts loraDropoutKey: the mask key of layer l's projection m in a pass seeded `seed`."""
    stream = l * len(ALL) + ALL.index(m) + 1
    return mix32(seed ^ mix32(stream)), mix32(seed + 0x9E3779B9 + stream)


def dropout_mask(key, shape, p, dtype):
    """keep / (1 - p) over a tensor of `shape` (row-major element g): src/ops/dropout.ref.ts keepsElement."""
    threshold = int(p * 2 ** 24 + 0.5)
    k0, k1 = key
    n = 1
    for s in shape:
        n *= s
    keep = [1.0 if (mix32(mix32(g ^ k0) ^ k1) >> 8) >= threshold else 0.0 for g in range(n)]
    return torch.tensor(keep, dtype=dtype).view(*shape) / (1 - p)


def dropout_masks(params, d, c, B, T, drop, dtype):
    """{module path: mask [B, T, in]} for every adapted projection."""
    out = {}
    for l in range(d["L"]):
        for m in c["targets"]:
            path = module_path(l, m)
            n_in = params[f"{path}.weight"].shape[1]
            out[path] = dropout_mask(dropout_key(drop["seed"], l, m), (B, T, n_in), drop["p"], dtype)
    return out


def module_path(l, m):
    return f"model.layers.{l}.{'mlp' if m in ('gate_proj', 'up_proj', 'down_proj') else 'self_attn'}.{m}"


def peft_name(path, which):
    return f"base_model.model.{path}.lora_{which}.weight"


def adapter_config(case, c):
    return {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": f"fixtures/golden/{case}/model",
        "r": c["rank"], "lora_alpha": c["alpha"], "lora_dropout": 0.0, "target_modules": c["targets"], "bias": "none",
        "fan_in_fan_out": False, "use_rslora": False, "use_dora": False, "init_lora_weights": True, "inference_mode": True,
        "modules_to_save": None, "layers_to_transform": None, "layers_pattern": None, "rank_pattern": {},
        "alpha_pattern": {}, "revision": None,
    }


def random_adapter(params, d, c):
    """{peft name: tensor} with A ~ N(0, 1/in) and B ~ N(0, 0.25/r): the adapter moves the log-probs by O(0.1-1)."""
    gen = torch.Generator().manual_seed(c["seed"] + 500)
    out = {}
    for l in range(d["L"]):
        for m in c["targets"]:
            path = module_path(l, m)
            n_out, n_in = params[f"{path}.weight"].shape
            out[peft_name(path, "A")] = torch.randn((c["rank"], n_in), generator=gen) / n_in ** 0.5
            out[peft_name(path, "B")] = torch.randn((n_out, c["rank"]), generator=gen) * 0.5 / c["rank"] ** 0.5
    return out


def lora_map(adapter, scale, masks=None):
    paths = sorted({k[len("base_model.model."):-len(".lora_A.weight")] for k in adapter if k.endswith(".lora_A.weight")})
    return {p: (adapter[peft_name(p, "A")], adapter[peft_name(p, "B")], scale, *([masks[p]] if masks else [])) for p in paths}


def batch_of(inputs, dtype):
    return dict(ids=torch.tensor(inputs["ids"]), lengths=inputs["lengths"], targets=torch.tensor(inputs["targets"]),
                lp_mask=torch.tensor(inputs["logprob_mask"]), ent_mask=torch.tensor(inputs["entropy_mask"]),
                w=torch.tensor(inputs["loss_weights"], dtype=dtype), u=torch.tensor(inputs["entropy_weights"], dtype=dtype))


def loss_of(params, d, adapter, scale, batch, masks=None):
    logits = golden.forward(params, d, batch["ids"], batch["lengths"], lora=lora_map(adapter, scale, masks))
    lp, ent = golden.token_stats(logits, batch["targets"])
    zero = torch.zeros((), dtype=lp.dtype)
    lp = torch.where(batch["lp_mask"] > 0, lp, zero)
    ent = torch.where(batch["ent_mask"] > 0, ent, zero)
    return lp, ent, (lp * batch["w"]).sum() + (ent * batch["u"]).sum()


def st_names(path):
    """Tensor names of a safetensors file (any dtype: PEFT saves this float64 model's adapter as F64)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return {k for k in json.loads(f.read(n)) if k != "__metadata__"}


class FixedMask(torch.nn.Module):
    """Stands in for a PEFT LoRA layer's lora_dropout: multiplies by a fixed keep / (1 - p) mask."""

    def __init__(self, mask):
        super().__init__()
        self.mask = mask

    def forward(self, x):
        return x * self.mask


def peft_crosscheck(case, folder, inputs, expected, grads64, dropped=None):
    """transformers + PEFT on the same model, adapter folder and batch (skipped when they do not import)."""
    try:
        import peft  # noqa: F401
        import transformers
    except ImportError as e:
        return {"skipped": f"transformers/peft not importable ({e.name})"}
    model_dir = os.path.join(ROOT, "fixtures", "golden", case, "model")
    base = transformers.AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float64, attn_implementation="eager")
    model = peft.PeftModel.from_pretrained(base, os.path.join(folder, "adapter"), is_trainable=True)
    ids = torch.tensor(inputs["ids"])
    mask = (torch.arange(ids.shape[1])[None, :] < torch.tensor(inputs["lengths"])[:, None]).long()
    logits = model(input_ids=ids, attention_mask=mask).logits
    b = batch_of(inputs, torch.float64)
    lp, ent = golden.token_stats(logits, b["targets"])
    zero = torch.zeros((), dtype=torch.float64)
    lp = torch.where(b["lp_mask"] > 0, lp, zero)
    ent = torch.where(b["ent_mask"] > 0, ent, zero)
    ((lp * b["w"]).sum() + (ent * b["u"]).sum()).backward()
    peft_grads = {n.replace(".default", ""): p.grad for n, p in model.named_parameters() if "lora_" in n}
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        saved = st_names(os.path.join(tmp, "adapter_model.safetensors"))
    out = {
        "peft_version": peft.__version__, "transformers_version": transformers.__version__,
        "logprobs_max_abs": float((lp - expected["logprobs"]).abs().max()),
        "entropies_max_abs": float((ent - expected["entropies"]).abs().max()),
        "grads_max_rel": max(golden.max_rel(peft_grads[k], grads64[k]) for k in grads64),
        "same_grad_names": sorted(peft_grads) == sorted(grads64),
        "save_pretrained_names_equal": saved == set(grads64),
    }
    # transformers keeps RoPE's inverse frequencies and the attention softmax in float32 even in a float64 model, so
    # it sits ~1e-6 from the float64 reference with or without the adapter (the base model's gap is recorded beside).
    with torch.no_grad(), model.disable_adapter():
        base_lp = golden.token_stats(model(input_ids=ids, attention_mask=mask).logits, b["targets"])[0]
    plain = golden.forward({k: v.double() for k, v in golden.st_read(os.path.join(model_dir, "model.safetensors")).items()},
                           golden.derived(json.load(open(os.path.join(model_dir, "config.json")))), ids, inputs["lengths"])
    plain_lp = golden.token_stats(plain, b["targets"])[0]
    out["base_model_logprobs_max_abs"] = float(torch.where(b["lp_mask"] > 0, base_lp - plain_lp, zero).abs().max())
    assert out["logprobs_max_abs"] < 2e-5 and out["entropies_max_abs"] < 2e-5, out
    assert out["same_grad_names"] and out["save_pretrained_names_equal"] and out["grads_max_rel"] < 2e-5, out
    if dropped is not None:
        # PEFT's forward with each lora_dropout module replaced by the pass's mask: the dropout pass's numbers.
        for path, mask in dropped["masks"].items():
            model.get_submodule(f"base_model.model.{path}").lora_dropout["default"] = FixedMask(mask)
        model.zero_grad()
        logits = model(input_ids=ids, attention_mask=mask_of(inputs)).logits
        lp, ent = golden.token_stats(logits, b["targets"])
        lp = torch.where(b["lp_mask"] > 0, lp, zero)
        ent = torch.where(b["ent_mask"] > 0, ent, zero)
        ((lp * b["w"]).sum() + (ent * b["u"]).sum()).backward()
        peft_grads = {n.replace(".default", ""): p.grad for n, p in model.named_parameters() if "lora_" in n}
        out["dropout_logprobs_max_abs"] = float((lp - dropped["expected"]["logprobs"]).abs().max())
        out["dropout_entropies_max_abs"] = float((ent - dropped["expected"]["entropies"]).abs().max())
        out["dropout_grads_max_rel"] = max(golden.max_rel(peft_grads[k], dropped["grads"][k]) for k in dropped["grads"])
        assert out["dropout_logprobs_max_abs"] < 2e-5 and out["dropout_entropies_max_abs"] < 2e-5 and out["dropout_grads_max_rel"] < 2e-5, out
    return out


def mask_of(inputs):
    ids = torch.tensor(inputs["ids"])
    return (torch.arange(ids.shape[1])[None, :] < torch.tensor(inputs["lengths"])[:, None]).long()


def build(case, c):
    folder = os.path.join(OUT, case)
    gdir = os.path.join(ROOT, "fixtures", "golden", case)
    with open(os.path.join(gdir, "model", "config.json")) as f:
        cfg = json.load(f)
    d = golden.derived(cfg)
    params32 = golden.st_read(os.path.join(gdir, "model", "model.safetensors"))
    with open(os.path.join(gdir, "inputs.json")) as f:
        inputs = json.load(f)
    adapter32 = random_adapter(params32, d, c)
    scale = c["alpha"] / c["rank"]
    res = {}
    for dtype in (torch.float32, torch.float64):
        P = {k: v.to(dtype) for k, v in params32.items()}
        A = {k: v.to(dtype).clone().requires_grad_(True) for k, v in adapter32.items()}
        lp, ent, L = loss_of(P, d, A, scale, batch_of(inputs, dtype))
        g = torch.autograd.grad(L, list(A.values()))
        res[dtype] = dict(lp=lp.detach(), ent=ent.detach(), L=float(L), grads=dict(zip(A.keys(), g)))
    r32, r64 = res[torch.float32], res[torch.float64]
    checks = {"f32_vs_f64": {
        "logprobs_max_abs": float((r32["lp"].double() - r64["lp"]).abs().max()),
        "grads_max_rel": max(golden.max_rel(r32["grads"][k], r64["grads"][k]) for k in adapter32),
    }}
    assert checks["f32_vs_f64"]["logprobs_max_abs"] < 1e-4 and checks["f32_vs_f64"]["grads_max_rel"] < 1e-4, checks

    # The adapter matters: with B = 0 the log-probs are the base model's (PEFT's step 0), and ours differ from them.
    P64 = {k: v.double() for k, v in params32.items()}
    zeroB = {k: (torch.zeros_like(v) if k.endswith("lora_B.weight") else v).double() for k, v in adapter32.items()}
    base_lp, _, _ = loss_of(P64, d, zeroB, scale, batch_of(inputs, torch.float64))
    plain = golden.forward(P64, d, torch.tensor(inputs["ids"]), inputs["lengths"])
    plain_lp = torch.where(torch.tensor(inputs["logprob_mask"]) > 0, golden.token_stats(plain, torch.tensor(inputs["targets"]))[0], torch.zeros((), dtype=torch.float64))
    checks["zero_B_equals_base_max_abs"] = float((base_lp - plain_lp).abs().max())
    checks["adapter_moves_logprobs_max_abs"] = float((r64["lp"] - plain_lp).abs().max())
    assert checks["zero_B_equals_base_max_abs"] == 0.0 and checks["adapter_moves_logprobs_max_abs"] > 0.05, checks

    # Central finite differences of L in float64 at one coordinate of several A and B tensors.
    A64 = {k: v.double().clone() for k, v in adapter32.items()}
    b64 = batch_of(inputs, torch.float64)
    fgen = torch.Generator().manual_seed(c["seed"] + 501)
    fd = []
    for k in [k for i, k in enumerate(adapter32) if i % 3 == 0]:
        flat = A64[k].view(-1)
        i = int(torch.randint(0, flat.numel(), (1,), generator=fgen))
        h, orig = 1e-6, float(flat[i])
        flat[i] = orig + h
        up = float(loss_of(P64, d, A64, scale, b64)[2])
        flat[i] = orig - h
        down = float(loss_of(P64, d, A64, scale, b64)[2])
        flat[i] = orig
        num, ana = (up - down) / (2 * h), float(r64["grads"][k].view(-1)[i])
        fd.append({"tensor": k, "index": i, "numeric": num, "autograd": ana})
        assert abs(num - ana) <= 1e-6 + 1e-6 * abs(ana), (case, k, i, num, ana)
    checks["finite_differences"] = fd
    expected = {"logprobs": r64["lp"], "entropies": r64["ent"], "loss": torch.tensor([r64["L"]], dtype=torch.float64)}

    # The dropout pass: the same batch and adapter with LoRA dropout's masks, in float32 and float64.
    drop = DROPOUT[case]
    B, T = len(inputs["ids"]), len(inputs["ids"][0])
    dres = {}
    for dtype in (torch.float32, torch.float64):
        P = {k: v.to(dtype) for k, v in params32.items()}
        A = {k: v.to(dtype).clone().requires_grad_(True) for k, v in adapter32.items()}
        masks = dropout_masks(params32, d, c, B, T, drop, dtype)
        lp, ent, L = loss_of(P, d, A, scale, batch_of(inputs, dtype), masks)
        g = torch.autograd.grad(L, list(A.values()))
        dres[dtype] = dict(lp=lp.detach(), ent=ent.detach(), L=float(L), grads=dict(zip(A.keys(), g)), masks=masks)
    d32, d64 = dres[torch.float32], dres[torch.float64]
    kept = torch.cat([(m != 0).double().flatten() for m in d64["masks"].values()])
    checks["dropout"] = {
        "p": drop["p"], "seed": drop["seed"], "kept_share": float(kept.mean()), "elements": kept.numel(),
        "f32_vs_f64_logprobs_max_abs": float((d32["lp"].double() - d64["lp"]).abs().max()),
        "f32_vs_f64_grads_max_rel": max(golden.max_rel(d32["grads"][k], d64["grads"][k]) for k in adapter32),
        "moves_logprobs_max_abs": float((d64["lp"] - r64["lp"]).abs().max()),
    }
    dc = checks["dropout"]
    assert dc["f32_vs_f64_logprobs_max_abs"] < 1e-4 and dc["f32_vs_f64_grads_max_rel"] < 1e-4, dc
    assert abs(dc["kept_share"] - (1 - drop["p"])) < 0.05 and dc["moves_logprobs_max_abs"] > 1e-3, dc
    dropped = dict(expected={"logprobs": d64["lp"], "entropies": d64["ent"], "loss": torch.tensor([d64["L"]], dtype=torch.float64)},
                   grads=d64["grads"], masks=d64["masks"], config=drop)
    return dict(folder=folder, adapter=adapter32, config=adapter_config(case, c), expected=expected, grads=r64["grads"],
                checks=checks, inputs=inputs, dropped=dropped)


def main():
    check_only = "--check" in sys.argv
    torch.set_num_threads(1)
    failures = 0
    for case, c in CASES.items():
        g = build(case, c)
        folder = g["folder"]
        if check_only:
            with open(os.path.join(folder, "dropout.json")) as f:
                if json.load(f) != g["dropped"]["config"]:
                    print(f"{case}/dropout.json differs")
                    failures += 1
            for file, tensors in (("adapter/adapter_model.safetensors", g["adapter"]), ("expected.safetensors", g["expected"]),
                                  ("grads.safetensors", g["grads"]), ("expected_dropout.safetensors", g["dropped"]["expected"]),
                                  ("grads_dropout.safetensors", g["dropped"]["grads"])):
                old = golden.st_read(os.path.join(folder, file))
                for k, t in tensors.items():
                    if k not in old or not torch.allclose(old[k].double(), t.double().float().double(), rtol=1e-5, atol=1e-6):
                        print(f"{case}/{file}: '{k}' differs")
                        failures += 1
        else:
            os.makedirs(os.path.join(folder, "adapter"), exist_ok=True)
            golden.st_write(os.path.join(folder, "adapter", "adapter_model.safetensors"), g["adapter"])
            golden.write_json(os.path.join(folder, "adapter", "adapter_config.json"), g["config"])
            golden.st_write(os.path.join(folder, "expected.safetensors"), g["expected"])
            golden.st_write(os.path.join(folder, "grads.safetensors"), g["grads"])
            golden.write_json(os.path.join(folder, "dropout.json"), g["dropped"]["config"])
            golden.st_write(os.path.join(folder, "expected_dropout.safetensors"), g["dropped"]["expected"])
            golden.st_write(os.path.join(folder, "grads_dropout.safetensors"), g["dropped"]["grads"])
        # PEFT reads the adapter folder as written (after the write, or the committed one under --check).
        g["checks"]["peft"] = peft_crosscheck(case, folder, g["inputs"], g["expected"], g["grads"], g["dropped"])
        print(case, json.dumps(g["checks"]["peft"]))
        if not check_only:
            golden.write_json(os.path.join(folder, "checks.json"), g["checks"])
    if failures:
        sys.exit(f"{failures} tensor(s) differ from the committed fixtures")
    print("LoRA fixtures match" if check_only else f"wrote {OUT}")


if __name__ == "__main__":
    main()
