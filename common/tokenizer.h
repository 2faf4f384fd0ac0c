// HF tokenizer.json semantics for byte-level BPE tokenizers (Falcon, GPT-2, SmolLM2): added and
// special tokens matched first, the pre-tokenizer pipeline (Sequence of Punctuation, ByteLevel,
// Digits, Split with Oniguruma regexes), BPE merges by rank, ByteLevel decoding, and incremental
// decoding that never emits a broken UTF-8 sequence.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct tokenizer tokenizer;

fl_code tokenizer_load(const char *tokenizer_json_path, tokenizer **out, fl_error *err);
void tokenizer_free(tokenizer *tok);

int tokenizer_vocab_size(const tokenizer *tok);      // largest id + 1, added tokens included
int tokenizer_token_to_id(const tokenizer *tok, const char *token); // -1 if absent
const char *tokenizer_id_to_token(const tokenizer *tok, int32_t id); // raw vocab string, or NULL
int tokenizer_is_special(const tokenizer *tok, int32_t id);
// The most input bytes one token can stand for, when the tokenizer guarantees such a bound (a
// text of L bytes then encodes to at least L / bound tokens); 0 when it does not.
size_t tokenizer_max_token_bytes(const tokenizer *tok);
// The number of bytes id decodes to on its own (its share of the text it was encoded from).
size_t tokenizer_token_bytes(const tokenizer *tok, int32_t id);

// Encodes len bytes of UTF-8 text. *ids is malloc'd (caller frees), *n_ids its length.
fl_code tokenizer_encode(const tokenizer *tok, const char *text, size_t len, int32_t **ids,
                         int *n_ids, fl_error *err);
// Decodes ids to UTF-8 (malloc'd, NUL-terminated); invalid byte sequences become U+FFFD as in HF.
fl_code tokenizer_decode(const tokenizer *tok, const int32_t *ids, int n_ids, int skip_special,
                         char **text, size_t *len, fl_error *err);

// Incremental decoding for streaming: push ids one at a time and get the text they complete.
typedef struct detok_stream detok_stream;
detok_stream *detok_stream_create(const tokenizer *tok, int skip_special);
void detok_stream_free(detok_stream *ds);
// Appends the new complete text (possibly empty) produced by id to *out (malloc'd, NUL-terminated,
// caller frees). Bytes of an unfinished UTF-8 character are held back until it completes.
fl_code detok_stream_push(detok_stream *ds, int32_t id, char **out, size_t *len, fl_error *err);
// Text still held back (an unfinished character at end of stream), replaced as HF would.
fl_code detok_stream_flush(detok_stream *ds, char **out, size_t *len, fl_error *err);
