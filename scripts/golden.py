#!/usr/bin/env python3
"""Golden fixtures for the transformer engine: an independent PyTorch implementation of Qwen2 / Qwen3 / Llama.

    /usr/bin/python3 scripts/golden.py            # rewrites fixtures/golden/<name>/ for every config below
    /usr/bin/python3 scripts/golden.py --check    # recomputes and compares with the committed files, writes nothing

Needs only PyTorch (Debian's python3-torch, 1.13); `transformers` and `safetensors` are not used: the model is
written here in plain torch with Hugging Face's semantics (modeling_qwen2 / modeling_qwen3 / modeling_llama):
  - RMSNorm: x * rsqrt(mean(x^2) + eps) computed in float32, times the weight;
  - q/k/v projections with bias for Qwen2 (o_proj without), none for Llama/Qwen3 unless `attention_bias`;
  - Qwen3: RMSNorm over each head of q and k (q_norm / k_norm, size head_dim) before RoPE;
  - RoPE in the rotate_half layout: inv_freq[i] = theta^(-2i/hd), emb = cat(freqs, freqs), x*cos + rotate_half(x)*sin;
  - causal grouped-query attention (repeat_kv: query head h uses kv head h // (Hq/Hkv)), scale 1/sqrt(head_dim),
    keys at positions >= the sequence length masked (right padding);
  - SwiGLU MLP down(silu(gate(x)) * up(x)); final RMSNorm; LM head = embedding matrix when tied.

For each config it writes fixtures/golden/<name>/:
  model/config.json, model/model.safetensors   the model (F32, seeded random weights, HF names)
  inputs.json                                   ids, lengths, targets, masks and the loss weights
  expected.safetensors                          logprobs, entropies, logits (padding rows zeroed), the two losses
  grads.safetensors                             dL/dθ of L = Σ_valid w·logprob, every parameter, HF names
  grads_entropy.safetensors                     dE/dθ of E = Σ_valid' u·entropy
  checks.json                                   what the self-checks below measured
Expected values are computed in float64 from the F32 weights. Self-checks before anything is written: the float32
forward/backward agrees with float64; a separate loop-by-loop float64 implementation (explicit per-position,
per-head attention and pairwise RoPE rotation) gives the same log-probs; each sequence run alone gives the same
log-probs as in the padded batch; finite differences of L in float64 match the autograd gradients.
"""
import json
import math
import os
import struct
import sys

import torch

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "fixtures", "golden")

CONFIGS = {
    # Qwen2: GQA 4/2, q/k/v bias, tied LM head, head_dim = hidden/heads.
    "qwen2_gqa_tied": dict(
        architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_size=32, intermediate_size=48,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=80,
        max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=True,
        use_sliding_window=False, sliding_window=None, max_window_layers=2,
    ),
    # Qwen3: GQA 6/2, per-head q/k RMSNorm, head_dim 10 != hidden/heads (4), untied LM head.
    "qwen3_qknorm_untied": dict(
        architectures=["Qwen3ForCausalLM"], model_type="qwen3", hidden_size=24, intermediate_size=40,
        num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2, head_dim=10, vocab_size=80,
        max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False,
        attention_bias=False, use_sliding_window=False, sliding_window=None, max_window_layers=2,
    ),
    # Llama: plain multi-head attention 4/4, head_dim 6 != hidden/heads (8), untied, eps 1e-5.
    "llama_mha_untied": dict(
        architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=32, intermediate_size=56,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, head_dim=6, vocab_size=80,
        max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False,
        attention_bias=False, mlp_bias=False,
    ),
}
COMMON = dict(hidden_act="silu", initializer_range=0.02, rope_scaling=None, attention_dropout=0.0, bos_token_id=1,
              eos_token_id=2, use_cache=True, torch_dtype="float32")
LENGTHS = [11, 7]  # a padded batch of two sequences, right padding to T = 11
PAD_ID = 0


def derived(cfg):
    H = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    hd = cfg.get("head_dim") or H // nh
    arch = cfg["model_type"]
    qkv_bias = True if arch == "qwen2" else bool(cfg.get("attention_bias", False))
    o_bias = False if arch == "qwen2" else bool(cfg.get("attention_bias", False))
    return dict(H=H, I=cfg["intermediate_size"], L=cfg["num_hidden_layers"], nh=nh, nkv=nkv, hd=hd, V=cfg["vocab_size"],
                eps=cfg["rms_norm_eps"], theta=cfg["rope_theta"], tied=cfg["tie_word_embeddings"], qkv_bias=qkv_bias,
                o_bias=o_bias, qk_norm=arch == "qwen3")


def param_shapes(d):
    """HF parameter names and shapes, in transformers' order."""
    H, I, hd, nh, nkv = d["H"], d["I"], d["hd"], d["nh"], d["nkv"]
    out = [("model.embed_tokens.weight", [d["V"], H])]
    for l in range(d["L"]):
        p = f"model.layers.{l}"
        out.append((f"{p}.self_attn.q_proj.weight", [nh * hd, H]))
        if d["qkv_bias"]:
            out.append((f"{p}.self_attn.q_proj.bias", [nh * hd]))
        out.append((f"{p}.self_attn.k_proj.weight", [nkv * hd, H]))
        if d["qkv_bias"]:
            out.append((f"{p}.self_attn.k_proj.bias", [nkv * hd]))
        out.append((f"{p}.self_attn.v_proj.weight", [nkv * hd, H]))
        if d["qkv_bias"]:
            out.append((f"{p}.self_attn.v_proj.bias", [nkv * hd]))
        out.append((f"{p}.self_attn.o_proj.weight", [H, nh * hd]))
        if d["o_bias"]:
            out.append((f"{p}.self_attn.o_proj.bias", [H]))
        if d["qk_norm"]:
            out.append((f"{p}.self_attn.q_norm.weight", [hd]))
            out.append((f"{p}.self_attn.k_norm.weight", [hd]))
        out.append((f"{p}.mlp.gate_proj.weight", [I, H]))
        out.append((f"{p}.mlp.up_proj.weight", [I, H]))
        out.append((f"{p}.mlp.down_proj.weight", [H, I]))
        out.append((f"{p}.input_layernorm.weight", [H]))
        out.append((f"{p}.post_attention_layernorm.weight", [H]))
    out.append(("model.norm.weight", [H]))
    if not d["tied"]:
        out.append(("lm_head.weight", [d["V"], H]))
    return out


def random_params(d, gen):
    """Weights with O(1) activations so that every code path matters: norms around 1, biases non-zero."""
    params = {}
    for name, shape in param_shapes(d):
        if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
            t = 1.0 + 0.2 * torch.randn(shape, generator=gen)
        elif name.endswith(".bias"):
            t = 0.3 * torch.randn(shape, generator=gen)
        elif name == "model.embed_tokens.weight":
            t = 0.6 * torch.randn(shape, generator=gen)
        elif name == "lm_head.weight":
            t = torch.randn(shape, generator=gen) * (3.0 / math.sqrt(shape[1]))
        else:
            t = torch.randn(shape, generator=gen) * (1.5 / math.sqrt(shape[1]))
        params[name] = t.float()
    return params


# ----------------------------------------------------------------------------------------------------------------
# The model, vectorised, as in transformers.

def rms_norm(x, w, eps):
    dtype = x.dtype
    h = x.to(torch.float32) if dtype != torch.float64 else x
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_cos_sin(positions, hd, theta, dtype):
    calc = torch.float64 if dtype == torch.float64 else torch.float32
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).to(calc) / hd))
    freqs = positions.to(calc)[..., None] * inv_freq  # [B, T, hd/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def forward(params, d, ids, lengths, lora=None):
    """Logits [B, T, V] (float32 or float64, as the params) for right-padded ids [B, T].

    lora: optional {projection name: (A, B, scale) or (A, B, scale, mask)} (scripts/golden_lora.py):
    y += scale * ((x * mask) A^T) B^T, PEFT's LoRA; mask (shaped like x) is LoRA dropout's keep/(1-p), absent: none."""
    B, T = ids.shape
    dtype = params["model.norm.weight"].dtype
    nh, nkv, hd = d["nh"], d["nkv"], d["hd"]
    positions = torch.arange(T)[None, :].expand(B, T)
    cos, sin = rope_cos_sin(positions, hd, d["theta"], dtype)
    cos, sin = cos[:, None], sin[:, None]  # [B, 1, T, hd]
    key_valid = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # [B, T]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    allowed = causal[None, None] & key_valid[:, None, None, :]  # [B, 1, Tq, Tk]
    x = params["model.embed_tokens.weight"][ids]
    for l in range(d["L"]):
        p = f"model.layers.{l}"
        h = rms_norm(x, params[f"{p}.input_layernorm.weight"], d["eps"])

        def lin(name, inp):
            y = inp @ params[f"{p}.{name}.weight"].T
            b = params.get(f"{p}.{name}.bias")
            y = y + b if b is not None else y
            if lora is not None and f"{p}.{name}" in lora:
                A, Bm, scale, *mask = lora[f"{p}.{name}"]
                y = y + scale * (((inp * mask[0] if mask else inp) @ A.T) @ Bm.T)
            return y

        q = lin("self_attn.q_proj", h).view(B, T, nh, hd)
        k = lin("self_attn.k_proj", h).view(B, T, nkv, hd)
        v = lin("self_attn.v_proj", h).view(B, T, nkv, hd)
        if d["qk_norm"]:
            q = rms_norm(q, params[f"{p}.self_attn.q_norm.weight"], d["eps"])
            k = rms_norm(k, params[f"{p}.self_attn.k_norm.weight"], d["eps"])
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, heads, T, hd]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = nh // nkv
        k = k[:, :, None].expand(B, nkv, rep, T, hd).reshape(B, nh, T, hd)  # repeat_kv
        v = v[:, :, None].expand(B, nkv, rep, T, hd).reshape(B, nh, T, hd)
        scores = (q @ k.transpose(2, 3)) * (hd ** -0.5)
        scores = scores.masked_fill(~allowed, torch.finfo(dtype).min)
        probs = torch.softmax(scores.to(torch.float32) if dtype != torch.float64 else scores, dim=-1).to(dtype)
        attn = (probs @ v).transpose(1, 2).reshape(B, T, nh * hd)
        x = x + lin("self_attn.o_proj", attn)
        h = rms_norm(x, params[f"{p}.post_attention_layernorm.weight"], d["eps"])
        x = x + lin("mlp.down_proj", torch.nn.functional.silu(lin("mlp.gate_proj", h)) * lin("mlp.up_proj", h))
    x = rms_norm(x, params["model.norm.weight"], d["eps"])
    head = params["model.embed_tokens.weight"] if d["tied"] else params["lm_head.weight"]
    return x @ head.T


def token_stats(logits, targets):
    logp = torch.log_softmax(logits, dim=-1)
    lp = logp.gather(-1, targets[..., None])[..., 0]
    ent = -(logp.exp() * logp).sum(-1)
    return lp, ent


def losses(params, d, batch):
    logits = forward(params, d, batch["ids"], batch["lengths"])
    lp, ent = token_stats(logits, batch["targets"])
    L = (lp * batch["w"]).sum()
    E = (ent * batch["u"]).sum()
    return logits, lp, ent, L, E


# ----------------------------------------------------------------------------------------------------------------
# A second, loop-by-loop float64 implementation (independent formulation of attention, RoPE and masking).

def loop_logprobs(params, d, ids, length):
    """log p(ids[t+1] | ids[<=t]) for t < length-1 of ONE unpadded sequence, token by token in float64."""
    P = {k: v.double() for k, v in params.items()}
    nh, nkv, hd, eps = d["nh"], d["nkv"], d["hd"], d["eps"]

    def norm(vec, w):
        return w * vec / math.sqrt(float((vec * vec).mean()) + eps)

    def rotate(vec, pos):  # pairs (i, i + hd/2) rotated by pos * theta^(-2i/hd)
        out = vec.clone()
        half = hd // 2
        for i in range(half):
            ang = pos * d["theta"] ** (-2.0 * i / hd)
            a, b = float(vec[i]), float(vec[i + half])
            out[i] = a * math.cos(ang) - b * math.sin(ang)
            out[i + half] = b * math.cos(ang) + a * math.sin(ang)
        return out

    xs = [P["model.embed_tokens.weight"][int(ids[t])].clone() for t in range(length)]
    for l in range(d["L"]):
        p = f"model.layers.{l}"

        def lin(name, vec):
            y = P[f"{p}.{name}.weight"] @ vec
            return y + P[f"{p}.{name}.bias"] if f"{p}.{name}.bias" in P else y

        qs, ks, vs = [], [], []
        for t in range(length):
            h = norm(xs[t], P[f"{p}.input_layernorm.weight"])
            q, k, v = lin("self_attn.q_proj", h), lin("self_attn.k_proj", h), lin("self_attn.v_proj", h)
            qh = [q[i * hd:(i + 1) * hd] for i in range(nh)]
            kh = [k[i * hd:(i + 1) * hd] for i in range(nkv)]
            vh = [v[i * hd:(i + 1) * hd] for i in range(nkv)]
            if d["qk_norm"]:
                qh = [norm(x, P[f"{p}.self_attn.q_norm.weight"]) for x in qh]
                kh = [norm(x, P[f"{p}.self_attn.k_norm.weight"]) for x in kh]
            qs.append([rotate(x, t) for x in qh])
            ks.append([rotate(x, t) for x in kh])
            vs.append(vh)
        new = []
        for t in range(length):
            heads = []
            for i in range(nh):
                g = i // (nh // nkv)
                s = [float(qs[t][i] @ ks[j][g]) / math.sqrt(hd) for j in range(t + 1)]
                m = max(s)
                e = [math.exp(x - m) for x in s]
                z = sum(e)
                heads.append(sum((e[j] / z) * vs[j][g] for j in range(t + 1)))
            x = xs[t] + lin("self_attn.o_proj", torch.cat(heads))
            h = norm(x, P[f"{p}.post_attention_layernorm.weight"])
            gate = lin("mlp.gate_proj", h)
            x = x + lin("mlp.down_proj", gate / (1 + torch.exp(-gate)) * lin("mlp.up_proj", h))
            new.append(x)
        xs = new
    head = P["model.embed_tokens.weight"] if d["tied"] else P["lm_head.weight"]
    out = []
    for t in range(length - 1):
        logits = head @ norm(xs[t], P["model.norm.weight"])
        m = float(logits.max())
        lse = m + math.log(float(torch.exp(logits - m).sum()))
        out.append(float(logits[int(ids[t + 1])]) - lse)
    return out


# ----------------------------------------------------------------------------------------------------------------
# safetensors by hand (the `safetensors` package is not used).

def st_write(path, tensors):
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().to(torch.float32)
        raw = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def st_read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        assert e["dtype"] == "F32", (path, name, e["dtype"])
        b, end = e["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[b:end]), dtype=torch.float32).reshape(e["shape"]).clone()
    return out


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------------------

def max_rel(a, b):
    """max |a - b| / (max |b| + 1e-30), a single figure for a whole tensor."""
    return float((a.double() - b.double()).abs().max() / (b.double().abs().max() + 1e-30))


def make_batch(d, gen):
    B, T = len(LENGTHS), max(LENGTHS)
    ids = torch.full((B, T), PAD_ID, dtype=torch.int64)
    targets = torch.zeros((B, T), dtype=torch.int64)
    lp_mask = torch.zeros((B, T))
    ent_mask = torch.zeros((B, T))
    for b, n in enumerate(LENGTHS):
        ids[b, :n] = torch.randint(0, d["V"], (n,), generator=gen)
        targets[b, :n - 1] = ids[b, 1:n]
        lp_mask[b, :n - 1] = 1
        ent_mask[b, :n] = 1
    zero = torch.zeros((), dtype=torch.float64)
    w = torch.where(lp_mask > 0, torch.randn((B, T), generator=gen).double(), zero)
    u = torch.where(ent_mask > 0, torch.randn((B, T), generator=gen).double(), zero)
    return dict(ids=ids, lengths=LENGTHS, targets=targets, lp_mask=lp_mask, ent_mask=ent_mask, w=w, u=u)


def build(name, cfg, seed):
    d = derived(cfg)
    gen = torch.Generator().manual_seed(seed)
    params32 = random_params(d, gen)
    batch = make_batch(d, gen)
    results, grads = {}, {}
    for dtype in (torch.float32, torch.float64):
        P = {k: v.to(dtype).clone().requires_grad_(True) for k, v in params32.items()}
        bt = dict(batch, w=batch["w"].to(dtype), u=batch["u"].to(dtype))
        logits, lp, ent, L, E = losses(P, d, bt)
        gL = torch.autograd.grad(L, list(P.values()), retain_graph=True)
        gE = torch.autograd.grad(E, list(P.values()))
        zero = torch.zeros((), dtype=dtype)  # where(), not a product: padding holds +0, never -0
        results[dtype] = dict(logits=logits.detach(), lp=torch.where(batch["lp_mask"] > 0, lp.detach(), zero),
                              ent=torch.where(batch["ent_mask"] > 0, ent.detach(), zero), L=float(L), E=float(E))
        grads[dtype] = (dict(zip(P.keys(), gL)), dict(zip(P.keys(), gE)))
    r32, r64 = results[torch.float32], results[torch.float64]
    checks = {}

    # 1. float32 (HF's precision) against float64.
    checks["f32_vs_f64"] = {
        "logprobs_max_abs": float((r32["lp"].double() - r64["lp"]).abs().max()),
        "entropies_max_abs": float((r32["ent"].double() - r64["ent"]).abs().max()),
        "loss_rel": abs(r32["L"] - r64["L"]) / abs(r64["L"]),
        "grads_max_rel": max(max_rel(grads[torch.float32][0][k], grads[torch.float64][0][k]) for k in params32),
        "grads_entropy_max_rel": max(max_rel(grads[torch.float32][1][k], grads[torch.float64][1][k]) for k in params32),
    }
    assert checks["f32_vs_f64"]["logprobs_max_abs"] < 1e-4, checks
    assert checks["f32_vs_f64"]["grads_max_rel"] < 1e-4, checks
    assert checks["f32_vs_f64"]["grads_entropy_max_rel"] < 1e-4, checks

    # 2. Loop-by-loop float64 implementation, each sequence alone (also shows padding does not leak).
    worst = 0.0
    for b, n in enumerate(LENGTHS):
        ref = torch.tensor(loop_logprobs(params32, d, batch["ids"][b], n), dtype=torch.float64)
        worst = max(worst, float((ref - r64["lp"][b, :n - 1]).abs().max()))
    checks["loop_impl_vs_vectorised_logprobs_max_abs"] = worst
    assert worst < 1e-10, (name, worst)

    # 3. Each sequence alone through the vectorised model (no padding at all) equals its row of the batch.
    worst = 0.0
    P64 = {k: v.double() for k, v in params32.items()}
    for b, n in enumerate(LENGTHS):
        alone = forward(P64, d, batch["ids"][b:b + 1, :n], [n])
        lp, _ = token_stats(alone, batch["targets"][b:b + 1, :n])
        worst = max(worst, float((lp[0, :n - 1] - r64["lp"][b, :n - 1]).abs().max()))
    checks["alone_vs_batched_logprobs_max_abs"] = worst
    assert worst < 1e-12, (name, worst)

    # 4. Central finite differences of L in float64 at a few coordinates of several tensors.
    fd = []
    g64 = grads[torch.float64][0]
    bt64 = dict(batch, w=batch["w"].double(), u=batch["u"].double())
    picks = [k for k in params32 if any(s in k for s in ("embed", "layers.0.self_attn.q_proj", "layers.1.self_attn.k",
                                                         "v_proj.bias", "o_proj", "q_norm", "k_norm", "down_proj",
                                                         "input_layernorm", "model.norm", "lm_head"))]
    fgen = torch.Generator().manual_seed(seed + 1)
    for k in picks:
        flat = P64[k].view(-1)
        nonzero = g64[k].view(-1).nonzero()[:, 0]  # rows of unused tokens have zero gradient: skip them
        i = int(nonzero[int(torch.randint(0, nonzero.numel(), (1,), generator=fgen))])
        h = 1e-6
        orig = float(flat[i])
        flat[i] = orig + h
        up = float(losses(P64, d, bt64)[3])
        flat[i] = orig - h
        down = float(losses(P64, d, bt64)[3])
        flat[i] = orig
        num, ana = (up - down) / (2 * h), float(g64[k].view(-1)[i])
        fd.append({"tensor": k, "index": i, "numeric": num, "autograd": ana})
        assert abs(num - ana) <= 1e-6 + 1e-6 * abs(ana), (name, k, i, num, ana)
    checks["finite_differences"] = fd

    B, T = batch["ids"].shape
    inputs = {
        "description": "B sequences right-padded to T; row (b, t) predicts targets[b][t] = ids[b][t+1]",
        "batch": B, "seq_len": T, "pad_id": PAD_ID,
        "ids": batch["ids"].tolist(), "lengths": LENGTHS, "positions": [list(range(T))] * B,
        "targets": batch["targets"].tolist(),
        "logprob_mask": batch["lp_mask"].int().tolist(), "entropy_mask": batch["ent_mask"].int().tolist(),
        "loss_weights": batch["w"].tolist(), "entropy_weights": batch["u"].tolist(),
        "loss": r64["L"], "entropy_loss": r64["E"],
    }
    expected = {
        "logprobs": r64["lp"], "entropies": r64["ent"],
        "logits": torch.where(batch["ent_mask"][..., None] > 0, r64["logits"], torch.zeros((), dtype=torch.float64)),
        "loss": torch.tensor([r64["L"]]), "entropy_loss": torch.tensor([r64["E"]]),
    }
    config = dict(cfg, **COMMON)
    return dict(d=d, config=config, params=params32, inputs=inputs, expected=expected,
                grads=grads[torch.float64][0], grads_entropy=grads[torch.float64][1], checks=checks)


def main():
    check_only = "--check" in sys.argv
    torch.set_num_threads(1)
    failures = 0
    for i, (name, cfg) in enumerate(CONFIGS.items()):
        g = build(name, cfg, seed=1000 + i)
        folder = os.path.join(OUT, name)
        if check_only:
            for file, tensors in (("model/model.safetensors", g["params"]), ("expected.safetensors", g["expected"]),
                                  ("grads.safetensors", g["grads"]), ("grads_entropy.safetensors", g["grads_entropy"])):
                old = st_read(os.path.join(folder, file))
                for k, t in tensors.items():
                    if k not in old or not torch.allclose(old[k].double(), t.double().float().double(), rtol=1e-5, atol=1e-6):
                        print(f"{name}/{file}: '{k}' differs")
                        failures += 1
            continue
        os.makedirs(os.path.join(folder, "model"), exist_ok=True)
        write_json(os.path.join(folder, "model", "config.json"), g["config"])
        st_write(os.path.join(folder, "model", "model.safetensors"), g["params"])
        write_json(os.path.join(folder, "inputs.json"), g["inputs"])
        st_write(os.path.join(folder, "expected.safetensors"), g["expected"])
        st_write(os.path.join(folder, "grads.safetensors"), g["grads"])
        st_write(os.path.join(folder, "grads_entropy.safetensors"), g["grads_entropy"])
        write_json(os.path.join(folder, "checks.json"), g["checks"])
        c = g["checks"]
        print(f"{name}: {sum(t.numel() for t in g['params'].values())} params; f32 vs f64: logprobs "
              f"{c['f32_vs_f64']['logprobs_max_abs']:.1e}, grads rel {c['f32_vs_f64']['grads_max_rel']:.1e}; "
              f"loop impl {c['loop_impl_vs_vectorised_logprobs_max_abs']:.1e}; alone vs batched "
              f"{c['alone_vs_batched_logprobs_max_abs']:.1e}; {len(c['finite_differences'])} finite differences ok")
    if check_only:
        print("golden fixtures match" if failures == 0 else f"{failures} mismatches")
        sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
