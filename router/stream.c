#include "router/stream.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct stream {
    const gen_request *req;
    const tokenizer *tok;
    detok_stream *detok;
    char *text; // concatenated token texts (stop sequences are matched on it)
    size_t text_len, text_cap;
    int32_t *ids; // [n_ids] generated ids
    int n_ids, cap_ids;
};

stream *stream_create(const gen_request *req, const tokenizer *tok) {
    stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->req = req;
    s->tok = tok;
    s->detok = detok_stream_create(tok, 0);
    if (!s->detok) {
        free(s);
        return NULL;
    }
    return s;
}

void stream_free(stream *s) {
    if (!s) return;
    detok_stream_free(s->detok);
    free(s->text);
    free(s->ids);
    free(s);
}

static bool text_append(stream *s, const char *t, size_t n) {
    if (s->text_len + n + 1 > s->text_cap) {
        size_t cap = s->text_cap ? s->text_cap * 2 : 256;
        while (cap < s->text_len + n + 1)
            cap *= 2;
        char *p = realloc(s->text, cap);
        if (!p) return false;
        s->text = p;
        s->text_cap = cap;
    }
    memcpy(s->text + s->text_len, t, n);
    s->text_len += n;
    s->text[s->text_len] = 0;
    return true;
}

static bool ids_push(stream *s, int32_t id) {
    if (s->n_ids == s->cap_ids) {
        int cap = s->cap_ids ? s->cap_ids * 2 : 32;
        int32_t *p = realloc(s->ids, sizeof *p * (size_t)cap);
        if (!p) return false;
        s->ids = p;
        s->cap_ids = cap;
    }
    s->ids[s->n_ids++] = id;
    return true;
}

// TGI StoppingCriteria: the accumulated output text ends with a stop sequence.
static bool stop_matched(const stream *s) {
    const gen_params *p = &s->req->params;
    for (int i = 0; i < p->n_stop; i++) {
        size_t n = strlen(p->stop[i]);
        if (n > 0 && n <= s->text_len && !memcmp(s->text + s->text_len - n, p->stop[i], n))
            return true;
    }
    return false;
}

static char *decode_ids(const tokenizer *tok, const int32_t *ids, int n, int skip_special) {
    char *text = NULL;
    size_t len = 0;
    if (tokenizer_decode(tok, ids, n, skip_special, &text, &len, NULL) != FL_OK) return strdup("");
    return text;
}

gen_event *stream_prefill_event(const stream *s, const shard_generation *g) {
    if (g->n_prefill <= 0) return NULL;
    gen_event *ev = calloc(1, sizeof *ev);
    if (!ev) return NULL;
    ev->kind = GEN_EVENT_PREFILL;
    ev->prefill = calloc((size_t)g->n_prefill, sizeof *ev->prefill);
    if (!ev->prefill) {
        free(ev);
        return NULL;
    }
    ev->n_prefill = g->n_prefill;
    for (int i = 0; i < g->n_prefill; i++) {
        int32_t id = (int32_t)g->prefill_ids[i];
        ev->prefill[i].id = g->prefill_ids[i];
        ev->prefill[i].text = decode_ids(s->tok, &id, 1, 0);
        ev->prefill[i].logprob = g->prefill_logprobs ? g->prefill_logprobs[i] : NAN;
        ev->prefill[i].special = tokenizer_is_special(s->tok, id);
    }
    return ev;
}

// The generated text with special tokens skipped, after the prompt when return_full_text.
static char *final_text(const stream *s) {
    char *text = decode_ids(s->tok, s->ids, s->n_ids, 1);
    const gen_request *r = s->req;
    if (!r->params.return_full_text || !text) return text;
    char *full = malloc(r->inputs_len + strlen(text) + 1);
    if (!full) return text;
    memcpy(full, r->inputs, r->inputs_len);
    strcpy(full + r->inputs_len, text);
    free(text);
    return full;
}

gen_event *stream_push(stream *s, const shard_generation *g) {
    char *piece = NULL;
    size_t piece_len = 0;
    if (detok_stream_push(s->detok, (int32_t)g->token_id, &piece, &piece_len, NULL) != FL_OK) {
        free(piece);
        piece = strdup("");
        piece_len = 0;
    }
    text_append(s, piece, piece_len);
    ids_push(s, (int32_t)g->token_id);

    bool finished = g->finished;
    finish_reason reason = g->finish;
    if (!finished && stop_matched(s)) {
        finished = true;
        reason = FINISH_STOP_SEQUENCE;
    }
    gen_event *ev = calloc(1, sizeof *ev);
    if (!ev) {
        free(piece);
        return NULL;
    }
    ev->token.id = g->token_id;
    ev->token.text = piece;
    ev->token.logprob = g->token_logprob;
    ev->token.special = g->token_is_special || tokenizer_is_special(s->tok, (int32_t)g->token_id);
    if (!finished) {
        ev->kind = GEN_EVENT_TOKEN;
        return ev;
    }
    const gen_params *p = &s->req->params;
    ev->kind = GEN_EVENT_END;
    ev->finish = reason;
    // A request stopped here (stop sequence) is still running in the shards: the router's own
    // count and sampling flag stand in for the shard's.
    ev->generated_tokens = g->finished ? g->generated_tokens : (uint32_t)s->n_ids;
    ev->n_input = s->req->n_input;
    ev->has_seed = g->finished ? g->sampled : p->sampled;
    ev->seed = p->seed;
    ev->generated_text = final_text(s);
    return ev;
}
