// A synthetic byte-level BPE tokenizer.json for random checkpoints: Falcon's pre-tokenizer and
// decoder, Falcon's 12 special tokens at ids 0..11, the 256 byte tokens, deterministic merges up
// to the vocabulary size, then the OpenAssistant tokens and special padding tokens, so that
// every id of the model's vocabulary decodes.
#pragma once
#include "common/status.h"

// n_vocab: the model's vocabulary; oa_start: id of the first OpenAssistant token (-1: none),
// tokens from oa_start + 5 up to n_vocab are special padding tokens "<|pad_N|>".
fl_code mkmodel_tokenizer_write(const char *path, int n_vocab, int oa_start, fl_error *err);
