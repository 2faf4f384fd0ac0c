#include "common/json_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

fl_code file_read_all(const char *path, char **data, size_t *len, fl_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return fl_error_set(err, FL_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return fl_error_set(err, FL_EIO, "%s: cannot seek", path);
    }
    long size = ftell(f);
    rewind(f);
    char *buf = size >= 0 ? malloc((size_t)size + 1) : NULL;
    if (!buf) {
        fclose(f);
        return fl_error_set(err, FL_ENOMEM, "%s: cannot allocate %ld bytes", path, size);
    }
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    if (got != (size_t)size) {
        free(buf);
        return fl_error_set(err, FL_EIO, "%s: short read (%zu of %ld bytes)", path, got, size);
    }
    buf[size] = 0;
    *data = buf;
    if (len) *len = (size_t)size;
    return FL_OK;
}

fl_code json_load_file(const char *path, cJSON **out, fl_error *err) {
    char *text;
    size_t len;
    fl_code rc = file_read_all(path, &text, &len, err);
    if (rc) return rc;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        long off = end ? (long)(end - text) : -1;
        free(text);
        return fl_error_set(err, FL_EFORMAT, "%s: malformed JSON near byte %ld", path, off);
    }
    free(text);
    *out = root;
    return FL_OK;
}
