// The compute backend interface: a struct of function pointers that the forward driver calls,
// implemented by the CPU reference backend (kernels/cpu, always built) and the CUDA backend
// (kernels/cuda). Every op exists on both, and tests/unit/test_backend_ops.c compares them.
//
// Conventions
// - "act" buffers hold activations in the backend's act_dtype (CPU: F32, CUDA: F16), row-major.
//   Shapes are written in the fixed vocabulary n_tok, d_model, n_head, n_head_kv, head_dim,
//   d_ff, n_vocab, n_seq, n_blocks, block_size.
// - Index arrays (ids, positions, slots, block tables) and per-token rotary bases live in backend
//   memory (`*_dev`); the driver fills them with copy_to_device before the ops of a step.
// - Ops are asynchronous on devices; sync() waits and reports errors. Ops never abort: a
//   backend records its first error and sync() returns it.
// - Arguments are checked once for every backend (kernels/backend.c, installed by the backend
//   constructors): a bad shape or a missing buffer is recorded as the op's error and the op is
//   skipped; an op with nothing to do (n_tok, n or n_rows 0) is a no-op.
// - Weights are uploaded once through matrix_create / vector_create; the backend may repack them
//   (GPTQ nibble shuffles, act-order permutations) and owns the result.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/status.h"

#define KV_BLOCK_SIZE 16 // tokens per paged KV-cache block
#define GRAPH_CTX_BUCKET 1024 // max_ctx granularity of captured decode graphs

typedef enum matrix_kind { MATRIX_DENSE = 0, MATRIX_GPTQ } matrix_kind;

// A weight matrix as found in a checkpoint (already sliced for this tensor-parallel rank and
// contiguous). Every matrix computes y = x @ W (+ bias) with x [n_tok, n_in], y [n_tok, n_out].
typedef struct host_matrix {
    matrix_kind kind;
    int n_in;  // K
    int n_out; // N
    // MATRIX_DENSE: HF nn.Linear / embedding layout
    const void *w; // [n_out, n_in] of w_type (F32, F16 or BF16)
    dtype w_type;
    // MATRIX_GPTQ: AutoGPTQ v1 layout, 4-bit
    const int32_t *qweight;  // [n_in/8, n_out]; nibble j of row r is input k = 8r + j (bits 4j..)
    const int32_t *qzeros;   // [n_groups, n_out/8]; packed along n_out, stores zero - 1
    const uint16_t *scales;  // [n_groups, n_out] fp16
    const int32_t *g_idx;    // [n_in] group of each input (act-order: not monotonic)
    int bits;                // 4
    int group_size;          // inputs per group (informational; g_idx is authoritative)
    int n_groups;
    const float *bias; // [n_out] or NULL
} host_matrix;

typedef struct bk_matrix bk_matrix; // backend-owned weight matrix (opaque)

// Every backend's bk_matrix begins with these members (in this order), which lets
// kernels/backend.c check a call against the matrix it names.
typedef struct bk_matrix_header {
    matrix_kind kind;
    int n_in, n_out;
} bk_matrix_header;

// One sequence of a ragged attention batch. Query rows [q_start, q_start + n_q) of the batch
// belong to it; its context is n_past cached tokens followed by its n_q new tokens (already
// stored in the cache), so query i attends to cache positions [0, n_past + i] (causal).
typedef struct attn_seq {
    int32_t q_start;
    int32_t n_q;
    int32_t n_past;
    int32_t block_table_offset; // index into block_tables_dev of this sequence's first block
} attn_seq;

typedef struct attn_batch {
    int n_seq;   // host copies of the sizes, for launch decisions
    int n_tok;   // sum of n_q
    int max_n_q; // largest n_q
    int max_ctx; // largest n_past + n_q
    const attn_seq *seqs_dev;         // [n_seq]
    const int32_t *block_tables_dev;  // blocks of all sequences, concatenated
    const int32_t *slots_dev;         // [n_tok] cache slot (block * KV_BLOCK_SIZE + offset) of each new token
} attn_batch;

// A norm's parameters for the fused norm op: weight [d] and bias [d] or NULL (vector_create).
typedef struct bk_norm {
    const float *w;
    const float *bias;
} bk_norm;

// Time spent in one named span of ops during a profile (see profile_begin).
typedef struct op_profile_entry {
    const char *name;
    long calls;
    double total_us;
} op_profile_entry;

typedef struct backend backend;
struct backend {
    const char *name; // "cpu", "cuda"
    dtype act_dtype;  // activation and KV-cache element type
    void *ctx;        // implementation state

    void (*free)(backend *b);
    // Waits for queued work; returns the first error any op hit since the last sync.
    fl_code (*sync)(backend *b, fl_error *err);
    // Records an op's error for sync() to report, unless an earlier one is pending.
    void (*record_error)(backend *b, fl_code code, const char *msg);
    // Bytes of memory the backend can still allocate (device memory for CUDA, RAM for CPU).
    size_t (*mem_available)(backend *b);

    // ---- memory
    void *(*buf_alloc)(backend *b, size_t nbytes); // NULL on failure
    void (*buf_free)(backend *b, void *p);
    void (*copy_to_device)(backend *b, void *dst, const void *src, size_t nbytes);
    void (*copy_to_host)(backend *b, void *dst, const void *src, size_t nbytes); // synchronous
    void (*act_from_f32)(backend *b, void *dst, const float *src, size_t n); // host f32 -> act
    void (*act_to_f32)(backend *b, float *dst, const void *src, size_t n);   // act -> host f32, sync

    // ---- weights
    bk_matrix *(*matrix_create)(backend *b, const host_matrix *m, fl_error *err);
    void (*matrix_free)(backend *b, bk_matrix *m);
    // Small parameter vectors (norm weights and biases), kept as f32. NULL on failure.
    float *(*vector_create)(backend *b, const float *v, int n);

    // ---- ops
    // out[n_tok, d_model] = table rows ids[t] - row_start, or zeros when the id falls outside
    // [row_start, row_start + table.n_out) (vocab-parallel embedding: ranks sum their parts).
    // table is a MATRIX_DENSE [n_vocab_shard, d_model] (n_out = n_vocab_shard, n_in = d_model).
    void (*embedding)(backend *b, void *out, const bk_matrix *table, const int32_t *ids_dev,
                      int n_tok, int row_start);
    // out[n_tok, d] = (x - mean) / sqrt(var + eps) * w + b
    void (*layernorm)(backend *b, void *out, const void *x, const float *w, const float *bias,
                      int n_tok, int d, float eps);
    // out[n_tok, d] = x / sqrt(mean(x^2) + eps) * w
    void (*rmsnorm)(backend *b, void *out, const void *x, const float *w, int n_tok, int d,
                    float eps);
    // out[n_tok, n_out] = x[n_tok, n_in] @ W (+ bias). out never aliases x.
    void (*matmul)(backend *b, void *out, const void *x, const bk_matrix *w, int n_tok);
    // Splits fused QKV rows laid out as [n_head_kv][n_head/n_head_kv + 2][head_dim] (Falcon's
    // grouped layout; multi-query is n_head_kv = 1) into q[n_tok, n_head*head_dim],
    // k[n_tok, n_head_kv*head_dim], v[n_tok, n_head_kv*head_dim].
    void (*qkv_split)(backend *b, void *q, void *k, void *v, const void *qkv, int n_tok,
                      int n_head, int n_head_kv, int head_dim);
    // NeoX half rotation in place over the first rot_dim dims of each head of x[n_tok, n_heads,
    // head_dim]: angle(t, i) = pos[t] * pos_scale * base[t]^(-2i/rot_dim), i < rot_dim/2, with
    // x1 = x[i], x2 = x[i + rot_dim/2]: x1' = x1 cos - x2 sin, x2' = x2 cos + x1 sin. Angles in
    // fp32 exactly as HF computes them (inv_freq = 1 / base^(2i/rot_dim), then pos * inv_freq).
    void (*rotary)(backend *b, void *x, const int32_t *pos_dev, const float *base_dev, int n_tok,
                   int n_heads, int head_dim, int rot_dim, float pos_scale);
    // Stores new keys/values k, v [n_tok, n_head_kv, head_dim] at slots_dev[t] of one layer's
    // cache k_cache, v_cache [n_blocks, n_head_kv, KV_BLOCK_SIZE, head_dim].
    void (*kv_store)(backend *b, void *k_cache, void *v_cache, const void *k, const void *v,
                     const int32_t *slots_dev, int n_tok, int n_head_kv, int head_dim);
    // Causal attention of q[n_tok, n_head, head_dim] over the paged cache (see attn_seq), with
    // query head h reading kv head h / (n_head / n_head_kv); out[n_tok, n_head, head_dim].
    void (*attention)(backend *b, void *out, const void *q, const void *k_cache,
                      const void *v_cache, const attn_batch *ab, int n_head, int n_head_kv,
                      int head_dim, float scale);
    void (*gelu)(backend *b, void *x, size_t n); // exact erf GELU, in place
    // out[n_tok, d_ff] = silu(gate_up[:, :d_ff]) * gate_up[:, d_ff:], gate_up [n_tok, 2*d_ff]
    void (*swiglu)(backend *b, void *out, const void *gate_up, int n_tok, int d_ff);
    void (*add)(backend *b, void *out, const void *x, const void *y, size_t n); // out = x + y
    // out[n_rows, d] = x[rows_dev[r], :]
    void (*gather_rows)(backend *b, void *out, const void *x, const int32_t *rows_dev, int n_rows,
                        int d);

    // ---- fused ops (the decode step's small kernels merged; each equals the unfused sequence
    // named in its comment, bit for bit on the CPU backend)
    // qkv_split + rotary(q) + rotary(k) + kv_store in one pass: splits fused QKV rows
    // qkv [n_tok, (n_head + 2 n_head_kv) head_dim] (Falcon's grouped layout, see qkv_split),
    // writes rotated queries to q [n_tok, n_head, head_dim] and stores rotated keys and values
    // at slots_dev[t] of k_cache, v_cache [n_blocks, n_head_kv, KV_BLOCK_SIZE, head_dim]
    // (a negative slot stores nothing). Rotation as in rotary.
    void (*qkv_rotary_store)(backend *b, void *q, void *k_cache, void *v_cache, const void *qkv,
                             const int32_t *pos_dev, const float *base_dev,
                             const int32_t *slots_dev, int n_tok, int n_head, int n_head_kv,
                             int head_dim, int rot_dim, float pos_scale);
    // Residual add + one or two norms of the result, for the start of a block:
    //   x[n_tok, d] += r1 (+ r2)   (r1 NULL: no add; r2 NULL: x += r1; else x += (r1 + r2))
    //   out_a[n_tok, d] = norm(x) * na.w (+ na.bias);  out_m likewise with nm when non-NULL
    // norm is RMSNorm when rms, else LayerNorm (eps as in layernorm/rmsnorm); both outputs share
    // the statistics (a parallel-attention block's ln_attn and ln_mlp read the same x).
    void (*residual_norm)(backend *b, void *x, const void *r1, const void *r2, void *out_a,
                          bk_norm na, void *out_m, bk_norm nm, int rms, int n_tok, int d,
                          float eps);

    // ---- optional (NULL when unsupported): the cudaStream_t every op is queued on, so that
    // work outside the backend (NCCL collectives, shard/engine/comm_nccl.c) can join the same stream
    // order instead of synchronising. A NULL member or a NULL result: the backend has none.
    void *(*native_stream)(backend *b);

    // ---- optional (NULL when unsupported): replay a whole decode step as one graph.
    // For a decode-only batch the driver first calls graph_replay(key); 1 means the step's ops
    // were replayed from a capture (the driver has already refreshed the same device input
    // buffers). Otherwise it calls graph_capture_begin(key), issues the ops, graph_capture_end.
    // The key covers n_seq, n_tok, the driver's buffer generation and max_ctx rounded up to a
    // multiple of GRAPH_CTX_BUCKET, so ops captured in a graph must size launches only from those
    // (e.g. the bucketed max_ctx), never from other host values. graph_reset drops every graph.
    // A capture may include collectives that a comm queued on native_stream between the ops
    // (tensor parallelism): every rank then captures and replays the same steps, and the comm
    // drops the graphs (graph_reset) before it tears its communicator down.
    int (*graph_replay)(backend *b, uint64_t key);
    void (*graph_capture_begin)(backend *b, uint64_t key);
    void (*graph_capture_end)(backend *b, uint64_t key);
    void (*graph_reset)(backend *b);

    // ---- optional (NULL when unsupported): an op-level profile. Between profile_begin and
    // profile_end the backend times each span the driver brackets with op_begin(name) and op_end
    // (device time of the queued work, the ops held back and run back to back so that launch
    // gaps do not count), and captures or replays no graphs. op_begin and op_end do nothing
    // outside a profile. name must outlive the profile (a string literal).
    void (*profile_begin)(backend *b);
    void (*op_begin)(backend *b, const char *name);
    void (*op_end)(backend *b);
    // Waits for the work, stops the profile and writes up to max per-name totals (first-seen
    // order) to out; returns how many names were seen, or -1 with err set.
    int (*profile_end)(backend *b, op_profile_entry *out, int max, fl_error *err);

    // The implementation's own, unchecked members, kept by backend_checks_install; the members
    // above then point at the checking wrappers of kernels/backend.c.
    const struct backend *unchecked;
};

// Creates the CPU backend with n_threads workers (0: FALCONLITE_THREADS or all cores).
backend *backend_cpu_create(int n_threads, fl_error *err);
// Creates the CUDA backend on a device; NULL with an error when CUDA is not built or absent.
backend *backend_cuda_create(int device, fl_error *err);
// "cpu", "cuda" or "auto" (CUDA when a GPU is present, else CPU).
backend *backend_create(const char *name, fl_error *err);

// For backend constructors: puts the shared argument checks in front of b's weights and ops
// (the compute ops of kernels/backend_ops.h, matrix_create, vector_create). Returns b, or NULL
// (b freed, err set) when out of memory.
backend *backend_checks_install(backend *b, fl_error *err);
