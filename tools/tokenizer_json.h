// Building blocks of an HF tokenizer.json for byte-level BPE tokenizers, shared by the writers
// of mkmodel (synthetic vocabularies) and import-gguf (vocabularies from GGUF metadata).
#pragma once
#include <cjson/cJSON.h>

// The ByteLevel pre-tokenizer / decoder component (GPT-2 regex, trim_offsets).
cJSON *tokenizer_json_byte_level(int add_prefix_space);
// Falcon's pre_tokenizer, component for component: Punctuation (Contiguous), ByteLevel,
// Digits (grouped), Split on [0-9][0-9][0-9] (Isolated).
cJSON *tokenizer_json_falcon_pre_tokenizer(void);
// An added_tokens entry (not normalized, no strip, not single-word).
cJSON *tokenizer_json_added_token(int id, const char *content, int special);
// A tokenizer.json root: no normalizer or post-processor, the given pre_tokenizer (taken over),
// a ByteLevel decoder and an empty BPE model; *added and *model point into it for filling
// (added_tokens array; model object to which the caller adds "vocab" and "merges").
cJSON *tokenizer_json_create(cJSON *pre_tokenizer, cJSON **added, cJSON **model);
