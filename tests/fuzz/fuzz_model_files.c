// libFuzzer: the model files a server reads at start. The first byte picks the format; the rest is
// the file: safetensors (safetensors_open_file), GGUF (gguf_open_memory), tokenizer.json
// (tokenizer_load, then one encode) or config.json (model_config_load of a directory holding it).
// tests/unit/test_fuzz_parsers.c keeps its seeded mutations of the same parsers.
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/gguf.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_quiet();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t *body = data + 1;
    size_t len = size - 1;
    fl_error err = {0};
    switch (data[0] % 4) {
    case 0: {
        safetensors *st = NULL;
        if (safetensors_open_file(fuzz_write_file("model.safetensors", body, len), &st, &err) ==
            FL_OK)
            safetensors_close(st);
        break;
    }
    case 1: {
        gguf_file *g = NULL;
        if (gguf_open_memory(body, len, "fuzz.gguf", &g, &err) == FL_OK) gguf_close(g);
        break;
    }
    case 2: {
        tokenizer *tok = NULL;
        if (tokenizer_load(fuzz_write_file("tokenizer.json", body, len), &tok, &err) == FL_OK) {
            int32_t *ids = NULL;
            int n = 0;
            tokenizer_encode(tok, "Hello world <|endoftext|> 123", 29, &ids, &n, NULL);
            free(ids);
            tokenizer_free(tok);
        }
        break;
    }
    default: {
        const char *path = fuzz_write_file("config.json", body, len);
        char dir[128];
        snprintf(dir, sizeof dir, "%.*s", (int)(strrchr(path, '/') - path), path);
        model_config c;
        model_config_load(dir, NULL, &c, &err);
        break;
    }
    }
    return 0;
}
