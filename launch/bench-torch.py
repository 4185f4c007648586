#!/usr/bin/python3
"""The PyTorch peer of `strata bench` on the CPU: an OPT decoder from a config.json, random fp32
weights, the math Hugging Face's OPTForCausalLM runs (pre-norm, learned positions offset by 2,
ReLU MLP, tied head), prefill of every prompt at once then greedy decode with a KV cache, eager
mode. Prints one JSON line with the same timings `strata bench --json` writes.

Usage: launch/bench-torch.py CONFIG_JSON [--prompts 32] [--prompt-len 128] [--gen-len 32]
                             [--threads N]
Run it with Debian's python3-torch (/usr/bin/python3); launch/bench-vs-torch.sh runs both.
"""
import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F


def opt_layers(c, gen):
    h, f = c["hidden_size"], c["ffn_dim"]

    def w(*shape):
        return torch.randn(*shape, generator=gen) * 0.02

    layers = []
    for _ in range(c["num_hidden_layers"]):
        layers.append({
            "ln1": (torch.ones(h), torch.zeros(h)), "ln2": (torch.ones(h), torch.zeros(h)),
            "q": (w(h, h), torch.zeros(h)), "k": (w(h, h), torch.zeros(h)),
            "v": (w(h, h), torch.zeros(h)), "o": (w(h, h), torch.zeros(h)),
            "fc1": (w(f, h), torch.zeros(f)), "fc2": (w(h, f), torch.zeros(h)),
        })
    return layers


def layer_forward(c, p, x, past, start):
    """x: [batch, new, hidden]; past: (keys, values) [batch, heads, cached, head_dim] or None."""
    b, t, h = x.shape
    heads = c["num_attention_heads"]
    d = h // heads
    r = x
    x = F.layer_norm(x, (h,), *p["ln1"], eps=1e-5)
    q = F.linear(x, *p["q"]) * (d ** -0.5)
    k = F.linear(x, *p["k"])
    v = F.linear(x, *p["v"])
    q, k, v = (y.view(b, t, heads, d).transpose(1, 2) for y in (q, k, v))
    if past is not None:
        k = torch.cat([past[0], k], dim=2)
        v = torch.cat([past[1], v], dim=2)
    scores = torch.matmul(q, k.transpose(2, 3))
    if t > 1:
        n = k.shape[2]
        mask = torch.ones(t, n, dtype=torch.bool).tril(diagonal=n - t)
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    a = torch.matmul(F.softmax(scores, dim=-1), v).transpose(1, 2).reshape(b, t, h)
    x = r + F.linear(a, *p["o"])
    r = x
    x = F.layer_norm(x, (h,), *p["ln2"], eps=1e-5)
    x = r + F.linear(F.relu(F.linear(x, *p["fc1"])), *p["fc2"])
    return x, (k, v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--gen-len", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    with open(a.config) as f:
        c = json.load(f)
    if c.get("model_type") != "opt" or c.get("activation_function") != "relu":
        sys.exit(f"bench-torch: {a.config}: only OPT configs with ReLU are modelled")
    if c.get("word_embed_proj_dim", c["hidden_size"]) != c["hidden_size"]:
        sys.exit(f"bench-torch: {a.config}: word_embed_proj_dim differs from hidden_size")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(a.seed)
    h = c["hidden_size"]
    embed = torch.randn(c["vocab_size"], h, generator=gen) * 0.02
    positions = torch.randn(c["max_position_embeddings"] + 2, h, generator=gen) * 0.02
    final_ln = (torch.ones(h), torch.zeros(h))
    layers = opt_layers(c, gen)
    ids = torch.randint(4, c["vocab_size"], (a.prompts, a.prompt_len), generator=gen)

    def step(tokens, past, start):
        x = embed[tokens] + positions[start + 2:start + 2 + tokens.shape[1]]
        new_past = []
        for p, kv in zip(layers, past):
            x, kv = layer_forward(c, p, x, kv, start)
            new_past.append(kv)
        x = F.layer_norm(x[:, -1], (h,), *final_ln, eps=1e-5)
        return F.linear(x, embed).argmax(dim=-1, keepdim=True), new_past

    with torch.inference_mode():
        t0 = time.perf_counter()
        token, past = step(ids, [None] * len(layers), 0)
        t1 = time.perf_counter()
        for i in range(a.gen_len - 1):
            token, past = step(token, past, a.prompt_len + i)
        t2 = time.perf_counter()
    total = a.prompts * a.gen_len
    print(json.dumps({
        "peer": f"pytorch {torch.__version__} eager fp32", "threads": torch.get_num_threads(),
        "num_prompts": a.prompts, "prompt_len": a.prompt_len, "gen_len": a.gen_len,
        "prefill_s": t1 - t0, "decode_s": t2 - t1,
        "generation_tokens_per_s": total / (t2 - t0)}))


if __name__ == "__main__":
    main()
