// HF tokenizer files rebuilt from a GGUF file's tokenizer metadata (tokenizer.ggml.*): a
// byte-level BPE tokenizer.json whose pre-tokenizer is chosen from tokenizer.ggml.pre, and a
// tokenizer_config.json carrying the special tokens and tokenizer.chat_template.
#pragma once
#include <cjson/cJSON.h>

#include "common/gguf.h"
#include "common/status.h"

// Builds the contents of tokenizer.json and tokenizer_config.json (n_ctx: model_max_length);
// the caller owns and deletes both.
fl_code gguf_tokenizer_build(const gguf_file *g, int n_ctx, cJSON **tokenizer_json,
                             cJSON **tokenizer_config, fl_error *err);
