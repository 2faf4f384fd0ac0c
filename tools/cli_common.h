// Helpers the falconlite subcommands share: loading a model directory's tokenizer, printing
// JSON, parsing id lists, timing.
#pragma once
#include <cjson/cJSON.h>
#include <stdint.h>

#include "common/status.h"
#include "common/tokenizer.h"

// Loads <dir>/tokenizer.json.
fl_code cli_tokenizer_load(const char *model_dir, tokenizer **out, fl_error *err);
// Prints root unformatted on one line to stdout and deletes it.
void cli_json_print(cJSON *root);
// A JSON array of ints.
cJSON *cli_json_ids(const int32_t *ids, int n);
// Parses "1,2,3" (spaces allowed) into a malloc'd array.
fl_code cli_ids_parse(const char *text, int32_t **ids, int *n_ids, fl_error *err);

// Parses --flag's "1,4,16" into out[max] (1 to max positive integers) and sets *n_out; on bad
// input prints "falconlite: error: <cmd>: --<flag> ..." and returns the exit status (else 0).
int cli_positive_list_parse(const char *cmd, const char *flag, const char *text, int *out, int max,
                            int *n_out);
// Monotonic clock in seconds.
double cli_now_s(void);
// qsort comparator for doubles (ascending).
int cli_cmp_double(const void *a, const void *b);
#define CLI_COPY_PROBE_BYTES (256u << 20) // >> any L3, so the copy runs from memory
// The host's copy bandwidth in bytes/s (read + write bytes) with n_threads threads (0: all cores)
// splitting one memcpy of a buffer far larger than any L3, best of a few repeats; 0 without the
// memory.
double cli_host_copy_bandwidth(int n_threads);
