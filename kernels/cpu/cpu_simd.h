// 8-wide float vectors written with GCC vector extensions: with -march=native (AVX2 + FMA)
// they compile to ymm code with fused multiply-adds (gnu11 contracts a * b + c), and on
// other targets to whatever the target has, so the kernels need no separate fallback.
#pragma once
#include <stdint.h>
#include <string.h>
#if defined(__F16C__) || defined(__AVX__)
#include <immintrin.h>
#endif

#include "common/dtype.h"

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));
typedef uint16_t v8u16 __attribute__((vector_size(16)));
// Unaligned, aliasing views of memory for loads and stores.
typedef float v8f_mem __attribute__((vector_size(32), aligned(4), may_alias));
typedef uint32_t v8u_mem __attribute__((vector_size(32), aligned(4), may_alias));
typedef uint16_t v8u16_mem __attribute__((vector_size(16), aligned(2), may_alias));

static inline v8f v8f_load(const float *p) {
    return *(const v8f_mem *)p;
}
static inline void v8f_store(float *p, v8f v) {
    *(v8f_mem *)p = v;
}
static inline v8u v8u_load(const int32_t *p) {
    return *(const v8u_mem *)p;
}
static inline v8f v8f_set1(float x) {
    return (v8f){x, x, x, x, x, x, x, x};
}

static inline float v8f_sum(v8f v) {
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

static inline v8f v8f_max(v8f a, v8f b) {
    v8i gt = a > b;
    return (v8f)(((v8i)a & gt) | ((v8i)b & ~gt));
}

// e^x to about 2 ulp (Cephes' expf polynomial), for x <= 88; results below e^-86 (< 1e-37)
// may be returned as e^-86 — for softmax weights, where they vanish next to the maximum's 1.
static inline v8f v8f_exp(v8f x) {
    const v8f magic = v8f_set1(12582912.0f); // 1.5 * 2^23: adding it rounds to an integer
    x = v8f_max(x, v8f_set1(-86.0f));
    v8f t = x * v8f_set1(1.44269504088896341f) + magic;
    v8f n = t - magic;
    v8f r = x - n * v8f_set1(0.693359375f) - n * v8f_set1(-2.12194440e-4f);
    v8f p = v8f_set1(1.9875691500e-4f);
    p = p * r + v8f_set1(1.3981999507e-3f);
    p = p * r + v8f_set1(8.3334519073e-3f);
    p = p * r + v8f_set1(4.1665795894e-2f);
    p = p * r + v8f_set1(1.6666665459e-1f);
    p = p * r + v8f_set1(5.0000001201e-1f);
    p = p * r * r + r + v8f_set1(1.0f);
    v8i e = ((v8i)t - (v8i)magic) << 23; // 2^n through the exponent field
    return (v8f)((v8i)p + e);
}

// {sum(a[0]), ..., sum(a[7])}: eight horizontal sums at once.
static inline v8f v8f_sum8(const v8f a[8]) {
#ifdef __AVX__
    __m256 t0 = _mm256_hadd_ps((__m256)a[0], (__m256)a[1]);
    __m256 t1 = _mm256_hadd_ps((__m256)a[2], (__m256)a[3]);
    __m256 t2 = _mm256_hadd_ps((__m256)a[4], (__m256)a[5]);
    __m256 t3 = _mm256_hadd_ps((__m256)a[6], (__m256)a[7]);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return (v8f)_mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                              _mm256_permute2f128_ps(u0, u1, 0x31));
#else
    v8f r;
    for (int i = 0; i < 8; i++)
        r[i] = v8f_sum(a[i]);
    return r;
#endif
}

static inline v8f v8f_load_f16(const uint16_t *p) {
#ifdef __F16C__
    return (v8f)_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
#else
    v8f r;
    for (int i = 0; i < 8; i++)
        r[i] = fp16_to_f32(p[i]);
    return r;
#endif
}

static inline v8f v8f_load_bf16(const uint16_t *p) {
    v8u16 h = *(const v8u16_mem *)p;
    return (v8f)(__builtin_convertvector(h, v8u) << 16);
}

// Loads 8 consecutive elements of a dense weight row; `t` is a constant at every call site
// (the callers are specialised per dtype), so the switch folds away.
static inline __attribute__((always_inline)) v8f v8f_load_typed(const void *p, dtype t, size_t i) {
    switch (t) {
    case DTYPE_F16:
        return v8f_load_f16((const uint16_t *)p + i);
    case DTYPE_BF16:
        return v8f_load_bf16((const uint16_t *)p + i);
    default:
        return v8f_load((const float *)p + i);
    }
}

static inline __attribute__((always_inline)) float f32_load_typed(const void *p, dtype t,
                                                                  size_t i) {
    switch (t) {
    case DTYPE_F16:
        return fp16_to_f32(((const uint16_t *)p)[i]);
    case DTYPE_BF16:
        return bf16_to_f32(((const uint16_t *)p)[i]);
    default:
        return ((const float *)p)[i];
    }
}
