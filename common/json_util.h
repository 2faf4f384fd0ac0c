// cJSON helpers that turn missing or mistyped fields into fl_errors naming the file and field.
#pragma once
#include <cjson/cJSON.h>
#include <stdint.h>

#include "common/status.h"

// Reads and parses a JSON file. Errors name the path and, for syntax errors, the byte offset.
fl_code json_load_file(const char *path, cJSON **out, fl_error *err);
// Reads a whole file into a malloc'd NUL-terminated buffer.
fl_code file_read_all(const char *path, char **data, size_t *len, fl_error *err);

// Typed readers for an optional field `name` of object `obj`. An absent or null field yields
// `def`; a present field of the wrong type is FL_EFORMAT with a message naming `where` (the file,
// optionally with the enclosing object: "config.json", "config.json: rope_scaling") and the field:
// "config.json: field 'hidden_size' must be an integer". *out is untouched on error.
fl_code json_get_int(const cJSON *obj, const char *name, int def, int *out, const char *where,
                     fl_error *err);
fl_code json_get_float(const cJSON *obj, const char *name, float def, float *out, const char *where,
                       fl_error *err);
fl_code json_get_bool(const cJSON *obj, const char *name, int def, int *out, const char *where,
                      fl_error *err);
// *out points into obj (valid while obj lives) or is def.
fl_code json_get_string(const cJSON *obj, const char *name, const char *def, const char **out,
                        const char *where, fl_error *err);
// As json_get_int, but an absent or null field is FL_ENOTFOUND
// ("config.json: missing required field 'hidden_size'").
fl_code json_require_int(const cJSON *obj, const char *name, int *out, const char *where,
                         fl_error *err);
// 1 when obj has field name and it is not null (HF configs write null for "use the default").
int json_has(const cJSON *obj, const char *name);
// The first of two spellings present in obj (current name first, legacy second); the current
// name when neither is, so "missing field" messages use it.
const char *json_pick_name(const cJSON *obj, const char *name, const char *legacy);
// 0 when item is a number holding an exact integer of magnitude <= 2^53 (what a double keeps
// exactly: byte offsets of a 22 GB file fit), else -1.
int json_number_as_int64(const cJSON *item, int64_t *out);
// Serializes root without whitespace and deletes it (NULL root or out of memory: NULL).
char *json_print_free(cJSON *root);
// Adds name: v, or name: null when v is NULL or "".
void json_add_string_or_null(cJSON *obj, const char *name, const char *v);
