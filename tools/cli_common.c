#include "tools/cli_common.h"
#include "tools/cli_args.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
            return fl_error_set(err, FL_EINVAL, "invalid integer list '%s' (want e.g. 1,2,3)",
                                text);
        }
        v[n++] = (int32_t)x;
        c = end;
        while (*c == ' ')
            c++;
        if (!*c) break;
        if (*c++ != ',') {
            free(v);
            return fl_error_set(err, FL_EINVAL, "invalid integer list '%s' (want e.g. 1,2,3)",
                                text);
        }
    }
    *ids = v;
    *n_ids = n;
    return FL_OK;
}

#define COPY_REPEATS 3

int cli_positive_list_parse(const char *cmd, const char *flag, const char *text, int *out, int max,
                            int *n_out) {
    int32_t *v = NULL;
    int n = 0;
    fl_error err = {0};
    if (cli_ids_parse(text, &v, &n, &err)) return cli_fail("%s: --%s: %s", cmd, flag, err.msg);
    int bad = n == 0 || n > max;
    for (int i = 0; i < n && !bad; i++) {
        bad = v[i] <= 0;
        out[i] = v[i];
    }
    free(v);
    if (bad)
        return cli_fail("%s: --%s expects 1 to %d positive integers, e.g. 1,4,16", cmd, flag, max);
    *n_out = n;
    return 0;
}

double cli_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct copy_job {
    char *dst;
    const char *src;
    size_t n;
} copy_job;

static void *copy_run(void *arg) {
    copy_job *j = arg;
    memcpy(j->dst, j->src, j->n);
    return NULL;
}

double cli_host_copy_bandwidth(int n_threads) {
    if (n_threads <= 0) n_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n_threads <= 0) n_threads = 1;
    char *src = malloc(CLI_COPY_PROBE_BYTES), *dst = malloc(CLI_COPY_PROBE_BYTES);
    copy_job jobs[64];
    pthread_t th[64];
    double best = 0;
    if (n_threads > 64) n_threads = 64;
    if (src && dst) {
        memset(src, 1, CLI_COPY_PROBE_BYTES); // fault the pages in before timing
        memset(dst, 2, CLI_COPY_PROBE_BYTES);
        size_t per = CLI_COPY_PROBE_BYTES / n_threads;
        for (int r = 0; r < COPY_REPEATS; r++) {
            double t0 = cli_now_s();
            for (int i = 0; i < n_threads; i++) {
                jobs[i] = (copy_job){dst + i * per, src + i * per,
                                     i == n_threads - 1 ? CLI_COPY_PROBE_BYTES - i * per : per};
                if (i > 0) pthread_create(&th[i], NULL, copy_run, &jobs[i]);
            }
            copy_run(&jobs[0]);
            for (int i = 1; i < n_threads; i++)
                pthread_join(th[i], NULL);
            double bw = 2.0 * CLI_COPY_PROBE_BYTES / (cli_now_s() - t0);
            if (bw > best) best = bw;
        }
    }
    free(src);
    free(dst);
    return best;
}

int cli_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
