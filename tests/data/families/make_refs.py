#!/usr/bin/python3
"""Independent numpy reference for Llama-family decoders (Hugging Face LlamaForCausalLM,
MistralForCausalLM and Qwen2ForCausalLM semantics), computed in float64 from the weights
exactly as stored.

  make_refs.py                      write the tiny random models and their cases.json beside this file
  make_refs.py --check-stories DIR  greedy 200 tokens from BOS on DIR (stories260K); compare golden.json
"""
import json
import math
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
GENERATOR = "numpy reference tests/data/families/make_refs.py, float64"
MAX_NEW = 20


# ---------------------------------------------------------------- safetensors


def bf16_bits(a):
    """float32 -> bfloat16 bit patterns, rounding to nearest, ties to even (no NaNs here)."""
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def load_safetensors(path):
    """name -> float64 array (F32, F16 and BF16 tensors)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        lo, hi = t["data_offsets"]
        raw = data[base + lo : base + hi]
        if t["dtype"] == "BF16":
            bits = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
            a = bits.view(np.float32)
        else:
            a = np.frombuffer(raw, {"F32": "<f4", "F16": "<f2"}[t["dtype"]])
        out[name] = a.astype(np.float64).reshape(t["shape"])
    return out


def save_safetensors(path, tensors, dtype):
    """tensors: name -> float array, stored as dtype ('F32', 'F16' or 'BF16'); names sorted,
    header padded with spaces to 8 bytes, __metadata__ {"format": "pt"} (as save_pretrained)."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        a = tensors[name]
        if dtype == "BF16":
            raw = bf16_bits(a).astype("<u2").tobytes()
        else:
            raw = np.asarray(a, {"F32": "<f4", "F16": "<f2"}[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


# ---------------------------------------------------------------- the model


def inv_freq(cfg, head_dim):
    """RoPE inverse frequencies theta^(-2i/d), i < d/2, with HF's rope_scaling variants."""
    inv = 1.0 / cfg["rope_theta"] ** (np.arange(0, head_dim, 2) / head_dim)
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "linear":  # positions / factor, i.e. every frequency / factor
        inv = inv / rs["factor"]
    elif kind == "llama3":  # HF _compute_llama3_parameters
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > old / lo, inv / factor, inv)  # low frequencies: / factor
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old / hi) & (wavelen <= old / lo)
        inv = np.where(medium, smoothed, scaled)
    elif kind is not None:
        raise ValueError(f"rope_scaling {kind} not supported")
    return inv


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


class Model:
    def __init__(self, cfg, w):
        assert cfg.get("hidden_act", "silu") == "silu"
        self.cfg, self.w = cfg, w
        self.nh, self.nkv = cfg["num_attention_heads"], cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
        self.hd = cfg.get("head_dim") or cfg["hidden_size"] // self.nh
        self.eps = cfg["rms_norm_eps"]
        self.inv = inv_freq(cfg, self.hd)
        tied = cfg.get("tie_word_embeddings", False)  # HF's default for these three configs
        self.head = w["model.embed_tokens.weight"] if tied else w["lm_head.weight"]

    def lin(self, x, name):
        y = x @ self.w[name + ".weight"].T
        return y + self.w[name + ".bias"] if name + ".bias" in self.w else y

    def forward(self, ids, cache):
        """Logits for ids placed after the cached positions; cache: per-layer [K, V], extended here."""
        w, nh, nkv, hd = self.w, self.nh, self.nkv, self.hd
        t, past = len(ids), (cache[0][0].shape[0] if cache else 0)
        ang = np.arange(past, past + t)[:, None] * self.inv[None, :]
        cos = np.cos(np.concatenate([ang, ang], -1))[:, None, :]  # [t, 1, hd]
        sin = np.sin(np.concatenate([ang, ang], -1))[:, None, :]
        mask = np.arange(past + t)[None, :] > (past + np.arange(t))[:, None]  # [t, s] future
        x = w["model.embed_tokens.weight"][np.asarray(ids)]
        for l in range(self.cfg["num_hidden_layers"]):
            p = f"model.layers.{l}."
            h = rmsnorm(x, w[p + "input_layernorm.weight"], self.eps)
            q = self.lin(h, p + "self_attn.q_proj").reshape(t, nh, hd)
            k = self.lin(h, p + "self_attn.k_proj").reshape(t, nkv, hd)
            v = self.lin(h, p + "self_attn.v_proj").reshape(t, nkv, hd)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            if len(cache) <= l:
                cache.append([k[:0], v[:0]])
            cache[l] = [np.concatenate([cache[l][0], k]), np.concatenate([cache[l][1], v])]
            kk = np.repeat(cache[l][0], nh // nkv, axis=1)  # query head j uses kv head j // (nh/nkv)
            vv = np.repeat(cache[l][1], nh // nkv, axis=1)
            s = np.einsum("thd,shd->hts", q, kk) / math.sqrt(hd)
            s = np.where(mask[None], -np.inf, s)
            a = np.exp(s - s.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            o = np.einsum("hts,shd->thd", a, vv).reshape(t, nh * hd)
            x = x + self.lin(o, p + "self_attn.o_proj")
            h = rmsnorm(x, w[p + "post_attention_layernorm.weight"], self.eps)
            g = self.lin(h, p + "mlp.gate_proj")
            x = x + self.lin(g / (1 + np.exp(-g)) * self.lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
        return rmsnorm(x, w["model.norm.weight"], self.eps) @ self.head.T


def load_model(d):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    return Model(cfg, load_safetensors(os.path.join(d, "model.safetensors")))


def generate(model, prompt, n):
    """Greedy, eos ignored: (ids, logprobs, prefill last logits, min top-2 gap)."""
    cache = []
    logits = model.forward(prompt, cache)[-1]
    prefill, ids, lps, gap = logits, [], [], np.inf
    for step in range(n):
        tok = int(np.argmax(logits))
        top2 = np.sort(logits)[-2:]
        gap = min(gap, top2[1] - top2[0])
        lps.append(logits[tok] - top2[1] - np.log(np.sum(np.exp(logits - top2[1]))))
        ids.append(tok)
        if step + 1 < n:
            logits = model.forward([tok], cache)[-1]
    return ids, lps, prefill, gap


def check_stories(d):
    with open(os.path.join(d, "golden.json")) as f:
        golden = json.load(f)
    ids = generate(load_model(d), golden["input_ids"], len(golden["output_ids"]))[0]
    same = ids == golden["output_ids"]
    first = next((i for i, (a, b) in enumerate(zip(ids, golden["output_ids"])) if a != b), None)
    print(f"stories260K: {len(ids)} greedy tokens from {golden['input_ids']}: "
          + ("identical to golden.json" if same else f"MISMATCH at step {first}"))
    return 0 if same else 1


# ---------------------------------------------------------------- tiny random models

COMMON = dict(hidden_act="silu", bos_token_id=1, eos_token_id=2, initializer_range=0.02,
              attention_dropout=0.0, use_cache=True, max_position_embeddings=128)

FAMILIES = {
    "llama3-tiny": dict(
        seed=3, prompt_seed=1009, dtype="BF16", embed_std=0.05, head_gain=4.0,
        cfg=dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=256,
                 hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                 num_attention_heads=8, num_key_value_heads=2, rms_norm_eps=1e-05,
                 rope_theta=500000.0, max_position_embeddings=2048,
                 rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                   high_freq_factor=4.0, original_max_position_embeddings=256),
                 tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
                 pretraining_tp=1, torch_dtype="bfloat16")),
    "qwen2-tiny": dict(
        seed=4, prompt_seed=1004, dtype="F16", embed_std=0.5, head_gain=None,
        cfg=dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", vocab_size=320,
                 hidden_size=48, intermediate_size=128, num_hidden_layers=3,
                 num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-06,
                 rope_theta=1000000.0, rope_scaling=None, tie_word_embeddings=True,
                 use_sliding_window=False, sliding_window=None, max_window_layers=3,
                 torch_dtype="float16")),
    "mistral-tiny": dict(
        seed=5, prompt_seed=1011, dtype="F32", embed_std=0.05, head_gain=4.0,
        cfg=dict(architectures=["MistralForCausalLM"], model_type="mistral", vocab_size=256,
                 hidden_size=32, intermediate_size=80, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=12, rms_norm_eps=1e-05,
                 rope_theta=10000.0, rope_scaling=None, sliding_window=None,
                 tie_word_embeddings=False, torch_dtype="float32")),
    "llama2-linear-tiny": dict(
        seed=6, prompt_seed=1009, dtype="F32", embed_std=0.05, head_gain=4.0,
        cfg=dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=256,
                 hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=4, rms_norm_eps=1e-06,
                 rope_theta=10000.0, rope_scaling={"type": "linear", "factor": 2.0},
                 tie_word_embeddings=False, attention_bias=True, mlp_bias=False,
                 pretraining_tp=1, torch_dtype="float32")),
}


def random_weights(spec):
    cfg, rng = spec["cfg"], np.random.default_rng(spec["seed"])
    d, ff, nh = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_attention_heads"]
    nkv, hd = cfg["num_key_value_heads"], cfg.get("head_dim") or cfg["hidden_size"] // nh
    bias = cfg["model_type"] == "qwen2" or cfg.get("attention_bias", False)

    def mat(out, inp, gain=1.0):
        return rng.normal(0, gain / math.sqrt(inp), (out, inp))

    def norm():
        return 1 + 0.25 * rng.normal(size=d)

    w = {"model.embed_tokens.weight": rng.normal(0, spec["embed_std"], (cfg["vocab_size"], d))}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = norm()
        for name, out, inp in [("q", nh * hd, d), ("k", nkv * hd, d), ("v", nkv * hd, d), ("o", d, nh * hd)]:
            w[p + f"self_attn.{name}_proj.weight"] = mat(out, inp, 1.5)
            if bias and (name != "o" or cfg["model_type"] == "llama"):  # qwen2: no o_proj bias
                w[p + f"self_attn.{name}_proj.bias"] = rng.normal(0, 0.5, out)
        w[p + "post_attention_layernorm.weight"] = norm()
        w[p + "mlp.gate_proj.weight"] = mat(ff, d, 1.5)
        w[p + "mlp.up_proj.weight"] = mat(ff, d, 1.5)
        w[p + "mlp.down_proj.weight"] = mat(d, ff)
    w["model.norm.weight"] = norm()
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = mat(cfg["vocab_size"], d, spec["head_gain"])
    return w


def dumps(obj):
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def rnd(x):
    return float(f"{x:.8g}")


def make_family(name, spec):
    d = os.path.join(HERE, name)
    os.makedirs(d, exist_ok=True)
    cfg = dict(COMMON, **spec["cfg"])
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(dumps(cfg))
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        f.write(dumps({"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2}))
    save_safetensors(os.path.join(d, "model.safetensors"), random_weights(spec), spec["dtype"])
    model = load_model(d)  # computes from the stored (rounded) values

    rng = np.random.default_rng(spec["prompt_seed"])  # picked for top-2 gaps >= 0.01
    prompts = lambda n: [int(t) for t in rng.integers(3, cfg["vocab_size"], n)]
    cases = [(f"single_len{n}", [prompts(n)]) for n in (1, 7, 33, 60)]
    cases.append(("batch3", [prompts(5), prompts(17), prompts(11)]))
    out = []
    for cname, inputs in cases:
        c = {"name": cname, "input_ids": inputs, "output_ids": [], "token_logprobs": [],
             "prefill_last_logits": []}
        gap = np.inf
        for ids in inputs:
            assert len(ids) + MAX_NEW <= cfg["max_position_embeddings"]
            o, lp, pre, g = generate(model, ids, MAX_NEW)
            c["output_ids"].append(o)
            c["token_logprobs"].append([rnd(x) for x in lp])
            c["prefill_last_logits"].append([rnd(x) for x in pre])
            gap = min(gap, g)
        c["min_top2_logit_gap"] = rnd(gap)
        out.append(c)
    doc = {"model": name, "model_dir": f"families/{name}", "generator": GENERATOR,
           "max_new_tokens": MAX_NEW, "eos_disabled": True,
           "notes": "greedy (argmax) decoding, eos never stops generation; token_logprobs[b][t] = "
                    "log_softmax(logits of the step that produced output_ids[b][t])[output_ids[b][t]]; "
                    "prefill_last_logits[b] = logits at the last prompt position. Computed in float64 "
                    "from the stored weights. Each sequence of a batch case is computed independently "
                    "(positions from 0, no padding), so a batch case needs no padding field.",
           "cases": out}
    with open(os.path.join(d, "cases.json"), "w") as f:
        f.write(json.dumps(doc, separators=(",", ":")) + "\n")
    gaps = [c["min_top2_logit_gap"] for c in out]
    print(f"{name}: {os.path.getsize(os.path.join(d, 'model.safetensors'))} bytes, "
          f"min top-2 gaps {gaps}, inv_freq {np.array2string(model.inv, precision=4)}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check-stories":
        sys.exit(check_stories(sys.argv[2]))
    if len(sys.argv) != 1:
        sys.exit(__doc__)
    for name, spec in FAMILIES.items():
        make_family(name, spec)
