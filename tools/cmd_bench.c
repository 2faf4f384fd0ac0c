// falconlite bench: the model card's single-request protocol on the local engine (no server).
// For each input length (and batch size): prefill a random prompt, then greedy-decode a fixed
// number of tokens with EOS ignored, and report TTFT, prefill tok/s, decode tok/s (median step),
// the card's TPS (generated tokens / end-to-end time), achieved bytes/s of weight + KV reads per
// decode step against the device's copy bandwidth measured in the same run, and peak memory.
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

// One measurement: `batch` sequences of `input_len` random tokens, then decode.
static fl_code bench_one(bench_env *e, int input_len, int batch, bench_result *r, fl_error *err) {
    const int n_vocab = e->cfg->n_vocab;
    fl_code code = FL_OK;
    kv_seq *seqs = calloc((size_t)batch, sizeof *seqs);
    fwd_seq *fs = calloc((size_t)batch, sizeof *fs);
    int32_t *prompt = malloc((size_t)batch * input_len * sizeof(int32_t));
    int32_t *next = malloc((size_t)batch * sizeof(int32_t));
    float *logits = malloc((size_t)batch * n_vocab * sizeof(float));
    double *steps = malloc((size_t)(e->new_tokens + 1) * sizeof(double));
    if (!seqs || !fs || !prompt || !next || !logits || !steps) {
        code = fl_error_set(err, FL_ENOMEM, "bench: out of host memory");
        goto done;
    }
    for (int i = 0; i < batch * input_len; i++) {
        e->seed = e->seed * 1664525u + 1013904223u;
        prompt[i] = (int32_t)((e->seed >> 8) % (unsigned)n_vocab);
    }
    for (int b = 0; b < batch; b++) {
        code = kv_seq_reserve(e->kv, &seqs[b], input_len + e->new_tokens, err);
        if (code != FL_OK) goto done;
    }
    memset(r, 0, sizeof *r);
    r->input_len = input_len;
    r->batch = batch;
    e->min_free = (size_t)-1;
    const double t0 = cli_now_s();
    for (int b = 0; b < batch; b++)
        fs[b] =
            (fwd_seq){.tokens = prompt + (size_t)b * input_len, .n_new = input_len, .kv = &seqs[b]};
    code = model_forward(e->m, e->kv, fs, batch, logits, err);
    if (code != FL_OK) goto done;
    r->ttft_s = cli_now_s() - t0;
    track_memory(e);
    int generated = 1, n_steps = 0, running = 1;
    for (int b = 0; b < batch; b++)
        next[b] = argmax(logits + (size_t)b * n_vocab, n_vocab);
    while (generated < e->new_tokens && running) {
        for (int b = 0; b < batch; b++)
            fs[b] = (fwd_seq){.tokens = &next[b], .n_new = 1, .kv = &seqs[b]};
        const double s0 = cli_now_s();
        code = model_forward(e->m, e->kv, fs, batch, logits, err);
        if (code != FL_OK) goto done;
        steps[n_steps++] = cli_now_s() - s0;
        generated++;
        for (int b = 0; b < batch; b++) {
            next[b] = argmax(logits + (size_t)b * n_vocab, n_vocab);
            if (!e->ignore_eos && b == 0 && next[b] == e->cfg->eos_token_id) running = 0;
        }
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
    for (int b = 0; b < batch && seqs; b++)
        kv_seq_release(e->kv, &seqs[b]);
    free(seqs);
    free(fs);
    free(prompt);
    free(next);
    free(logits);
    free(steps);
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
    int new_tokens = 256, ignore_eos = 0, json = 0, threads = 0;
    const opt_spec opts[] = {
        OPT("model", OPT_STRING, &model_dir, "model directory (required)"),
        OPT("backend", OPT_STRING, &backend_name, "cpu | cuda | auto (default auto)"),
        OPT("input-lengths", OPT_STRING, &lengths_s, "prompt lengths (default 20,3300,5500,10000)"),
        OPT("new-tokens", OPT_INT, &new_tokens, "tokens generated per request (default 256)"),
        OPT("batch", OPT_STRING, &batch_s, "concurrent sequences per measurement (default 1)"),
        OPT("ignore-eos", OPT_BOOL, &ignore_eos, "keep generating past EOS (the card's protocol)"),
        OPT("threads", OPT_INT, &threads, "CPU backend threads (default: all cores)"),
        OPT("json", OPT_BOOL, &json, "print one JSON object"),
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
    model_options mo = {0, 1, NULL, rope_overrides_given(&rope) ? &rope : NULL};
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
    const int blocks_per_seq = (max_len + new_tokens + KV_BLOCK_SIZE - 1) / KV_BLOCK_SIZE;
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
    for (int i = 0; i < n_len && code == FL_OK; i++)
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
