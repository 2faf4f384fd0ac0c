// Safetensors reader (mmap, single file or model.safetensors.index.json shards) and a streaming
// writer. The header is validated before any tensor is used: JSON well-formed, known dtypes,
// offsets inside the file, no overlaps, shape x dtype = byte length.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/status.h"

#define ST_MAX_DIMS 8

typedef struct st_tensor {
    const char *name;
    const char *file; // path of the file holding it (for error messages)
    dtype type;
    int n_dim;
    int64_t shape[ST_MAX_DIMS];
    const void *data; // mmapped, read-only
    size_t nbytes;
} st_tensor;

typedef struct safetensors safetensors; // every tensor of one model directory

// Opens <dir>/model.safetensors.index.json when present, else every <dir>/*.safetensors.
fl_code safetensors_open_dir(const char *dir, safetensors **out, fl_error *err);
// Opens one file.
fl_code safetensors_open_file(const char *path, safetensors **out, fl_error *err);
void safetensors_close(safetensors *st);

int safetensors_count(const safetensors *st);
const st_tensor *safetensors_at(const safetensors *st, int i);
const st_tensor *safetensors_find(const safetensors *st, const char *name); // NULL if absent

// Finds `name` and checks its dtype and shape (n_dim entries; -1 matches any extent).
fl_code safetensors_expect(const safetensors *st, const char *name, dtype type, int n_dim,
                           const int64_t *shape, const st_tensor **out, fl_error *err);

// The same without the dtype check (callers that accept several dtypes check those themselves).
fl_code safetensors_expect_shape(const safetensors *st, const char *name, int n_dim,
                                 const int64_t *shape, const st_tensor **out, fl_error *err);
// Formats a shape as "[256, 64]" into buf; -1 (any extent) prints as "*".
void st_shape_format(char *buf, size_t cap, int n_dim, const int64_t *shape);

// Streaming writer: declare every tensor, then write their bytes in declaration order, so a
// 22 GB checkpoint is written with little memory.
typedef struct safetensors_writer safetensors_writer;
fl_code safetensors_writer_create(const char *path, safetensors_writer **out, fl_error *err);
fl_code safetensors_writer_declare(safetensors_writer *w, const char *name, dtype type, int n_dim,
                                   const int64_t *shape, fl_error *err);
// Appends bytes of the tensors in declaration order (any chunking); writes the header first.
fl_code safetensors_writer_write(safetensors_writer *w, const void *data, size_t nbytes,
                                 fl_error *err);
// Checks every declared byte was written, closes the file and frees w (also on error).
fl_code safetensors_writer_finish(safetensors_writer *w, fl_error *err);
