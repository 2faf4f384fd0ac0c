#include "tests/fuzz/fuzz_common.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/log.h"

void fuzz_quiet(void) {
    log_current_level = LOG_ERROR;
}

const tokenizer *fuzz_tokenizer(void) {
    static tokenizer *tok;
    if (tok) return tok;
    fuzz_quiet();
    char path[600];
    snprintf(path, sizeof path, "%s/golden/data/tokenizer_bytelevel/tokenizer.json", FL_FUZZ_DATA);
    fl_error err = {0};
    if (tokenizer_load(path, &tok, &err) != FL_OK) {
        fprintf(stderr, "fuzz: cannot load %s: %s\n", path, err.msg);
        abort();
    }
    return tok;
}

const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size) {
    static char dir[64];
    static char path[128];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/dev/shm/fl_fuzz_XXXXXX");
        if (!mkdtemp(dir)) {
            snprintf(dir, sizeof dir, "/tmp/fl_fuzz_XXXXXX");
            if (!mkdtemp(dir)) abort();
        }
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    return path;
}
