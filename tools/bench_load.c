// falconlite bench-server's load mode, after vLLM's benchmark_serving: requests arrive at a
// request rate with gamma-distributed gaps (burstiness 1: a Poisson process; an infinite rate:
// all at once), each streams through GenerateStream with its output forced to its length
// (ignore_eos), and each rate reports completed / failed requests, request and token throughput,
// TTFT / TPOT / ITL / E2E mean, p50, p90 and p99, and goodput under SLOs.
//
// Concurrency: this thread is the scheduler. It sleeps (a condition wait with a deadline, no
// polling) until the next arrival, then releases the request to a pool of client threads that
// grows on demand, one thread per request in flight, up to --max-concurrency; a request that
// arrives while all of them are busy waits its turn, and its TTFT starts when it is sent (as in
// vLLM). The same seed gives the same requests (lengths, prompts) at every rate of a sweep.
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tools/bench_server.h"
#include "tools/cli_args.h"
#include "tools/cli_common.h"

#define BL_MAX_REQUESTS 1000000 // per rate, a bound for --duration at high rates
#define BL_DRAW_S       0.25    // the TTY progress bar's redraw period

// A prompt and its token count as the router's Tokenize RPC gives it.
typedef struct bl_prompt {
    char *text;
    int n_tokens;
    int max_new_tokens; // the --prompts file's (0: drawn from --output-len)
} bl_prompt;

// Where requests come from: prompts cut to drawn lengths (made on first use of a length and kept
// for the whole sweep), or the lines of a --prompts file in order, repeated when more are needed.
typedef struct bl_source {
    const bench_load_config *cfg;
    client_rpc *rpc;
    int in_lo, in_hi, out_lo, out_hi; // drawn lengths' bounds
    bl_prompt *by_len;                // [in_hi + 1] synthetic prompts by token count
    bl_prompt *file;                  // [n_file]
    int n_file;
} bl_source;

typedef struct bl_req {
    const char *prompt; // borrowed from the source
    int input_tokens, max_new_tokens;
    double arrival_s; // offset of its arrival from the rate's start
    double finish_s;  // clock time its call returned
    bench_timeline tl;
    bool ok;
} bl_req;

// One rate's requests, shared by the scheduler and the client threads under `lock`.
typedef struct bl_run {
    client_rpc *rpc;
    bl_req *reqs; // [n] in arrival order
    int n;
    pthread_mutex_t lock;
    pthread_cond_t work;  // client threads wait here for a released request
    pthread_cond_t event; // the scheduler waits here for the next arrival or a completion
    int released, taken, done, failed; // requests arrived / sent / returned / failed
    int idle, n_threads, max_threads;
    bool closing;
    pthread_t *threads; // [max_threads]
    atomic_int tokens;
    fl_error err; // the first failure
} bl_run;

static void bl_source_free(bl_source *s) {
    if (s->by_len)
        for (int i = 0; i <= s->in_hi; i++)
            free(s->by_len[i].text);
    for (int i = 0; i < s->n_file; i++)
        free(s->file[i].text);
    free(s->by_len), free(s->file);
}

static void bl_range(int len, double f, int *lo, int *hi) {
    *lo = (int)(len * (1 - f));
    *hi = (int)(len * (1 + f));
    if (*lo < 1) *lo = 1;
    if (*hi < *lo) *hi = *lo;
}

// Reads the --prompts file: one {"prompt": S, "max_new_tokens": N} per line (N optional).
static fl_code bl_file_read(bl_source *s, fl_error *err) {
    const char *path = s->cfg->prompts_path;
    FILE *f = fopen(path, "r");
    if (!f) return fl_error_set(err, FL_EIO, "cannot open %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int cap_file = 0, line_no = 0;
    fl_code rc = FL_OK;
    while (rc == FL_OK && getline(&line, &cap, f) >= 0) {
        line_no++;
        if (strspn(line, " \t\r\n") == strlen(line)) continue;
        cJSON *o = cJSON_Parse(line);
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "prompt");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "max_new_tokens");
        if (!cJSON_IsString(p) || (m && (!cJSON_IsNumber(m) || m->valuedouble < 1 ||
                                         m->valuedouble != (int)m->valuedouble)))
            rc = fl_error_set(err, FL_EFORMAT,
                              "%s:%d: want {\"prompt\": string, \"max_new_tokens\": positive "
                              "integer (optional)}",
                              path, line_no);
        else if (s->n_file == cap_file) {
            cap_file = cap_file ? 2 * cap_file : 64;
            bl_prompt *t = realloc(s->file, sizeof *t * (size_t)cap_file);
            if (!t)
                rc = fl_error_set(err, FL_ENOMEM, "out of memory");
            else
                s->file = t;
        }
        if (rc == FL_OK) {
            bl_prompt *b = &s->file[s->n_file];
            *b = (bl_prompt){.text = strdup(p->valuestring), .max_new_tokens = m ? m->valueint : 0};
            if (!b->text) rc = fl_error_set(err, FL_ENOMEM, "out of memory");
            s->n_file += rc == FL_OK;
        }
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
    if (rc == FL_OK && s->n_file == 0) rc = fl_error_set(err, FL_EFORMAT, "%s: no prompts", path);
    for (int i = 0; rc == FL_OK && i < s->n_file; i++) {
        client_tokens t;
        if ((rc = client_rpc_tokenize(s->rpc, s->file[i].text, BS_RPC_MS, &t, err))) break;
        s->file[i].n_tokens = t.n_ids;
        client_tokens_clear(&t);
    }
    return rc;
}

// Checks every request the source can make against the router's limits.
static fl_code bl_source_open(bl_source *s, const bench_load_config *cfg, client_rpc *rpc,
                              fl_error *err) {
    *s = (bl_source){.cfg = cfg, .rpc = rpc};
    bl_range(cfg->input_len, cfg->input_range, &s->in_lo, &s->in_hi);
    bl_range(cfg->output_len, cfg->output_range, &s->out_lo, &s->out_hi);
    client_info info;
    fl_code rc = client_rpc_info(rpc, BS_RPC_MS, &info, err);
    if (rc) return rc;
    uint32_t max_in = info.max_input_length, max_total = info.max_total_tokens;
    client_info_clear(&info);
    if (cfg->prompts_path) {
        if ((rc = bl_file_read(s, err))) return rc;
        for (int i = 0; i < s->n_file; i++) {
            const bl_prompt *b = &s->file[i];
            int out = b->max_new_tokens ? b->max_new_tokens : s->out_hi;
            if ((uint32_t)b->n_tokens > max_in || (uint32_t)(b->n_tokens + out) > max_total)
                return fl_error_set(err, FL_EINVAL,
                                    "%s: prompt %d has %d tokens + %d new tokens, beyond the "
                                    "router's limits (max_input_length %u, max_total_tokens %u)",
                                    cfg->prompts_path, i + 1, b->n_tokens, out, max_in, max_total);
        }
        return FL_OK;
    }
    if ((uint32_t)s->in_hi > max_in || (uint32_t)(s->in_hi + s->out_hi) > max_total)
        return fl_error_set(err, FL_EINVAL,
                            "input length up to %d + up to %d new tokens exceeds the router's "
                            "limits (max_input_length %u, max_total_tokens %u)",
                            s->in_hi, s->out_hi, max_in, max_total);
    if (!(s->by_len = calloc((size_t)s->in_hi + 1, sizeof *s->by_len)))
        return fl_error_set(err, FL_ENOMEM, "out of memory");
    return FL_OK;
}

// The prompt of request i, whose drawn lengths are in_len and out_len.
static fl_code bl_source_get(bl_source *s, int i, int in_len, int out_len, bl_req *r,
                             fl_error *err) {
    const bl_prompt *b;
    if (s->n_file) {
        b = &s->file[i % s->n_file];
    } else {
        bl_prompt *c = &s->by_len[in_len];
        if (!c->text) {
            fl_code rc = bench_prompt_make(s->rpc, in_len, &c->text, &c->n_tokens, err);
            if (rc) return rc;
        }
        b = c;
    }
    r->prompt = b->text;
    r->input_tokens = b->n_tokens;
    r->max_new_tokens = b->max_new_tokens ? b->max_new_tokens : out_len;
    return FL_OK;
}

// Request count and arrival times at `rate`: from 0, gaps drawn from the seeded sampler, until
// --num-prompts requests or --duration seconds (whichever bound is set and comes first); with
// neither, one pass over the --prompts file.
static fl_code bl_schedule(bl_source *s, double rate, bl_req **out, int *n_out, fl_error *err) {
    const bench_load_config *cfg = s->cfg;
    int limit = cfg->num_prompts ? cfg->num_prompts
                : cfg->duration_s > 0 ? BL_MAX_REQUESTS
                                      : s->n_file;
    bench_rng arrivals, lengths;
    bench_rng_seed(&arrivals, cfg->seed);
    bench_rng_seed(&lengths, cfg->seed ^ 0x6c656e67746873ull); // an independent stream
    bl_req *reqs = NULL;
    int n = 0, cap = 0;
    fl_code rc = FL_OK;
    for (double t = 0; n < limit && !(cfg->duration_s > 0 && t >= cfg->duration_s);
         t += bench_interval_sample(&arrivals, rate, cfg->burstiness)) {
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            bl_req *g = realloc(reqs, sizeof *g * (size_t)cap);
            if (!g) {
                rc = fl_error_set(err, FL_ENOMEM, "out of memory");
                break;
            }
            reqs = g;
        }
        // Both lengths are drawn for every request, so request i is the same at every rate.
        int in_len = bench_rng_int(&lengths, s->in_lo, s->in_hi);
        int out_len = bench_rng_int(&lengths, s->out_lo, s->out_hi);
        reqs[n] = (bl_req){.arrival_s = t};
        if ((rc = bl_source_get(s, n, in_len, out_len, &reqs[n], err))) break;
        n++;
    }
    if (rc) {
        free(reqs);
        return rc;
    }
    *out = reqs;
    *n_out = n;
    return FL_OK;
}

static void *bl_worker(void *arg) {
    bl_run *run = arg;
    pthread_mutex_lock(&run->lock);
    for (;;) {
        while (run->taken == run->released && !run->closing) {
            run->idle++;
            pthread_cond_wait(&run->work, &run->lock);
            run->idle--;
        }
        if (run->taken == run->released) break; // closing
        bl_req *r = &run->reqs[run->taken++];
        pthread_mutex_unlock(&run->lock);
        fl_error e = {0};
        r->ok = bench_stream_run(run->rpc, r->prompt, r->max_new_tokens, true, &r->tl,
                                 &run->tokens, &e) == FL_OK;
        if (r->ok && r->tl.generated == 0) {
            r->ok = false;
            fl_error_set(&e, FL_EBACKEND, "a stream ended without a token");
        }
        r->finish_s = cli_now_s();
        pthread_mutex_lock(&run->lock);
        if (!r->ok && run->failed++ == 0) run->err = e;
        run->done++;
        pthread_cond_signal(&run->event);
    }
    pthread_mutex_unlock(&run->lock);
    return NULL;
}

// Hands the next request to the pool (lock held): a new client thread when the waiting requests
// outnumber the idle threads and the cap allows one, else a wake-up. False when no thread runs.
static bool bl_release(bl_run *run) {
    run->released++;
    if (run->released - run->taken > run->idle && run->n_threads < run->max_threads &&
        pthread_create(&run->threads[run->n_threads], NULL, bl_worker, run) == 0)
        run->n_threads++;
    else
        pthread_cond_signal(&run->work);
    return run->n_threads > 0;
}

// Progress on stderr: an in-place bar on a terminal, a plain line per tenth of the requests
// otherwise.
typedef struct bl_progress {
    bool tty;
    const char *label;
    double next_draw_s;
    int last_tenth;
} bl_progress;

static void bl_progress_show(bl_progress *p, const bl_run *run, double now_s, bool final) {
    int tenth = run->n ? run->done * 10 / run->n : 10;
    if (p->tty) {
        if (!final && now_s < p->next_draw_s) return;
        p->next_draw_s = now_s + BL_DRAW_S;
        char bar[31];
        int fill = run->n ? (int)((long long)run->done * 30 / run->n) : 30;
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r\033[K%s [%s] %d/%d done, %d in flight, %d waiting, %d failed, %.1f s%s",
                p->label, bar, run->done, run->n, run->taken - run->done,
                run->released - run->taken, run->failed, now_s, final ? "\n" : "");
    } else {
        if (!final && tenth == p->last_tenth) return;
        p->last_tenth = tenth;
        fprintf(stderr, "%s: %d/%d done, %d in flight, %d failed, %.1f s\n", p->label, run->done,
                run->n, run->taken - run->done, run->failed, now_s);
    }
}

static struct timespec bl_abs_time(double clock_s) {
    double sec = floor(clock_s);
    return (struct timespec){(time_t)sec, (long)((clock_s - sec) * 1e9)};
}

// Issues run->reqs at their arrival times and waits for all of them; returns the clock time the
// rate started at, or NAN when no client thread could be started.
static double bl_run_schedule(bl_run *run, bl_progress *prog) {
    pthread_mutex_lock(&run->lock);
    double t0 = cli_now_s();
    int next = 0;
    bool stuck = false;
    while (run->done < run->n) {
        double now = cli_now_s() - t0;
        for (; next < run->n && run->reqs[next].arrival_s <= now; next++)
            if (!bl_release(run)) {
                stuck = true;
                break;
            }
        if (stuck) break;
        bl_progress_show(prog, run, now, false);
        double wake = next < run->n ? run->reqs[next].arrival_s : INFINITY;
        if (prog->tty && prog->next_draw_s < wake) wake = prog->next_draw_s;
        if (isinf(wake)) {
            pthread_cond_wait(&run->event, &run->lock);
        } else {
            struct timespec ts = bl_abs_time(t0 + wake);
            pthread_cond_timedwait(&run->event, &run->lock, &ts);
        }
    }
    if (!stuck) bl_progress_show(prog, run, cli_now_s() - t0, true);
    run->closing = true;
    pthread_cond_broadcast(&run->work);
    pthread_mutex_unlock(&run->lock);
    for (int i = 0; i < run->n_threads; i++)
        pthread_join(run->threads[i], NULL);
    return stuck ? NAN : t0;
}

static void bl_rate_name(double rate, char *buf, size_t cap) {
    if (isinf(rate))
        snprintf(buf, cap, "inf");
    else
        snprintf(buf, cap, "%g", rate);
}

static void bl_dist_add(cJSON *o, const char *name, const bench_dist *d) {
    static const char *const stat[] = {"mean", "p50", "p90", "p99"};
    const double v[] = {d->mean, d->p50, d->p90, d->p99};
    for (int i = 0; i < 4; i++) {
        char key[48];
        snprintf(key, sizeof key, "%s_ms_%s", name, stat[i]);
        cJSON_AddNumberToObject(o, key, v[i]);
    }
}

// One result row (a flat object: the CSV's columns in order).
static cJSON *bl_row(const bench_load_config *cfg, double rate, int n, const bench_metrics *m) {
    cJSON *o = cJSON_CreateObject();
    if (isinf(rate))
        cJSON_AddStringToObject(o, "request_rate", "inf");
    else
        cJSON_AddNumberToObject(o, "request_rate", rate);
    cJSON_AddNumberToObject(o, "burstiness", cfg->burstiness);
    if (cfg->max_concurrency)
        cJSON_AddNumberToObject(o, "max_concurrency", cfg->max_concurrency);
    else
        cJSON_AddNullToObject(o, "max_concurrency");
    cJSON_AddNumberToObject(o, "num_prompts", n);
    cJSON_AddNumberToObject(o, "completed", m->completed);
    cJSON_AddNumberToObject(o, "failed", m->failed);
    cJSON_AddNumberToObject(o, "duration_s", m->duration_s);
    cJSON_AddNumberToObject(o, "total_input_tokens", (double)m->total_input);
    cJSON_AddNumberToObject(o, "total_output_tokens", (double)m->total_output);
    cJSON_AddNumberToObject(o, "request_throughput", m->request_throughput);
    cJSON_AddNumberToObject(o, "output_throughput", m->output_throughput);
    cJSON_AddNumberToObject(o, "total_token_throughput", m->total_token_throughput);
    if (bench_slo_any(&cfg->slo))
        cJSON_AddNumberToObject(o, "request_goodput", m->request_goodput);
    else
        cJSON_AddNullToObject(o, "request_goodput");
    bl_dist_add(o, "ttft", &m->ttft_ms);
    bl_dist_add(o, "tpot", &m->tpot_ms);
    bl_dist_add(o, "itl", &m->itl_ms);
    bl_dist_add(o, "e2e", &m->e2e_ms);
    return o;
}

// Runs one rate and returns its row, or NULL after an error message.
static cJSON *bl_rate_run(bl_source *src, client_rpc *rpc, double rate) {
    const bench_load_config *cfg = src->cfg;
    char rate_s[32], label[64];
    bl_rate_name(rate, rate_s, sizeof rate_s);
    snprintf(label, sizeof label, "bench-server: rate %s req/s", rate_s);
    fl_error err = {0};
    bl_run run = {.rpc = rpc,
                  .max_threads = cfg->max_concurrency ? cfg->max_concurrency
                                                      : BENCH_LOAD_MAX_THREADS};
    if (bl_schedule(src, rate, &run.reqs, &run.n, &err)) {
        cli_fail("bench-server: %s", err.msg);
        return NULL;
    }
    if (run.max_threads > run.n) run.max_threads = run.n;
    bench_request *stats = calloc((size_t)run.n + 1, sizeof *stats);
    run.threads = calloc((size_t)run.max_threads + 1, sizeof *run.threads);
    cJSON *row = NULL;
    if (!stats || !run.threads) {
        cli_fail("bench-server: out of memory");
        goto done;
    }
    pthread_mutex_init(&run.lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); // cli_now_s()'s clock
    pthread_cond_init(&run.event, &ca);
    pthread_cond_init(&run.work, NULL);
    pthread_condattr_destroy(&ca);
    bl_progress prog = {.tty = isatty(2), .label = label, .last_tenth = -1};
    double t0 = bl_run_schedule(&run, &prog);
    pthread_cond_destroy(&run.event);
    pthread_cond_destroy(&run.work);
    pthread_mutex_destroy(&run.lock);
    if (isnan(t0)) {
        cli_fail("bench-server: cannot start a client thread");
        goto done;
    }
    double end = t0;
    for (int i = 0; i < run.n; i++) {
        const bl_req *r = &run.reqs[i];
        if (r->finish_s > end) end = r->finish_s;
        stats[i] = (bench_request){.ok = r->ok,
                                   .input_tokens = r->input_tokens,
                                   .output_tokens = r->tl.generated,
                                   .ttft_s = r->tl.ttft_s,
                                   .e2e_s = r->tl.e2e_s,
                                   .itl_s = r->tl.itl_s,
                                   .n_itl = r->tl.n_itl};
    }
    if (run.failed)
        fprintf(stderr, "bench-server: rate %s: %d of %d requests failed; the first: %s\n", rate_s,
                run.failed, run.n, run.err.msg);
    bench_metrics m;
    if (bench_metrics_compute(stats, run.n, end - t0, &cfg->slo, &m, &err))
        cli_fail("bench-server: %s", err.msg);
    else
        row = bl_row(cfg, rate, run.n, &m);
done:
    for (int i = 0; i < run.n; i++)
        free(run.reqs[i].tl.itl_s);
    free(run.reqs), free(run.threads), free(stats);
    return row;
}

static void bl_print_table(const cJSON *rows) {
    printf("%6s %5s %5s %7s %9s %9s %9s %9s %9s %9s %9s %8s\n", "rate", "done", "fail", "req/s",
           "out tok/s", "TTFT p50", "TTFT p99", "TPOT p50", "ITL p50", "ITL p99", "E2E p50",
           "goodput");
    printf("%6s %5s %5s %7s %9s %9s %9s %9s %9s %9s %9s %8s\n", "req/s", "", "", "", "", "ms",
           "ms", "ms", "ms", "ms", "ms", "req/s");
    const cJSON *r;
    cJSON_ArrayForEach(r, rows) {
#define F(k) cJSON_GetObjectItem(r, k)->valuedouble
        const cJSON *rate = cJSON_GetObjectItem(r, "request_rate");
        const cJSON *good = cJSON_GetObjectItem(r, "request_goodput");
        char rate_s[16], good_s[16] = "-";
        bl_rate_name(cJSON_IsNumber(rate) ? rate->valuedouble : INFINITY, rate_s, sizeof rate_s);
        if (cJSON_IsNumber(good)) snprintf(good_s, sizeof good_s, "%.3f", good->valuedouble);
        printf("%6s %5.0f %5.0f %7.3f %9.2f %9.2f %9.2f %9.3f %9.3f %9.3f %9.2f %8s\n", rate_s,
               F("completed"), F("failed"), F("request_throughput"), F("output_throughput"),
               F("ttft_ms_p50"), F("ttft_ms_p99"), F("tpot_ms_p50"), F("itl_ms_p50"),
               F("itl_ms_p99"), F("e2e_ms_p50"), good_s);
#undef F
    }
}

// Writes s to f as a gnuplot single-quoted string ('' for a quote).
static void bl_gp_quote(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++)
        fputs(*s == '\'' ? "''" : (char[]){*s, 0}, f);
    fputc('\'', f);
}

typedef struct bl_point {
    double x, y[5];
} bl_point;

static int bl_point_cmp(const void *a, const void *b) {
    double x = ((const bl_point *)a)->x, y = ((const bl_point *)b)->x;
    return (x > y) - (x < y);
}

// Draws p50/p99 TTFT, p50/p99 ITL and output tokens/s against the finite request rates with
// gnuplot; a failure is reported and does not fail the run.
static void bl_plot(const cJSON *rows, const char *path) {
    static const char *const keys[5] = {"ttft_ms_p50", "ttft_ms_p99", "itl_ms_p50", "itl_ms_p99",
                                        "output_throughput"};
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        cli_fail("bench-server: --plot needs gnuplot (Debian: apt-get install gnuplot-nox); %s "
                 "not drawn",
                 path);
        return;
    }
    bl_point pts[16];
    int n = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, rows) {
        const cJSON *rate = cJSON_GetObjectItem(r, "request_rate");
        if (!cJSON_IsNumber(rate) || n == 16) continue; // inf has no place on the axis
        pts[n].x = rate->valuedouble;
        for (int k = 0; k < 5; k++)
            pts[n].y[k] = cJSON_GetObjectItem(r, keys[k])->valuedouble;
        n++;
    }
    if (n == 0) {
        cli_fail("bench-server: --plot needs a finite request rate; %s not drawn", path);
        return;
    }
    qsort(pts, (size_t)n, sizeof *pts, bl_point_cmp);
    const char *tmp_root = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char dir[512], data[600], script[600], cmd[700];
    snprintf(dir, sizeof dir, "%s/falconlite-plot-XXXXXX", tmp_root);
    if (!mkdtemp(dir)) {
        cli_fail("bench-server: --plot: cannot make a folder in %s: %s", tmp_root, strerror(errno));
        return;
    }
    snprintf(data, sizeof data, "%s/sweep.dat", dir);
    snprintf(script, sizeof script, "%s/plot.gp", dir);
    FILE *d = fopen(data, "w"), *g = fopen(script, "w");
    if (d) {
        fprintf(d, "# rate ttft_p50 ttft_p99 itl_p50 itl_p99 output_tok_s\n");
        for (int i = 0; i < n; i++)
            fprintf(d, "%.10g %.10g %.10g %.10g %.10g %.10g\n", pts[i].x, pts[i].y[0],
                    pts[i].y[1], pts[i].y[2], pts[i].y[3], pts[i].y[4]);
    }
    if (g) {
        fputs("if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
              "  set terminal pngcairo size 900,1000\n"
              "} else {\n"
              "  set terminal png size 900,1000\n"
              "}\nset output ",
              g);
        bl_gp_quote(g, path);
        fputs("\nset multiplot layout 3,1 title 'falconlite bench-server: load sweep'\n"
              "set grid\nset key top left\nset xlabel 'request rate (req/s)'\n"
              "set style data linespoints\nset yrange [0:*]\nset ylabel 'TTFT (ms)'\nplot ",
              g);
        bl_gp_quote(g, data);
        fputs(" using 1:2 title 'TTFT p50', '' using 1:3 title 'TTFT p99'\n"
              "set ylabel 'ITL (ms)'\nplot '' using 1:4 title 'ITL p50', '' using 1:5 title "
              "'ITL p99'\nset ylabel 'output tokens/s'\n"
              "plot '' using 1:6 title 'output tok/s'\nunset multiplot\n",
              g);
    }
    bool written = d && g && !ferror(d) && !ferror(g);
    if (d) fclose(d);
    if (g) fclose(g);
    if (!written) {
        cli_fail("bench-server: --plot: cannot write the gnuplot input in %s", dir);
    } else {
        snprintf(cmd, sizeof cmd, "gnuplot '%s'", script);
        int rc = system(cmd);
        if (rc != 0)
            cli_fail("bench-server: --plot: gnuplot failed (status %d); %s not drawn", rc, path);
        else
            fprintf(stderr, "bench-server: plot written to %s\n", path);
    }
    unlink(data), unlink(script), rmdir(dir);
}

// The run's settings, as the JSON output's header.
static cJSON *bl_config_json(const bench_load_config *cfg) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "addr", cfg->addr);
    cJSON_AddStringToObject(root, "mode", "load");
    cJSON_AddNumberToObject(root, "seed", (double)cfg->seed);
    cJSON_AddNumberToObject(root, "burstiness", cfg->burstiness);
    cJSON_AddNumberToObject(root, "num_prompts_limit", cfg->num_prompts);
    cJSON_AddNumberToObject(root, "duration_limit_s", cfg->duration_s);
    if (cfg->prompts_path) {
        cJSON_AddStringToObject(root, "prompts", cfg->prompts_path);
    } else {
        cJSON_AddNumberToObject(root, "input_len", cfg->input_len);
        cJSON_AddNumberToObject(root, "input_len_range", cfg->input_range);
    }
    cJSON_AddNumberToObject(root, "output_len", cfg->output_len);
    cJSON_AddNumberToObject(root, "output_len_range", cfg->output_range);
    cJSON *slo = cJSON_AddObjectToObject(root, "goodput_slo_ms");
    if (cfg->slo.ttft_ms > 0) cJSON_AddNumberToObject(slo, "ttft", cfg->slo.ttft_ms);
    if (cfg->slo.tpot_ms > 0) cJSON_AddNumberToObject(slo, "tpot", cfg->slo.tpot_ms);
    if (cfg->slo.e2e_ms > 0) cJSON_AddNumberToObject(slo, "e2e", cfg->slo.e2e_ms);
    cJSON_AddArrayToObject(root, "results");
    return root;
}

int bench_load_run(const bench_load_config *cfg, client_rpc *rpc) {
    fl_error err = {0};
    bl_source src;
    if (bl_source_open(&src, cfg, rpc, &err)) {
        bl_source_free(&src);
        return cli_fail("bench-server: %s", err.msg);
    }
    cJSON *root = bl_config_json(cfg), *rows = cJSON_GetObjectItem(root, "results");
    bool to_stdout = cfg->json_path && !strcmp(cfg->json_path, "-");
    int rc = 0;
    for (int i = 0; i < cfg->n_rates && rc == 0; i++) {
        cJSON *row = bl_rate_run(&src, rpc, cfg->rates[i]);
        if (!row) {
            rc = 1;
            break;
        }
        cJSON_AddItemToArray(rows, row);
        // Files are rewritten after every rate, so a long sweep's finished rates survive.
        if (cfg->csv_path) rc = bench_csv_write(rows, cfg->csv_path);
        if (rc == 0 && cfg->json_path && !to_stdout) rc = bench_json_write(root, cfg->json_path);
    }
    if (rc == 0 && to_stdout) rc = bench_json_write(root, "-");
    if (rc == 0 && !to_stdout) bl_print_table(rows);
    if (rc == 0 && cfg->plot_path) bl_plot(rows, cfg->plot_path);
    cJSON_Delete(root);
    bl_source_free(&src);
    return rc;
}
