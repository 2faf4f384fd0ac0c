// GGUF (v2/v3) reader: header, metadata key/values of every type (arrays included), tensor infos
// and alignment, validated before anything is used, plus dequantizers for the ggml block types
// a small Llama file uses (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K). Every error names the
// file and the key or tensor at fault; a bad or truncated file never crashes the reader.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

// Metadata value types (GGUF spec numbering).
typedef enum gguf_vtype {
    GGUF_VT_U8 = 0,
    GGUF_VT_I8 = 1,
    GGUF_VT_U16 = 2,
    GGUF_VT_I16 = 3,
    GGUF_VT_U32 = 4,
    GGUF_VT_I32 = 5,
    GGUF_VT_F32 = 6,
    GGUF_VT_BOOL = 7,
    GGUF_VT_STRING = 8,
    GGUF_VT_ARRAY = 9,
    GGUF_VT_U64 = 10,
    GGUF_VT_I64 = 11,
    GGUF_VT_F64 = 12,
    GGUF_VT_COUNT
} gguf_vtype;

// Tensor element types (ggml numbering); only those with a dequantizer are listed.
typedef enum ggml_type {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_BF16 = 30,
} ggml_type;

typedef struct gguf_str {
    const char *ptr; // inside the file; NOT NUL-terminated
    uint64_t len;
} gguf_str;

typedef struct gguf_kv {
    const char *key; // NUL-terminated copy
    gguf_vtype type;
    union {
        uint64_t u;   // unsigned integers and bool
        int64_t i;    // signed integers
        double f;     // F32, F64
        gguf_str str; // STRING
    } v;
    // ARRAY: elem_type, n; scalars at elems (packed little-endian, unaligned), strings in strs
    // (one entry per element). Arrays of arrays are parsed and skipped (elems = strs = NULL).
    gguf_vtype elem_type;
    uint64_t n;
    const void *elems;
    gguf_str *strs;
} gguf_kv;

#define GGUF_MAX_DIMS 4

typedef struct gguf_tensor {
    const char *name; // NUL-terminated copy
    uint32_t type;    // ggml_type (unknown types are kept; dequantizing them is an error)
    int n_dim;
    int64_t ne[GGUF_MAX_DIMS]; // ggml order: ne[0] is the contiguous (innermost) extent
    int64_t n_elem;
    const void *data; // inside the file (or the caller's buffer)
    size_t nbytes;
} gguf_tensor;

typedef struct gguf_file gguf_file;

// Maps and parses path.
fl_code gguf_open(const char *path, gguf_file **out, fl_error *err);
// Parses a caller-owned buffer (kept alive by the caller until gguf_close); name labels errors.
fl_code gguf_open_memory(const void *data, size_t size, const char *name, gguf_file **out,
                         fl_error *err);
void gguf_close(gguf_file *g);

const char *gguf_name(const gguf_file *g); // the path or name it was opened with
uint32_t gguf_version(const gguf_file *g);
int gguf_kv_count(const gguf_file *g);
const gguf_kv *gguf_kv_at(const gguf_file *g, int i);
const gguf_kv *gguf_kv_find(const gguf_file *g, const char *key); // NULL if absent
int gguf_tensor_count(const gguf_file *g);
const gguf_tensor *gguf_tensor_at(const gguf_file *g, int i);
const gguf_tensor *gguf_tensor_find(const gguf_file *g, const char *name); // NULL if absent

// Typed metadata getters. A missing key returns FL_ENOTFOUND unless a default is allowed
// (the *_or variants store def and return FL_OK); a key of the wrong type is FL_EFORMAT.
fl_code gguf_get_int(const gguf_file *g, const char *key, int64_t *out, fl_error *err);
fl_code gguf_get_int_or(const gguf_file *g, const char *key, int64_t def, int64_t *out,
                        fl_error *err);
fl_code gguf_get_float_or(const gguf_file *g, const char *key, double def, double *out,
                          fl_error *err);
fl_code gguf_get_bool_or(const gguf_file *g, const char *key, int def, int *out, fl_error *err);
// A string value as a malloc'd NUL-terminated copy (caller frees); *out = NULL when absent and
// optional is set.
fl_code gguf_get_string(const gguf_file *g, const char *key, int optional, char **out,
                        fl_error *err);
// Element i of an integer array as int64 (the caller has checked i < kv->n).
int64_t gguf_array_int_at(const gguf_kv *kv, uint64_t i);

const char *ggml_type_name(uint32_t type); // "Q4_1", ... or "unknown"
// Elements per block and bytes per block of a type; 0 when the type has no dequantizer.
int ggml_type_block(uint32_t type, size_t *block_bytes);
// Dequantizes n elements (a multiple of the type's block size) from src to dst.
fl_code ggml_dequantize(uint32_t type, const void *src, float *dst, int64_t n, fl_error *err);
// Dequantizes a whole tensor into dst [n_elem] floats.
fl_code gguf_tensor_dequantize(const gguf_file *g, const gguf_tensor *t, float *dst, fl_error *err);
