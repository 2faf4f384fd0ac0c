// Perplexity of a text file: the text is tokenized once and scored in consecutive windows of ctx
// tokens, each a fresh sequence (no overlap), so every scored token sees at most ctx - 1 tokens
// of context; the first token of each window is context only.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/json_util.h"
#include "tools/cli_common.h"
#include "tools/eval.h"

fl_code eval_ppl(const eval_opts *o, eval_engine *e, const char *file, int ctx, int max_tokens,
                 fl_error *err) {
    char *text = NULL;
    size_t len;
    int32_t *ids = NULL;
    int n_ids = 0;
    fl_code rc = file_read_all(file, &text, &len, err);
    if (!rc) rc = tokenizer_encode(e->tok, text, len, &ids, &n_ids, err);
    free(text);
    if (rc) return rc;
    if (max_tokens > 0 && n_ids > max_tokens) n_ids = max_tokens;
    double nll = 0;
    long scored = 0;
    int windows = 0;
    float *lp = malloc(sizeof *lp * (ctx > 0 ? ctx : 1));
    if (!lp) rc = fl_error_set(err, FL_ENOMEM, "out of memory");
    for (int start = 0; !rc && start + 1 < n_ids; start += ctx) {
        int n = n_ids - start < ctx ? n_ids - start : ctx;
        double w = 0;
        if ((rc = eval_prompt_logprobs(e, ids + start, n, lp, err))) break;
        for (int i = 1; i < n; i++)
            w -= lp[i];
        nll += w;
        scored += n - 1;
        windows++;
        if (o->verbose)
            fprintf(stderr, "ppl: window %d: %d tokens, ppl %.3f\n", windows, n, exp(w / (n - 1)));
    }
    free(lp);
    free(ids);
    if (rc) return rc;
    if (!scored) return fl_error_set(err, FL_EINVAL, "%s: too short to score", file);
    if (!o->json) {
        printf("falconlite eval ppl: model %s\n\n| Text | windows of | tokens scored | ppl | "
               "nll/token |\n|---|---|---|---|---|\n| %s | %d | %ld | %.3f | %.4f |\n",
               o->dir, file, ctx, scored, exp(nll / scored), nll / scored);
        return FL_OK;
    }
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "suite", "ppl");
    cJSON_AddStringToObject(s, "model", o->dir);
    cJSON_AddStringToObject(s, "file", file);
    cJSON_AddNumberToObject(s, "ctx", ctx);
    cJSON_AddNumberToObject(s, "windows", windows);
    cJSON_AddNumberToObject(s, "tokens_scored", (double)scored);
    cJSON_AddNumberToObject(s, "nll_per_token", nll / scored);
    cJSON_AddNumberToObject(s, "ppl", exp(nll / scored));
    cli_json_print(s);
    return FL_OK;
}
