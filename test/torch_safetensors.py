#!/usr/bin/env python3
"""Test helper: PyTorch's view of safetensors files that recall writes, and F16/BF16 files made by PyTorch.

The `safetensors` package is not installed, so the format is parsed here by hand and the bytes are turned into
tensors with torch.frombuffer — exactly what `safetensors.torch.load_file` does.

    python3 test/torch_safetensors.py read PATH          # PATH: a .safetensors file or a folder with an index
        → JSON {"metadata": {...}, "header_len": n, "tensors": {name: {"dtype", "shape", "values": [float...]}}}
    python3 test/torch_safetensors.py halves SRC DST_DIR # SRC: F32 .safetensors; writes model.f16 / model.bf16
        → JSON {name: {"f16": [...], "bf16": [...]}} : torch's own f32 -> f16/bf16 -> f32 values
"""
import json
import os
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
          "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8}


def load_file(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    out, end_max = {}, 0
    for name, e in header.items():
        b, end = e["data_offsets"]
        end_max = max(end_max, end)
        buf = bytearray(data[b:end])
        t = torch.frombuffer(buf, dtype=DTYPES[e["dtype"]]) if buf else torch.empty(0, dtype=DTYPES[e["dtype"]])
        out[name] = (e["dtype"], t.reshape(e["shape"]))
    assert end_max == len(data), f"{path}: {len(data) - end_max} trailing bytes"
    return meta, n, out


def load(path):
    if os.path.isdir(path):
        index = os.path.join(path, "model.safetensors.index.json")
        if not os.path.exists(index):
            return load_file(os.path.join(path, "model.safetensors"))
        with open(index) as f:
            wm = json.load(f)["weight_map"]
        tensors, meta, n = {}, {}, 0
        for shard in sorted(set(wm.values())):
            meta, n, part = load_file(os.path.join(path, shard))
            for k, v in part.items():
                assert wm[k] == shard, (k, shard)
                tensors[k] = v
        return meta, n, tensors
    return load_file(path)


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "read":
        meta, n, tensors = load(path)
        print(json.dumps({"metadata": meta, "header_len": n, "tensors": {
            k: {"dtype": d, "shape": list(t.shape), "values": t.float().reshape(-1).tolist()} for k, (d, t) in tensors.items()}}))
    elif cmd == "halves":
        _, _, tensors = load(path)
        out_dir = sys.argv[3]
        result = {}
        for kind, dt, dname in (("f16", torch.float16, "F16"), ("bf16", torch.bfloat16, "BF16")):
            header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
            for k, (_, t) in tensors.items():
                h = t.to(dt).contiguous()
                b = h.view(torch.int16).numpy().tobytes()
                header[k] = {"dtype": dname, "shape": list(h.shape), "data_offsets": [off, off + len(b)]}
                blobs.append(b)
                off += len(b)
                result.setdefault(k, {})[kind] = h.float().reshape(-1).tolist()
            hb = json.dumps(header).encode()
            hb += b" " * (-len(hb) % 8)
            with open(os.path.join(out_dir, f"model.{kind}.safetensors"), "wb") as f:
                f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))
        print(json.dumps(result))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
