#include "router/api_json.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_util.h"

#define DESERIALIZE "Failed to deserialize the JSON body into the target type: "

static const char *json_type_name(const cJSON *v) {
    if (cJSON_IsString(v)) return "string";
    if (cJSON_IsNumber(v)) return "number";
    if (cJSON_IsBool(v)) return "boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "sequence";
    return "map";
}

static bool type_error(char *msg, size_t cap, const char *field, const cJSON *v,
                       const char *expected) {
    snprintf(msg, cap, DESERIALIZE "%s: invalid type: %s, expected %s", field, json_type_name(v),
             expected);
    return false;
}

// Optional integer in [lo, hi]: absent or null leaves *has false.
static bool get_int(const cJSON *obj, const char *name, double lo, double hi, bool nullable,
                    bool *has, int64_t *out, const char *type, char *msg, size_t cap) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    char field[64];
    snprintf(field, sizeof field, "parameters.%s", name);
    if (!v) return true;
    if (cJSON_IsNull(v)) {
        if (nullable) return true;
        return type_error(msg, cap, field, v, type);
    }
    if (!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble)
        return type_error(msg, cap, field, v, type);
    if (v->valuedouble < lo || v->valuedouble > hi) {
        snprintf(msg, cap, DESERIALIZE "%s: invalid value: integer `%.0f`, expected %s", field,
                 v->valuedouble, type);
        return false;
    }
    *has = true;
    // usize fields reach 1.8e19: past int64's range the value saturates (converting it would be
    // undefined; found by tests/fuzz/fuzz_http_json). Any such value is over every limit anyway.
    *out = v->valuedouble >= 9223372036854775808.0 ? INT64_MAX : (int64_t)v->valuedouble;
    return true;
}

static bool get_float(const cJSON *obj, const char *name, bool *has, double *out, char *msg,
                      size_t cap) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    char field[64];
    snprintf(field, sizeof field, "parameters.%s", name);
    if (!v || cJSON_IsNull(v)) return true;
    if (!cJSON_IsNumber(v)) return type_error(msg, cap, field, v, "f32");
    *has = true;
    *out = v->valuedouble;
    return true;
}

static bool get_bool(const cJSON *obj, const char *name, bool nullable, bool *out, char *msg,
                     size_t cap, const char *prefix) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    char field[64];
    snprintf(field, sizeof field, "%s%s", prefix, name);
    if (!v || (nullable && cJSON_IsNull(v))) return true;
    if (!cJSON_IsBool(v)) return type_error(msg, cap, field, v, "a boolean");
    *out = cJSON_IsTrue(v);
    return true;
}

static bool parse_params(const cJSON *p, gen_params_in *o, char *msg, size_t cap) {
    if (!get_int(p, "best_of", 0, 1.8e19, true, &o->has_best_of, &o->best_of, "usize", msg, cap))
        return false;
    if (!get_float(p, "temperature", &o->has_temperature, &o->temperature, msg, cap)) return false;
    if (!get_float(p, "repetition_penalty", &o->has_repetition_penalty, &o->repetition_penalty, msg,
                   cap))
        return false;
    if (!get_int(p, "top_k", -2147483648.0, 2147483647.0, true, &o->has_top_k, &o->top_k, "i32",
                 msg, cap))
        return false;
    if (!get_float(p, "top_p", &o->has_top_p, &o->top_p, msg, cap)) return false;
    if (!get_float(p, "typical_p", &o->has_typical_p, &o->typical_p, msg, cap)) return false;
    if (!get_bool(p, "do_sample", false, &o->do_sample, msg, cap, "parameters.")) return false;
    if (!get_int(p, "max_new_tokens", 0, 4294967295.0, false, &o->has_max_new_tokens,
                 &o->max_new_tokens, "u32", msg, cap))
        return false;
    if (!get_bool(p, "return_full_text", true, &o->return_full_text, msg, cap, "parameters."))
        return false;
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(p, "stop");
    if (stop && !cJSON_IsNull(stop)) {
        if (!cJSON_IsArray(stop))
            return type_error(msg, cap, "parameters.stop", stop, "a sequence");
        int n = cJSON_GetArraySize(stop);
        o->stop = calloc((size_t)n + 1, sizeof(char *));
        if (!o->stop) return false;
        const cJSON *s;
        cJSON_ArrayForEach(s, stop) {
            if (!cJSON_IsString(s)) return type_error(msg, cap, "parameters.stop", s, "a string");
            o->stop[o->n_stop++] = strdup(s->valuestring);
        }
    }
    if (!get_int(p, "truncate", 0, 1.8e19, true, &o->has_truncate, &o->truncate, "usize", msg, cap))
        return false;
    if (!get_bool(p, "watermark", false, &o->watermark, msg, cap, "parameters.")) return false;
    if (!get_bool(p, "details", false, &o->details, msg, cap, "parameters.")) return false;
    if (!get_bool(p, "decoder_input_details", false, &o->decoder_input_details, msg, cap,
                  "parameters."))
        return false;
    // falconlite extension, absent from TGI's schema: generate max_new_tokens past EOS.
    if (!get_bool(p, "ignore_eos", true, &o->ignore_eos, msg, cap, "parameters.")) return false;
    // cJSON reads numbers as doubles: seeds above 2^53 lose their low bits (clients use small
    // seeds; gRPC carries exact u64s).
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(p, "seed");
    if (seed && !cJSON_IsNull(seed)) {
        if (!cJSON_IsNumber(seed) || seed->valuedouble < 0 ||
            floor(seed->valuedouble) != seed->valuedouble)
            return type_error(msg, cap, "parameters.seed", seed, "u64");
        o->has_seed = true;
        o->seed =
            seed->valuedouble >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)seed->valuedouble;
    }
    return true;
}

json_parse_status api_json_parse_request(const char *body, size_t len, gen_request_in *out,
                                         bool *stream, char *msg, size_t cap) {
    gen_request_in_init(out);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!root) {
        snprintf(msg, cap, "Failed to parse the request body as JSON: syntax error at byte %ld",
                 end ? (long)(end - body) : 0L);
        return JSON_PARSE_SYNTAX;
    }
    json_parse_status st = JSON_PARSE_TYPE;
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(root, "inputs");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "parameters");
    if (!cJSON_IsObject(root)) {
        type_error(msg, cap, "body", root, "struct GenerateRequest");
    } else if (!inputs) {
        snprintf(msg, cap, DESERIALIZE "missing field `inputs`");
    } else if (!cJSON_IsString(inputs)) {
        type_error(msg, cap, "inputs", inputs, "a string");
    } else if (params && !cJSON_IsNull(params) && !cJSON_IsObject(params)) {
        type_error(msg, cap, "parameters", params, "struct GenerateParameters");
    } else if (params && cJSON_IsObject(params) && !parse_params(params, &out->params, msg, cap)) {
        // msg set
    } else if (stream && !get_bool(root, "stream", false, stream, msg, cap, "")) {
        // msg set
    } else {
        out->inputs = strdup(inputs->valuestring);
        out->inputs_len = strlen(inputs->valuestring);
        st = out->inputs ? JSON_PARSE_OK : JSON_PARSE_TYPE;
    }
    cJSON_Delete(root);
    if (st != JSON_PARSE_OK) gen_request_in_clear(out);
    return st;
}

bool api_json_parse_tokenize(const char *body, size_t len, const char **text, size_t *text_len,
                             char *msg, size_t cap) {
    *text = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!root) {
        snprintf(msg, cap, "Failed to parse the request body as JSON: syntax error at byte %ld",
                 end ? (long)(end - body) : 0L);
        return false;
    }
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(root, "inputs");
    bool special = true, ok = false;
    if (!cJSON_IsObject(root))
        type_error(msg, cap, "body", root, "struct TokenizeRequest");
    else if (!inputs)
        snprintf(msg, cap, DESERIALIZE "missing field `inputs`");
    else if (!cJSON_IsString(inputs))
        type_error(msg, cap, "inputs", inputs, "a string");
    else
        ok = get_bool(root, "add_special_tokens", true, &special, msg, cap, "");
    // The tokenizer adds no special tokens of its own: add_special_tokens changes nothing.
    char *copy = strdup(ok ? inputs->valuestring : "");
    cJSON_Delete(root);
    if (!copy) {
        snprintf(msg, cap, "out of memory");
        return false;
    }
    *text = copy;
    *text_len = strlen(copy);
    return ok;
}


char *api_json_error(const char *error, const char *error_type) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "error", error);
    cJSON_AddStringToObject(root, "error_type", error_type);
    return json_print_free(root);
}

static void add_logprob(cJSON *o, float lp) {
    if (isnan(lp))
        cJSON_AddNullToObject(o, "logprob");
    else
        cJSON_AddNumberToObject(o, "logprob", lp);
}

static cJSON *token_json(const gen_token *t, bool with_special) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", t->id);
    cJSON_AddStringToObject(o, "text", t->text ? t->text : "");
    add_logprob(o, t->logprob);
    if (with_special) cJSON_AddBoolToObject(o, "special", t->special);
    return o;
}

static cJSON *tokens_json(const gen_token *t, int n, bool with_special) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, token_json(&t[i], with_special));
    return a;
}

static void add_seed(cJSON *o, bool has, uint64_t seed) {
    if (!has) {
        cJSON_AddNullToObject(o, "seed");
        return;
    }
    // cJSON numbers are doubles; write the exact u64 as a raw literal.
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)seed);
    cJSON_AddRawToObject(o, "seed", buf);
}

static void add_result_fields(cJSON *o, const gen_result *r) {
    cJSON_AddStringToObject(o, "finish_reason", finish_reason_name(r->finish));
    cJSON_AddNumberToObject(o, "generated_tokens", r->generated_tokens);
    add_seed(o, r->has_seed, r->seed);
    cJSON_AddItemToObject(o, "prefill", tokens_json(r->prefill, r->n_prefill, false));
    cJSON_AddItemToObject(o, "tokens", tokens_json(r->tokens, r->n_tokens, true));
}

char *api_json_generate(const gen_outcome *o, bool details) {
    const gen_result *r = &o->results[0];
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "generated_text", r->generated_text ? r->generated_text : "");
    if (details) {
        cJSON *d = cJSON_CreateObject();
        add_result_fields(d, r);
        if (o->n_results > 1) {
            cJSON *seqs = cJSON_CreateArray();
            for (int i = 1; i < o->n_results; i++) {
                cJSON *s = cJSON_CreateObject();
                const gen_result *c = &o->results[i];
                cJSON_AddStringToObject(s, "generated_text",
                                        c->generated_text ? c->generated_text : "");
                add_result_fields(s, c);
                cJSON_AddItemToArray(seqs, s);
            }
            cJSON_AddItemToObject(d, "best_of_sequences", seqs);
        }
        cJSON_AddItemToObject(root, "details", d);
    }
    return json_print_free(root);
}

char *api_json_stream_event(const gen_event *ev, bool details) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "token", token_json(&ev->token, true));
    if (ev->kind == GEN_EVENT_END) {
        cJSON_AddStringToObject(root, "generated_text",
                                ev->generated_text ? ev->generated_text : "");
        if (details) {
            cJSON *d = cJSON_CreateObject();
            cJSON_AddStringToObject(d, "finish_reason", finish_reason_name(ev->finish));
            cJSON_AddNumberToObject(d, "generated_tokens", ev->generated_tokens);
            add_seed(d, ev->has_seed, ev->seed);
            cJSON_AddItemToObject(root, "details", d);
        } else {
            cJSON_AddNullToObject(root, "details");
        }
    } else {
        cJSON_AddNullToObject(root, "generated_text");
        cJSON_AddNullToObject(root, "details");
    }
    return json_print_free(root);
}


char *api_json_info(const server_info *in) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model_id", in->model_id);
    json_add_string_or_null(o, "model_sha", in->model_sha);
    cJSON_AddStringToObject(o, "model_dtype", in->model_dtype);
    cJSON_AddStringToObject(o, "model_device_type", in->model_device_type);
    json_add_string_or_null(o, "model_pipeline_tag", in->model_pipeline_tag);
    cJSON_AddNumberToObject(o, "max_concurrent_requests", in->max_concurrent_requests);
    cJSON_AddNumberToObject(o, "max_best_of", in->max_best_of);
    cJSON_AddNumberToObject(o, "max_stop_sequences", in->max_stop_sequences);
    cJSON_AddNumberToObject(o, "max_input_length", in->max_input_length);
    cJSON_AddNumberToObject(o, "max_total_tokens", in->max_total_tokens);
    cJSON_AddNumberToObject(o, "waiting_served_ratio", in->waiting_served_ratio);
    cJSON_AddNumberToObject(o, "max_batch_total_tokens", in->max_batch_total_tokens);
    cJSON_AddNumberToObject(o, "max_waiting_tokens", in->max_waiting_tokens);
    cJSON_AddNumberToObject(o, "validation_workers", in->validation_workers);
    cJSON_AddStringToObject(o, "version", in->version);
    json_add_string_or_null(o, "sha", in->sha);
    cJSON_AddNullToObject(o, "docker_label");
    return json_print_free(o);
}

char *api_json_tokens(const tokenizer *tok, const char *text, size_t len, const int32_t *ids,
                      int n) {
    cJSON *a = cJSON_CreateArray();
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t start = off < len ? off : len;
        off += tokenizer_token_bytes(tok, ids[i]);
        size_t stop = off < len ? off : len;
        char *piece = NULL;
        size_t piece_len = 0;
        // The token's own text (decoded alone, as TGI's text field).
        if (tokenizer_decode(tok, &ids[i], 1, 0, &piece, &piece_len, NULL) != FL_OK) piece = NULL;
        cJSON *t = cJSON_CreateObject();
        cJSON_AddNumberToObject(t, "id", ids[i]);
        cJSON_AddStringToObject(t, "text", piece ? piece : "");
        cJSON_AddNumberToObject(t, "start", (double)start);
        cJSON_AddNumberToObject(t, "stop", (double)stop);
        cJSON_AddItemToArray(a, t);
        free(piece);
    }
    return json_print_free(a);
}
