#include "tools/cli_common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

fl_code cli_tokenizer_load(const char *model_dir, tokenizer **out, fl_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", model_dir);
    return tokenizer_load(path, out, err);
}

void cli_json_print(cJSON *root) {
    char *s = cJSON_PrintUnformatted(root);
    if (s) puts(s);
    free(s);
    cJSON_Delete(root);
}

cJSON *cli_json_ids(const int32_t *ids, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
    return a;
}

fl_code cli_ids_parse(const char *text, int32_t **ids, int *n_ids, fl_error *err) {
    size_t cap = 1;
    for (const char *c = text; *c; c++)
        cap += *c == ',';
    int32_t *v = malloc(sizeof *v * cap);
    if (!v) return fl_error_set(err, FL_ENOMEM, "out of memory for %zu ids", cap);
    int n = 0;
    const char *c = text;
    while (1) {
        while (*c == ' ')
            c++;
        if (!*c && n == 0) break; // empty list
        char *end;
        errno = 0;
        long x = strtol(c, &end, 10);
        if (end == c || errno || x < 0 || x > INT32_MAX) {
            free(v);
            return fl_error_set(err, FL_EINVAL, "invalid token id list '%s' (want e.g. 1,2,3)",
                                text);
        }
        v[n++] = (int32_t)x;
        c = end;
        while (*c == ' ')
            c++;
        if (!*c) break;
        if (*c++ != ',') {
            free(v);
            return fl_error_set(err, FL_EINVAL, "invalid token id list '%s' (want e.g. 1,2,3)",
                                text);
        }
    }
    *ids = v;
    *n_ids = n;
    return FL_OK;
}
