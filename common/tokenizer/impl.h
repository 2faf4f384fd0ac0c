// Internals of the tokenizer (common/tokenizer.h) in common/tokenizer/: tokenizer.c (loading
// tokenizer.json, lookups), encode.c (added tokens, encode driver), pretok.c (pre-tokenizers),
// bpe.c (the BPE model), decode.c (decoding, streaming), unicode.c (generated classes) and
// util.c (buffers and lists all of them use).
// Not part of the public contract.
#pragma once
#include <oniguruma.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "common/tokenizer.h"

// ---- string -> id hash map (open addressing; keys point into storage owned elsewhere) ----
typedef struct tok_strmap {
    const char **keys;
    uint32_t *key_lens;
    int32_t *vals;
    size_t cap; // power of two, 0 when empty
    size_t n;
} tok_strmap;

fl_code tok_strmap_init(tok_strmap *m, size_t expected);
void tok_strmap_free(tok_strmap *m);
// Inserts or overwrites; key must outlive the map.
void tok_strmap_put(tok_strmap *m, const char *key, size_t len, int32_t val);
int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t len); // -1 if absent

// ---- growable byte buffer and split list used while encoding one text ----
typedef struct tok_buf {
    char *data;
    size_t len, cap;
} tok_buf;

fl_code tok_buf_append(tok_buf *b, const void *data, size_t len);

typedef struct tok_span {
    size_t off, len; // bytes in the encode arena
} tok_span;

typedef struct tok_spans {
    tok_span *v;
    size_t n, cap;
} tok_spans;

fl_code tok_spans_push(tok_spans *s, size_t off, size_t len);

// ---- character classes HF tests in Rust (tables in unicode.c, probed from HF) ----
typedef struct tok_char_class {
    const uint32_t (*ranges)[2]; // sorted, inclusive
    int n;
} tok_char_class;

extern const tok_char_class tok_class_punctuation; // Punctuation pre-tokenizer
extern const tok_char_class tok_class_numeric;     // Digits pre-tokenizer (char::is_numeric)
extern const tok_char_class tok_class_word;        // single_word added tokens (regex \w)

int tok_char_class_has(const tok_char_class *cls, uint32_t cp);

// ---- pre-tokenizers ----
typedef enum tok_split_behavior {
    TOK_SPLIT_REMOVED,
    TOK_SPLIT_ISOLATED,
    TOK_SPLIT_MERGED_WITH_PREVIOUS,
    TOK_SPLIT_MERGED_WITH_NEXT,
    TOK_SPLIT_CONTIGUOUS,
} tok_split_behavior;

typedef enum tok_pretok_kind {
    TOK_PRETOK_SEQUENCE,
    TOK_PRETOK_PUNCTUATION,
    TOK_PRETOK_BYTELEVEL,
    TOK_PRETOK_DIGITS,
    TOK_PRETOK_SPLIT,
} tok_pretok_kind;

typedef struct tok_pretok {
    tok_pretok_kind kind;
    tok_split_behavior behavior;  // Punctuation, Split; Digits: Isolated or Contiguous
    int invert;                   // Split
    int add_prefix_space;         // ByteLevel
    regex_t *re;                  // Split; ByteLevel when use_regex
    const tok_char_class *cls;    // Punctuation, Digits: each member character is a match
    struct tok_pretok **children; // Sequence
    int n_children;
} tok_pretok;

struct cJSON;
// Builds a pre-tokenizer from its tokenizer.json object; errors name path and the JSON field.
fl_code tok_pretok_parse(const struct cJSON *j, const char *path, const char *field,
                         tok_pretok **out, fl_error *err);
void tok_pretok_free(tok_pretok *p);
int tok_pretok_has_bytelevel(const tok_pretok *p);
// Whether some Split drops the text it matches (behavior "Removed").
int tok_pretok_can_remove(const tok_pretok *p);
// Compiles pattern (UTF-8, Oniguruma default syntax as HF's onig crate uses).
fl_code tok_regex_compile(const char *pattern, size_t len, regex_t **out, const char *path,
                          const char *field, fl_error *err);

// The GPT-2 byte <-> character table ByteLevel uses.
typedef struct tok_bytemap {
    char utf8[256][2]; // character of byte b, as UTF-8
    uint8_t utf8_len[256];
    int16_t byte_of[324]; // codepoint -> byte, -1 if the codepoint is not in the table
} tok_bytemap;

void tok_bytemap_init(tok_bytemap *bm);

typedef struct tok_match {
    size_t start, end; // bytes within the split being divided
    int is_match;
} tok_match;

// Scratch state of one encode call (the tokenizer itself stays read-only, so encode is
// thread-safe).
typedef struct tok_encode_ctx {
    tok_buf arena; // text of every split (original and ByteLevel-mapped)
    tok_spans cur, next;
    tok_match *matches;
    size_t cap_matches;
    OnigRegion *region;
    const tok_bytemap *bytemap;
} tok_encode_ctx;

// Runs p over arena[span] and leaves the resulting words in ctx->cur.
fl_code tok_pretok_run(const tok_pretok *p, tok_encode_ctx *ctx, tok_span span, fl_error *err);

// ---- BPE model ----
typedef struct tok_merge_slot {
    uint64_t key; // (left id << 32) | right id, UINT64_MAX when empty
    uint32_t rank;
    int32_t new_id;
} tok_merge_slot;

typedef struct tok_bpe {
    tok_strmap vocab;       // model vocab string -> id
    tok_merge_slot *merges; // hash table of merge pairs
    size_t merges_cap;
    int32_t unk_id; // -1 when unk_token is null
    int fuse_unk;
    int ignore_merges;
    char *continuing_subword_prefix; // NULL when absent
    char *end_of_word_suffix;        // NULL when absent
} tok_bpe;

// Appends the ids of one pre-tokenized word (UTF-8 bytes) to *ids.
fl_code tok_bpe_word(const tok_bpe *bpe, const char *word, size_t len, int32_t **ids, int *n_ids,
                     int *cap_ids, fl_error *err);
fl_code tok_bpe_merges_init(tok_bpe *bpe, size_t n_merges);
// Records merge (a, b) -> new_id with rank; a later duplicate pair overwrites, as HF's HashMap.
void tok_bpe_merge_put(tok_bpe *bpe, int32_t a, int32_t b, uint32_t rank, int32_t new_id);
void tok_bpe_free(tok_bpe *bpe);

fl_code tok_ids_push(int32_t **ids, int *n_ids, int *cap_ids, int32_t id);

// A boolean field of a tokenizer.json object, dflt when absent.
int tok_json_flag(const struct cJSON *j, const char *name, int dflt);

// ---- the tokenizer ----
typedef struct tok_added {
    char *content;
    size_t len;
    int32_t id;
    int special, single_word, lstrip, rstrip, normalized;
} tok_added;

typedef enum tok_decoder { TOK_DECODER_NONE, TOK_DECODER_BYTELEVEL } tok_decoder;

struct tokenizer {        // typedef in common/tokenizer.h
    int vocab_size;       // largest id + 1
    int model_size;       // largest model vocab id + 1 (vocab_str's length until the id tables)
    char **vocab_str;     // [vocab_size] model vocab string of each id, NULL for gaps
    char **shadowed;      // [n_shadowed] strings of duplicate ids: still keys of bpe.vocab
    int n_shadowed;
    int32_t *added_of_id; // [vocab_size] index into added, -1 if the id is not an added token
    uint8_t *special;     // [vocab_size] decode with skip_special drops it
    char **piece;         // [vocab_size] bytes the decoder turns each id into
    uint32_t *piece_len;  // [vocab_size]
    tok_added *added;
    int n_added;
    tok_strmap added_map;     // content -> index into added
    int32_t first[2][256];    // per pass (normalized flag): first added token by first byte
    int32_t *next_same_first; // [n_added] chain of that list
    tok_pretok *pretok;       // NULL: the whole text is one word
    int has_bytelevel;
    size_t max_token_bytes; // tokenizer_max_token_bytes (0: no bound)
    tok_bpe bpe;
    tok_decoder decoder;
    tok_bytemap bytemap;
};
