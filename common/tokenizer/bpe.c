// The BPE model of HF tokenizers: a word's characters become vocab ids, then the pair with the
// lowest merge rank (leftmost on ties) is merged until none applies (HF's Word::merge_all, with a
// binary heap so long words such as whitespace runs stay O(n log n)).
#include <stdlib.h>
#include <string.h>

#include "common/tokenizer/impl.h"
#include "common/utf8.h"

static uint64_t tok_hash_bytes(const char *s, size_t len) {
    uint64_t h = 1469598103934665603ull; // FNV-1a
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t tok_hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static size_t tok_pow2_at_least(size_t n) {
    size_t cap = 16;
    while (cap < n)
        cap <<= 1;
    return cap;
}

fl_code tok_strmap_init(tok_strmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    m->cap = tok_pow2_at_least(expected * 2 + 1);
    m->keys = calloc(m->cap, sizeof *m->keys);
    m->key_lens = calloc(m->cap, sizeof *m->key_lens);
    m->vals = calloc(m->cap, sizeof *m->vals);
    if (!m->keys || !m->key_lens || !m->vals) {
        tok_strmap_free(m);
        return FL_ENOMEM;
    }
    return FL_OK;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->keys);
    free(m->key_lens);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static size_t tok_strmap_slot(const tok_strmap *m, const char *key, size_t len) {
    size_t mask = m->cap - 1, i = (size_t)tok_hash_bytes(key, len) & mask;
    while (m->keys[i] && !(m->key_lens[i] == len && memcmp(m->keys[i], key, len) == 0))
        i = (i + 1) & mask;
    return i;
}

static void tok_strmap_grow(tok_strmap *m) {
    tok_strmap bigger;
    if (tok_strmap_init(&bigger, m->cap) != FL_OK) return; // stays correct, only fuller
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i]) tok_strmap_put(&bigger, m->keys[i], m->key_lens[i], m->vals[i]);
    tok_strmap_free(m);
    *m = bigger;
}

void tok_strmap_put(tok_strmap *m, const char *key, size_t len, int32_t val) {
    if ((m->n + 1) * 4 > m->cap * 3) tok_strmap_grow(m);
    size_t i = tok_strmap_slot(m, key, len);
    if (!m->keys[i]) {
        m->keys[i] = key;
        m->key_lens[i] = (uint32_t)len;
        m->n++;
    }
    m->vals[i] = val;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    size_t i = tok_strmap_slot(m, key, len);
    return m->keys[i] ? m->vals[i] : -1;
}

fl_code tok_bpe_merges_init(tok_bpe *bpe, size_t n_merges) {
    bpe->merges_cap = tok_pow2_at_least(n_merges * 2 + 1);
    bpe->merges = malloc(bpe->merges_cap * sizeof *bpe->merges);
    if (!bpe->merges) return FL_ENOMEM;
    for (size_t i = 0; i < bpe->merges_cap; i++)
        bpe->merges[i].key = UINT64_MAX;
    return FL_OK;
}

static const tok_merge_slot *tok_bpe_merge_find(const tok_bpe *bpe, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t mask = bpe->merges_cap - 1, i = (size_t)tok_hash_u64(key) & mask;
    while (bpe->merges[i].key != UINT64_MAX) {
        if (bpe->merges[i].key == key) return &bpe->merges[i];
        i = (i + 1) & mask;
    }
    return NULL;
}

void tok_bpe_merge_put(tok_bpe *bpe, int32_t a, int32_t b, uint32_t rank, int32_t new_id) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t mask = bpe->merges_cap - 1, i = (size_t)tok_hash_u64(key) & mask;
    while (bpe->merges[i].key != UINT64_MAX && bpe->merges[i].key != key)
        i = (i + 1) & mask;
    bpe->merges[i] = (tok_merge_slot){key, rank, new_id};
}

void tok_bpe_free(tok_bpe *bpe) {
    tok_strmap_free(&bpe->vocab);
    free(bpe->merges);
    free(bpe->continuing_subword_prefix);
    free(bpe->end_of_word_suffix);
    memset(bpe, 0, sizeof *bpe);
}

typedef struct bpe_sym {
    int32_t id;
    int32_t prev, next; // -1 at the ends
    int alive;
} bpe_sym;

typedef struct bpe_cand {
    uint32_t rank;
    int32_t pos; // index of the left symbol
    int32_t new_id;
} bpe_cand;

static int bpe_cand_less(bpe_cand a, bpe_cand b) {
    return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

static void bpe_heap_push(bpe_cand *h, size_t *n, bpe_cand c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bpe_cand_less(c, h[parent])) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = c;
}

static bpe_cand bpe_heap_pop(bpe_cand *h, size_t *n) {
    bpe_cand top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        bpe_cand best = last;
        if (l < *n && bpe_cand_less(h[l], best)) {
            m = l;
            best = h[l];
        }
        if (r < *n && bpe_cand_less(h[r], best)) m = r;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n) h[i] = last;
    return top;
}

// Vocab id of one character of the word, with HF's continuing-subword prefix and end-of-word
// suffix when the model has them; -1 if absent.
static int32_t bpe_char_id(const tok_bpe *bpe, const char *c, size_t len, int first, int last) {
    if (!bpe->continuing_subword_prefix && !bpe->end_of_word_suffix)
        return tok_strmap_get(&bpe->vocab, c, len);
    char buf[512];
    size_t n = 0;
    const char *pre =
        (!first && bpe->continuing_subword_prefix) ? bpe->continuing_subword_prefix : "";
    const char *suf = (last && bpe->end_of_word_suffix) ? bpe->end_of_word_suffix : "";
    size_t lp = strlen(pre), ls = strlen(suf);
    if (lp + len + ls > sizeof buf) return -1;
    memcpy(buf, pre, lp);
    n += lp;
    memcpy(buf + n, c, len);
    n += len;
    memcpy(buf + n, suf, ls);
    n += ls;
    return tok_strmap_get(&bpe->vocab, buf, n);
}

fl_code tok_bpe_word(const tok_bpe *bpe, const char *word, size_t len, int32_t **ids, int *n_ids,
                     int *cap_ids, fl_error *err) {
    if (bpe->ignore_merges) {
        int32_t id = tok_strmap_get(&bpe->vocab, word, len);
        if (id >= 0) return tok_ids_push(ids, n_ids, cap_ids, id);
    }
    // [n_chars] symbols; a word is at most len characters.
    bpe_sym *sym = malloc((len ? len : 1) * sizeof *sym);
    // Each merge pushes at most two new candidates: 3 * n_chars bounds the heap.
    bpe_cand *heap = malloc((3 * len + 1) * sizeof *heap);
    if (!sym || !heap) {
        free(sym);
        free(heap);
        return fl_error_set(err, FL_ENOMEM, "tokenizer: out of memory encoding a %zu-byte word",
                            len);
    }
    int n = 0;
    int32_t pending_unk = -1; // HF adds an unknown character's unk once its run ends (fuse_unk)
    size_t i = 0;
    while (i < len) {
        utf8_unit kind;
        size_t cl = utf8_scan((const uint8_t *)word + i, len - i, &kind);
        if (kind != UTF8_VALID) cl = 1; // only reachable for words without ByteLevel mapping
        int32_t id = bpe_char_id(bpe, word + i, cl, i == 0, i + cl == len);
        if (id >= 0) {
            if (pending_unk >= 0) sym[n++] = (bpe_sym){pending_unk, 0, 0, 1};
            pending_unk = -1;
            sym[n++] = (bpe_sym){id, 0, 0, 1};
        } else if (bpe->unk_id >= 0) {
            if (pending_unk >= 0 && !bpe->fuse_unk) sym[n++] = (bpe_sym){pending_unk, 0, 0, 1};
            pending_unk = bpe->unk_id;
        } // without an unk token HF drops the character
        i += cl;
    }
    if (pending_unk >= 0) sym[n++] = (bpe_sym){pending_unk, 0, 0, 1};
    for (int k = 0; k < n; k++) {
        sym[k].prev = k - 1;
        sym[k].next = k + 1 < n ? k + 1 : -1;
    }
    size_t hn = 0;
    for (int k = 0; k + 1 < n; k++) {
        const tok_merge_slot *m = tok_bpe_merge_find(bpe, sym[k].id, sym[k + 1].id);
        if (m) bpe_heap_push(heap, &hn, (bpe_cand){m->rank, k, m->new_id});
    }
    while (hn) {
        bpe_cand top = bpe_heap_pop(heap, &hn);
        bpe_sym *s = &sym[top.pos];
        if (!s->alive || s->next < 0) continue;
        bpe_sym *right = &sym[s->next];
        // Stale entries (a neighbour merged since) no longer describe the current pair.
        const tok_merge_slot *m = tok_bpe_merge_find(bpe, s->id, right->id);
        if (!m || m->new_id != top.new_id) continue;
        s->id = top.new_id;
        right->alive = 0;
        s->next = right->next;
        if (right->next >= 0) sym[right->next].prev = top.pos;
        if (s->prev >= 0) {
            const tok_merge_slot *pm = tok_bpe_merge_find(bpe, sym[s->prev].id, s->id);
            if (pm) bpe_heap_push(heap, &hn, (bpe_cand){pm->rank, s->prev, pm->new_id});
        }
        if (s->next >= 0) {
            const tok_merge_slot *nm = tok_bpe_merge_find(bpe, s->id, sym[s->next].id);
            if (nm) bpe_heap_push(heap, &hn, (bpe_cand){nm->rank, top.pos, nm->new_id});
        }
    }
    fl_code rc = FL_OK;
    for (int k = 0; k < n && rc == FL_OK; k++)
        if (sym[k].alive) rc = tok_ids_push(ids, n_ids, cap_ids, sym[k].id);
    free(sym);
    free(heap);
    if (rc) return fl_error_set(err, rc, "tokenizer: out of memory storing ids");
    return FL_OK;
}
