// Kernel micro-benchmark for the CUDA backend (not a test: it times things). Measures, through
// the backend interface only, the GPTQ decode matmul on every Falcon-40B shape at 1..64 rows
// through both the GEMV and the tensor-core (mma) path, the GPTQ prefill path, the dense LM
// head, and paged attention (flash-decoding and prefill), against the card's copy bandwidth
// measured here.
// Built and run by tests/gpu/run_gpu.sh; prints one table.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_info.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static void die_on_error(backend *b, const char *what) {
    fl_error err = {0};
    if (b->sync(b, &err) != FL_OK) {
        fprintf(stderr, "kernel_bench: %s: %s\n", what, err.msg);
        exit(1);
    }
}

// Seconds per call of fn, median of `reps` timed batches of `inner` calls.
typedef void (*op_fn)(backend *b, void *ctx);
static double time_op(backend *b, op_fn fn, void *ctx, int inner, int reps) {
    double t[16];
    fn(b, ctx);
    die_on_error(b, "warm-up");
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        for (int i = 0; i < inner; i++) fn(b, ctx);
        die_on_error(b, "timed run");
        t[r] = (now_s() - t0) / inner;
    }
    for (int i = 1; i < reps; i++) // insertion sort, reps is small
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    return t[reps / 2];
}

// Matrices of one shape are cycled through so the timed reads come from HBM, not from L2.
#define MM_COPIES 4
static void *rand_act(backend *b, size_t n) {
    float *h = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = (float)(rnd() % 2001) / 1000.0f - 1.0f;
    void *p = b->buf_alloc(b, n * 2);
    b->act_from_f32(b, p, h, n);
    free(h);
    return p;
}

// Seconds per call of fn inside a CUDA graph of `calls` back-to-back calls (decode steps replay
// graphs, so this is the cost that counts there), median of `reps` replays.
static uint64_t graph_keys = 1u << 20;
typedef struct graph_ctx {
    op_fn fn;
    void *ctx;
    uint64_t key;
    int calls;
} graph_ctx;

static void graph_run(backend *b, void *p) {
    graph_ctx *g = p;
    if (b->graph_replay(b, g->key)) return;
    b->graph_capture_begin(b, g->key);
    for (int i = 0; i < g->calls; i++) g->fn(b, g->ctx);
    b->graph_capture_end(b, g->key);
}

static double time_in_graph(backend *b, op_fn fn, void *ctx, int calls) {
    graph_ctx g = {fn, ctx, graph_keys++, calls};
    return time_op(b, graph_run, &g, 3, 5) / calls;
}

// The small per-layer ops of a Falcon-40B decode step (n_tok = 1).
typedef struct small_ctx {
    int op;
    void *x, *y, *z, *qkv, *q, *k, *v, *kc, *vc;
    float *w, *bias, *base;
    int32_t *pos, *slots;
} small_ctx;

static void small_run(backend *b, void *p) {
    small_ctx *c = p;
    switch (c->op) {
    case 0: b->layernorm(b, c->y, c->x, c->w, c->bias, 1, 8192, 1e-5f); break;
    case 1: b->qkv_split(b, c->q, c->k, c->v, c->qkv, 1, 128, 8, 64); break;
    case 2: b->rotary(b, c->q, c->pos, c->base, 1, 128, 64, 64, 1.0f); break;
    case 3: b->rotary(b, c->k, c->pos, c->base, 1, 8, 64, 64, 1.0f); break;
    case 4: b->kv_store(b, c->kc, c->vc, c->k, c->v, c->slots, 1, 8, 64); break;
    case 5: b->gelu(b, c->z, 32768); break;
    case 6: b->add(b, c->y, c->x, c->y, 8192); break;
    }
}

static void bench_small_ops(backend *b) {
    static const char *names[] = {"layernorm 8192", "qkv_split 128/8x64", "rotary q 128x64",
                                  "rotary k 8x64", "kv_store 8x64", "gelu 32768", "add 8192"};
    small_ctx c = {0};
    c.x = rand_act(b, 8192);
    c.y = rand_act(b, 8192);
    c.z = rand_act(b, 32768);
    c.qkv = rand_act(b, 9216);
    c.q = rand_act(b, 8192);
    c.k = rand_act(b, 512);
    c.v = rand_act(b, 512);
    c.kc = rand_act(b, (size_t)64 * 8 * KV_BLOCK_SIZE * 64);
    c.vc = rand_act(b, (size_t)64 * 8 * KV_BLOCK_SIZE * 64);
    float *ones = malloc(8192 * sizeof(float));
    for (int i = 0; i < 8192; i++) ones[i] = 1.0f;
    c.w = b->vector_create(b, ones, 8192);
    c.bias = b->vector_create(b, ones, 8192);
    c.base = b->vector_create(b, ones, 1); // only the address matters: base 1
    int32_t one[1] = {300};
    c.pos = b->buf_alloc(b, 4);
    c.slots = b->buf_alloc(b, 4);
    b->copy_to_device(b, c.pos, one, 4);
    b->copy_to_device(b, c.slots, one, 4);
    for (int op = 0; op < 7; op++) {
        c.op = op;
        double t = time_in_graph(b, small_run, &c, 100);
        printf("%-34s %5d %10.2f  (in a graph)\n", names[op], 1, t * 1e6);
    }
    void *bufs[] = {c.x, c.y, c.z, c.qkv, c.q, c.k, c.v, c.kc, c.vc, c.w, c.bias, c.base, c.pos, c.slots};
    for (int i = 0; i < 14; i++) b->buf_free(b, bufs[i]);
    free(ones);
}

typedef struct mm_ctx {
    bk_matrix *w[MM_COPIES];
    int n_w, next;
    void *x, *y;
    int n_tok;
    uint64_t graph_key; // 0: direct launches
    int graph_calls;
} mm_ctx;

static void mm_direct(backend *b, void *p) {
    mm_ctx *c = p;
    b->matmul(b, c->y, c->x, c->w[c->next++ % c->n_w], c->n_tok);
}

// One replay of a graph holding graph_calls matmuls (captured on first use).
static void mm_graph(backend *b, void *p) {
    mm_ctx *c = p;
    if (b->graph_replay(b, c->graph_key)) return;
    b->graph_capture_begin(b, c->graph_key);
    for (int i = 0; i < c->graph_calls; i++) b->matmul(b, c->y, c->x, c->w[i % c->n_w], c->n_tok);
    b->graph_capture_end(b, c->graph_key);
}

static bk_matrix *make_gptq(backend *b, int K, int N, int act_order, size_t *bytes) {
    const int G = K / 128;
    int32_t *qw = malloc((size_t)K / 8 * N * 4), *qz = malloc((size_t)G * N / 8 * 4);
    uint16_t *sc = malloc((size_t)G * N * 2);
    int32_t *gi = malloc((size_t)K * 4);
    for (size_t i = 0; i < (size_t)K / 8 * N; i++) qw[i] = (int32_t)rnd();
    for (size_t i = 0; i < (size_t)G * N / 8; i++) qz[i] = (int32_t)rnd();
    for (size_t i = 0; i < (size_t)G * N; i++) sc[i] = f32_to_fp16(0.002f + (rnd() % 1000) * 1e-5f);
    for (int k = 0; k < K; k++) gi[k] = k / 128;
    if (act_order) // a random permutation of k / 128: every group keeps 128 members
        for (int k = K - 1; k > 0; k--) {
            int j = (int)(rnd() % (uint32_t)(k + 1)), t = gi[k];
            gi[k] = gi[j];
            gi[j] = t;
        }
    host_matrix hm = {.kind = MATRIX_GPTQ, .n_in = K, .n_out = N, .qweight = qw, .qzeros = qz,
                      .scales = sc, .g_idx = gi, .bits = 4, .group_size = 128, .n_groups = G};
    fl_error err = {0};
    bk_matrix *w = b->matrix_create(b, &hm, &err);
    if (!w) {
        fprintf(stderr, "kernel_bench: %s\n", err.msg);
        exit(1);
    }
    *bytes = (size_t)K / 8 * N * 4 + (size_t)G * N * 2 + (size_t)G * N; // + byte zero points
    free(qw);
    free(qz);
    free(sc);
    free(gi);
    return w;
}


typedef struct norm_ctx {
    void *x, *r1, *r2, *a, *m;
    bk_norm n;
    int rows, d;
} norm_ctx;

static void norm_run(backend *b, void *p) {
    norm_ctx *c = p;
    b->residual_norm(b, c->x, c->r1, c->r2, c->a, c->n, c->m, c->n, 0, c->rows, c->d, 1e-5f);
}

typedef struct attn_ctx {
    void *q, *out, *kc, *vc;
    attn_batch ab;
    int n_head, n_head_kv, head_dim;
} attn_ctx;

static void attn_run(backend *b, void *p) {
    attn_ctx *c = p;
    b->attention(b, c->out, c->q, c->kc, c->vc, &c->ab, c->n_head, c->n_head_kv, c->head_dim,
                 0.125f);
}

// n_seq sequences of n_q new tokens after n_past cached ones each, Falcon-40B heads (128 / 8 x 64).
static double bench_attention(backend *b, int n_past, int n_q, int n_seq, int reps) {
    attn_ctx c = {0};
    c.n_head = 128;
    c.n_head_kv = 8;
    c.head_dim = 64;
    const int ctx = n_past + n_q, per_seq = (ctx + KV_BLOCK_SIZE - 1) / KV_BLOCK_SIZE;
    const int n_blocks = per_seq * n_seq, n_tok = n_q * n_seq;
    const size_t cache_n = (size_t)n_blocks * c.n_head_kv * KV_BLOCK_SIZE * c.head_dim;
    c.kc = rand_act(b, cache_n);
    c.vc = rand_act(b, cache_n);
    c.q = rand_act(b, (size_t)n_tok * c.n_head * c.head_dim);
    c.out = b->buf_alloc(b, (size_t)n_tok * c.n_head * c.head_dim * 2);
    int32_t *table = malloc((size_t)n_blocks * 4);
    for (int i = 0; i < n_blocks; i++) table[i] = n_blocks - 1 - i;
    attn_seq *s = malloc((size_t)n_seq * sizeof *s);
    for (int i = 0; i < n_seq; i++) s[i] = (attn_seq){i * n_q, n_q, n_past, i * per_seq};
    void *seq_dev = b->buf_alloc(b, (size_t)n_seq * sizeof *s);
    void *table_dev = b->buf_alloc(b, (size_t)n_blocks * 4);
    b->copy_to_device(b, seq_dev, s, (size_t)n_seq * sizeof *s);
    b->copy_to_device(b, table_dev, table, (size_t)n_blocks * 4);
    c.ab = (attn_batch){n_seq, n_tok, n_q, ctx, seq_dev, table_dev, NULL};
    double t = n_q > 1 ? time_op(b, attn_run, &c, 1, reps) : time_in_graph(b, attn_run, &c, 20);
    void *bufs[] = {c.kc, c.vc, c.q, c.out, seq_dev, table_dev};
    for (int i = 0; i < 6; i++) b->buf_free(b, bufs[i]);
    free(table);
    free(s);
    return t;
}

// The per-layer small ops of a decode step at batch 1 and 16 (the "small" table): attention at
// short, bucket-edge and long contexts, and residual_norm as Falcon-40B runs it (x += r1 + r2,
// then ln_attn and ln_mlp of the 8192-wide row). Times per call, replayed from CUDA graphs.
static void bench_small_table(backend *b) {
    printf("%-34s %5s %10s\n", "small op", "rows", "us/call");
    const int ctxs[] = {20, 1024, 10000}, batches[] = {1, 16};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++)
            printf("attention decode ctx %-6d (graph)  %5d %10.2f\n", ctxs[i] + 1, batches[j],
                   bench_attention(b, ctxs[i], 1, batches[j], 7) * 1e6);
    const int d = 8192, rows[] = {1, 16, 32};
    float *ones = malloc(d * sizeof(float));
    for (int i = 0; i < d; i++) ones[i] = 1.0f;
    float *w = b->vector_create(b, ones, d), *bias = b->vector_create(b, ones, d);
    for (int r = 0; r < 3; r++) {
        norm_ctx c = {rand_act(b, (size_t)rows[r] * d), rand_act(b, (size_t)rows[r] * d),
                      rand_act(b, (size_t)rows[r] * d), b->buf_alloc(b, (size_t)rows[r] * d * 2),
                      b->buf_alloc(b, (size_t)rows[r] * d * 2), {w, bias}, rows[r], d};
        printf("residual_norm 2 ln x %-5d (graph)   %5d %10.2f\n", d, rows[r],
               time_in_graph(b, norm_run, &c, 50) * 1e6);
        void *bufs[] = {c.x, c.r1, c.r2, c.a, c.m};
        for (int i = 0; i < 5; i++) b->buf_free(b, bufs[i]);
    }
    b->buf_free(b, w);
    b->buf_free(b, bias);
    free(ones);
}

// A CUDA backend with FALCONLITE_GPTQ_MMA set to mode (read once, at creation).
static backend *backend_with_mma(const char *mode) {
    setenv("FALCONLITE_GPTQ_MMA", mode, 1);
    fl_error err = {0};
    backend *b = backend_cuda_create(0, &err);
    unsetenv("FALCONLITE_GPTQ_MMA");
    if (!b) {
        fprintf(stderr, "kernel_bench: %s\n", err.msg);
        exit(1);
    }
    return b;
}

int main(int argc, char **argv) {
    const int gemv_only = argc > 1 && !strcmp(argv[1], "gemv"); // M=1 GEMV sweep rows only
    const int rows_only = argc > 1 && !strcmp(argv[1], "rows");  // the GPTQ rows table only
    fl_error err = {0};
    backend *b = backend_cuda_create(0, &err);
    if (!b) {
        fprintf(stderr, "kernel_bench: %s\n", err.msg);
        return 77;
    }
    if (argc > 1 && !strcmp(argv[1], "small")) { // the small-ops table only
        bench_small_table(b);
        b->free(b);
        return 0;
    }
    cuda_device_info info;
    char msg[256];
    if (cuda_device_info_get(0, &info, msg, sizeof msg)) {
        fprintf(stderr, "kernel_bench: %s\n", msg);
        return 1;
    }
    const double copy = cuda_copy_bandwidth(0, (size_t)1 << 30, 10);
    const char *bps = getenv("FALCONLITE_GEMV_BLOCKS_PER_SM");
    const char *gr = getenv("FALCONLITE_GEMV_ROWS");
    printf("gemv blocks per SM: %s, rows per batch: %s\n", bps ? bps : "default",
           gr ? gr : "default");
    printf("device: %s, %d SMs; copy bandwidth (read+write, 1 GiB D2D): %.1f GB/s\n", info.name,
           info.n_sm, copy / 1e9);
    printf("%-34s %5s %10s %9s %8s\n", "kernel (N x K)", "rows", "us/call", "GB/s", "of_copy");

    // GPTQ decode rows on every Falcon-40B shape, through both paths, each on its own backend:
    // "gemv" = FALCONLITE_GPTQ_MMA=0 (the GEMV up to 16 rows, dequant + cuBLAS above) and
    // "mma" = FALCONLITE_GPTQ_MMA=1 (the tensor-core kernel), replayed from CUDA graphs of
    // back-to-back calls (as decode steps run them). The default dispatch picks per row count.
    const int shapes[][2] = {{9216, 8192}, {8192, 8192}, {32768, 8192}, {8192, 32768}};
    const int rows[] = {1, 2, 4, 8, 16, 32, 64};
    const int n_rows = gemv_only ? 1 : (int)(sizeof rows / sizeof rows[0]);
    static const char *path_names[2] = {"gemv", "mma"};
    backend *paths[2] = {backend_with_mma("0"), gemv_only ? NULL : backend_with_mma("1")};
    for (int s = 0; s < 4; s++) {
        const int N = shapes[s][0], K = shapes[s][1];
        for (int act = 0; act < (gemv_only || rows_only ? 1 : 2); act++)
            for (int pi = 0; pi < 2 && paths[pi]; pi++) {
                backend *bp = paths[pi];
                size_t bytes = 0;
                mm_ctx c0 = {{0}, 0, 0, NULL, NULL, 1, 0, 0};
                while (c0.n_w == 0 ||
                       (c0.n_w < MM_COPIES && (size_t)c0.n_w * bytes < ((size_t)120 << 20)))
                    c0.w[c0.n_w++] = make_gptq(bp, K, N, act, &bytes);
                c0.x = rand_act(bp, (size_t)64 * K);
                c0.y = bp->buf_alloc(bp, (size_t)64 * N * 2);
                for (int r = 0; r < n_rows; r++) {
                    mm_ctx c = c0;
                    c.n_tok = rows[r];
                    if (pi == 0 && r == 0 && !act) { // direct launches: the launch overhead
                        double t = time_op(bp, mm_direct, &c, 50, 7);
                        printf("gptq gemv direct %5d x %-5d    %5d %10.1f %9.1f %7.1f%%\n", N, K,
                               1, t * 1e6, bytes / t / 1e9, 100.0 * bytes / t / copy);
                    }
                    c.graph_key = graph_keys++;
                    c.graph_calls = 10;
                    double t = time_op(bp, mm_graph, &c, 3, 5) / c.graph_calls;
                    printf("gptq %-4s %-3s %5d x %-5d     %5d %10.1f %9.1f %7.1f%%\n",
                           path_names[pi], act ? "act" : "", N, K, rows[r], t * 1e6,
                           bytes / t / 1e9, 100.0 * bytes / t / copy);
                }
                bp->buf_free(bp, c0.x);
                bp->buf_free(bp, c0.y);
                for (int i = 0; i < c0.n_w; i++) bp->matrix_free(bp, c0.w[i]);
                bp->graph_reset(bp);
            }
        if (s >= 2 && !gemv_only && !rows_only) { // prefill path (dequantise + cuBLAS), 4096 rows
            size_t bytes = 0;
            mm_ctx c = {{make_gptq(b, K, N, 0, &bytes)}, 1, 0, NULL, NULL, 4096, 0, 0};
            c.x = rand_act(b, (size_t)4096 * K);
            c.y = b->buf_alloc(b, (size_t)4096 * N * 2);
            double t = time_op(b, mm_direct, &c, 3, 5);
            printf("gptq prefill %5d x %-5d      %5d %10.1f %8.1f TFLOP/s\n", N, K, 4096,
                   t * 1e6, 2.0 * 4096 * N * K / t / 1e12);
            b->buf_free(b, c.x);
            b->buf_free(b, c.y);
            b->matrix_free(b, c.w[0]);
        }
    }
    for (int pi = 0; pi < 2; pi++)
        if (paths[pi]) paths[pi]->free(paths[pi]);
    if (gemv_only || rows_only) {
        b->free(b);
        return 0;
    }
    { // dense LM head: vocab 65024 x d_model 8192, fp16
        const int N = 65024, K = 8192;
        uint16_t *wh = malloc((size_t)N * K * 2);
        for (size_t i = 0; i < (size_t)N * K; i++) wh[i] = f32_to_fp16((float)(rnd() % 2001) / 1e5f);
        host_matrix hm = {.kind = MATRIX_DENSE, .n_in = K, .n_out = N, .w = wh, .w_type = DTYPE_F16};
        bk_matrix *w = b->matrix_create(b, &hm, &err);
        free(wh);
        void *x = rand_act(b, K), *y = b->buf_alloc(b, (size_t)N * 2);
        mm_ctx c = {{w}, 1, 0, x, y, 1, 0, 0};
        double t = time_op(b, mm_direct, &c, 20, 7);
        const double bytes = (double)N * K * 2;
        printf("dense lm_head %5d x %-5d      %5d %10.1f %9.1f %7.1f%%\n", N, K, 1, t * 1e6,
               bytes / t / 1e9, 100.0 * bytes / t / copy);
        b->buf_free(b, x);
        b->buf_free(b, y);
        b->matrix_free(b, w);
    }
    bench_small_ops(b);
    const int ctxs[] = {20, 3300, 10000};
    for (int i = 0; i < 3; i++) { // decode: 1 query token, KV bytes of one layer
        double t = bench_attention(b, ctxs[i], 1, 1, 7);
        const double bytes = (double)(ctxs[i] + 1) * 8 * 64 * 2 * 2;
        printf("attention decode ctx %-6d (graph)  %5d %10.1f %9.1f %7.1f%%\n", ctxs[i] + 1, 1,
               t * 1e6, bytes / t / 1e9, 100.0 * bytes / t / copy);
    }
    const int prompts[] = {3300, 10000};
    for (int i = 0; i < 2; i++) { // prefill: causal FLOPs 4 * L^2/2 * heads * dim
        double t = bench_attention(b, 0, prompts[i], 1, 3);
        const double flop = 2.0 * prompts[i] * (double)prompts[i] * 128 * 64;
        printf("attention prefill len %-6d        %5d %10.1f %8.1f TFLOP/s\n", prompts[i],
               prompts[i], t * 1e6, flop / t / 1e12);
    }
    b->free(b);
    return 0;
}
