// The compute ops of the backend interface (kernels/backend.h), one X(name) per member. Code that
// must cover every op iterates this list: kernels/backend.c installs a checking wrapper for each
// (a missing one does not compile) and tests/unit/test_backend_ops.c fails for an op without a
// CPU-vs-CUDA comparison case.
#pragma once

#define BACKEND_OPS(X)                                                                             \
    X(embedding)                                                                                   \
    X(layernorm)                                                                                   \
    X(rmsnorm)                                                                                     \
    X(matmul)                                                                                      \
    X(qkv_split)                                                                                   \
    X(rotary)                                                                                      \
    X(kv_store)                                                                                    \
    X(attention)                                                                                   \
    X(gelu)                                                                                        \
    X(swiglu)                                                                                      \
    X(add)                                                                                         \
    X(gather_rows)                                                                                 \
    X(qkv_rotary_store)                                                                            \
    X(residual_norm)
