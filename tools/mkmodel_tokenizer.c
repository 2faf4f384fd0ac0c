#include "tools/mkmodel_tokenizer.h"
#include "tools/tokenizer_json.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const falcon_special[] = {">>TITLE<<",    ">>ABSTRACT<<", ">>INTRODUCTION<<",
                                             ">>SUMMARY<<",  ">>COMMENT<<",  ">>ANSWER<<",
                                             ">>QUESTION<<", ">>DOMAIN<<",   ">>PREFIX<<",
                                             ">>SUFFIX<<",   ">>MIDDLE<<",   "<|endoftext|>"};
static const char *const oa_special[] = {"<|system|>", "<|prefix_end|>", "<|prefix_begin|>",
                                         "<|assistant|>", "<|prompter|>"};
#define N_FALCON_SPECIAL 12
#define N_OA_SPECIAL     5
#define N_BYTES          256

// Merge right-hand sides in rough English frequency order (ByteLevel maps letters to themselves).
static const char merge_letters[] = "etaoinshrdlcumwfgypbvkjxqzETAOINSHRDLCUMWFGYPBVKJXQZ";
#define MAX_TOKEN_BYTES 64

// GPT-2's reversible byte -> printable code point map (the ByteLevel alphabet), as UTF-8.
static void byte_level_alphabet(char out[N_BYTES][4]) {
    int n = 0;
    for (int b = 0; b < N_BYTES; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        unsigned cp = printable ? (unsigned)b : 256u + n++;
        if (cp < 0x80) {
            out[b][0] = (char)cp, out[b][1] = 0;
        } else {
            out[b][0] = (char)(0xC0 | (cp >> 6)), out[b][1] = (char)(0x80 | (cp & 0x3F));
            out[b][2] = 0;
        }
    }
}

fl_code mkmodel_tokenizer_write(const char *path, int n_vocab, int oa_start, fl_error *err) {
    int n_model = oa_start >= 0 ? oa_start : n_vocab; // ids of the BPE model's own vocabulary
    int n_merges = n_model - N_FALCON_SPECIAL - N_BYTES;
    if (n_merges < 0 || (oa_start >= 0 && oa_start + N_OA_SPECIAL > n_vocab))
        return fl_error_set(err, FL_EINVAL, "tokenizer: vocabulary %d too small", n_vocab);
    char alphabet[N_BYTES][4];
    byte_level_alphabet(alphabet);

    cJSON *added, *model;
    cJSON *root = tokenizer_json_create(tokenizer_json_falcon_pre_tokenizer(), &added, &model);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");

    int id = 0;
    for (; id < N_FALCON_SPECIAL; id++) {
        cJSON_AddItemToArray(added, tokenizer_json_added_token(id, falcon_special[id], 1));
        cJSON_AddNumberToObject(vocab, falcon_special[id], id);
    }
    for (int b = 0; b < N_BYTES; b++)
        cJSON_AddNumberToObject(vocab, alphabet[b], id++);

    // Merges in generations: queue = "Ġ" then the letters; each queued token a, in order, is
    // extended by every letter b as merge "a b". All results are distinct and reachable.
    char(*queue)[MAX_TOKEN_BYTES] = malloc(sizeof *queue * (n_merges + 64));
    if (!queue) {
        cJSON_Delete(root);
        return fl_error_set(err, FL_ENOMEM, "tokenizer: out of memory");
    }
    int n_queue = 0, head = 0, n_letters = (int)strlen(merge_letters);
    strcpy(queue[n_queue++], alphabet[' ']);
    for (int i = 0; i < n_letters; i++)
        queue[n_queue][0] = merge_letters[i], queue[n_queue++][1] = 0;
    int made = 0;
    while (made < n_merges) {
        char a[MAX_TOKEN_BYTES];
        memcpy(a, queue[head++], sizeof a);
        for (int i = 0; i < n_letters && made < n_merges; i++) {
            char merge[MAX_TOKEN_BYTES + 4];
            snprintf(merge, sizeof merge, "%s %c", a, merge_letters[i]);
            cJSON_AddItemToArray(merges, cJSON_CreateString(merge));
            size_t la = strlen(a); // a few bytes: 65k merges stay within 3 generations
            memcpy(queue[n_queue], a, la);
            queue[n_queue][la] = merge_letters[i], queue[n_queue][la + 1] = 0;
            cJSON_AddNumberToObject(vocab, queue[n_queue++], id++);
            made++;
        }
    }
    free(queue);
    for (int i = 0; oa_start >= 0 && i < N_OA_SPECIAL; i++)
        cJSON_AddItemToArray(added, tokenizer_json_added_token(id++, oa_special[i], 1));
    for (int pad = 0; id < n_vocab; pad++) {
        char name[32];
        snprintf(name, sizeof name, "<|pad_%d|>", pad);
        cJSON_AddItemToArray(added, tokenizer_json_added_token(id++, name, 1));
    }

    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) return fl_error_set(err, FL_ENOMEM, "tokenizer: out of memory printing JSON");
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(text);
        return fl_error_set(err, FL_EIO, "%s: cannot create: %s", path, strerror(errno));
    }
    size_t len = strlen(text);
    int bad = fwrite(text, 1, len, f) != len;
    bad |= fclose(f) != 0;
    free(text);
    if (bad) return fl_error_set(err, FL_EIO, "%s: write failed", path);
    return FL_OK;
}
