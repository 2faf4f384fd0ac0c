// LongChat LongEval line retrieval on a released *_lines.jsonl file: the first --samples records,
// each prompt wrapped in the chat template (LongChat's harness wraps it in a conversation
// template), greedy decoding, scored as upstream: the LAST number in the answer must equal
// expected_number.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_util.h"
#include "tools/cli_common.h"
#include "tools/eval.h"

fl_code eval_lines(const eval_opts *o, eval_engine *e, const char *file, fl_error *err) {
    char *data = NULL;
    size_t len;
    fl_code rc = file_read_all(file, &data, &len, err);
    if (rc) return rc;
    cJSON *summary = eval_summary_create(o, "lines");
    int done = 0, correct = 0, num_lines = 0;
    double tokens = 0;
    char *line = data;
    for (int lineno = 1; !rc && done < o->samples && line && *line; lineno++) {
        char *next = strchr(line, '\n');
        if (next) *next++ = 0;
        if (!*line) {
            line = next;
            continue;
        }
        cJSON *rec = cJSON_Parse(line);
        const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(rec, "prompt");
        const cJSON *expected = cJSON_GetObjectItemCaseSensitive(rec, "expected_number");
        if (!cJSON_IsString(prompt) || !cJSON_IsNumber(expected)) {
            cJSON_Delete(rec);
            rc = fl_error_set(err, FL_EFORMAT,
                              "%s:%d: not a LongEval line record (needs 'prompt' and "
                              "'expected_number')",
                              file, lineno);
            break;
        }
        const cJSON *nl = cJSON_GetObjectItemCaseSensitive(rec, "num_lines");
        if (cJSON_IsNumber(nl)) num_lines = nl->valueint;
        char *p = NULL, *answer = NULL;
        int32_t *ids = NULL;
        int n_ids = 0;
        rc = chat_template_apply(o->tmpl, NULL, prompt->valuestring, &p, err);
        if (!rc) rc = tokenizer_encode(e->tok, p, strlen(p), &ids, &n_ids, err);
        if (!rc) rc = eval_generate(e, ids, n_ids, o->max_new, &answer, err);
        if (!rc) {
            long got = eval_find_number(answer, 1);
            correct += got == (long)expected->valuedouble;
            tokens += n_ids;
            done++;
            if (o->verbose)
                fprintf(stderr, "lines: record %d: %d tokens, expected %ld, %s: %s\n", lineno,
                        n_ids, (long)expected->valuedouble,
                        got == (long)expected->valuedouble ? "correct" : "WRONG", answer);
        }
        free(answer);
        free(ids);
        free(p);
        cJSON_Delete(rec);
        line = next;
    }
    free(data);
    if (!rc && !done) rc = fl_error_set(err, FL_EFORMAT, "%s: no records", file);
    if (rc) {
        cJSON_Delete(summary);
        return rc;
    }
    cJSON_AddStringToObject(summary, "file", file);
    cJSON_AddNumberToObject(summary, "num_lines", num_lines);
    cJSON_AddNumberToObject(summary, "mean_prompt_tokens", tokens / done);
    cJSON_AddNumberToObject(summary, "correct", correct);
    cJSON_AddNumberToObject(summary, "accuracy", (double)correct / done);
    cJSON_SetNumberValue(cJSON_GetObjectItem(summary, "samples"), done);
    cli_json_print(summary);
    return FL_OK;
}
