// falconlite client: one call to a running router over its public gRPC API (falconlite.v1 and
// grpc.health.v1): generate, stream, tokenize, info, health. --json prints what
// `falconlite generate --json` / `falconlite tokenize --json` print, so outputs compare directly.
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/chat_template.h"
#include "common/tokenizer.h"
#include "tools/cli_args.h"
#include "tools/cli_common.h"
#include "tools/client_rpc.h"
#include "tools/commands.h"

#define CLIENT_MAX_STOP   64
#define CLIENT_CONNECT_MS 10000
#define CLIENT_UNSET_INT  INT32_MIN // sentinel: option not given (the parser rejects NAN)

typedef struct client_args {
    const char *addr, *action, *prompt, *model_dir, *system;
    int chat;
    int max_new, greedy, do_sample, top_k, truncate, details, json, full_text, timeout_s;
    float temperature, top_p, typical_p, repetition_penalty;
    uint64_t seed;
    const char *stop[CLIENT_MAX_STOP];
    int n_stop;
} client_args;

// Moves the action word and every --stop value out of argv (the shared parser knows neither a
// positional argument nor a repeated option); what is left goes to cli_args_parse.
static int client_split_argv(int argc, char **argv, const opt_spec *opts, int n_opts,
                             client_args *a, char **rest, int *n_rest) {
    *n_rest = 0;
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--stop") || !strncmp(s, "--stop=", 7)) {
            const char *v = s[6] == '=' ? s + 7 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) return cli_fail("client: --stop needs a value");
            if (a->n_stop == CLIENT_MAX_STOP)
                return cli_fail("client: at most %d --stop values", CLIENT_MAX_STOP);
            a->stop[a->n_stop++] = v;
            continue;
        }
        if (strncmp(s, "--", 2) != 0 && !a->action) {
            a->action = s;
            continue;
        }
        rest[(*n_rest)++] = argv[i];
        if (strncmp(s, "--", 2) != 0 || strchr(s, '=')) continue;
        for (int j = 0; j < n_opts; j++) // an option's value stays with it, even without "--"
            if (!strcmp(s + 2, opts[j].name) && opts[j].type != OPT_BOOL && i + 1 < argc)
                rest[(*n_rest)++] = argv[++i];
    }
    return 0;
}

static int client_fail_rpc(const client_args *a, const fl_error *err) {
    return cli_fail("client %s: %s", a->action, err->msg);
}

static bool client_is_sampling(const client_args *a) {
    return a->do_sample || !isnan(a->temperature) || a->top_k != CLIENT_UNSET_INT ||
           !isnan(a->top_p) || !isnan(a->typical_p);
}

// The request's Parameters: only what was given is set, so the router applies TGI's defaults.
static client_params client_params_make(const client_args *a, bool details, bool input_details) {
    client_params p = {.stop = a->stop, .n_stop = a->n_stop};
    if (a->max_new != CLIENT_UNSET_INT) CLIENT_PARAM_SET(&p, max_new_tokens, (uint32_t)a->max_new);
    if (a->do_sample) CLIENT_PARAM_SET(&p, do_sample, true);
    if (!isnan(a->temperature)) CLIENT_PARAM_SET(&p, temperature, a->temperature);
    if (a->top_k != CLIENT_UNSET_INT) CLIENT_PARAM_SET(&p, top_k, a->top_k);
    if (!isnan(a->top_p)) CLIENT_PARAM_SET(&p, top_p, a->top_p);
    if (!isnan(a->typical_p)) CLIENT_PARAM_SET(&p, typical_p, a->typical_p);
    if (!isnan(a->repetition_penalty))
        CLIENT_PARAM_SET(&p, repetition_penalty, a->repetition_penalty);
    if (a->seed != UINT64_MAX) CLIENT_PARAM_SET(&p, seed, a->seed);
    if (a->truncate != CLIENT_UNSET_INT) CLIENT_PARAM_SET(&p, truncate, (uint32_t)a->truncate);
    if (a->full_text) CLIENT_PARAM_SET(&p, return_full_text, true);
    if (details) CLIENT_PARAM_SET(&p, details, true);
    if (input_details) CLIENT_PARAM_SET(&p, decoder_input_details, true);
    return p;
}

static void json_add_seed(cJSON *root, const client_details *d) {
    if (!d->has_seed) return;
    char s[32]; // exact: a double would round seeds above 2^53
    snprintf(s, sizeof s, "%" PRIu64, d->seed);
    cJSON_AddItemToObject(root, "seed", cJSON_CreateRaw(s));
}

static void json_add_details(cJSON *root, const client_details *d) {
    cJSON_AddStringToObject(root, "finish_reason", client_finish_name(d->finish));
    cJSON_AddNumberToObject(root, "generated_tokens", d->generated_tokens);
    json_add_seed(root, d);
}

static void details_print(const client_details *d) {
    fprintf(stderr, "finish_reason: %s\ngenerated_tokens: %u\n", client_finish_name(d->finish),
            d->generated_tokens);
    if (d->has_seed) fprintf(stderr, "seed: %" PRIu64 "\n", d->seed);
}

static void json_add_token(cJSON *toks, cJSON *lps, const client_token *t) {
    cJSON_AddItemToArray(toks, cJSON_CreateNumber(t->id));
    cJSON_AddItemToArray(lps, cJSON_CreateNumber(t->logprob));
}

static int action_generate(const client_args *a, client_rpc *c) {
    client_params p = client_params_make(a, a->details || a->json, a->details && a->json);
    client_generation g;
    fl_error err = {0};
    if (client_rpc_generate(c, a->prompt, &p, a->timeout_s * 1000, &g, &err))
        return client_fail_rpc(a, &err);
    const client_details *d = g.has_details ? &g.details : NULL;
    if (!a->json) {
        printf("%s\n", g.text);
        if (d) details_print(d);
    } else {
        cJSON *root = cJSON_CreateObject();
        if (d && d->n_prefill) {
            cJSON *ids = cJSON_AddArrayToObject(root, "input_ids");
            for (int i = 0; i < d->n_prefill; i++)
                cJSON_AddItemToArray(ids, cJSON_CreateNumber(d->prefill[i].id));
        }
        cJSON *toks = cJSON_AddArrayToObject(root, "tokens");
        cJSON *lps = cJSON_AddArrayToObject(root, "logprobs");
        for (int i = 0; d && i < d->n_tokens; i++)
            json_add_token(toks, lps, &d->tokens[i]);
        cJSON_AddStringToObject(root, "text", g.text);
        if (d) json_add_details(root, d);
        cli_json_print(root);
    }
    client_generation_clear(&g);
    return 0;
}

// What client_stream collects while the stream runs.
typedef struct stream_out {
    const client_args *a;
    cJSON *root, *toks, *lps;
    bool printed; // text mode printed a partial line
} stream_out;

static bool stream_on_event(void *user, const client_event *ev) {
    stream_out *o = user;
    if (ev->kind == CLIENT_EVENT_TOKEN) {
        const client_token *t = &ev->token;
        if (!o->a->json && !t->special && t->text) {
            fputs(t->text, stdout);
            fflush(stdout);
            o->printed = true;
        }
        json_add_token(o->toks, o->lps, t);
        return true;
    }
    if (ev->text) cJSON_AddStringToObject(o->root, "text", ev->text);
    if (ev->details) {
        json_add_details(o->root, ev->details);
        if (!o->a->json) details_print(ev->details);
    }
    return true;
}

// Text mode prints each token's text as it arrives; --json collects them into one object.
static int action_stream(const client_args *a, client_rpc *c) {
    client_params p = client_params_make(a, a->details || a->json, false);
    stream_out o = {.a = a, .root = cJSON_CreateObject()};
    o.toks = cJSON_AddArrayToObject(o.root, "tokens");
    o.lps = cJSON_AddArrayToObject(o.root, "logprobs");
    fl_error err = {0};
    int rc = 0;
    if (client_rpc_stream(c, a->prompt, &p, a->timeout_s * 1000, stream_on_event, &o, &err)) {
        if (o.printed) putchar('\n'); // end the partial line before the error
        rc = client_fail_rpc(a, &err);
    }
    if (rc == 0 && a->json)
        cli_json_print(o.root);
    else
        cJSON_Delete(o.root);
    if (rc == 0 && !a->json) putchar('\n');
    return rc;
}

static int action_tokenize(const client_args *a, client_rpc *c) {
    client_tokens r;
    fl_error err = {0};
    if (client_rpc_tokenize(c, a->prompt, a->timeout_s * 1000, &r, &err))
        return client_fail_rpc(a, &err);
    if (a->json) {
        cJSON *root = cJSON_CreateObject();
        cJSON *ids = cJSON_AddArrayToObject(root, "ids");
        cJSON *toks = cJSON_AddArrayToObject(root, "tokens");
        for (int i = 0; i < r.n_ids; i++)
            cJSON_AddItemToArray(ids, cJSON_CreateNumber(r.ids[i]));
        for (int i = 0; i < r.n_tokens; i++)
            cJSON_AddItemToArray(toks, cJSON_CreateString(r.tokens[i]));
        cli_json_print(root);
    } else {
        for (int i = 0; i < r.n_ids; i++)
            printf("%s%u", i ? "," : "", r.ids[i]);
        putchar('\n');
    }
    client_tokens_clear(&r);
    return 0;
}

static int action_info(const client_args *a, client_rpc *c) {
    client_info r;
    fl_error err = {0};
    if (client_rpc_info(c, a->timeout_s * 1000, &r, &err)) return client_fail_rpc(a, &err);
    cJSON *root = r.fields;
    r.fields = NULL;
    client_info_clear(&r);
    if (a->json) {
        cli_json_print(root);
        return 0;
    }
    for (cJSON *it = root->child; it; it = it->next) {
        char *v = cJSON_IsString(it) ? NULL : cJSON_PrintUnformatted(it);
        printf("%s: %s\n", it->string, v ? v : it->valuestring);
        free(v);
    }
    cJSON_Delete(root);
    return 0;
}

static int action_health(const client_args *a, client_rpc *c) {
    client_health h;
    fl_error err = {0};
    if (client_rpc_health(c, a->timeout_s * 1000, &h, &err)) return client_fail_rpc(a, &err);
    if (a->json) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "status", h.status);
        cli_json_print(root);
    } else {
        printf("%s\n", h.status);
    }
    if (!h.serving) return cli_fail("client health: the router is %s", h.status);
    return 0;
}

// The single-turn chat prompt for --prompt with the template of the model directory (the router
// serves that model; the TGI API takes raw text, so the client formats, as the model card's did).
static fl_code client_chat_prompt(const client_args *a, char **out, fl_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", a->model_dir);
    tokenizer *tok = NULL; // for the vocabulary fallback (<|prompter|>, <|im_start|>)
    fl_code rc = tokenizer_load(path, &tok, err);
    chat_template *t = NULL;
    if (!rc) rc = chat_template_load(a->model_dir, tok, &t, err);
    if (!rc) rc = chat_template_apply(t, a->system, a->prompt, out, err);
    chat_template_free(t);
    tokenizer_free(tok);
    return rc;
}

int cmd_client(int argc, char **argv) {
    client_args a = {.max_new = CLIENT_UNSET_INT,
                     .top_k = CLIENT_UNSET_INT,
                     .truncate = CLIENT_UNSET_INT,
                     .timeout_s = 600,
                     .temperature = NAN,
                     .top_p = NAN,
                     .typical_p = NAN,
                     .repetition_penalty = NAN,
                     .seed = UINT64_MAX};
    opt_spec opts[] = {
        OPT("addr", OPT_STRING, &a.addr, "router gRPC address: host:port or unix:/path (required)"),
        OPT("prompt", OPT_STRING, &a.prompt, "prompt text (generate, stream, tokenize)"),
        OPT("chat", OPT_BOOL, &a.chat, "wrap --prompt in the chat template of --model's directory"),
        OPT("system", OPT_STRING, &a.system, "system message for --chat (default: the template's)"),
        OPT("model", OPT_STRING, &a.model_dir,
            "model directory whose chat template --chat applies"),
        OPT("max-new-tokens", OPT_INT, &a.max_new,
            "tokens to generate at most (router default 20)"),
        OPT("greedy", OPT_BOOL, &a.greedy, "argmax decoding (the default without sampling flags)"),
        OPT("do-sample", OPT_BOOL, &a.do_sample, "multinomial sampling"),
        OPT("temperature", OPT_FLOAT, &a.temperature, "temperature (turns sampling on, as TGI)"),
        OPT("top-k", OPT_INT, &a.top_k, "top-k (turns sampling on)"),
        OPT("top-p", OPT_FLOAT, &a.top_p, "top-p (turns sampling on)"),
        OPT("typical-p", OPT_FLOAT, &a.typical_p, "typical-p (turns sampling on; FalconLite: 0.2)"),
        OPT("repetition-penalty", OPT_FLOAT, &a.repetition_penalty, "repetition penalty"),
        OPT("seed", OPT_U64, &a.seed, "sampling seed (default: the router draws one)"),
        OPT("stop", OPT_STRING, NULL, "stop sequence (repeatable)"),
        OPT("truncate", OPT_INT, &a.truncate, "keep only the last N prompt tokens"),
        OPT("return-full-text", OPT_BOOL, &a.full_text, "prefix the output with the prompt"),
        OPT("details", OPT_BOOL, &a.details,
            "finish reason, token count and seed (stderr; with --json: also input_ids)"),
        OPT("json", OPT_BOOL, &a.json, "print one JSON object (generate --json's keys)"),
        OPT("timeout", OPT_INT, &a.timeout_s, "deadline of the call in seconds (default 600)"),
    };
    int n_opts = sizeof opts / sizeof opts[0];
    char **rest = malloc(sizeof *rest * (size_t)(argc + 1));
    if (!rest) return cli_fail("client: out of memory");
    int n_rest = 0;
    int rc = client_split_argv(argc, argv, opts, n_opts, &a, rest, &n_rest);
    if (rc == 0)
        rc = cli_args_parse("client <generate|stream|tokenize|info|health>",
                            "Calls a running falconlite-router over its public gRPC API.", n_rest,
                            rest, opts, n_opts);
    free(rest);
    if (rc) return rc < 0 ? 2 : 0;
    if (!a.action)
        return cli_fail("client: an action is required: generate, stream, tokenize, "
                        "info or health");
    static const struct {
        const char *name;
        int (*run)(const client_args *, client_rpc *);
        bool needs_prompt;
    } actions[] = {
        {"generate", action_generate, true}, {"stream", action_stream, true},
        {"tokenize", action_tokenize, true}, {"info", action_info, false},
        {"health", action_health, false},
    };
    int act = -1;
    for (int i = 0; i < (int)(sizeof actions / sizeof actions[0]); i++)
        if (!strcmp(a.action, actions[i].name)) act = i;
    if (act < 0)
        return cli_fail("client: unknown action '%s' (generate, stream, tokenize, info, health)",
                        a.action);
    if (!a.addr) return cli_fail("client: --addr is required");
    if (actions[act].needs_prompt && !a.prompt)
        return cli_fail("client %s: --prompt is required", a.action);
    if (a.max_new != CLIENT_UNSET_INT && a.max_new < 0)
        return cli_fail("client: --max-new-tokens must not be negative");
    if (a.truncate != CLIENT_UNSET_INT && a.truncate < 0)
        return cli_fail("client: --truncate must not be negative");
    if (a.timeout_s < 0) return cli_fail("client: --timeout must not be negative");
    if (a.greedy && client_is_sampling(&a))
        return cli_fail("client: --greedy conflicts with --do-sample, --temperature, --top-k, "
                        "--top-p and --typical-p");
    fl_error err = {0};
    char *chat_prompt = NULL;
    if (a.chat || a.system) {
        if (!a.model_dir) return cli_fail("client: --chat needs --model DIR (for its template)");
        if (client_chat_prompt(&a, &chat_prompt, &err)) return cli_fail("client: %s", err.msg);
        a.prompt = chat_prompt;
    }
    client_rpc *c = client_rpc_connect(a.addr, CLIENT_CONNECT_MS, &err);
    if (!c) {
        free(chat_prompt);
        return cli_fail("client %s: %s", a.action, err.msg);
    }
    rc = actions[act].run(&a, c);
    client_rpc_free(c);
    free(chat_prompt);
    return rc;
}
