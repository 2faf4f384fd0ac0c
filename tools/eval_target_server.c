// eval_target on a TGI-compatible server (--server http://host:port): falconlite-router or TGI
// 0.9.2 itself. Greedy generation is POST /generate with do_sample false; prompt logprobs come
// from `details.prefill` (decoder_input_details: one entry per prompt token, the first with a
// null logprob). Token counts come from POST /tokenize when the server has it (TGI >= 1.x), else
// from the length of `details.prefill` (TGI 0.9.2 and falconlite-router have no /tokenize).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/eval.h"
#include "tools/http_client.h"

typedef struct server_target {
    eval_target base;
    http_client *http;
    int has_tokenize; // POST /tokenize answered with a JSON array
} server_target;

// POSTs body to path and parses the JSON answer; a non-2xx status becomes an error with the
// server's own message (TGI: {"error": ..., "error_type": ...}).
static fl_code post_json(server_target *s, const char *path, cJSON *body, cJSON **out,
                         int *status, fl_error *err) {
    char *text = cJSON_PrintUnformatted(body);
    if (!text) return fl_error_set(err, FL_ENOMEM, "out of memory");
    http_response r;
    fl_code rc = http_client_request(s->http, "POST", path, "application/json", text,
                                     strlen(text), &r, err);
    free(text);
    *out = NULL;
    if (rc) return rc;
    if (status) *status = r.status;
    cJSON *j = cJSON_ParseWithLength(r.body, r.body_len);
    if (r.status < 200 || r.status > 299) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        const cJSON *et = cJSON_GetObjectItemCaseSensitive(j, "error_type");
        if (status && r.status == 404) rc = FL_ENOTFOUND; // the caller probes for a route
        else if (cJSON_IsString(e))
            rc = fl_error_set(err, FL_EINVAL, "%s%s: HTTP %d (%s): %s", http_client_url(s->http),
                              path, r.status, cJSON_IsString(et) ? et->valuestring : "error",
                              e->valuestring);
        else
            rc = fl_error_set(err, FL_EIO, "%s%s: HTTP %d: %.200s", http_client_url(s->http),
                              path, r.status, r.body_len ? r.body : "(empty body)");
        cJSON_Delete(j);
    } else if (!j) {
        rc = fl_error_set(err, FL_EFORMAT, "%s%s: the answer is not JSON: %.200s",
                          http_client_url(s->http), path, r.body);
    } else {
        *out = j;
    }
    http_response_clear(&r);
    return rc;
}

// POST /generate {"inputs": prompt, "parameters": {max_new_tokens, do_sample false, details,
// decoder_input_details}} -> the answer's JSON.
static fl_code generate_call(server_target *s, const char *prompt, int max_new, int prefill,
                             cJSON **out, fl_error *err) {
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "inputs", prompt);
    cJSON *p = cJSON_AddObjectToObject(body, "parameters");
    cJSON_AddNumberToObject(p, "max_new_tokens", max_new);
    cJSON_AddBoolToObject(p, "do_sample", 0);
    cJSON_AddBoolToObject(p, "details", 1);
    cJSON_AddBoolToObject(p, "decoder_input_details", prefill);
    fl_code rc = post_json(s, "/generate", body, out, NULL, err);
    cJSON_Delete(body);
    return rc;
}

static const cJSON *prefill_of(const cJSON *answer, const char *url, fl_error *err) {
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(answer, "details");
    const cJSON *pf = cJSON_GetObjectItemCaseSensitive(d, "prefill");
    if (!cJSON_IsArray(pf) || !cJSON_GetArraySize(pf)) {
        fl_error_set(err, FL_EFORMAT,
                     "%s/generate: no details.prefill tokens in the answer (does the server "
                     "support decoder_input_details?)",
                     url);
        return NULL;
    }
    return pf;
}

static fl_code server_count_tokens(eval_target *t, const char *text, int *n, fl_error *err) {
    server_target *s = (server_target *)t;
    cJSON *ans = NULL;
    fl_code rc;
    if (s->has_tokenize) {
        cJSON *body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "inputs", text);
        rc = post_json(s, "/tokenize", body, &ans, NULL, err);
        cJSON_Delete(body);
        if (!rc) *n = cJSON_GetArraySize(ans);
    } else {
        rc = generate_call(s, text, 1, 1, &ans, err);
        const cJSON *pf = rc ? NULL : prefill_of(ans, http_client_url(s->http), err);
        if (!rc && !pf) rc = FL_EFORMAT;
        if (!rc) *n = cJSON_GetArraySize(pf);
    }
    cJSON_Delete(ans);
    return rc;
}

static fl_code server_generate(eval_target *t, const char *prompt, int max_new, char **text,
                               int *n_prompt, fl_error *err) {
    server_target *s = (server_target *)t;
    cJSON *ans = NULL;
    *text = NULL;
    fl_code rc = s->has_tokenize ? server_count_tokens(t, prompt, n_prompt, err) : FL_OK;
    if (!rc) rc = generate_call(s, prompt, max_new, !s->has_tokenize, &ans, err);
    if (!rc && !s->has_tokenize) {
        const cJSON *pf = prefill_of(ans, http_client_url(s->http), err);
        if (!pf) rc = FL_EFORMAT;
        else
            *n_prompt = cJSON_GetArraySize(pf);
    }
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(ans, "generated_text");
    if (!rc && !cJSON_IsString(g))
        rc = fl_error_set(err, FL_EFORMAT, "%s/generate: no generated_text in the answer",
                          http_client_url(s->http));
    if (!rc && !(*text = strdup(g->valuestring))) rc = fl_error_set(err, FL_ENOMEM, "out of memory");
    cJSON_Delete(ans);
    return rc;
}

static fl_code server_prompt_logprobs(eval_target *t, const char *prompt, float **lp, int *n,
                                      fl_error *err) {
    server_target *s = (server_target *)t;
    cJSON *ans = NULL;
    *lp = NULL;
    fl_code rc = generate_call(s, prompt, 1, 1, &ans, err);
    const cJSON *pf = rc ? NULL : prefill_of(ans, http_client_url(s->http), err);
    if (!rc && !pf) rc = FL_EFORMAT;
    if (!rc) {
        *n = cJSON_GetArraySize(pf);
        if (!(*lp = malloc(sizeof **lp * *n))) rc = fl_error_set(err, FL_ENOMEM, "out of memory");
    }
    int i = 0;
    const cJSON *tok, *list = rc ? NULL : pf;
    cJSON_ArrayForEach(tok, list) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(tok, "logprob");
        if (i > 0 && !cJSON_IsNumber(v)) {
            rc = fl_error_set(err, FL_EFORMAT, "%s/generate: prefill token %d has no logprob",
                              http_client_url(s->http), i);
            break;
        }
        (*lp)[i] = i == 0 ? NAN : (float)v->valuedouble;
        i++;
    }
    if (rc) {
        free(*lp);
        *lp = NULL;
    }
    cJSON_Delete(ans);
    return rc;
}

static void server_describe(eval_target *t, cJSON *report) {
    server_target *s = (server_target *)t;
    cJSON *d = cJSON_AddObjectToObject(report, "target");
    cJSON_AddStringToObject(d, "kind", "server");
    cJSON_AddStringToObject(d, "url", http_client_url(s->http));
    cJSON_AddStringToObject(d, "token_counts", s->has_tokenize ? "/tokenize" : "details.prefill");
}

static void server_free(eval_target *t) {
    server_target *s = (server_target *)t;
    http_client_free(s->http);
    free(s);
}

fl_code eval_target_server_create(const char *url, int timeout_s, eval_target **out,
                                  fl_error *err) {
    *out = NULL;
    server_target *s = calloc(1, sizeof *s);
    if (!s) return fl_error_set(err, FL_ENOMEM, "out of memory");
    s->base = (eval_target){server_generate, server_prompt_logprobs, server_count_tokens,
                            server_describe, server_free, NULL};
    fl_code rc = http_client_create(url, timeout_s * 1000, &s->http, err);
    if (rc) {
        free(s);
        return rc;
    }
    // Probe POST /tokenize: a JSON array answer means token counts cost no prefill.
    cJSON *body = cJSON_CreateObject(), *ans = NULL;
    cJSON_AddStringToObject(body, "inputs", "falconlite");
    int status = 0;
    fl_error probe = {0};
    rc = post_json(s, "/tokenize", body, &ans, &status, &probe);
    cJSON_Delete(body);
    s->has_tokenize = !rc && cJSON_IsArray(ans);
    cJSON_Delete(ans);
    if (rc && status == 0) { // no HTTP answer at all: the server is not there
        *err = probe;
        server_free(&s->base);
        return fl_error_wrap(err, "eval --server");
    }
    *out = &s->base;
    return FL_OK;
}
