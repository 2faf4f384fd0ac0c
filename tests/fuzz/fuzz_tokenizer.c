// libFuzzer: tokenizer encode and decode on arbitrary bytes. The input is encoded as text (any
// bytes, invalid UTF-8 included); the same bytes read as little-endian int32 ids (any values,
// out of the vocabulary included) are decoded with and without special tokens.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_tokenizer();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const tokenizer *tok = fuzz_tokenizer();
    int32_t *ids = NULL;
    int n = 0;
    if (tokenizer_encode(tok, (const char *)data, size, &ids, &n, NULL) == FL_OK && n > 0) {
        char *text = NULL;
        if (tokenizer_decode(tok, ids, n, 0, &text, NULL, NULL) == FL_OK) free(text);
    }
    free(ids);
    int n_raw = (int)(size / 4);
    if (n_raw > 0) {
        int32_t *raw = malloc((size_t)n_raw * sizeof *raw);
        if (!raw) return 0;
        memcpy(raw, data, (size_t)n_raw * sizeof *raw);
        for (int skip = 0; skip < 2; skip++) {
            char *text = NULL;
            if (tokenizer_decode(tok, raw, n_raw, skip, &text, NULL, NULL) == FL_OK) free(text);
        }
        free(raw);
    }
    return 0;
}
