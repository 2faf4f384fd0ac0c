#include "router/request.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void gen_request_in_init(gen_request_in *r) {
    memset(r, 0, sizeof *r);
}

static void strings_free(char **s, int n) {
    for (int i = 0; i < n; i++)
        free(s[i]);
    free(s);
}

void gen_request_in_clear(gen_request_in *r) {
    free(r->inputs);
    strings_free(r->params.stop, r->params.n_stop);
    memset(r, 0, sizeof *r);
}

gen_request *gen_request_clone(const gen_request *r) {
    gen_request *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    *c = *r;
    c->inputs = malloc(r->inputs_len + 1);
    c->input_ids = malloc(sizeof(int32_t) * (size_t)(r->n_input ? r->n_input : 1));
    c->params.stop = calloc((size_t)r->params.n_stop + 1, sizeof(char *));
    if (!c->inputs || !c->input_ids || !c->params.stop) {
        free(c->inputs), free(c->input_ids), free(c->params.stop), free(c);
        return NULL;
    }
    memcpy(c->inputs, r->inputs, r->inputs_len + 1);
    memcpy(c->input_ids, r->input_ids, sizeof(int32_t) * (size_t)r->n_input);
    for (int i = 0; i < r->params.n_stop; i++)
        c->params.stop[i] = strdup(r->params.stop[i]);
    return c;
}

void gen_request_free(gen_request *r) {
    if (!r) return;
    free(r->inputs);
    free(r->input_ids);
    strings_free(r->params.stop, r->params.n_stop);
    free(r);
}

const char *finish_reason_name(finish_reason r) {
    switch (r) {
    case FINISH_EOS_TOKEN:
        return "eos_token";
    case FINISH_STOP_SEQUENCE:
        return "stop_sequence";
    default:
        return "length";
    }
}

const char *gen_error_type(gen_error_kind k) {
    switch (k) {
    case GEN_ERR_VALIDATION:
        return "validation";
    case GEN_ERR_OVERLOADED:
        return "overloaded";
    case GEN_ERR_GENERATION:
        return "generation";
    case GEN_ERR_INCOMPLETE:
        return "incomplete_generation";
    default:
        return "healthcheck";
    }
}

int gen_error_http_status(gen_error_kind k) {
    switch (k) {
    case GEN_ERR_VALIDATION:
        return 422;
    case GEN_ERR_OVERLOADED:
        return 429;
    case GEN_ERR_GENERATION:
        return 424;
    case GEN_ERR_INCOMPLETE:
        return 500;
    default:
        return 503;
    }
}

const char *gen_error_public(gen_error_kind k, const char *msg) {
    if (k == GEN_ERR_VALIDATION || k == GEN_ERR_OVERLOADED) return msg;
    // A path (a socket, a model file) marks a message about the server's insides.
    if (!strchr(msg, '/')) return msg;
    switch (k) {
    case GEN_ERR_GENERATION:
        return "Request failed during generation: internal error (details in the server log)";
    case GEN_ERR_INCOMPLETE:
        return "Incomplete generation";
    default:
        return "the model server is unavailable";
    }
}

gen_event *gen_event_error(gen_error_kind kind, const char *msg) {
    gen_event *ev = calloc(1, sizeof *ev);
    if (!ev) return NULL;
    ev->kind = GEN_EVENT_ERROR;
    ev->error_kind = kind;
    ev->error = strdup(msg);
    ev->token.logprob = NAN;
    return ev;
}

void gen_event_free(gen_event *ev) {
    if (!ev) return;
    free(ev->token.text);
    for (int i = 0; i < ev->n_prefill; i++)
        free(ev->prefill[i].text);
    free(ev->prefill);
    free(ev->generated_text);
    free(ev->error);
    free(ev);
}

double time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
