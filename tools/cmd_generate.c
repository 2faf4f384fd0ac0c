// falconlite generate: one request through the local engine (no server): tokenize, prefill,
// decode with TGI's sampling and stopping, stream the text (or print JSON), and with --stats
// report speed against the machine's memory bandwidth measured in the same run.
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/chat_template.h"
#include "common/model_config.h"
#include "shard/engine/generation.h"
#include "shard/engine/model.h"
#include "tools/cli_args.h"
#include "tools/cli_common.h"
#include "tools/commands.h"

static const char *finish_name(gen_finish f) {
    switch (f) {
    case GEN_FINISH_LENGTH:
        return "length";
    case GEN_FINISH_EOS:
        return "eos_token";
    case GEN_FINISH_STOP:
        return "stop_sequence";
    default:
        return "running";
    }
}

typedef struct gen_args {
    const char *dir, *prompt, *backend, *system;
    int max_new, greedy, threads, ignore_eos, json, stats, kv_blocks, chat;
    rope_overrides rope;
    sampling_params sampling;
} gen_args;

typedef struct gen_run {
    backend *be;
    model *m;
    kv_cache *kv;
    tokenizer *tok;
    seq_request *req;
    char *chat_prompt; // --prompt in the model's chat template (--chat)
    int32_t *prompt;
    double *step_s; // [max_new] seconds per step (step 0: prefill)
    detok_stream *ds;
} gen_run;

static void gen_run_free(gen_run *g) {
    detok_stream_free(g->ds);
    if (g->req) seq_request_free(g->kv, g->req);
    kv_cache_free(g->kv);
    model_free(g->m);
    if (g->be) g->be->free(g->be);
    tokenizer_free(g->tok);
    free(g->chat_prompt);
    free(g->prompt);
    free(g->step_s);
}

static void print_stats(const gen_args *a, gen_run *g) {
    seq_request *r = g->req;
    int n_dec = r->n_generated - 1;
    double prefill = g->step_s[0];
    fprintf(stderr, "prompt tokens: %d\n", r->n_prompt);
    fprintf(stderr, "prefill: %.1f ms (%.1f tokens/s)\n", prefill * 1e3, r->n_prompt / prefill);
    if (n_dec < 1) {
        fprintf(stderr, "decode: no decode steps (one token generated)\n");
        return;
    }
    double *d = malloc(sizeof *d * n_dec);
    if (!d) return;
    memcpy(d, g->step_s + 1, sizeof *d * n_dec);
    qsort(d, n_dec, sizeof *d, cli_cmp_double);
    double med = n_dec % 2 ? d[n_dec / 2] : 0.5 * (d[n_dec / 2 - 1] + d[n_dec / 2]);
    free(d);
    double wbytes = (double)model_weight_bytes(g->m), achieved = wbytes / med;
    int threads = a->threads > 0 ? a->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    double copy = cli_host_copy_bandwidth(threads);
    fprintf(stderr, "decode: %d tokens, median %.2f ms/token (%.2f tokens/s)\n", n_dec, med * 1e3,
            1.0 / med);
    fprintf(stderr, "weight bytes per decode token: %.0f (%.3f GiB)\n", wbytes, wbytes / (1 << 30));
    fprintf(stderr, "achieved weight bandwidth: %.2f GB/s\n", achieved / 1e9);
    fprintf(stderr, "machine copy bandwidth (memcpy %u MiB, %d threads, read+write): %.2f GB/s\n",
            CLI_COPY_PROBE_BYTES >> 20, threads, copy / 1e9);
    if (copy > 0) fprintf(stderr, "fraction of copy bandwidth: %.2f\n", achieved / copy);
}

static void print_json(gen_run *g, const char *text) {
    seq_request *r = g->req;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "input_ids", cli_json_ids(r->tokens, r->n_prompt));
    cJSON_AddItemToObject(root, "tokens", cli_json_ids(r->tokens + r->n_prompt, r->n_generated));
    cJSON *lp = cJSON_AddArrayToObject(root, "logprobs");
    for (int i = 0; i < r->n_generated; i++)
        cJSON_AddItemToArray(lp, cJSON_CreateNumber(r->logprobs[i]));
    cJSON_AddStringToObject(root, "text", text);
    cJSON_AddStringToObject(root, "finish_reason", finish_name(r->finish));
    cli_json_print(root);
}

// --prompt (after --system) in the model's chat template, into g->chat_prompt.
static fl_code chat_prompt_build(const gen_args *a, gen_run *g, fl_error *err) {
    chat_template *t = NULL;
    fl_code rc = chat_template_load(a->dir, g->tok, &t, err);
    if (!rc && chat_template_format(t) == CHAT_FORMAT_NONE)
        rc = fl_error_set(err, FL_EUNSUPPORTED,
                          "generate --chat: %s has no chat template falconlite knows (ChatML, "
                          "OpenAssistant, Llama-2, Zephyr; or <|prompter|>, <|im_start|> tokens)",
                          a->dir);
    if (!rc) rc = chat_template_apply(t, a->system, a->prompt, &g->chat_prompt, err);
    chat_template_free(t);
    return rc;
}

// Loads everything, runs the request to its end; returns 0 or prints an error and returns 1.
static int generate_run(const gen_args *a, gen_run *g) {
    fl_error err = {0};
    char threads[16];
    if (a->threads > 0) { // the CPU backend reads its worker count from here under "auto" too
        snprintf(threads, sizeof threads, "%d", a->threads);
        setenv("FALCONLITE_THREADS", threads, 1);
    }
    if (!(g->be = backend_create(a->backend, &err))) return cli_fail("%s", err.msg);
    model_options mo = {
        .rank = 0, .world = 1, .rope_override = rope_overrides_given(&a->rope) ? &a->rope : NULL};
    if (cli_gptq_env("generate", &mo.gptq)) return 1;
    if (model_load(a->dir, &mo, g->be, &g->m, &err)) return cli_fail("%s", err.msg);
    if (cli_tokenizer_load(a->dir, &g->tok, &err)) return cli_fail("%s", err.msg);
    if (a->chat && chat_prompt_build(a, g, &err)) return cli_fail("%s", err.msg);
    const char *input = a->chat ? g->chat_prompt : a->prompt;
    int n_prompt = 0;
    if (tokenizer_encode(g->tok, input, strlen(input), &g->prompt, &n_prompt, &err))
        return cli_fail("%s", err.msg);
    if (n_prompt == 0) return cli_fail("generate: the prompt encodes to no tokens");
    int blocks = a->kv_blocks > 0 ? a->kv_blocks
                                  : (n_prompt + a->max_new - 1 + KV_BLOCK_SIZE - 1) / KV_BLOCK_SIZE;
    if (model_kv_cache_create(g->m, blocks, &g->kv, &err)) return cli_fail("%s", err.msg);

    seq_params gp = {.sampling = a->sampling,
                     .max_new_tokens = a->max_new,
                     .eos_id = model_get_config(g->m)->eos_token_id,
                     .ignore_eos = a->ignore_eos};
    if (seq_request_create(g->m, g->kv, 0, g->prompt, n_prompt, &gp, &g->req, &err))
        return cli_fail("%s", err.msg);
    if (!(g->step_s = malloc(sizeof *g->step_s * a->max_new)))
        return cli_fail("generate: out of memory");
    if (!a->json && !(g->ds = detok_stream_create(g->tok, 1)))
        return cli_fail("generate: out of memory");

    seq_request *r = g->req;
    while (r->finish == GEN_RUNNING) {
        double t0 = cli_now_s();
        if (gen_batch_step(g->m, g->kv, &r, 1, &err)) return cli_fail("%s", err.msg);
        g->step_s[r->n_generated - 1] = cli_now_s() - t0;
        if (g->ds) {
            char *piece = NULL;
            size_t len = 0;
            if (detok_stream_push(g->ds, seq_request_last_token(r), &piece, &len, &err))
                return cli_fail("%s", err.msg);
            fwrite(piece, 1, len, stdout);
            fflush(stdout);
            free(piece);
        }
    }
    char *text = NULL;
    size_t len = 0;
    if (g->ds) {
        if (detok_stream_flush(g->ds, &text, &len, &err)) return cli_fail("%s", err.msg);
        fwrite(text, 1, len, stdout);
        putchar('\n');
    } else {
        if (tokenizer_decode(g->tok, r->tokens + r->n_prompt, r->n_generated, 1, &text, &len, &err))
            return cli_fail("%s", err.msg);
        print_json(g, text);
    }
    free(text);
    fflush(stdout); // the answer and its newline come before the stats on a shared terminal
    if (a->stats) print_stats(a, g);
    return 0;
}

int cmd_generate(int argc, char **argv) {
    gen_args a = {.backend = "auto", .max_new = 32, .rope = ROPE_OVERRIDES_NONE};
    sampling_params *sp = &a.sampling;
    sampling_params_default(sp);
    sp->seed = UINT64_MAX; // sentinel: not given
    opt_spec opts[] = {
        OPT("model", OPT_STRING, &a.dir, "model directory"),
        OPT("prompt", OPT_STRING, &a.prompt, "prompt text"),
        OPT("chat", OPT_BOOL, &a.chat, "wrap --prompt in the model's chat template"),
        OPT("system", OPT_STRING, &a.system,
            "system message (implies --chat; default: the template's)"),
        OPT("max-new-tokens", OPT_INT, &a.max_new, "tokens to generate at most (default 32)"),
        OPT("greedy", OPT_BOOL, &a.greedy, "argmax decoding (the default without sampling flags)"),
        OPT("do-sample", OPT_BOOL, &sp->do_sample, "multinomial sampling"),
        OPT("temperature", OPT_FLOAT, &sp->temperature, "temperature (turns sampling on, as TGI)"),
        OPT("top-k", OPT_INT, &sp->top_k, "top-k (turns sampling on)"),
        OPT("top-p", OPT_FLOAT, &sp->top_p, "top-p (turns sampling on)"),
        OPT("typical-p", OPT_FLOAT, &sp->typical_p,
            "typical-p (turns sampling on; FalconLite: 0.2)"),
        OPT("repetition-penalty", OPT_FLOAT, &sp->repetition_penalty, "repetition penalty"),
        OPT("seed", OPT_U64, &sp->seed, "sampling seed (default: random)"),
        OPT("backend", OPT_STRING, &a.backend, "cpu | cuda | auto (default)"),
        OPT("threads", OPT_INT, &a.threads, "CPU worker threads (default: all cores)"),
        OPT("kv-blocks", OPT_INT, &a.kv_blocks,
            "KV-cache blocks (default: what the request needs)"),
        OPT("ignore-eos", OPT_BOOL, &a.ignore_eos, "do not stop at the EOS token"),
        OPT("json", OPT_BOOL, &a.json, "print one JSON object instead of streaming text"),
        OPT("stats", OPT_BOOL, &a.stats, "print timing and bandwidth to stderr"),
    };
    int rc = cli_args_parse_rope("generate", "Generates text from --prompt with the local engine.",
                                 argc, argv, opts, sizeof opts / sizeof opts[0], &a.rope);
    if (rc) return rc < 0 ? 2 : 0;
    if (!a.dir) return cli_fail("generate: --model is required");
    if (!a.prompt) return cli_fail("generate: --prompt is required");
    if (a.system) a.chat = 1;
    if (a.max_new < 1) return cli_fail("generate: --max-new-tokens must be >= 1");
    if (a.threads < 0 || a.kv_blocks < 0)
        return cli_fail("generate: --threads and --kv-blocks must not be negative");
    if (a.greedy && sampling_params_is_sampling(sp))
        return cli_fail("generate: --greedy conflicts with --do-sample, --temperature, --top-k, "
                        "--top-p and --typical-p");
    if (sp->seed == UINT64_MAX) { // TGI's router draws a random seed when none is given
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        sp->seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
    }
    gen_run g = {0};
    rc = generate_run(&a, &g);
    gen_run_free(&g);
    return rc;
}
