// What the libFuzzer targets of tests/fuzz/ share: quiet logs, the golden tokenizer, and writing
// the input to a private file for the parsers that take a path.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/tokenizer.h"

// Logs off (error level) and, on first use, the tokenizer of the golden model (FL_FUZZ_DATA is
// the tests/ folder, set by CMake); aborts when it cannot load (a broken setup, not a finding).
const tokenizer *fuzz_tokenizer(void);
void fuzz_quiet(void);
// Writes data to <private dir>/<name> and returns that path (static storage).
const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size);
