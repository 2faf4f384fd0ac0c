// falconlite tokenize / detokenize: the model directory's tokenizer.json, from the command line.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cli_args.h"
#include "tools/cli_common.h"
#include "tools/commands.h"

int cmd_tokenize(int argc, char **argv) {
    const char *dir = NULL, *text = NULL;
    int json = 0;
    opt_spec opts[] = {
        OPT("model", OPT_STRING, &dir, "model directory (its tokenizer.json)"),
        OPT("text", OPT_STRING, &text, "text to encode"),
        OPT("json", OPT_BOOL, &json, "print {\"ids\":[...]}"),
    };
    int n_opts = sizeof opts / sizeof opts[0];
    int rc =
        cli_args_parse("tokenize", "Prints the token ids of --text.", argc, argv, opts, n_opts);
    if (rc) return rc < 0 ? 2 : 0;
    if (!dir) return cli_fail("tokenize: --model is required");
    if (!text) return cli_fail("tokenize: --text is required");
    tokenizer *tok;
    fl_error err = {0};
    if (cli_tokenizer_load(dir, &tok, &err)) return cli_fail("%s", err.msg);
    int32_t *ids = NULL;
    int n_ids = 0;
    if (tokenizer_encode(tok, text, strlen(text), &ids, &n_ids, &err)) {
        tokenizer_free(tok);
        return cli_fail("%s", err.msg);
    }
    if (json) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddItemToObject(root, "ids", cli_json_ids(ids, n_ids));
        cli_json_print(root);
    } else {
        for (int i = 0; i < n_ids; i++)
            printf("%s%d", i ? "," : "", ids[i]);
        putchar('\n');
    }
    free(ids);
    tokenizer_free(tok);
    return 0;
}

int cmd_detokenize(int argc, char **argv) {
    const char *dir = NULL, *ids_text = NULL;
    int json = 0, skip_special = 0;
    opt_spec opts[] = {
        OPT("model", OPT_STRING, &dir, "model directory (its tokenizer.json)"),
        OPT("ids", OPT_STRING, &ids_text, "comma-separated token ids, e.g. 1,2,3"),
        OPT("skip-special", OPT_BOOL, &skip_special, "drop special tokens (as TGI's output)"),
        OPT("json", OPT_BOOL, &json, "print {\"text\":\"...\"}"),
    };
    int n_opts = sizeof opts / sizeof opts[0];
    int rc = cli_args_parse("detokenize", "Prints the text of --ids.", argc, argv, opts, n_opts);
    if (rc) return rc < 0 ? 2 : 0;
    if (!dir) return cli_fail("detokenize: --model is required");
    if (!ids_text) return cli_fail("detokenize: --ids is required");
    fl_error err = {0};
    int32_t *ids;
    int n_ids;
    if (cli_ids_parse(ids_text, &ids, &n_ids, &err)) return cli_fail("detokenize: %s", err.msg);
    tokenizer *tok;
    if (cli_tokenizer_load(dir, &tok, &err)) {
        free(ids);
        return cli_fail("%s", err.msg);
    }
    int n_vocab = tokenizer_vocab_size(tok);
    for (int i = 0; i < n_ids; i++) {
        if (ids[i] >= n_vocab) {
            int bad = ids[i];
            free(ids);
            tokenizer_free(tok);
            return cli_fail("detokenize: id %d is outside the vocabulary [0, %d)", bad, n_vocab);
        }
    }
    char *text = NULL;
    size_t len = 0;
    rc = tokenizer_decode(tok, ids, n_ids, skip_special, &text, &len, &err);
    free(ids);
    tokenizer_free(tok);
    if (rc) return cli_fail("%s", err.msg);
    if (json) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "text", text);
        cli_json_print(root);
    } else {
        fwrite(text, 1, len, stdout);
        putchar('\n');
    }
    free(text);
    return 0;
}
