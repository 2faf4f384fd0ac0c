// falconlite bench-server: benchmarks a running router through GenerateStream. Two modes:
// - fixed concurrency (the default; the model card's protocol): for each input length and
//   concurrency, N requests go through `concurrency` client threads; each request's timeline
//   gives TTFT (first token), ITL (gaps between tokens) and the card's TPS (generated tokens /
//   end-to-end time); the cell's wall time gives the aggregate throughput;
// - load (--request-rate, --sweep or --prompts): arrivals at a request rate with vLLM
//   benchmark_serving's metrics, in bench_load.c.
// Prompts are a fixed English text cut to exactly the wanted number of tokens, as the router's
// Tokenize RPC counts them. The option table below serves both modes.
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/bench_server.h"
#include "tools/bench_stats.h"
#include "tools/cli_args.h"
#include "tools/cli_common.h"
#include "tools/client_rpc.h"
#include "tools/commands.h"

#define BS_CONNECT_MS 10000
#define BS_MAX_LIST   16
#define BS_STR_(x)    #x
#define BS_STR(x)     BS_STR_(x)

// Repeated as often as a prompt needs; plain ASCII so any cut is a valid string.
static const char bs_text[] =
    "The history of the lighthouse is a story of light, stone and patience. Long before "
    "electricity, keepers climbed narrow stairs each evening to trim wicks, polish lenses and "
    "wind the clockwork that turned the great beams across the water. Ships far out at sea "
    "counted the flashes to learn which coast they were passing, and a careful captain could "
    "tell one tower from another by its rhythm alone. Storms tested every tower: waves broke "
    "over the gallery, salt crusted the glass, and supplies ran short when boats could not "
    "land for weeks. Many keepers kept journals of the weather, the birds that struck the "
    "lantern at night, and the vessels that passed in fog. Today most lights run on their own, "
    "watched by sensors and distant engineers, but the old towers still stand along the "
    "cliffs, and visitors climb the same worn steps to look out over the sea. ";

typedef struct bs_args {
    const char *addr;
    int lengths[BS_MAX_LIST], n_lengths, conc[BS_MAX_LIST], n_conc;
    int new_tokens, requests, ignore_eos;
    const char *json_path, *csv_path; // NULL: not written; json "-": stdout
} bs_args;

// One (input length, concurrency) measurement, shared by its client threads.
typedef struct bs_cell {
    client_rpc *rpc;
    const char *prompt;
    int new_tokens, n_requests;
    bool ignore_eos; // ask the router for new_tokens tokens past EOS (falconlite extension)
    atomic_int next, done, tokens;
    bench_timeline *reqs; // [n_requests]
    pthread_mutex_t err_lock;
    fl_error err; // the first failure
    bool failed;
} bs_cell;

// One request's stream, as bench_stream_run follows it.
typedef struct bs_stream {
    bench_timeline *t;
    int max_new_tokens;
    atomic_int *tokens;
    double t0, last;
} bs_stream;

static bool bs_on_event(void *user, const client_event *ev) {
    bs_stream *st = user;
    bench_timeline *r = st->t;
    if (ev->kind == CLIENT_EVENT_TOKEN) {
        if (ev->index == 0)
            r->ttft_s = ev->time_s - st->t0;
        else if (r->n_itl < st->max_new_tokens)
            r->itl_s[r->n_itl++] = ev->time_s - st->last;
        r->generated++;
        st->last = ev->time_s;
        if (st->tokens) atomic_fetch_add(st->tokens, 1);
    } else if (ev->details) {
        r->eos = ev->details->finish == CLIENT_FINISH_EOS_TOKEN;
    }
    return true;
}

fl_code bench_stream_run(client_rpc *rpc, const char *prompt, int max_new_tokens, bool ignore_eos,
                         bench_timeline *t, atomic_int *tokens, fl_error *err) {
    client_params p = {0};
    CLIENT_PARAM_SET(&p, max_new_tokens, (uint32_t)max_new_tokens);
    CLIENT_PARAM_SET(&p, details, true);
    if (ignore_eos) CLIENT_PARAM_SET(&p, ignore_eos, true);
    *t = (bench_timeline){0};
    if (!(t->itl_s = malloc(sizeof *t->itl_s * (size_t)max_new_tokens)))
        return fl_error_set(err, FL_ENOMEM, "bench-server: out of memory");
    bs_stream st = {t, max_new_tokens, tokens, cli_now_s(), 0};
    st.last = st.t0;
    t->end_s = st.t0;
    fl_code rc = client_rpc_stream(rpc, prompt, &p, BS_RPC_MS, bs_on_event, &st, err);
    t->e2e_s = st.last - st.t0;
    t->end_s = st.last;
    return rc;
}

static void *bs_worker(void *arg) {
    bs_cell *c = arg;
    for (;;) {
        int i = atomic_fetch_add(&c->next, 1);
        if (i >= c->n_requests) break;
        fl_error e = {0};
        if (bench_stream_run(c->rpc, c->prompt, c->new_tokens, c->ignore_eos, &c->reqs[i],
                             &c->tokens, &e)) {
            pthread_mutex_lock(&c->err_lock);
            if (!c->failed) c->err = e;
            c->failed = true;
            pthread_mutex_unlock(&c->err_lock);
        }
        atomic_fetch_add(&c->done, 1);
    }
    return NULL;
}

// Builds the cell's statistics as JSON (all times in ms).
static cJSON *bs_cell_summary(const bs_cell *c, int input_len, int input_tokens, int conc,
                              double wall_s) {
    int n = c->n_requests, n_itl = 0, total = 0, eos = 0;
    for (int i = 0; i < n; i++)
        n_itl += c->reqs[i].n_itl;
    double *tps = malloc(sizeof *tps * n), *ttft = malloc(sizeof *ttft * n);
    double *e2e = malloc(sizeof *e2e * n), *itl = malloc(sizeof *itl * (n_itl + 1));
    if (!tps || !ttft || !e2e || !itl) {
        free(tps), free(ttft), free(e2e), free(itl);
        return NULL;
    }
    n_itl = 0;
    for (int i = 0; i < n; i++) {
        const bench_timeline *r = &c->reqs[i];
        tps[i] = r->e2e_s > 0 ? r->generated / r->e2e_s : 0;
        ttft[i] = r->ttft_s * 1e3;
        e2e[i] = r->e2e_s * 1e3;
        for (int k = 0; k < r->n_itl; k++)
            itl[n_itl++] = r->itl_s[k] * 1e3;
        total += r->generated;
        eos += r->eos;
    }
    qsort(tps, n, sizeof *tps, cli_cmp_double);
    qsort(ttft, n, sizeof *ttft, cli_cmp_double);
    qsort(e2e, n, sizeof *e2e, cli_cmp_double);
    qsort(itl, n_itl, sizeof *itl, cli_cmp_double);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "input_length", input_len);
    cJSON_AddNumberToObject(o, "input_tokens", input_tokens);
    cJSON_AddNumberToObject(o, "concurrency", conc);
    cJSON_AddNumberToObject(o, "requests", n);
    cJSON_AddNumberToObject(o, "generated_tokens", total);
    cJSON_AddNumberToObject(o, "eos_stops", eos);
    cJSON_AddNumberToObject(o, "tps_median", bench_percentile_rank(tps, n, 0.5));
    cJSON_AddNumberToObject(o, "e2e_ms_p50", bench_percentile_rank(e2e, n, 0.5));
    cJSON_AddNumberToObject(o, "ttft_ms_p50", bench_percentile_rank(ttft, n, 0.5));
    cJSON_AddNumberToObject(o, "ttft_ms_p99", bench_percentile_rank(ttft, n, 0.99));
    // No gaps at all (one token per request) is reported as 0 rather than NaN, which JSON lacks.
    cJSON_AddNumberToObject(o, "itl_ms_p50", n_itl ? bench_percentile_rank(itl, n_itl, 0.5) : 0);
    cJSON_AddNumberToObject(o, "itl_ms_p99", n_itl ? bench_percentile_rank(itl, n_itl, 0.99) : 0);
    cJSON_AddNumberToObject(o, "throughput_tokens_per_s", wall_s > 0 ? total / wall_s : 0);
    cJSON_AddNumberToObject(o, "wall_s", wall_s);
    free(tps), free(ttft), free(e2e), free(itl);
    return o;
}

// Runs one cell; returns its summary, or NULL after printing an error.
static cJSON *bs_cell_run(client_rpc *rpc, const char *prompt, int input_len, int input_tokens,
                          int conc, const bs_args *a) {
    bs_cell c = {.rpc = rpc,
                 .prompt = prompt,
                 .new_tokens = a->new_tokens,
                 .ignore_eos = a->ignore_eos,
                 .n_requests = a->requests > 0 ? a->requests : 2 * conc};
    c.reqs = calloc((size_t)c.n_requests, sizeof *c.reqs);
    pthread_t *th = calloc((size_t)conc, sizeof *th);
    if (!c.reqs || !th) {
        free(c.reqs), free(th);
        cli_fail("bench-server: out of memory");
        return NULL;
    }
    pthread_mutex_init(&c.err_lock, NULL);
    double t0 = cli_now_s();
    int started = 0;
    for (; started < conc; started++)
        if (pthread_create(&th[started], NULL, bs_worker, &c)) break;
    if (started == 0) bs_worker(&c); // no threads to be had: run the cell serially
    while (atomic_load(&c.done) < c.n_requests) {
        fprintf(stderr, "\rbench-server: input %d, concurrency %d: %d/%d requests, %d tokens ",
                input_len, conc, atomic_load(&c.done), c.n_requests, atomic_load(&c.tokens));
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    double wall = 0; // from the requests' own clocks, not this polling loop's
    for (int i = 0; i < c.n_requests; i++)
        if (c.reqs[i].end_s - t0 > wall) wall = c.reqs[i].end_s - t0;
    fprintf(stderr, "\rbench-server: input %d, concurrency %d: %d/%d requests, %d tokens, %.1f s\n",
            input_len, conc, c.n_requests, c.n_requests, atomic_load(&c.tokens), wall);
    cJSON *summary = NULL;
    int eos = 0;
    for (int i = 0; i < c.n_requests; i++)
        eos += c.reqs[i].eos;
    if (c.failed)
        cli_fail("bench-server: %s", c.err.msg);
    else if (!(summary = bs_cell_summary(&c, input_len, input_tokens, conc, wall)))
        cli_fail("bench-server: out of memory");
    for (int i = 0; i < c.n_requests; i++)
        free(c.reqs[i].itl_s);
    free(c.reqs);
    free(th);
    pthread_mutex_destroy(&c.err_lock);
    return summary;
}

static fl_code bs_count_tokens(client_rpc *rpc, const char *text, int *n, fl_error *err) {
    client_tokens r;
    fl_code rc = client_rpc_tokenize(rpc, text, BS_RPC_MS, &r, err);
    if (rc == FL_OK) {
        *n = r.n_ids;
        client_tokens_clear(&r);
    }
    return rc;
}

// A prefix of the repeated text that the router encodes to exactly `len` tokens (the closest
// below when no cut is exact; *n_tokens tells). Binary search on the character count, since a
// longer prefix never encodes to fewer tokens in practice, then a short scan for an exact cut.
fl_code bench_prompt_make(client_rpc *rpc, int len, char **out, int *n_tokens, fl_error *err) {
    size_t unit = sizeof bs_text - 1, cap = unit;
    char *text = NULL;
    int n = 0;
    fl_code rc;
    for (;;) { // grow until the text has at least len tokens
        char *t = realloc(text, cap + 1);
        if (!t) {
            free(text);
            return fl_error_set(err, FL_ENOMEM, "bench-server: out of memory");
        }
        text = t;
        for (size_t at = 0; at < cap; at += unit)
            memcpy(text + at, bs_text, unit);
        text[cap] = 0;
        if ((rc = bs_count_tokens(rpc, text, &n, err))) goto fail;
        if (n >= len) break;
        cap *= 2;
    }
    // The longest prefix with count <= len; count(hi) >= len, count(lo) <= len is assumed.
    size_t lo = 1, hi = cap;
    while (lo < hi) {
        size_t mid = lo + (hi - lo + 1) / 2;
        char keep = text[mid];
        text[mid] = 0;
        rc = bs_count_tokens(rpc, text, &n, err);
        text[mid] = keep;
        if (rc) goto fail;
        if (n <= len)
            lo = mid;
        else
            hi = mid - 1;
    }
    for (size_t cut = lo; cut >= 1 && lo - cut < 8; cut--) { // the longest cut that is exact
        char keep = text[cut];
        text[cut] = 0;
        rc = bs_count_tokens(rpc, text, &n, err);
        text[cut] = keep;
        if (rc) goto fail;
        if (n == len) {
            lo = cut;
            break;
        }
    }
    text[lo] = 0;
    if ((rc = bs_count_tokens(rpc, text, &n, err))) goto fail;
    *out = text;
    *n_tokens = n;
    return FL_OK;
fail:
    free(text);
    return rc;
}

static void bs_print_table(cJSON *results) {
    printf("%6s %6s %5s %5s %9s %9s %9s %9s %9s %11s\n", "input", "conc", "reqs", "eos", "TPS(med)",
           "TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "throughput");
    printf("%6s %6s %5s %5s %9s %9s %9s %9s %9s %11s\n", "tokens", "", "", "", "tok/s", "ms", "ms",
           "ms", "ms", "tok/s");
    cJSON *r;
    cJSON_ArrayForEach(r, results) {
#define F(k) cJSON_GetObjectItem(r, k)->valuedouble
        printf("%6.0f %6.0f %5.0f %5.0f %9.2f %9.2f %9.2f %9.3f %9.3f %11.2f\n", F("input_tokens"),
               F("concurrency"), F("requests"), F("eos_stops"), F("tps_median"), F("ttft_ms_p50"),
               F("ttft_ms_p99"), F("itl_ms_p50"), F("itl_ms_p99"), F("throughput_tokens_per_s"));
#undef F
    }
}

static int bs_run(const bs_args *a, client_rpc *rpc) {
    fl_error err = {0};
    client_info info;
    if (client_rpc_info(rpc, BS_RPC_MS, &info, &err)) return cli_fail("bench-server: %s", err.msg);
    uint32_t max_in = info.max_input_length, max_total = info.max_total_tokens;
    client_info_clear(&info);
    for (int i = 0; i < a->n_lengths; i++)
        if ((uint32_t)a->lengths[i] > max_in ||
            (uint32_t)(a->lengths[i] + a->new_tokens) > max_total)
            return cli_fail("bench-server: input length %d + %d new tokens exceeds the router's "
                            "limits (max_input_length %u, max_total_tokens %u)",
                            a->lengths[i], a->new_tokens, max_in, max_total);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "addr", a->addr);
    cJSON_AddNumberToObject(root, "new_tokens", a->new_tokens);
    cJSON *results = cJSON_AddArrayToObject(root, "results");
    int rc = 0;
    for (int li = 0; li < a->n_lengths && rc == 0; li++) {
        char *prompt = NULL;
        int n_tok = 0;
        if (bench_prompt_make(rpc, a->lengths[li], &prompt, &n_tok, &err)) {
            rc = cli_fail("bench-server: %s", err.msg);
            break;
        }
        if (n_tok != a->lengths[li])
            fprintf(stderr, "bench-server: no prompt cut gives exactly %d tokens; using %d\n",
                    a->lengths[li], n_tok);
        for (int ci = 0; ci < a->n_conc && rc == 0; ci++) {
            cJSON *cell = bs_cell_run(rpc, prompt, a->lengths[li], n_tok, a->conc[ci], a);
            if (cell)
                cJSON_AddItemToArray(results, cell);
            else
                rc = 1;
        }
        free(prompt);
    }
    if (rc == 0 && a->csv_path) rc = bench_csv_write(results, a->csv_path);
    if (rc == 0 && a->json_path) rc = bench_json_write(root, a->json_path);
    if (rc == 0 && !(a->json_path && !strcmp(a->json_path, "-"))) bs_print_table(results);
    cJSON_Delete(root);
    return rc;
}

int bench_json_write(const cJSON *root, const char *path) {
    if (!strcmp(path, "-")) {
        char *s = cJSON_PrintUnformatted(root);
        if (!s) return cli_fail("bench-server: out of memory");
        puts(s);
        fflush(stdout);
        cJSON_free(s);
        return 0;
    }
    char *s = cJSON_Print(root);
    FILE *f = s ? fopen(path, "w") : NULL;
    bool ok = f && fputs(s, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f)) ok = false;
    cJSON_free(s);
    return ok ? 0 : cli_fail("bench-server: cannot write %s", path);
}

static void bs_csv_field(FILE *f, const cJSON *v) {
    if (cJSON_IsNumber(v))
        fprintf(f, "%.10g", v->valuedouble);
    else if (cJSON_IsString(v))
        fputs(v->valuestring, f);
    else if (cJSON_IsBool(v))
        fputs(cJSON_IsTrue(v) ? "true" : "false", f);
    // null: an empty field
}

int bench_csv_write(const cJSON *rows, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return cli_fail("bench-server: cannot write %s", path);
    const cJSON *row = rows ? rows->child : NULL, *v;
    if (row) {
        for (v = row->child; v; v = v->next)
            fprintf(f, "%s%s", v->string, v->next ? "," : "\n");
        for (; row; row = row->next)
            for (v = row->child; v; v = v->next) {
                bs_csv_field(f, v);
                fputc(v->next ? ',' : '\n', f);
            }
    }
    bool ok = !ferror(f);
    if (fclose(f)) ok = false;
    return ok ? 0 : cli_fail("bench-server: cannot write %s", path);
}

// `--json` with no FILE after it (last, or followed by another option) means stdout: it becomes
// `--json=-` before parsing, so the fixed mode's `--json` keeps printing JSON to stdout.
static void bs_json_arg_normalize(int argc, char **argv) {
    static char json_stdout[] = "--json=-";
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--json") && (i + 1 == argc || !strncmp(argv[i + 1], "--", 2)))
            argv[i] = json_stdout;
}

// Parses --request-rate / --sweep ("inf" or a positive number each) into cfg->rates.
static int bs_rates_parse(const char *rate_s, const char *sweep_s, bench_load_config *cfg) {
    const char *flag = sweep_s ? "sweep" : "request-rate", *text = sweep_s ? sweep_s : rate_s;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", text);
    cfg->n_rates = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ", ", &save); tok;
         tok = strtok_r(NULL, ", ", &save)) {
        char *end;
        double r = !strcmp(tok, "inf") ? INFINITY : strtod(tok, &end);
        bool ok = isinf(r) ? !strcmp(tok, "inf") : (end != tok && !*end && r > 0);
        if (!ok || cfg->n_rates == (int)(sizeof cfg->rates / sizeof *cfg->rates))
            return cli_fail("bench-server: --%s wants up to %d rates in requests/s, each a "
                            "positive number or inf: '%s'",
                            flag, (int)(sizeof cfg->rates / sizeof *cfg->rates), text);
        cfg->rates[cfg->n_rates++] = r;
    }
    if (cfg->n_rates == 0) return cli_fail("bench-server: --%s is empty", flag);
    return 0;
}

// Checks the load mode's settings (the option table fills cfg) and runs it.
static int bs_load_main(bench_load_config *cfg, const char *rate_s, const char *sweep_s,
                        const char *goodput_s, float burstiness, float duration, float in_range,
                        float out_range, client_rpc **rpc) {
    if (rate_s && sweep_s) return cli_fail("bench-server: give --request-rate or --sweep, not both");
    int rc = bs_rates_parse(rate_s, sweep_s ? sweep_s : rate_s ? rate_s : "inf", cfg);
    if (rc) return rc;
    fl_error err = {0};
    if (goodput_s && bench_slo_parse(goodput_s, &cfg->slo, &err))
        return cli_fail("bench-server: --%s", err.msg);
    cfg->burstiness = burstiness, cfg->duration_s = duration;
    cfg->input_range = in_range, cfg->output_range = out_range;
    if (!(burstiness > 0)) return cli_fail("bench-server: --burstiness must be > 0");
    if (duration < 0 || cfg->num_prompts < 0 || cfg->max_concurrency < 0)
        return cli_fail("bench-server: --duration, --num-prompts and --max-concurrency must not "
                        "be negative");
    if (cfg->input_len < 1 || cfg->output_len < 1)
        return cli_fail("bench-server: --input-len and --output-len must be >= 1");
    if (in_range < 0 || in_range >= 1 || out_range < 0 || out_range >= 1)
        return cli_fail("bench-server: --input-len-range and --output-len-range must be in [0, 1)");
    if (cfg->num_prompts == 0 && duration == 0 && !cfg->prompts_path) cfg->num_prompts = 100;
    for (int i = 0; i < cfg->n_rates; i++)
        if (isinf(cfg->rates[i]) && cfg->num_prompts == 0 && !cfg->prompts_path)
            return cli_fail("bench-server: an infinite request rate needs --num-prompts");
    if (!(*rpc = client_rpc_connect(cfg->addr, BS_CONNECT_MS, &err)))
        return cli_fail("bench-server: %s", err.msg);
    return bench_load_run(cfg, *rpc);
}

int cmd_bench_server(int argc, char **argv) {
    bs_args a = {.new_tokens = -1}; // -1: not given
    bench_load_config load = {.input_len = 512, .output_len = 128, .seed = 0};
    const char *lengths_s = NULL, *conc_s = NULL, *rate_s = NULL, *sweep_s = NULL;
    const char *goodput_s = NULL;
    float burstiness = 1, duration = 0, in_range = 0, out_range = 0;
    // Options of both modes; the load mode is the one selected by --request-rate, --sweep or
    // --prompts, the fixed-concurrency mode is the default.
    opt_spec opts[] = {
        OPT("addr", OPT_STRING, &a.addr, "router gRPC address: host:port or unix:/path (required)"),
        OPT("json", OPT_STRING, &a.json_path, "write JSON to FILE (no FILE or -: print it to stdout)"),
        OPT("csv", OPT_STRING, &a.csv_path, "write the result rows as CSV to FILE"),
        // fixed concurrency
        OPT("input-lengths", OPT_STRING, &lengths_s,
         "prompt lengths in tokens (default 20,3300,5500,10000)"),
        OPT("new-tokens", OPT_INT, &a.new_tokens, "max_new_tokens of each request (default 256)"),
        OPT("ignore-eos", OPT_BOOL, &a.ignore_eos,
         "generate --new-tokens tokens even past EOS (the card's protocol)"),
        OPT("concurrency", OPT_STRING, &conc_s, "client threads, one cell each (default 1)"),
        OPT("requests", OPT_INT, &a.requests, "requests per cell (default 2 x concurrency)"),
        // load
        OPT("request-rate", OPT_STRING, &rate_s,
         "load mode: arrivals per second, or inf for all at once (default inf)"),
        OPT("sweep", OPT_STRING, &sweep_s, "load mode at each rate R1,R2,... in turn"),
        OPT("burstiness", OPT_FLOAT, &burstiness,
         "gamma shape of the inter-arrival times: 1 Poisson (default), < 1 burstier"),
        OPT("num-prompts", OPT_INT, &load.num_prompts,
         "requests per rate (default 100, or the --prompts file's lines)"),
        OPT("duration", OPT_FLOAT, &duration, "issue requests for S seconds per rate (bound)"),
        OPT("seed", OPT_U64, &load.seed, "seed of the lengths and arrivals (default 0)"),
        OPT("input-len", OPT_INT, &load.input_len, "prompt tokens (default 512)"),
        OPT("input-len-range", OPT_FLOAT, &in_range,
         "F: prompt tokens uniform in [L(1-F), L(1+F)] (default 0)"),
        OPT("output-len", OPT_INT, &load.output_len,
         "generated tokens, forced past EOS (default 128)"),
        OPT("output-len-range", OPT_FLOAT, &out_range, "F: generated tokens in [L(1-F), L(1+F)]"),
        OPT("prompts", OPT_STRING, &load.prompts_path,
         "JSONL of {\"prompt\": S, \"max_new_tokens\": N} instead of lengths"),
        OPT("max-concurrency", OPT_INT, &load.max_concurrency,
         "requests in flight at most (default " BS_STR(BENCH_LOAD_MAX_THREADS) ")"),
        OPT("goodput", OPT_STRING, &goodput_s,
         "SLOs \"ttft:MS tpot:MS e2e:MS\" (any of them): requests/s meeting all"),
        OPT("plot", OPT_STRING, &load.plot_path, "draw latency and throughput vs rate to FILE.png"),
    };
    bs_json_arg_normalize(argc, argv);
    int rc = cli_args_parse("bench-server", "Benchmarks a running router over GenerateStream.",
                            argc, argv, opts, sizeof opts / sizeof opts[0]);
    if (rc) return rc < 0 ? 2 : 0;
    if (!a.addr) return cli_fail("bench-server: --addr is required");
    client_rpc *rpc = NULL;
    if (rate_s || sweep_s || load.prompts_path) {
        if (lengths_s || conc_s || a.requests || a.new_tokens != -1)
            return cli_fail("bench-server: --input-lengths, --concurrency, --requests and "
                            "--new-tokens belong to the fixed-concurrency mode; the load mode "
                            "takes --input-len and --output-len");
        load.addr = a.addr, load.json_path = a.json_path, load.csv_path = a.csv_path;
        rc = bs_load_main(&load, rate_s, sweep_s, goodput_s, burstiness, duration, in_range,
                          out_range, &rpc);
        client_rpc_free(rpc);
        return rc;
    }
    if (load.plot_path || goodput_s || load.num_prompts || duration)
        return cli_fail("bench-server: --plot, --goodput, --num-prompts and --duration belong to "
                        "the load mode (--request-rate, --sweep or --prompts)");
    if (a.new_tokens == -1) a.new_tokens = 256;
    if (a.new_tokens < 1) return cli_fail("bench-server: --new-tokens must be >= 1");
    if (a.requests < 0) return cli_fail("bench-server: --requests must not be negative");
    if (cli_positive_list_parse("bench-server", "input-lengths",
                                lengths_s ? lengths_s : "20,3300,5500,10000", a.lengths,
                                BS_MAX_LIST, &a.n_lengths) ||
        cli_positive_list_parse("bench-server", "concurrency", conc_s ? conc_s : "1", a.conc,
                                BS_MAX_LIST, &a.n_conc))
        return 2;
    fl_error err = {0};
    if (!(rpc = client_rpc_connect(a.addr, BS_CONNECT_MS, &err)))
        return cli_fail("bench-server: %s", err.msg);
    rc = bs_run(&a, rpc);
    client_rpc_free(rpc);
    return rc;
}
