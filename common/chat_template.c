#include "common/chat_template.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json_util.h"

#define SMOLLM2_SYSTEM "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
#define OASST_EOS      "<|endoftext|>" // FalconLite's client writes it literally

struct chat_template {
    chat_format format;
    char *default_system; // NULL: no system turn unless the caller gives one
    char *bos, *eos;      // as the template's bos_token / eos_token render ("" when unset)
};

static char *str_dup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static fl_code template_new(chat_format f, const char *system, const char *bos, const char *eos,
                            chat_template **out, fl_error *err) {
    chat_template *t = calloc(1, sizeof *t);
    if (t) {
        t->format = f;
        t->bos = str_dup(bos);
        t->eos = str_dup(eos);
        t->default_system = system ? str_dup(system) : NULL;
    }
    if (!t || !t->bos || !t->eos || (system && !t->default_system)) {
        chat_template_free(t);
        return fl_error_set(err, FL_ENOMEM, "chat template: out of memory");
    }
    *out = t;
    return FL_OK;
}

void chat_template_free(chat_template *t) {
    if (!t) return;
    free(t->default_system);
    free(t->bos);
    free(t->eos);
    free(t);
}

chat_format chat_template_format(const chat_template *t) {
    return t->format;
}

const char *chat_template_kind_name(const chat_template *t) {
    static const char *const names[] = {[CHAT_FORMAT_NONE] = "none",
                                        [CHAT_FORMAT_CHATML] = "chatml",
                                        [CHAT_FORMAT_OASST] = "oasst",
                                        [CHAT_FORMAT_LLAMA2] = "llama2",
                                        [CHAT_FORMAT_ZEPHYR] = "zephyr"};
    return names[t->format];
}

const char *chat_template_default_system(const chat_template *t) {
    return t->default_system;
}

fl_code chat_template_create(const char *name, chat_template **out, fl_error *err) {
    if (!strcmp(name, "none")) return template_new(CHAT_FORMAT_NONE, NULL, "", "", out, err);
    if (!strcmp(name, "chatml")) return template_new(CHAT_FORMAT_CHATML, NULL, "", "", out, err);
    if (!strcmp(name, "smollm2"))
        return template_new(CHAT_FORMAT_CHATML, SMOLLM2_SYSTEM, "", "", out, err);
    if (!strcmp(name, "oasst"))
        return template_new(CHAT_FORMAT_OASST, NULL, "", OASST_EOS, out, err);
    return fl_error_set(err, FL_EINVAL, "unknown chat template '%s' (none, chatml, smollm2, oasst)",
                        name);
}

// A ChatML template's default system message: the rest of a Jinja string literal that starts
// with "<|im_start|>system" + newline and runs on to "<|im_end|>" (SmolLM2 and Qwen write it in
// the branch taken when the first message is not a system one). A literal that closes before
// <|im_end|> ('<|im_start|>system\n' + message['content']) renders the caller's message: skipped.
// Returns 0 with *out = NULL when there is none, -1 when out of memory.
static int chatml_default_system(const char *tmpl, char **out) {
    static const char open[] = "<|im_start|>system", close[] = "<|im_end|>";
    *out = NULL;
    for (const char *p = strstr(tmpl, open); p; p = strstr(p + 1, open)) {
        if (p == tmpl || (p[-1] != '\'' && p[-1] != '"')) continue;
        char quote = p[-1];
        const char *s = p + strlen(open);
        if (*s == '\n')
            s++;
        else if (s[0] == '\\' && s[1] == 'n') // written as a Jinja escape
            s += 2;
        else
            continue;
        const char *end = strstr(s, close);
        if (!end) continue;
        char *text = malloc((size_t)(end - s) + 1), *w = text;
        if (!text) return -1;
        const char *c = s;
        for (; c < end && *c != quote; c++) {
            if (*c != '\\' || c + 1 == end) {
                *w++ = *c;
                continue;
            }
            c++;
            *w++ = *c == 'n' ? '\n' : *c == 't' ? '\t' : *c; // \' \" \\ stand for themselves
        }
        *w = 0;
        if (c == end) {
            *out = text;
            return 0;
        }
        free(text);
    }
    return 0;
}

// bos_token / eos_token of tokenizer_config.json: a string or an AddedToken object {content};
// "" when absent (HF renders an unset special token as nothing).
static const char *config_token(const cJSON *cfg, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, name);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(v) ? v->valuestring : "";
}

// tokenizer_config.json's chat_template: a string, or a list of {name, template} of which HF
// uses "default". *out points into cfg; NULL when there is none.
static fl_code config_template(const cJSON *cfg, const char *path, const char **out,
                               fl_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template"), *e;
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return FL_OK;
    if (cJSON_IsString(v)) {
        *out = v->valuestring;
        return FL_OK;
    }
    if (!cJSON_IsArray(v))
        return fl_error_set(err, FL_EFORMAT,
                            "%s: field 'chat_template' must be a string or a list of "
                            "{name, template}",
                            path);
    cJSON_ArrayForEach(e, v) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(e, "template");
        if (cJSON_IsString(name) && !strcmp(name->valuestring, "default") && cJSON_IsString(text))
            *out = text->valuestring;
    }
    return FL_OK;
}

// Recognises tmpl's family by the marker only that family writes.
static fl_code template_recognise(const char *tmpl, const cJSON *cfg, chat_template **out,
                                  fl_error *err) {
    const char *bos = config_token(cfg, "bos_token"), *eos = config_token(cfg, "eos_token");
    if (strstr(tmpl, "<|prompter|>")) // some write <|endoftext|> literally, not eos_token
        return template_new(CHAT_FORMAT_OASST, NULL, bos, *eos ? eos : OASST_EOS, out, err);
    if (strstr(tmpl, "<|im_start|>")) {
        char *system;
        if (chatml_default_system(tmpl, &system))
            return fl_error_set(err, FL_ENOMEM, "chat template: out of memory");
        fl_code rc = template_new(CHAT_FORMAT_CHATML, system, bos, eos, out, err);
        free(system);
        return rc;
    }
    if (strstr(tmpl, "[INST]")) return template_new(CHAT_FORMAT_LLAMA2, NULL, bos, eos, out, err);
    if (strstr(tmpl, "<|user|>")) return template_new(CHAT_FORMAT_ZEPHYR, NULL, bos, eos, out, err);
    return template_new(CHAT_FORMAT_NONE, NULL, bos, eos, out, err);
}

fl_code chat_template_load(const char *model_dir, const tokenizer *tok, chat_template **out,
                           fl_error *err) {
    char path[4096];
    cJSON *cfg = NULL;
    char *jinja = NULL;
    const char *tmpl = NULL;
    fl_code rc = FL_OK;
    *out = NULL;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", model_dir);
    if (access(path, F_OK) == 0) {
        rc = json_load_file(path, &cfg, err);
        if (!rc) rc = config_template(cfg, path, &tmpl, err);
    }
    snprintf(path, sizeof path, "%s/chat_template.jinja", model_dir);
    if (!rc && access(path, F_OK) == 0) { // newer transformers save the template beside
        rc = file_read_all(path, &jinja, NULL, err);
        tmpl = jinja;
    }
    if (!rc && tmpl)
        rc = template_recognise(tmpl, cfg, out, err);
    else if (!rc && tokenizer_token_to_id(tok, "<|prompter|>") >= 0 &&
             tokenizer_token_to_id(tok, "<|assistant|>") >= 0)
        rc = template_new(CHAT_FORMAT_OASST, NULL, "", OASST_EOS, out, err);
    else if (!rc && tokenizer_token_to_id(tok, "<|im_start|>") >= 0)
        rc = template_new(CHAT_FORMAT_CHATML, NULL, "", "", out, err);
    else if (!rc)
        rc = template_new(CHAT_FORMAT_NONE, NULL, "", "", out, err);
    free(jinja);
    cJSON_Delete(cfg);
    return rc;
}

// A growing output string; after an allocation failure s is NULL and appends do nothing.
typedef struct strbuf {
    char *s;
    size_t len, cap;
    int failed;
} strbuf;

static void strbuf_fail(strbuf *b) {
    free(b->s);
    *b = (strbuf){.failed = 1};
}

static void strbuf_add(strbuf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = 2 * (b->len + n + 1);
        char *s2 = realloc(b->s, cap);
        if (!s2) {
            strbuf_fail(b);
            return;
        }
        b->s = s2, b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void strbuf_cat(strbuf *b, int n, ...) {
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const char *s = va_arg(ap, const char *);
        strbuf_add(b, s, strlen(s));
    }
    va_end(ap);
}

// Python's str.strip() for ASCII whitespace (Llama-2's template strips the turn's content).
static void strbuf_add_stripped(strbuf *b, const char *s) {
    const char *ws = " \t\n\r\v\f";
    while (*s && strchr(ws, *s))
        s++;
    size_t n = strlen(s);
    while (n && strchr(ws, s[n - 1]))
        n--;
    strbuf_add(b, s, n);
}

fl_code chat_template_apply(const chat_template *t, const char *system, const char *user,
                            char **prompt, fl_error *err) {
    strbuf b = {0};
    if (!system) system = t->default_system;
    switch (t->format) {
    case CHAT_FORMAT_NONE:
        strbuf_cat(&b, 1, user);
        break;
    case CHAT_FORMAT_CHATML:
        if (system) strbuf_cat(&b, 3, "<|im_start|>system\n", system, "<|im_end|>\n");
        strbuf_cat(&b, 3, "<|im_start|>user\n", user, "<|im_end|>\n<|im_start|>assistant\n");
        break;
    case CHAT_FORMAT_OASST:
        if (system) strbuf_cat(&b, 3, "<|system|>", system, t->eos);
        strbuf_cat(&b, 4, "<|prompter|>", user, t->eos, "<|assistant|>");
        break;
    case CHAT_FORMAT_LLAMA2: { // the system block is part of the first turn's stripped content
        strbuf content = {0};
        if (system) strbuf_cat(&content, 3, "<<SYS>>\n", system, "\n<</SYS>>\n\n");
        strbuf_cat(&content, 1, user);
        strbuf_cat(&b, 2, t->bos, "[INST] ");
        if (content.s) strbuf_add_stripped(&b, content.s);
        strbuf_cat(&b, 1, " [/INST]");
        if (content.failed) strbuf_fail(&b);
        free(content.s);
        break;
    }
    case CHAT_FORMAT_ZEPHYR:
        if (system) strbuf_cat(&b, 4, "<|system|>\n", system, t->eos, "\n");
        strbuf_cat(&b, 4, "<|user|>\n", user, t->eos, "\n<|assistant|>\n");
        break;
    }
    if (b.failed) return fl_error_set(err, FL_ENOMEM, "chat template: out of memory");
    *prompt = b.s;
    return FL_OK;
}
