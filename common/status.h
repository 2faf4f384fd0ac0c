// Status codes and caller-owned error messages. Every fallible function returns an fl_code and,
// on failure, fills an fl_error (which may be NULL) with a message naming the file, tensor or
// field at fault. Nothing on a server path aborts on bad input.
#pragma once

typedef enum fl_code {
    FL_OK = 0,
    FL_EIO,          // a file could not be opened, read or written
    FL_EFORMAT,      // a file's contents are malformed (JSON, safetensors header, tokenizer)
    FL_EINVAL,       // a caller or config value is out of range or contradicts another
    FL_ENOTFOUND,    // a named tensor, field or file is missing
    FL_EUNSUPPORTED, // well-formed but not supported (dtype, architecture, bits)
    FL_ENOMEM,       // host or device memory exhausted
    FL_EBACKEND,     // a compute backend (CUDA, NCCL) reported an error
    FL_ECAPACITY,    // not enough KV-cache blocks (recoverable: retry with a smaller batch)
} fl_code;

typedef struct fl_error {
    fl_code code;
    char msg[512];
} fl_error;

// Sets err (when not NULL) and returns code, so callers can `return fl_error_set(...)`.
fl_code fl_error_set(fl_error *err, fl_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
// Prepends "prefix: " to an existing message (adds context while unwinding).
fl_code fl_error_wrap(fl_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *fl_code_name(fl_code code);
