// Dense weight matrices: upload as f16 (f32 and bf16 checkpoints converted on the host in chunks),
// y = x @ W^T through cuBLAS (f16 operands, f32 accumulation), bias added by a small kernel.
// Also the matmul entry point that routes GPTQ matrices to gptq_matmul.cu.
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_backend.cuh"

#define CONVERT_CHUNK (1u << 22) // values converted per host staging chunk

__global__ void k_bias_add(__half *out, const float *bias, int n_tok, int n_out) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)n_tok * n_out) out[i] = __float2half_rn(__half2float(out[i]) + bias[i % n_out]);
}

void cuda_bias_add(cuda_ctx *c, __half *out, const float *bias, int n_tok, int n_out) {
    size_t n = (size_t)n_tok * n_out;
    k_bias_add<<<cuda_blocks(n, 256), 256, 0, c->stream>>>(out, bias, n_tok, n_out);
    CUDA_LAUNCHED(c, "bias_add");
}

// out[n_tok, n_out] = x[n_tok, n_in] @ W, with W given either as w [n_out, n_in] (HF layout,
// w_is_kn = 0) or as w [n_in, n_out] (w_is_kn = 1, the GPTQ dequantised scratch).
void cuda_dense_gemm(cuda_ctx *c, __half *out, const __half *x, const __half *w, int n_tok,
                     int n_in, int n_out, int w_is_kn) {
    const float one = 1.0f, zero = 0.0f;
    // Column-major view: out^T [n_out, n_tok] = op(W) [n_out, n_in] * x^T [n_in, n_tok].
    cublas_check(c,
                 cublasGemmEx(c->cublas, w_is_kn ? CUBLAS_OP_N : CUBLAS_OP_T, CUBLAS_OP_N, n_out,
                              n_tok, n_in, &one, w, CUDA_R_16F, w_is_kn ? n_out : n_in, x,
                              CUDA_R_16F, n_in, &zero, out, CUDA_R_16F, n_out, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
}

static int upload_f32_bias(cuda_ctx *c, bk_matrix *m, const float *bias) {
    if (!bias) return 0;
    if (cuda_check(c, cudaMalloc(&m->bias, (size_t)m->n_out * sizeof(float)), "bias alloc"))
        return -1;
    return cuda_check(c,
                      cudaMemcpy(m->bias, bias, (size_t)m->n_out * sizeof(float),
                                 cudaMemcpyHostToDevice),
                      "bias upload");
}

static int upload_dense(cuda_ctx *c, bk_matrix *m, const host_matrix *h) {
    size_t n = (size_t)h->n_in * h->n_out;
    if (cuda_check(c, cudaMalloc(&m->w, n * sizeof(__half)), "dense weight alloc")) return -1;
    if (h->w_type == DTYPE_F16)
        return cuda_check(c, cudaMemcpy(m->w, h->w, n * 2, cudaMemcpyHostToDevice), "dense upload");
    if (h->w_type != DTYPE_F32 && h->w_type != DTYPE_BF16) {
        cuda_record(c, FL_EUNSUPPORTED, "kernels/cuda: dense weight dtype %s not supported",
                    dtype_name(h->w_type));
        return -1;
    }
    uint16_t *stage = (uint16_t *)malloc(CONVERT_CHUNK * sizeof(uint16_t));
    if (!stage) {
        cuda_record(c, FL_ENOMEM, "kernels/cuda: out of host memory converting a weight");
        return -1;
    }
    int rc = 0;
    for (size_t off = 0; off < n && rc == 0; off += CONVERT_CHUNK) {
        size_t len = n - off < CONVERT_CHUNK ? n - off : CONVERT_CHUNK;
        if (h->w_type == DTYPE_F32) {
            const float *src = (const float *)h->w + off;
            for (size_t i = 0; i < len; i++) stage[i] = f32_to_fp16(src[i]);
        } else {
            const uint16_t *src = (const uint16_t *)h->w + off;
            for (size_t i = 0; i < len; i++) stage[i] = f32_to_fp16(bf16_to_f32(src[i]));
        }
        rc = cuda_check(c, cudaMemcpy(m->w + off, stage, len * 2, cudaMemcpyHostToDevice),
                        "dense upload");
    }
    free(stage);
    return rc;
}

void cuda_matrix_free(backend *b, bk_matrix *m) {
    if (!m) return;
    void *ptrs[] = {m->bias, m->w, m->qweight, m->scales, m->zeros, m->group_row, m->perm};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) cudaFree(ptrs[i]);
    free(m);
}

bk_matrix *cuda_matrix_create(backend *b, const host_matrix *h, fl_error *err) {
    cuda_ctx *c = cuda_ctx_of(b);
    if (h->n_in <= 0 || h->n_out <= 0) {
        fl_error_set(err, FL_EINVAL, "kernels/cuda: matrix shape %d x %d", h->n_in, h->n_out);
        return NULL;
    }
    if (h->kind == MATRIX_GPTQ) return cuda_gptq_create(b, h, err);
    bk_matrix *m = (bk_matrix *)calloc(1, sizeof *m);
    if (!m) {
        fl_error_set(err, FL_ENOMEM, "kernels/cuda: out of host memory");
        return NULL;
    }
    m->kind = MATRIX_DENSE;
    m->n_in = h->n_in;
    m->n_out = h->n_out;
    if (upload_dense(c, m, h) || upload_f32_bias(c, m, h->bias)) {
        fl_error_set(err, c->err_code, "%s", c->err_msg);
        c->err_code = FL_OK;
        cuda_matrix_free(b, m);
        return NULL;
    }
    return m;
}

void cuda_matmul(backend *b, void *out, const void *x, const bk_matrix *w, int n_tok) {
    cuda_ctx *c = cuda_ctx_of(b);
    if (n_tok <= 0) return;
    if (w->kind == MATRIX_GPTQ) {
        cuda_gptq_matmul(c, (__half *)out, (const __half *)x, w, n_tok);
        return;
    }
    cuda_dense_gemm(c, (__half *)out, (const __half *)x, w->w, n_tok, w->n_in, w->n_out, 0);
    if (w->bias) cuda_bias_add(c, (__half *)out, w->bias, n_tok, w->n_out);
}
