#include "router/openai_api.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_util.h"
#include <time.h>

#include "router/validate.h"

// ---- errors ---------------------------------------------------------------------------------

void openai_error_set(openai_error *err, int status, const char *param, const char *code,
                      const char *fmt, ...) {
    err->status = status;
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

void openai_error_from_gen(gen_error_kind kind, const char *msg, openai_error *err) {
    // OpenAI answers invalid parameters with 400 where TGI says 422.
    static const struct {
        int status;
        const char *code;
    } map[] = {
        [GEN_ERR_VALIDATION] = {400, NULL},
        [GEN_ERR_OVERLOADED] = {429, "rate_limit_exceeded"},
        [GEN_ERR_GENERATION] = {500, "generation_failed"},
        [GEN_ERR_INCOMPLETE] = {500, "incomplete_generation"},
        [GEN_ERR_UNHEALTHY] = {503, "service_unavailable"},
    };
    int k = kind >= GEN_ERR_VALIDATION && kind <= GEN_ERR_UNHEALTHY ? kind : GEN_ERR_UNHEALTHY;
    openai_error_set(err, map[k].status, NULL, map[k].code, "%s", gen_error_public(kind, msg));
}

static const char *error_type(int status) {
    switch (status) {
    case 429:
        return "rate_limit_error";
    case 500:
    case 503:
        return "server_error";
    default:
        return "invalid_request_error";
    }
}



char *openai_error_json(const openai_error *err) {
    cJSON *root = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", err->message);
    cJSON_AddStringToObject(e, "type", error_type(err->status));
    json_add_string_or_null(e, "param", err->param);
    json_add_string_or_null(e, "code", err->code);
    return json_print_free(root);
}

// ---- parsing --------------------------------------------------------------------------------

static const char *type_name(const cJSON *v) {
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "null";
}

static bool bad_type(openai_error *err, const char *field, const char *expected, const cJSON *v) {
    openai_error_set(err, 400, field, "invalid_type",
                     "Invalid type for '%s': expected %s, but got %s instead.", field, expected,
                     type_name(v));
    return false;
}

static bool bad_value(openai_error *err, const char *field, const char *what) {
    openai_error_set(err, 400, field, "invalid_value", "Invalid value for '%s': %s", field, what);
    return false;
}

// A field of root (absent and null are the same: *v NULL).
static const cJSON *field(const cJSON *root, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static bool get_number(const cJSON *root, const char *name, bool *has, double *out,
                       openai_error *err) {
    const cJSON *v = field(root, name);
    if (!v) return true;
    if (!cJSON_IsNumber(v)) return bad_type(err, name, "a number", v);
    *has = true;
    *out = v->valuedouble;
    return true;
}

static bool get_int(const cJSON *root, const char *name, double lo, double hi, bool *has,
                    int64_t *out, openai_error *err) {
    const cJSON *v = field(root, name);
    if (!v) return true;
    if (!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble)
        return bad_type(err, name, "an integer", v);
    if (v->valuedouble < lo || v->valuedouble > hi) {
        openai_error_set(err, 400, name, "invalid_value",
                         "Invalid value for '%s': must be between %.0f and %.0f.", name, lo, hi);
        return false;
    }
    *has = true;
    *out = (int64_t)v->valuedouble;
    return true;
}

static bool get_bool(const cJSON *root, const char *name, bool *out, openai_error *err) {
    const cJSON *v = field(root, name);
    if (!v) return true;
    if (!cJSON_IsBool(v)) return bad_type(err, name, "a boolean", v);
    *out = cJSON_IsTrue(v);
    return true;
}

// A text field: a valid UTF-8 string (cJSON keeps the bytes a client sent).
static bool get_text(const cJSON *v, const char *name, const char **out, openai_error *err) {
    if (!cJSON_IsString(v)) return bad_type(err, name, "a string", v);
    if (!validate_utf8(v->valuestring, strlen(v->valuestring)))
        return bad_value(err, name, "must be valid UTF-8.");
    *out = v->valuestring;
    return true;
}

static bool strings_push(char ***v, int *n, const char *s) {
    char **p = realloc(*v, sizeof *p * (size_t)(*n + 1));
    if (!p) return false;
    *v = p;
    if (!(p[*n] = strdup(s))) return false;
    (*n)++;
    return true;
}

// "stop": a string or an array of strings.
static bool parse_stop(const cJSON *root, openai_request *r, openai_error *err) {
    const cJSON *v = field(root, "stop");
    if (!v) return true;
    const cJSON *item;
    if (cJSON_IsString(v)) {
        const char *s;
        if (!get_text(v, "stop", &s, err)) return false;
        if (*s && !strings_push(&r->stop, &r->n_stop, s)) goto oom;
        return true;
    }
    if (!cJSON_IsArray(v)) return bad_type(err, "stop", "a string or an array of strings", v);
    cJSON_ArrayForEach(item, v) {
        const char *s;
        if (!get_text(item, "stop", &s, err)) return false;
        if (*s && !strings_push(&r->stop, &r->n_stop, s)) goto oom;
    }
    return true;
oom:
    openai_error_set(err, 500, NULL, NULL, "out of memory");
    return false;
}

// A message's content: a string, or an array of {"type": "text", "text": ...} parts (joined).
static bool message_text(const cJSON *content, char **out, openai_error *err) {
    const char *s;
    if (cJSON_IsString(content)) {
        if (!get_text(content, "messages.content", &s, err)) return false;
        *out = strdup(s);
        return *out != NULL;
    }
    if (!cJSON_IsArray(content))
        return bad_type(err, "messages.content", "a string or an array of text parts", content);
    size_t len = 0;
    char *text = calloc(1, 1);
    const cJSON *part;
    cJSON_ArrayForEach(part, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text")) {
            free(text);
            return bad_value(err, "messages.content", "only text parts are supported.");
        }
        if (!get_text(cJSON_GetObjectItemCaseSensitive(part, "text"), "messages.content.text", &s,
                      err)) {
            free(text);
            return false;
        }
        char *t = text ? realloc(text, len + strlen(s) + 1) : NULL;
        if (!t) {
            free(text);
            return false;
        }
        text = t;
        memcpy(text + len, s, strlen(s) + 1);
        len += strlen(s);
    }
    *out = text;
    return text != NULL;
}

// The messages through the chat template: an optional system (or developer) message, then one
// user message, which is what the template renders.
static bool parse_messages(const cJSON *root, const chat_template *tmpl, char **prompt,
                           openai_error *err) {
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!msgs) {
        openai_error_set(err, 400, "messages", "missing_required_parameter",
                         "Missing required parameter: 'messages'.");
        return false;
    }
    if (!cJSON_IsArray(msgs)) return bad_type(err, "messages", "an array", msgs);
    int n = cJSON_GetArraySize(msgs);
    const char *roles[2] = {NULL, NULL};
    const cJSON *contents[2] = {NULL, NULL};
    if (n < 1 || n > 2) goto unsupported;
    for (int i = 0; i < n; i++) {
        const cJSON *m = cJSON_GetArrayItem(msgs, i);
        if (!cJSON_IsObject(m)) return bad_type(err, "messages", "an array of objects", m);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsString(role)) return bad_type(err, "messages.role", "a string", role);
        roles[i] = role->valuestring;
        contents[i] = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!contents[i] || cJSON_IsNull(contents[i])) {
            openai_error_set(err, 400, "messages.content", "missing_required_parameter",
                             "Missing required parameter: 'messages.content'.");
            return false;
        }
    }
    bool with_system = n == 2;
    if (with_system && strcmp(roles[0], "system") && strcmp(roles[0], "developer"))
        goto unsupported;
    if (strcmp(roles[n - 1], "user")) goto unsupported;
    char *system = NULL, *user = NULL;
    bool ok = (!with_system || message_text(contents[0], &system, err)) &&
              message_text(contents[n - 1], &user, err);
    if (ok && system && chat_template_format(tmpl) == CHAT_FORMAT_NONE) {
        ok = bad_value(err, "messages",
                       "this model has no chat template: system messages are not supported.");
    }
    fl_error ferr = {0};
    if (ok && chat_template_apply(tmpl, system, user, prompt, &ferr) != FL_OK)
        ok = (openai_error_set(err, 500, NULL, NULL, "%s", ferr.msg), false);
    free(system);
    free(user);
    return ok;
unsupported:
    return bad_value(err, "messages",
                     "this server renders one user message, optionally after one system "
                     "message (multi-turn conversations are not supported).");
}

// Parameters this server cannot honour are refused unless they ask for the default.
static bool refuse_unsupported(const cJSON *root, openai_kind kind, openai_error *err) {
    static const char *const zero_only[] = {"presence_penalty", "frequency_penalty"};
    for (size_t i = 0; i < sizeof zero_only / sizeof zero_only[0]; i++) {
        bool has = false;
        double v = 0;
        if (!get_number(root, zero_only[i], &has, &v, err)) return false;
        if (has && v != 0)
            return bad_value(err, zero_only[i], "only 0 is supported by this server.");
    }
    const cJSON *bias = field(root, "logit_bias");
    if (bias && !(cJSON_IsObject(bias) && !bias->child))
        return bad_value(err, "logit_bias", "not supported by this server.");
    const cJSON *tools = field(root, "tools");
    if (tools && !(cJSON_IsArray(tools) && !tools->child))
        return bad_value(err, "tools", "not supported by this server.");
    if (kind == OPENAI_COMPLETION) {
        bool echo = false;
        if (!get_bool(root, "echo", &echo, err)) return false;
        if (echo) return bad_value(err, "echo", "only false is supported by this server.");
        const cJSON *suffix = field(root, "suffix");
        if (suffix && !(cJSON_IsString(suffix) && !*suffix->valuestring))
            return bad_value(err, "suffix", "not supported by this server.");
    }
    return true;
}

// OpenAI's sampling parameters in TGI's terms: temperature 0 is greedy (no warper), top_p 1 is
// off; the rest goes to the shared validation.
static bool parse_sampling(const cJSON *root, openai_request *r, const openai_limits *lim,
                           openai_error *err) {
    gen_params_in *p = &r->in.params;
    bool has_t = false, has_p = false;
    double t = 1, top_p = 1;
    if (!get_number(root, "temperature", &has_t, &t, err)) return false;
    if (!get_number(root, "top_p", &has_p, &top_p, err)) return false;
    if (has_t && !(t >= 0 && t <= 2)) return bad_value(err, "temperature", "must be in [0, 2].");
    if (has_p && !(top_p > 0 && top_p <= 1)) return bad_value(err, "top_p", "must be in (0, 1].");
    p->do_sample = !has_t || t > 0;
    if (has_t && t > 0 && t != 1) p->has_temperature = true, p->temperature = t;
    if (has_p && top_p < 1 && p->do_sample) p->has_top_p = true, p->top_p = top_p;
    int64_t seed = 0, n = 1;
    if (!get_int(root, "seed", -9.2e18, 9.2e18, &p->has_seed, &seed, err)) return false;
    p->seed = (uint64_t)seed;
    bool has_n = false;
    if (!get_int(root, "n", 1, lim->max_n, &has_n, &n, err)) return false;
    r->n = (int)n;
    bool has_max = false;
    int64_t max_tokens = 0;
    const char *max_name = field(root, "max_completion_tokens") ? "max_completion_tokens"
                                                                 : "max_tokens";
    if (!get_int(root, max_name, 1, 4294967295.0, &has_max, &max_tokens, err)) return false;
    p->has_max_new_tokens = true;
    p->max_new_tokens = has_max ? max_tokens : lim->default_max_tokens;
    return true;
}

// logprobs: chat has a boolean and top_logprobs, completions an integer (the number of
// alternatives). The shards report the chosen token's logprob only: alternatives are refused.
static bool parse_logprobs(const cJSON *root, openai_request *r, openai_error *err) {
    bool has = false;
    int64_t k = 0;
    if (r->kind == OPENAI_CHAT) {
        if (!get_bool(root, "logprobs", &r->logprobs, err)) return false;
        if (!get_int(root, "top_logprobs", 0, 20, &has, &k, err)) return false;
        if (k > 0)
            return bad_value(err, "top_logprobs",
                             "this server reports the chosen token's logprob only: use 0.");
        return true;
    }
    if (!get_int(root, "logprobs", 0, 5, &has, &k, err)) return false;
    if (k > 0)
        return bad_value(err, "logprobs",
                         "this server reports the chosen token's logprob only: use 0.");
    r->logprobs = has;
    return true;
}

static bool parse_stream(const cJSON *root, openai_request *r, openai_error *err) {
    if (!get_bool(root, "stream", &r->stream, err)) return false;
    const cJSON *opts = field(root, "stream_options");
    if (!opts) return true;
    if (!cJSON_IsObject(opts)) return bad_type(err, "stream_options", "an object", opts);
    if (!r->stream)
        return bad_value(err, "stream_options", "only allowed when 'stream' is true.");
    return get_bool(opts, "include_usage", &r->include_usage, err);
}

static bool parse_prompt(const cJSON *root, char **prompt, openai_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (!v) {
        openai_error_set(err, 400, "prompt", "missing_required_parameter",
                         "Missing required parameter: 'prompt'.");
        return false;
    }
    // A one-element array is the same prompt; several prompts would be several requests.
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1) v = v->child;
    const char *s;
    if (!cJSON_IsString(v)) return bad_type(err, "prompt", "a string", v);
    if (!get_text(v, "prompt", &s, err)) return false;
    *prompt = strdup(s);
    return *prompt != NULL;
}

bool openai_parse(openai_kind kind, const char *body, size_t len, const openai_limits *lim,
                  const chat_template *tmpl, openai_request *out, openai_error *err) {
    memset(out, 0, sizeof *out);
    gen_request_in_init(&out->in);
    out->kind = kind;
    out->n = 1;
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root) {
        openai_error_set(err, 400, NULL, NULL,
                         "We could not parse the JSON body of your request. (The request body "
                         "is not valid JSON.)");
        return false;
    }
    bool ok;
    char *prompt = NULL;
    if (!cJSON_IsObject(root)) {
        ok = bad_type(err, "body", "an object", root);
    } else {
        const cJSON *model = field(root, "model");
        ok = (!model || cJSON_IsString(model) || bad_type(err, "model", "a string", model)) &&
             (kind == OPENAI_CHAT ? parse_messages(root, tmpl, &prompt, err)
                                  : parse_prompt(root, &prompt, err)) &&
             refuse_unsupported(root, kind, err) && parse_sampling(root, out, lim, err) &&
             parse_logprobs(root, out, err) && parse_stream(root, out, err) &&
             parse_stop(root, out, err);
    }
    cJSON_Delete(root);
    for (int i = 0; ok && i < out->n_stop; i++)
        ok = strings_push(&out->in.params.stop, &out->in.params.n_stop, out->stop[i]);
    if (ok) {
        out->in.inputs = prompt;
        out->in.inputs_len = strlen(prompt);
        prompt = NULL;
    }
    free(prompt);
    if (!ok) {
        if (!err->status) openai_error_set(err, 500, NULL, NULL, "out of memory");
        openai_request_clear(out);
    }
    return ok;
}

void openai_request_clear(openai_request *r) {
    gen_request_in_clear(&r->in);
    for (int i = 0; i < r->n_stop; i++)
        free(r->stop[i]);
    free(r->stop);
    r->stop = NULL;
    r->n_stop = 0;
}

bool openai_request_choice(const openai_request *r, int i, gen_request_in *out) {
    *out = r->in;
    out->inputs = strdup(r->in.inputs ? r->in.inputs : "");
    out->params.stop = NULL;
    out->params.n_stop = 0;
    bool ok = out->inputs != NULL;
    for (int k = 0; ok && k < r->in.params.n_stop; k++)
        ok = strings_push(&out->params.stop, &out->params.n_stop, r->in.params.stop[k]);
    if (r->in.params.has_seed) out->params.seed = r->in.params.seed + (uint64_t)i;
    if (!ok) gen_request_in_clear(out);
    return ok;
}

// ---- responses ------------------------------------------------------------------------------

void openai_meta_init(openai_meta *m, openai_kind kind, const char *model) {
    uint64_t rnd = validate_random_seed();
    snprintf(m->id, sizeof m->id, "%s-%016llx", kind == OPENAI_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)rnd);
    m->created = (long)time(NULL);
    m->model = model;
}

static const char *finish_name(finish_reason f) {
    return f == FINISH_LENGTH ? "length" : "stop";
}

// The stop sequence the text ends with (OpenAI leaves it out), or 0.
static size_t stop_suffix(const openai_request *r, const char *text, size_t len) {
    for (int i = 0; i < r->n_stop; i++) {
        size_t n = strlen(r->stop[i]);
        if (n <= len && !memcmp(text + len - n, r->stop[i], n)) return n;
    }
    return 0;
}

static cJSON *object_head(const openai_request *r, const openai_meta *m, bool chunk) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", m->id);
    cJSON_AddStringToObject(o, "object", r->kind == OPENAI_COMPLETION ? "text_completion"
                                         : chunk                      ? "chat.completion.chunk"
                                                                      : "chat.completion");
    cJSON_AddNumberToObject(o, "created", (double)m->created);
    cJSON_AddStringToObject(o, "model", m->model);
    cJSON_AddStringToObject(o, "system_fingerprint", "falconlite");
    return o;
}

static cJSON *usage_json(int prompt, int completion) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", completion);
    cJSON_AddNumberToObject(u, "total_tokens", prompt + completion);
    return u;
}

static cJSON *bytes_json(const char *s) {
    cJSON *a = cJSON_CreateArray();
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(*p));
    return a;
}

static double logprob_of(const gen_token *t) {
    return isnan(t->logprob) ? 0.0 : t->logprob;
}

// The logprobs object of tokens t[0..n): chat {"content": [...]}, completions {"tokens",
// "token_logprobs", "top_logprobs", "text_offset"} (offset: where each token starts in the
// choice's text, from base).
static cJSON *logprobs_json(const openai_request *r, const gen_token *t, int n, size_t base) {
    cJSON *o = cJSON_CreateObject();
    if (r->kind == OPENAI_CHAT) {
        cJSON *content = cJSON_AddArrayToObject(o, "content");
        for (int i = 0; i < n; i++) {
            cJSON *e = cJSON_CreateObject();
            const char *text = t[i].text ? t[i].text : "";
            cJSON_AddStringToObject(e, "token", text);
            cJSON_AddNumberToObject(e, "logprob", logprob_of(&t[i]));
            cJSON_AddItemToObject(e, "bytes", bytes_json(text));
            cJSON_AddArrayToObject(e, "top_logprobs");
            cJSON_AddItemToArray(content, e);
        }
        return o;
    }
    cJSON *tokens = cJSON_AddArrayToObject(o, "tokens");
    cJSON *lps = cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON *tops = cJSON_AddArrayToObject(o, "top_logprobs");
    cJSON *offs = cJSON_AddArrayToObject(o, "text_offset");
    size_t off = base;
    for (int i = 0; i < n; i++) {
        const char *text = t[i].text ? t[i].text : "";
        cJSON_AddItemToArray(tokens, cJSON_CreateString(text));
        cJSON_AddItemToArray(lps, cJSON_CreateNumber(logprob_of(&t[i])));
        cJSON_AddItemToArray(tops, cJSON_CreateNull());
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += strlen(text);
    }
    return o;
}

// A choice: chat {"index", "message" | "delta", "logprobs", "finish_reason"}, completions
// {"index", "text", "logprobs", "finish_reason"}. text NULL: a chat delta without content.
static cJSON *choice_json(const openai_request *r, int index, bool chunk, const char *role,
                          const char *text, cJSON *logprobs, const char *finish) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", index);
    if (r->kind == OPENAI_CHAT) {
        cJSON *msg = cJSON_AddObjectToObject(c, chunk ? "delta" : "message");
        if (role) cJSON_AddStringToObject(msg, "role", role);
        if (text) cJSON_AddStringToObject(msg, "content", text);
    } else {
        cJSON_AddStringToObject(c, "text", text ? text : "");
    }
    if (logprobs)
        cJSON_AddItemToObject(c, "logprobs", logprobs);
    else
        cJSON_AddNullToObject(c, "logprobs");
    json_add_string_or_null(c, "finish_reason", finish);
    return c;
}

char *openai_response_json(const openai_request *r, const openai_meta *m,
                           const gen_result *const *results) {
    cJSON *o = object_head(r, m, false);
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    int prompt = 0, completion = 0;
    for (int i = 0; i < r->n; i++) {
        const gen_result *res = results[i];
        const char *text = res->generated_text ? res->generated_text : "";
        size_t len = strlen(text);
        if (res->finish == FINISH_STOP_SEQUENCE) len -= stop_suffix(r, text, len);
        char *out = strndup(text, len);
        cJSON *lp = r->logprobs ? logprobs_json(r, res->tokens, res->n_tokens, 0) : NULL;
        cJSON_AddItemToArray(choices, choice_json(r, i, false, "assistant", out ? out : "", lp,
                                                  finish_name(res->finish)));
        free(out);
        prompt = res->n_input;
        completion += (int)res->generated_tokens;
    }
    cJSON_AddItemToObject(o, "usage", usage_json(prompt, completion));
    return json_print_free(o);
}

char *openai_models_json(const char *model, long created) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", model);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)created);
    cJSON_AddStringToObject(m, "owned_by", "falconlite");
    cJSON_AddItemToArray(data, m);
    return json_print_free(o);
}

// ---- streaming ------------------------------------------------------------------------------

void openai_choice_stream_clear(openai_choice_stream *s) {
    free(s->text);
    memset(s, 0, sizeof *s);
}

static bool stream_append(openai_choice_stream *s, const char *t) {
    size_t n = strlen(t);
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *p = realloc(s->text, cap);
        if (!p) return false;
        s->text = p;
        s->cap = cap;
    }
    memcpy(s->text + s->len, t, n + 1);
    s->len += n;
    return true;
}

// How much of the text may go out: all but a tail that could still grow into a stop sequence.
static size_t stream_safe_len(const openai_request *r, const openai_choice_stream *s) {
    size_t hold = 0;
    for (int i = 0; i < r->n_stop; i++) {
        size_t n = strlen(r->stop[i]);
        for (size_t k = n - 1; k > hold && k > 0; k--)
            if (k <= s->len && !memcmp(s->text + s->len - k, r->stop[i], k)) {
                hold = k;
                break;
            }
    }
    return s->len - hold;
}

static char *chunk_json(const openai_request *r, const openai_meta *m, cJSON *choice) {
    cJSON *o = object_head(r, m, true);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), choice);
    if (r->include_usage) cJSON_AddNullToObject(o, "usage");
    return json_print_free(o);
}

char *openai_chunk_role(const openai_request *r, const openai_meta *m, int choice) {
    return chunk_json(r, m, choice_json(r, choice, true, "assistant", "", NULL, NULL));
}

char *openai_chunk_event(const openai_request *r, const openai_meta *m, int choice,
                         openai_choice_stream *s, const gen_event *ev) {
    if (s->ended || (ev->kind != GEN_EVENT_TOKEN && ev->kind != GEN_EVENT_END)) return NULL;
    size_t base = s->sent;
    size_t upto;
    const char *from;
    if (ev->kind == GEN_EVENT_TOKEN) {
        // Special tokens' text is not part of the output.
        if (!ev->token.special && ev->token.text && !stream_append(s, ev->token.text)) return NULL;
        upto = stream_safe_len(r, s);
        from = s->text;
    } else {
        // The final text (special tokens skipped, the stop sequence left out).
        from = ev->generated_text ? ev->generated_text : "";
        upto = strlen(from);
        if (ev->finish == FINISH_STOP_SEQUENCE) upto -= stop_suffix(r, from, upto);
        if (upto < s->sent || (s->sent && (!s->text || memcmp(from, s->text, s->sent))))
            upto = s->sent; // the final text does not extend what went out: nothing more
        s->ended = true;
    }
    char *delta = strndup(from ? from + base : "", upto > base ? upto - base : 0);
    if (!delta) return NULL;
    s->sent = upto > base ? upto : base;
    bool end = ev->kind == GEN_EVENT_END;
    if (!*delta && !end && !r->logprobs) {
        free(delta);
        return NULL;
    }
    cJSON *lp = r->logprobs ? logprobs_json(r, &ev->token, 1, base) : NULL;
    char *json = chunk_json(r, m,
                            choice_json(r, choice, true, NULL, *delta || !end ? delta : NULL, lp,
                                        end ? finish_name(ev->finish) : NULL));
    free(delta);
    return json;
}

char *openai_chunk_usage(const openai_request *r, const openai_meta *m, int prompt_tokens,
                         int completion_tokens) {
    cJSON *o = object_head(r, m, true);
    cJSON_AddArrayToObject(o, "choices");
    cJSON_AddItemToObject(o, "usage", usage_json(prompt_tokens, completion_tokens));
    return json_print_free(o);
}
