#!/usr/bin/env python3
"""Tiny random Falcon checkpoints and HF transformers reference generations for the golden tests.

Run with a Python that has torch, transformers, tokenizers and safetensors (/work/refenv):
    /work/refenv/bin/python tests/golden/make_model_fixtures.py
Writes tests/golden/data/models/<case>/ {config.json, model.safetensors, tokenizer.json (a link to
the golden tokenizer), quantize_config.json (GPTQ), reference.json}. Deterministic: every case has
its own seed. The outputs are committed; CI only reads them.

reference.json: {"case", "rope" (null or the rotary override the C test passes), "n_new",
"prompts": [{"text", "ids", "tokens" (greedy continuation), "logprobs" (log_softmax of the fp32
logits at each chosen token), "prompt_logprobs" (first prompt only: logprob of prompt token t+1
given tokens 0..t)}], "min_margin" (smallest top-1 minus top-2 logit gap along the greedy paths;
small gaps would make the test fragile)}.
"""
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import FalconConfig, FalconForCausalLM, LlamaConfig, LlamaForCausalLM

HERE = Path(__file__).resolve().parent
TOKENIZER = HERE / "data" / "tokenizer" / "tokenizer.json"
OUT = HERE / "data" / "models"
N_NEW = 32

PROMPTS = [
    "The quick brown fox jumps over the lazy dog while 12345 birds watch.",
    "<|prompter|>What is the capital of France?<|endoftext|><|assistant|>",
    "def add(a, b):\n    return a + b\n",
    "Once upon a time",
]
# NTK case: prompts around the threshold (32) so that generation crosses it.
NTK_THRESHOLD = 32
NTK_PROMPTS = [
    "In the beginning there was a small village by the river, and every morning the people walked",
    "<|prompter|>Explain, in simple words, why the sky looks blue during the day.<|endoftext|><|assistant|>",
    "import os\nimport sys\n\ndef main(argv):\n    for name in argv:\n        print(name, len(name))\n",
    "A short story about a cat who lived in a tall house.",
]


def rope_base(theta, alpha, threshold, d, length):
    """FalconLite's dynamic NTK base: theta * (L / alpha / T)^(d/(d-2)) past T (common/rope.h)."""
    if length <= threshold:
        return theta
    return theta * (length / alpha / threshold) ** (d / (d - 2))


def patch_falconlite_rotary(model, theta, alpha, threshold):
    """Rotary cos/sin computed with base(L), L = current sequence length (last position + 1)."""
    emb = model.transformer.rotary_emb
    dim = model.config.hidden_size // model.config.num_attention_heads

    def forward(x, position_ids):
        length = int(position_ids.max()) + 1
        base = torch.tensor(rope_base(theta, alpha, threshold, dim, length), dtype=torch.float32)
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
        freqs = position_ids[..., None].float() * inv_freq
        e = torch.cat((freqs, freqs), dim=-1)
        return e.cos().to(x.dtype), e.sin().to(x.dtype)

    emb.forward = forward


# ---- random weights

def linear(gen, n_out, n_in, gain=1.0):
    return torch.randn(n_out, n_in, generator=gen) * (gain / math.sqrt(n_in))


def norm_params(gen, d):
    return 1.0 + 0.2 * torch.randn(d, generator=gen), 0.2 * torch.randn(d, generator=gen)


def falcon_state(gen, cfg, n_kv, qkv_out, two_norms, bias, untied):
    d, f, v = cfg["d_model"], cfg["d_ff"], cfg["vocab"]
    sd = {"transformer.word_embeddings.weight": torch.randn(v, d, generator=gen) * 0.6}
    if untied:
        sd["lm_head.weight"] = torch.randn(v, d, generator=gen) * 0.6
    for i in range(cfg["n_layer"]):
        p = f"transformer.h.{i}."
        norms = ["ln_attn", "ln_mlp"] if two_norms else ["input_layernorm"]
        for n in norms:
            sd[p + n + ".weight"], sd[p + n + ".bias"] = norm_params(gen, d)
        shapes = {
            "self_attention.query_key_value": (qkv_out, d),
            "self_attention.dense": (d, d),
            "mlp.dense_h_to_4h": (f, d),
            "mlp.dense_4h_to_h": (d, f),
        }
        for name, (n_out, n_in) in shapes.items():
            sd[p + name + ".weight"] = linear(gen, n_out, n_in, 1.5)
            if bias:
                sd[p + name + ".bias"] = 0.1 * torch.randn(n_out, generator=gen)
    sd["transformer.ln_f.weight"], sd["transformer.ln_f.bias"] = norm_params(gen, d)
    return sd


def llama_state(gen, d, f, n_layer, n_head, n_kv, vocab):
    hd = d // n_head
    sd = {"model.embed_tokens.weight": torch.randn(vocab, d, generator=gen) * 0.6}
    for i in range(n_layer):
        p = f"model.layers.{i}."
        for n in ("input_layernorm", "post_attention_layernorm"):
            sd[p + n + ".weight"] = 1.0 + 0.2 * torch.randn(d, generator=gen)
        shapes = {
            "self_attn.q_proj": (n_head * hd, d), "self_attn.k_proj": (n_kv * hd, d),
            "self_attn.v_proj": (n_kv * hd, d), "self_attn.o_proj": (d, n_head * hd),
            "mlp.gate_proj": (f, d), "mlp.up_proj": (f, d), "mlp.down_proj": (d, f),
        }
        for name, (n_out, n_in) in shapes.items():
            sd[p + name + ".weight"] = linear(gen, n_out, n_in, 1.5)
    sd["model.norm.weight"] = 1.0 + 0.2 * torch.randn(d, generator=gen)
    return sd


# ---- GPTQ (AutoGPTQ v1 layout)

def pack_rows(q):
    """q [K, N] 4-bit ints -> int32 [K/8, N]; nibble j of row r is input 8r + j."""
    k, n = q.shape
    q = q.astype(np.uint32).reshape(k // 8, 8, n)
    out = np.zeros((k // 8, n), dtype=np.uint32)
    for j in range(8):
        out |= q[:, j, :] << (4 * j)
    return out.view(np.int32)


def pack_cols(z):
    """z [G, N] 4-bit ints -> int32 [G, N/8]; nibble j of word c is output 8c + j."""
    g, n = z.shape
    z = z.astype(np.uint32).reshape(g, n // 8, 8)
    out = np.zeros((g, n // 8), dtype=np.uint32)
    for j in range(8):
        out |= z[:, :, j] << (4 * j)
    return out.view(np.int32)


def gptq_random(rng, n_out, n_in, group_size):
    """Random act-order GPTQ tensors and the dequantised nn.Linear weight [n_out, n_in] (fp32)."""
    n_groups = n_in // group_size
    q = rng.integers(0, 16, size=(n_in, n_out))
    zero_m1 = rng.integers(5, 11, size=(n_groups, n_out))  # stored zero - 1
    scales = (np.abs(rng.normal(0, 1.5 / math.sqrt(n_in) / 4, size=(n_groups, n_out))) + 1e-3)
    scales = scales.astype(np.float16)
    g_idx = (np.arange(n_in) // group_size)[rng.permutation(n_in)].astype(np.int32)
    w = (q - (zero_m1[g_idx] + 1)).astype(np.float32) * scales.astype(np.float32)[g_idx]
    tensors = {
        "qweight": torch.from_numpy(pack_rows(q)),
        "qzeros": torch.from_numpy(pack_cols(zero_m1)),
        "scales": torch.from_numpy(scales),
        "g_idx": torch.from_numpy(g_idx),
    }
    return tensors, torch.from_numpy(np.ascontiguousarray(w.T))


# ---- HF reference

@torch.no_grad()
def greedy(model, ids, n_new):
    """HF greedy decoding step by step with its KV cache; returns tokens, logprobs, min margin."""
    out = model(torch.tensor([ids]), use_cache=True)
    cache, logits = out.cache, out.logits[0, -1].float()
    tokens, logprobs, margin = [], [], float("inf")
    for step in range(n_new):
        lp = torch.log_softmax(logits.double(), dim=-1)
        top2 = torch.topk(logits, 2).values
        margin = min(margin, float(top2[0] - top2[1]))
        t = int(torch.argmax(logits))
        tokens.append(t)
        logprobs.append(float(lp[t]))
        if step + 1 == n_new:
            break
        out = model(torch.tensor([[t]]), cache=cache, use_cache=True)
        cache, logits = out.cache, out.logits[0, -1].float()
    return tokens, logprobs, margin


@torch.no_grad()
def prompt_logprobs(model, ids):
    logits = model(torch.tensor([ids])).logits[0].float()
    lp = torch.log_softmax(logits.double(), dim=-1)
    return [float(lp[t, ids[t + 1]]) for t in range(len(ids) - 1)]


def hf_model(config, state, cls=FalconForCausalLM):
    model = cls(config).float().eval()
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()},
                                                strict=False)
    allowed = {"lm_head.weight"} if config.tie_word_embeddings else set()
    assert set(missing) <= allowed and not unexpected, (missing, unexpected)
    if config.tie_word_embeddings:
        model.tie_weights()
        assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    return model


def write_case(name, config_json, state, model, tok, prompts, rope=None, quantize_config=None):
    d = OUT / name
    d.mkdir(parents=True, exist_ok=True)
    for f in d.iterdir():
        f.unlink()
    (d / "config.json").write_text(json.dumps(config_json, indent=2) + "\n")
    if quantize_config:
        (d / "quantize_config.json").write_text(json.dumps(quantize_config, indent=2) + "\n")
    save_file({k: v.contiguous() for k, v in state.items()}, str(d / "model.safetensors"),
              metadata={"format": "pt"})
    os.chmod(d / "model.safetensors", 0o644)
    os.symlink(os.path.relpath(TOKENIZER, d), d / "tokenizer.json")
    ref = {"case": name, "rope": rope, "n_new": N_NEW, "prompts": []}
    min_margin = float("inf")
    for i, text in enumerate(prompts):
        ids = tok.encode(text, add_special_tokens=False).ids
        tokens, logprobs, margin = greedy(model, ids, N_NEW)
        min_margin = min(min_margin, margin)
        entry = {"text": text, "ids": ids, "tokens": tokens, "logprobs": logprobs}
        if i == 0:
            entry["prompt_logprobs"] = prompt_logprobs(model, ids)
        ref["prompts"].append(entry)
    ref["min_margin"] = min_margin
    (d / "reference.json").write_text(json.dumps(ref, indent=1) + "\n")
    lens = [len(p["ids"]) for p in ref["prompts"]]
    print(f"{name}: prompt lengths {lens}, min top-2 margin {min_margin:.4f}")


def falcon_config(vocab, d, n_layer, n_head, n_kv, new_arch, multi_query, bias, tied):
    return FalconConfig(
        vocab_size=vocab, hidden_size=d, num_hidden_layers=n_layer, num_attention_heads=n_head,
        num_kv_heads=n_kv, new_decoder_architecture=new_arch, multi_query=multi_query,
        parallel_attn=True, bias=bias, alibi=False, layer_norm_epsilon=1e-5, bos_token_id=11,
        eos_token_id=11, tie_word_embeddings=tied, attn_implementation="eager")


def hf_config_json(config):
    c = config.to_dict()
    c["architectures"] = ["FalconForCausalLM"]
    return c


def main():
    tok = Tokenizer.from_file(str(TOKENIZER))
    vocab = tok.get_vocab_size()
    small = {"d_model": 64, "n_layer": 2, "d_ff": 256, "vocab": vocab}

    # a) Falcon-40B layout: grouped KV (8 heads, 2 KV heads), two norms, fp32, tied head.
    gen = torch.Generator().manual_seed(1001)
    cfg = falcon_config(vocab, 64, 2, 8, 2, True, True, False, True)
    state = falcon_state(gen, small, 2, (8 + 2 * 2) * 8, True, False, False)
    write_case("falcon40b_gqa_fp32", hf_config_json(cfg), state, hf_model(cfg, state), tok, PROMPTS)

    # b) Falcon-7B layout: multi-query, one norm, parallel attention; legacy RefinedWebModel
    #    config names; biases and an untied LM head for coverage.
    gen = torch.Generator().manual_seed(1002)
    cfg = falcon_config(vocab, 64, 2, 4, 1, False, True, True, False)
    state = falcon_state(gen, small, 1, 64 + 2 * 16, False, True, True)
    legacy = {
        "architectures": ["RWForCausalLM"], "model_type": "RefinedWebModel", "alibi": False,
        "apply_residual_connection_post_layernorm": False, "attention_dropout": 0.0,
        "bias": True, "bos_token_id": 11, "eos_token_id": 11, "hidden_dropout": 0.0,
        "hidden_size": 64, "initializer_range": 0.02, "layer_norm_epsilon": 1e-05,
        "multi_query": True, "n_head": 4, "n_layer": 2, "parallel_attn": True,
        "tie_word_embeddings": False, "torch_dtype": "float32", "use_cache": True,
        "vocab_size": vocab,
    }
    write_case("falcon7b_mqa_fp32", legacy, state, hf_model(cfg, state), tok, PROMPTS)

    # c) Falcon-40B layout, every linear layer GPTQ 4-bit (group 32, act-order), fp16 embedding
    #    and norms, legacy RefinedWeb config names as in FalconLite's own config.
    gen = torch.Generator().manual_seed(1003)
    rng = np.random.default_rng(1003)
    cfg = falcon_config(vocab, 64, 2, 8, 2, True, True, False, True)
    dense = falcon_state(gen, small, 2, (8 + 2 * 2) * 8, True, False, False)
    state, hf_state = {}, {}
    for k, v in dense.items():
        if k.endswith(".weight") and v.dim() == 2 and "word_embeddings" not in k:
            prefix = k[: -len(".weight")]
            n_out, n_in = v.shape
            q, w = gptq_random(rng, n_out, n_in, 32)
            for part, t in q.items():
                state[f"{prefix}.{part}"] = t
            hf_state[k] = w
        else:
            state[k] = v.half()
            hf_state[k] = v.half().float()
    refined_web = {
        "architectures": ["RWForCausalLM"], "model_type": "RefinedWeb", "alibi": False,
        "bias": False, "bos_token_id": 11, "eos_token_id": 11, "hidden_size": 64,
        "layer_norm_epsilon": 1e-05, "n_head": 8, "n_head_kv": 2, "n_layer": 2,
        "parallel_attn": True, "torch_dtype": "float16", "vocab_size": vocab,
    }
    quantize = {"bits": 4, "group_size": 32, "damp_percent": 0.01, "desc_act": True, "sym": True,
                "true_sequential": True, "model_name_or_path": None, "model_file_base_name": None}
    write_case("falcon40b_gptq_actorder", refined_web, state, hf_model(cfg, hf_state), tok,
               PROMPTS, quantize_config=quantize)

    # d) as (a) with FalconLite's dynamic NTK rotary (alpha 0.25, threshold 32, theta 10000),
    #    and linear biases (row-parallel biases are added on one rank only).
    gen = torch.Generator().manual_seed(1004)
    cfg = falcon_config(vocab, 64, 2, 8, 2, True, True, True, True)
    state = falcon_state(gen, small, 2, (8 + 2 * 2) * 8, True, True, False)
    model = hf_model(cfg, state)
    patch_falconlite_rotary(model, 10000.0, 0.25, NTK_THRESHOLD)
    rope = {"mode": "falconlite", "theta": 10000.0, "alpha": 0.25, "threshold": NTK_THRESHOLD}
    write_case("falcon40b_ntk_falconlite", hf_config_json(cfg), state, model, tok, NTK_PROMPTS,
               rope=rope)

    # e) Llama: sequential blocks, RMSNorm, SwiGLU, separate q/k/v (GQA 4 heads / 2 KV heads)
    #    and gate/up projections that the loader fuses.
    gen = torch.Generator().manual_seed(1008)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                      max_position_embeddings=2048, tie_word_embeddings=True, bos_token_id=11,
                      eos_token_id=11, attn_implementation="eager")
    state = llama_state(gen, 64, 128, 2, 4, 2, vocab)
    c = cfg.to_dict()
    c["architectures"] = ["LlamaForCausalLM"]
    write_case("llama_gqa_fp32", c, state, hf_model(cfg, state, LlamaForCausalLM), tok, PROMPTS)


if __name__ == "__main__":
    main()
