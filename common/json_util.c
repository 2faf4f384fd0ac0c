#include "common/json_util.h"

#include <errno.h>
#include <float.h>
#include <math.h>
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

// The field, or NULL when absent or null (HF configs write null for "use the default").
static const cJSON *json_field(const cJSON *obj, const char *name) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    return item && !cJSON_IsNull(item) ? item : NULL;
}

int json_number_as_int64(const cJSON *item, int64_t *out) {
    const double limit = 9007199254740992.0; // 2^53
    if (!cJSON_IsNumber(item)) return -1;
    double v = item->valuedouble;
    if (!(v >= -limit && v <= limit) || v != (double)(int64_t)v) return -1;
    *out = (int64_t)v;
    return 0;
}

fl_code json_get_int(const cJSON *obj, const char *name, int def, int *out, const char *where,
                     fl_error *err) {
    const cJSON *item = json_field(obj, name);
    if (!item) {
        *out = def;
        return FL_OK;
    }
    int64_t v;
    if (json_number_as_int64(item, &v) || v < INT32_MIN || v > INT32_MAX)
        return fl_error_set(err, FL_EFORMAT, "%s: field '%s' must be an integer", where, name);
    *out = (int)v;
    return FL_OK;
}

fl_code json_require_int(const cJSON *obj, const char *name, int *out, const char *where,
                         fl_error *err) {
    if (!json_field(obj, name))
        return fl_error_set(err, FL_ENOTFOUND, "%s: missing required field '%s'", where, name);
    return json_get_int(obj, name, 0, out, where, err);
}

fl_code json_get_float(const cJSON *obj, const char *name, float def, float *out, const char *where,
                       fl_error *err) {
    const cJSON *item = json_field(obj, name);
    if (!item) {
        *out = def;
        return FL_OK;
    }
    if (!cJSON_IsNumber(item))
        return fl_error_set(err, FL_EFORMAT, "%s: field '%s' must be a number", where, name);
    if (!isfinite(item->valuedouble) || fabs(item->valuedouble) > FLT_MAX)
        return fl_error_set(err, FL_EFORMAT, "%s: field '%s' must be a finite number", where, name);
    *out = (float)item->valuedouble;
    return FL_OK;
}

fl_code json_get_bool(const cJSON *obj, const char *name, int def, int *out, const char *where,
                      fl_error *err) {
    const cJSON *item = json_field(obj, name);
    if (!item) {
        *out = def;
        return FL_OK;
    }
    if (!cJSON_IsBool(item))
        return fl_error_set(err, FL_EFORMAT, "%s: field '%s' must be true or false", where, name);
    *out = cJSON_IsTrue(item);
    return FL_OK;
}

fl_code json_get_string(const cJSON *obj, const char *name, const char *def, const char **out,
                        const char *where, fl_error *err) {
    const cJSON *item = json_field(obj, name);
    if (!item) {
        *out = def;
        return FL_OK;
    }
    if (!cJSON_IsString(item))
        return fl_error_set(err, FL_EFORMAT, "%s: field '%s' must be a string", where, name);
    *out = item->valuestring;
    return FL_OK;
}

int json_has(const cJSON *obj, const char *name) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    return item && !cJSON_IsNull(item);
}

const char *json_pick_name(const cJSON *obj, const char *name, const char *legacy) {
    return !json_has(obj, name) && json_has(obj, legacy) ? legacy : name;
}

char *json_print_free(cJSON *root) {
    char *s = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return s;
}

void json_add_string_or_null(cJSON *obj, const char *name, const char *v) {
    if (v && *v)
        cJSON_AddStringToObject(obj, name, v);
    else
        cJSON_AddNullToObject(obj, name);
}
