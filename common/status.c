#include "common/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

fl_code fl_error_set(fl_error *err, fl_code code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

fl_code fl_error_wrap(fl_error *err, const char *fmt, ...) {
    if (!err) return FL_OK;
    char prefix[256], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%.200s: %.300s", prefix, old);
    return err->code;
}

const char *fl_code_name(fl_code code) {
    switch (code) {
    case FL_OK: return "ok";
    case FL_EIO: return "io";
    case FL_EFORMAT: return "format";
    case FL_EINVAL: return "invalid";
    case FL_ENOTFOUND: return "not_found";
    case FL_EUNSUPPORTED: return "unsupported";
    case FL_ENOMEM: return "no_memory";
    case FL_EBACKEND: return "backend";
    case FL_ECAPACITY: return "capacity";
    }
    return "unknown";
}
