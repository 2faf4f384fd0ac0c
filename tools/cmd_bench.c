// falconlite bench: the model card's single-request protocol on the local engine (no server).
// For each input length (and batch size): prefill a random prompt, then greedy-decode a fixed
// number of tokens with EOS ignored, and report TTFT, prefill tok/s, decode tok/s (median step),
// the card's TPS (generated tokens / end-to-end time), achieved bytes/s of weight + KV reads per
// decode step against the device's copy bandwidth measured in the same run, and peak memory.
// With --profile: an op-level timeline instead (kernels/backend.h: profile_begin) of a few decode
// steps and one prefill, run without graphs, next to the graph-replayed decode step time.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "common/model_config.h"
#include "shard/engine/kv_cache.h"
#include "shard/engine/model.h"
#include "tools/cli_args.h"
#include "tools/cli_common.h"
#include "tools/commands.h"
#ifdef FALCONLITE_HAVE_CUDA
#include "kernels/cuda/cuda_info.h"
#endif

#define BENCH_MAX_LIST   16
#define COPY_PROBE_BYTES ((size_t)1 << 30)
#define PROFILE_STEPS    8  // profiled decode steps (averaged)
#define GRAPH_STEPS      16 // graph-replayed decode steps timed (median), after one capture
#define PROFILE_MAX_OPS  64

typedef struct bench_result {
    int input_len, batch, generated;
    double ttft_s, e2e_s, step_median_s, step_p99_s;
    double prefill_tok_s, decode_tok_s, card_tps;
    double bytes_per_step, achieved_bps, copy_fraction;
    size_t peak_mem;
} bench_result;

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

typedef struct bench_env {
    model *m;
    kv_cache *kv;
    backend *be;
    const model_config *cfg;
    size_t mem_total; // device memory (0: unknown)
    size_t min_free;
    double copy_bps; // measured copy bandwidth (0: not measured)
    int new_tokens, ignore_eos;
    unsigned seed;
} bench_env;

static void track_memory(bench_env *e) {
    size_t f = e->be->mem_available(e->be);
    if (f < e->min_free) e->min_free = f;
}

// `batch` sequences of input_len random tokens with cache room for n_new more, and the
// per-step arrays of a greedy decode over them.
typedef struct bench_batch {
    int batch, input_len;
    kv_seq *seqs;
    fwd_seq *fs;
    int32_t *prompt, *next;
    float *logits; // [batch, n_vocab]
} bench_batch;

static void bench_batch_free(bench_env *e, bench_batch *bb) {
    for (int b = 0; b < bb->batch && bb->seqs; b++)
        kv_seq_release(e->kv, &bb->seqs[b]);
    free(bb->seqs);
    free(bb->fs);
    free(bb->prompt);
    free(bb->next);
    free(bb->logits);
}

static fl_code bench_batch_create(bench_env *e, bench_batch *bb, int input_len, int batch,
                                  int n_new, fl_error *err) {
    const int n_vocab = e->cfg->n_vocab;
    *bb = (bench_batch){.batch = batch, .input_len = input_len};
    bb->seqs = calloc((size_t)batch, sizeof *bb->seqs);
    bb->fs = calloc((size_t)batch, sizeof *bb->fs);
    bb->prompt = malloc((size_t)batch * input_len * sizeof(int32_t));
    bb->next = malloc((size_t)batch * sizeof(int32_t));
    bb->logits = malloc((size_t)batch * n_vocab * sizeof(float));
    if (!bb->seqs || !bb->fs || !bb->prompt || !bb->next || !bb->logits)
        return fl_error_set(err, FL_ENOMEM, "bench: out of host memory");
    for (int i = 0; i < batch * input_len; i++) {
        e->seed = e->seed * 1664525u + 1013904223u;
        bb->prompt[i] = (int32_t)((e->seed >> 8) % (unsigned)n_vocab);
    }
    for (int b = 0; b < batch; b++) {
        fl_code code = kv_seq_reserve(e->kv, &bb->seqs[b], input_len + n_new, err);
        if (code != FL_OK) return code;
    }
    return FL_OK;
}

// Points the forward inputs at the prompts (prefill) or at the last sampled tokens (decode).
static void bench_batch_feed(bench_batch *bb, int prefill) {
    for (int b = 0; b < bb->batch; b++)
        bb->fs[b] = prefill ? (fwd_seq){.tokens = bb->prompt + (size_t)b * bb->input_len,
                                        .n_new = bb->input_len,
                                        .kv = &bb->seqs[b]}
                            : (fwd_seq){.tokens = &bb->next[b], .n_new = 1, .kv = &bb->seqs[b]};
}

static void bench_batch_sample(const bench_env *e, bench_batch *bb) {
    for (int b = 0; b < bb->batch; b++)
        bb->next[b] = argmax(bb->logits + (size_t)b * e->cfg->n_vocab, e->cfg->n_vocab);
}

// One measurement: `batch` sequences of `input_len` random tokens, then decode.
static fl_code bench_one(bench_env *e, int input_len, int batch, bench_result *r, fl_error *err) {
    bench_batch bb;
    double *steps = malloc((size_t)(e->new_tokens + 1) * sizeof(double));
    fl_code code = bench_batch_create(e, &bb, input_len, batch, e->new_tokens, err);
    if (code == FL_OK && !steps) code = fl_error_set(err, FL_ENOMEM, "bench: out of host memory");
    if (code != FL_OK) goto done;
    fwd_seq *fs = bb.fs;
    int32_t *next = bb.next;
    float *logits = bb.logits;
    memset(r, 0, sizeof *r);
    r->input_len = input_len;
    r->batch = batch;
    e->min_free = (size_t)-1;
    const double t0 = cli_now_s();
    bench_batch_feed(&bb, 1);
    code = model_forward(e->m, e->kv, fs, batch, logits, err);
    if (code != FL_OK) goto done;
    r->ttft_s = cli_now_s() - t0;
    track_memory(e);
    int generated = 1, n_steps = 0, running = 1;
    bench_batch_sample(e, &bb);
    while (generated < e->new_tokens && running) {
        bench_batch_feed(&bb, 0);
        const double s0 = cli_now_s();
        code = model_forward(e->m, e->kv, fs, batch, logits, err);
        if (code != FL_OK) goto done;
        steps[n_steps++] = cli_now_s() - s0;
        generated++;
        bench_batch_sample(e, &bb);
        if (!e->ignore_eos && next[0] == e->cfg->eos_token_id) running = 0;
        if (n_steps % 16 == 0) {
            track_memory(e);
            fprintf(stderr, "\rbench: input %d batch %d: decode step %d/%d   ", input_len, batch,
                    generated, e->new_tokens);
        }
    }
    r->e2e_s = cli_now_s() - t0;
    track_memory(e);
    r->generated = generated;
    r->card_tps = (double)batch * generated / r->e2e_s;
    r->prefill_tok_s = (double)batch * input_len / r->ttft_s;
    if (n_steps > 0) {
        qsort(steps, (size_t)n_steps, sizeof(double), cli_cmp_double);
        r->step_median_s = steps[n_steps / 2];
        r->step_p99_s = steps[(n_steps * 99) / 100 < n_steps ? (n_steps * 99) / 100 : n_steps - 1];
        r->decode_tok_s = batch / r->step_median_s;
        // The median step runs at about the middle of the generated range.
        const double ctx = input_len + generated / 2.0;
        r->bytes_per_step = (double)model_weight_bytes(e->m) +
                            (double)batch * ctx * (double)kv_cache_bytes_per_token(e->kv);
        r->achieved_bps = r->bytes_per_step / r->step_median_s;
        r->copy_fraction = e->copy_bps > 0 ? r->achieved_bps / e->copy_bps : 0;
    }
    if (e->mem_total && e->min_free != (size_t)-1) r->peak_mem = e->mem_total - e->min_free;
    fprintf(stderr, "\rbench: input %d batch %d: done (%.1f tok/s)%20s\n", input_len, batch,
            r->card_tps, "");
done:
    bench_batch_free(e, &bb);
    free(steps);
    return code;
}

// ---- --profile

typedef struct op_table {
    op_profile_entry e[PROFILE_MAX_OPS];
    int n;
    int steps; // forward calls profiled (totals are divided by it)
} op_table;

static double op_table_total_us(const op_table *t) {
    double sum = 0;
    for (int i = 0; i < t->n; i++)
        sum += t->e[i].total_us;
    return sum / t->steps;
}

static void op_table_print(const char *title, const op_table *t) {
    const double step = op_table_total_us(t);
    printf("%s: %.1f us of ops per step\n", title, step);
    printf("  %-22s %10s %10s %9s %7s\n", "op", "calls/step", "us/step", "us/call", "share");
    for (int i = 0; i < t->n; i++) {
        const op_profile_entry *o = &t->e[i];
        const double us = o->total_us / t->steps;
        printf("  %-22s %10.1f %10.1f %9.2f %6.1f%%\n", o->name, (double)o->calls / t->steps, us,
               o->calls ? o->total_us / o->calls : 0.0, step > 0 ? 100.0 * us / step : 0.0);
    }
}

static cJSON *op_table_json(const op_table *t) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "steps", t->steps);
    cJSON_AddNumberToObject(o, "op_us_per_step", op_table_total_us(t));
    cJSON *arr = cJSON_AddArrayToObject(o, "ops");
    for (int i = 0; i < t->n; i++) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "op", t->e[i].name);
        cJSON_AddNumberToObject(r, "calls_per_step", (double)t->e[i].calls / t->steps);
        cJSON_AddNumberToObject(r, "us_per_step", t->e[i].total_us / t->steps);
        cJSON_AddItemToArray(arr, r);
    }
    return o;
}

// Runs `steps` forward calls of the batch inside a profile, sampling greedily after each.
static fl_code profile_steps(bench_env *e, bench_batch *bb, int steps, op_table *t, fl_error *err) {
    e->be->profile_begin(e->be);
    fl_code code = FL_OK;
    for (int s = 0; s < steps && code == FL_OK; s++) {
        code = model_forward(e->m, e->kv, bb->fs, bb->batch, bb->logits, err);
        bench_batch_sample(e, bb);
    }
    fl_error perr = {0};
    t->steps = steps;
    t->n = e->be->profile_end(e->be, t->e, PROFILE_MAX_OPS, &perr);
    if (code == FL_OK && t->n < 0) code = fl_error_set(err, perr.code, "%s", perr.msg);
    if (t->n > PROFILE_MAX_OPS) t->n = PROFILE_MAX_OPS;
    return code;
}

// One prefill of input_len tokens per sequence and PROFILE_STEPS decode steps under the profile,
// then the median graph-replayed decode step.
static fl_code bench_profile(bench_env *e, int input_len, int batch, cJSON *json_out,
                             fl_error *err) {
    bench_batch bb;
    op_table *prefill = calloc(1, sizeof *prefill), *decode = calloc(1, sizeof *decode);
    double steps_s[GRAPH_STEPS];
    fl_code code =
        bench_batch_create(e, &bb, input_len, batch, PROFILE_STEPS + GRAPH_STEPS + 1, err);
    if (code == FL_OK && (!prefill || !decode))
        code = fl_error_set(err, FL_ENOMEM, "bench: out of host memory");
    bench_batch_feed(&bb, 1);
    if (code == FL_OK) code = profile_steps(e, &bb, 1, prefill, err);
    bench_batch_feed(&bb, 0);
    if (code == FL_OK) code = profile_steps(e, &bb, PROFILE_STEPS, decode, err);
    for (int s = 0; s <= GRAPH_STEPS && code == FL_OK; s++) { // step 0 captures the graph
        const double s0 = cli_now_s();
        code = model_forward(e->m, e->kv, bb.fs, batch, bb.logits, err);
        if (s > 0) steps_s[s - 1] = cli_now_s() - s0;
        bench_batch_sample(e, &bb);
    }
    if (code != FL_OK) goto done;
    qsort(steps_s, GRAPH_STEPS, sizeof(double), cli_cmp_double);
    const double graph_us = steps_s[GRAPH_STEPS / 2] * 1e6;
    if (json_out) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "input_length", input_len);
        cJSON_AddNumberToObject(o, "batch", batch);
        cJSON_AddItemToObject(o, "decode", op_table_json(decode));
        cJSON_AddItemToObject(o, "prefill", op_table_json(prefill));
        cJSON_AddNumberToObject(o, "graph_decode_step_us", graph_us);
        cJSON_AddItemToArray(json_out, o);
    } else {
        printf("\ninput %d, batch %d (ops timed one by one, without graphs)\n", input_len, batch);
        op_table_print("decode step", decode);
        printf("graph-replayed decode step: %.1f us (median of %d, wall time)\n", graph_us,
               GRAPH_STEPS);
        op_table_print("prefill", prefill);
    }
done:
    bench_batch_free(e, &bb);
    free(prefill);
    free(decode);
    return code;
}

static void print_table(const bench_result *res, int n, const bench_env *e) {
    printf("%6s %5s %9s %10s %10s %9s %9s %9s %8s %9s\n", "input", "batch", "TTFT_ms", "prefill/s",
           "decode/s", "ITL_ms", "card_TPS", "GB/s", "of_copy", "peak_GiB");
    for (int i = 0; i < n; i++) {
        const bench_result *r = &res[i];
        printf("%6d %5d %9.1f %10.1f %10.1f %9.2f %9.1f %9.1f %7.1f%% %9.2f\n", r->input_len,
               r->batch, r->ttft_s * 1e3, r->prefill_tok_s, r->decode_tok_s, r->step_median_s * 1e3,
               r->card_tps, r->achieved_bps / 1e9, r->copy_fraction * 100,
               (double)r->peak_mem / (1u << 30));
    }
    if (e->copy_bps > 0) printf("copy bandwidth (read+write): %.1f GB/s\n", e->copy_bps / 1e9);
}

static void print_json(const bench_result *res, int n, const bench_env *e, const char *device) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "backend", e->be->name);
    cJSON_AddStringToObject(root, "device", device);
    cJSON_AddNumberToObject(root, "copy_bandwidth_bytes_per_s", e->copy_bps);
    cJSON_AddNumberToObject(root, "weight_bytes_per_step", (double)model_weight_bytes(e->m));
    cJSON_AddNumberToObject(root, "kv_bytes_per_token", (double)kv_cache_bytes_per_token(e->kv));
    cJSON *arr = cJSON_AddArrayToObject(root, "results");
    for (int i = 0; i < n; i++) {
        const bench_result *r = &res[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "input_length", r->input_len);
        cJSON_AddNumberToObject(o, "batch", r->batch);
        cJSON_AddNumberToObject(o, "generated_tokens", r->generated);
        cJSON_AddNumberToObject(o, "ttft_s", r->ttft_s);
        cJSON_AddNumberToObject(o, "e2e_s", r->e2e_s);
        cJSON_AddNumberToObject(o, "prefill_tok_per_s", r->prefill_tok_s);
        cJSON_AddNumberToObject(o, "decode_tok_per_s", r->decode_tok_s);
        cJSON_AddNumberToObject(o, "itl_median_s", r->step_median_s);
        cJSON_AddNumberToObject(o, "itl_p99_s", r->step_p99_s);
        cJSON_AddNumberToObject(o, "card_tps", r->card_tps);
        cJSON_AddNumberToObject(o, "bytes_per_decode_step", r->bytes_per_step);
        cJSON_AddNumberToObject(o, "achieved_bytes_per_s", r->achieved_bps);
        cJSON_AddNumberToObject(o, "fraction_of_copy_bandwidth", r->copy_fraction);
        cJSON_AddNumberToObject(o, "peak_device_memory_bytes", (double)r->peak_mem);
        cJSON_AddItemToArray(arr, o);
    }
    cli_json_print(root);
}

int cmd_bench(int argc, char **argv) {
    const char *model_dir = NULL, *backend_name = "auto", *lengths_s = "20,3300,5500,10000",
               *batch_s = "1";
    int new_tokens = 256, ignore_eos = 0, json = 0, threads = 0, profile = 0;
    const opt_spec opts[] = {
        OPT("model", OPT_STRING, &model_dir, "model directory (required)"),
        OPT("backend", OPT_STRING, &backend_name, "cpu | cuda | auto (default auto)"),
        OPT("input-lengths", OPT_STRING, &lengths_s, "prompt lengths (default 20,3300,5500,10000)"),
        OPT("new-tokens", OPT_INT, &new_tokens, "tokens generated per request (default 256)"),
        OPT("batch", OPT_STRING, &batch_s, "concurrent sequences per measurement (default 1)"),
        OPT("ignore-eos", OPT_BOOL, &ignore_eos, "keep generating past EOS (the card's protocol)"),
        OPT("threads", OPT_INT, &threads, "CPU backend threads (default: all cores)"),
        OPT("json", OPT_BOOL, &json, "print one JSON object"),
        OPT("profile", OPT_BOOL, &profile, "op-level timeline of a prefill and a few decode steps "
                                        "(per op: calls, us per step, share) instead"),
    };
    int rc = cli_args_parse("bench", "Benchmark prefill and decode on the local engine.", argc,
                            argv, opts, (int)(sizeof opts / sizeof opts[0]));
    if (rc) return rc > 0 ? 0 : 1;
    if (!model_dir) return cli_fail("bench: --model is required");
    if (new_tokens < 1) return cli_fail("bench: --new-tokens must be at least 1");
    int lengths[BENCH_MAX_LIST], batches[BENCH_MAX_LIST];
    int n_len, n_batch;
    if (cli_positive_list_parse("bench", "input-lengths", lengths_s, lengths, BENCH_MAX_LIST,
                                &n_len) ||
        cli_positive_list_parse("bench", "batch", batch_s, batches, BENCH_MAX_LIST, &n_batch))
        return 1;

    fl_error err = {0};
    bench_env e = {0};
    e.new_tokens = new_tokens;
    e.ignore_eos = ignore_eos;
    e.seed = 12345u;
    char device[300] = "cpu";
    backend *be = NULL;
    if (!strcmp(backend_name, "cpu"))
        be = backend_cpu_create(threads, &err);
    else
        be = backend_create(backend_name, &err);
    if (!be) return cli_fail("bench: %s", err.msg);
    e.be = be;
    if (profile && !be->profile_begin) {
        be->free(be);
        return cli_fail("bench: the %s backend has no op profile", backend_name);
    }
    if (!strcmp(be->name, "cpu")) {
        fprintf(stderr, "bench: measuring host copy bandwidth\n");
        e.copy_bps = cli_host_copy_bandwidth(threads);
    }
#ifdef FALCONLITE_HAVE_CUDA
    if (!strcmp(be->name, "cuda")) {
        cuda_device_info info;
        char msg[256];
        if (cuda_device_info_get(0, &info, msg, sizeof msg) == 0) {
            snprintf(device, sizeof device, "%s (sm_%d%d, %d SMs, %.1f GiB)", info.name,
                     info.cc_major, info.cc_minor, info.n_sm, (double)info.mem_total / (1u << 30));
            e.mem_total = info.mem_total;
        }
        fprintf(stderr, "bench: measuring copy bandwidth on %s\n", device);
        double bw = cuda_copy_bandwidth(0, COPY_PROBE_BYTES, 10);
        e.copy_bps = bw > 0 ? bw : 0;
    }
#endif
    fprintf(stderr, "bench: loading %s on %s\n", model_dir, be->name);
    rope_overrides rope = ROPE_OVERRIDES_NONE;
    if (cli_rope_env("bench", &rope)) {
        be->free(be);
        return 1;
    }
    model_options mo = {0, 1, NULL, rope_overrides_given(&rope) ? &rope : NULL, {0}};
    if (cli_gptq_env("bench", &mo.gptq)) {
        be->free(be);
        return 1;
    }
    double tl = cli_now_s();
    fl_code code = model_load(model_dir, &mo, be, &e.m, &err);
    if (code != FL_OK) {
        be->free(be);
        return cli_fail("bench: %s", err.msg);
    }
    e.cfg = model_get_config(e.m);
    fprintf(stderr, "bench: loaded in %.1f s (%.2f GB of weights per decode step)\n",
            cli_now_s() - tl, (double)model_weight_bytes(e.m) / 1e9);
    int max_len = 0, max_batch = 0;
    for (int i = 0; i < n_len; i++)
        max_len = lengths[i] > max_len ? lengths[i] : max_len;
    for (int i = 0; i < n_batch; i++)
        max_batch = batches[i] > max_batch ? batches[i] : max_batch;
    const int max_new = profile ? PROFILE_STEPS + GRAPH_STEPS + 1 : new_tokens;
    const int blocks_per_seq = (max_len + max_new + KV_BLOCK_SIZE - 1) / KV_BLOCK_SIZE;
    code = model_kv_cache_create(e.m, blocks_per_seq * max_batch, &e.kv, &err);
    bench_result *res = calloc((size_t)n_len * n_batch, sizeof *res);
    int n_res = 0;
    if (code == FL_OK && !res) code = fl_error_set(&err, FL_ENOMEM, "bench: out of host memory");
    if (code == FL_OK) { // warm-up: module loading, cuBLAS heuristics, first graph captures
        int saved = e.new_tokens;
        bench_result warm;
        e.new_tokens = 4;
        code = bench_one(&e, 32, 1, &warm, &err);
        e.new_tokens = saved;
    }
    if (profile) {
        cJSON *root = json ? cJSON_CreateObject() : NULL;
        cJSON *arr = root ? cJSON_AddArrayToObject(root, "profiles") : NULL;
        if (root) {
            cJSON_AddStringToObject(root, "backend", be->name);
            cJSON_AddStringToObject(root, "device", device);
        } else {
            printf("falconlite bench --profile: %s on %s\n", model_dir, device);
        }
        for (int i = 0; i < n_len && code == FL_OK; i++)
            for (int j = 0; j < n_batch && code == FL_OK; j++)
                code = bench_profile(&e, lengths[i], batches[j], arr, &err);
        if (root && code == FL_OK)
            cli_json_print(root);
        else if (root)
            cJSON_Delete(root);
    }
    for (int i = 0; i < n_len && code == FL_OK && !profile; i++)
        for (int j = 0; j < n_batch && code == FL_OK; j++)
            if ((code = bench_one(&e, lengths[i], batches[j], &res[n_res], &err)) == FL_OK) n_res++;
    if (n_res > 0) {
        if (json)
            print_json(res, n_res, &e, device);
        else {
            printf("falconlite bench: %s on %s, %d new tokens, EOS %s\n", model_dir, device,
                   new_tokens, ignore_eos ? "ignored" : "honoured");
            print_table(res, n_res, &e);
        }
    }
    free(res);
    if (e.kv) kv_cache_free(e.kv);
    model_free(e.m);
    be->free(be);
    if (code != FL_OK) return cli_fail("bench: %s", err.msg);
    return 0;
}
