// cJSON helpers that turn missing or mistyped fields into fl_errors naming the file and field.
#pragma once
#include <cjson/cJSON.h>

#include "common/status.h"

// Reads and parses a JSON file. Errors name the path and, for syntax errors, the byte offset.
fl_code json_load_file(const char *path, cJSON **out, fl_error *err);
// Reads a whole file into a malloc'd NUL-terminated buffer.
fl_code file_read_all(const char *path, char **data, size_t *len, fl_error *err);
