// Chat templates recognised from tokenizer_config.json / the vocabulary, rendered exactly as HF
// apply_chat_template(add_generation_prompt=True) renders them. The expected strings were
// computed once with transformers 5.24 from the templates below (SmolLM2-135M-Instruct's own,
// Qwen2's, a plain ChatML, an OpenAssistant one, Llama-2-chat's and Zephyr-7b-beta's), for the
// user message USER with no system message and after the system message SYSTEM.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/chat_template.h"

#define USER   " Hi there,\nhow are you? "
#define SYSTEM "You are terse. "

#define SMOLLM2_TEMPLATE                                                                           \
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "      \
    "'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "        \
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "                  \
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ "      \
    "'<|im_start|>assistant\n' }}{% endif %}"
#define SMOLLM2_SYSTEM "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

typedef struct family_case {
    const char *name, *tmpl, *bos, *eos;
    const char *kind, *default_system;
    const char *want_user, *want_system; // HF's output without / with SYSTEM
} family_case;

static const family_case families[] = {
    {"smollm2", SMOLLM2_TEMPLATE, "<|im_start|>", "<|im_end|>", "chatml", SMOLLM2_SYSTEM,
     "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
     "Face<|im_end|>\n<|im_start|>user\n Hi there,\nhow are you? <|im_end|>\n"
     "<|im_start|>assistant\n",
     "<|im_start|>system\nYou are terse. <|im_end|>\n<|im_start|>user\n Hi there,\nhow are you? "
     "<|im_end|>\n<|im_start|>assistant\n"},
    {"chatml_plain",
     "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
     "+ '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
     "'<|im_start|>assistant\n' }}{% endif %}",
     NULL, NULL, "chatml", NULL,
     "<|im_start|>user\n Hi there,\nhow are you? <|im_end|>\n<|im_start|>assistant\n",
     "<|im_start|>system\nYou are terse. <|im_end|>\n<|im_start|>user\n Hi there,\nhow are you? "
     "<|im_end|>\n<|im_start|>assistant\n"},
    {"qwen2", // newlines written as Jinja escapes
     "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
     "'<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
     "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
     "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
     NULL, "<|im_end|>", "chatml", "You are a helpful assistant.",
     "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n Hi there,\n"
     "how are you? <|im_end|>\n<|im_start|>assistant\n",
     "<|im_start|>system\nYou are terse. <|im_end|>\n<|im_start|>user\n Hi there,\nhow are you? "
     "<|im_end|>\n<|im_start|>assistant\n"},
    {"qwen25", // the caller's system branch comes first; escaped and other quotes in the default
     "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + "
     "messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are "
     "Qwen, created by Alibaba Cloud. You\\'re a \"helpful\" assistant.<|im_end|>\\n' }}{%- endif "
     "%}{%- for message in messages %}{%- if message.role != 'system' %}{{- '<|im_start|>' + "
     "message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}{%- if "
     "add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}",
     NULL, "<|im_end|>", "chatml",
     "You are Qwen, created by Alibaba Cloud. You're a \"helpful\" assistant.",
     "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You're a \"helpful\" "
     "assistant.<|im_end|>\n<|im_start|>user\n Hi there,\nhow are you? <|im_end|>\n"
     "<|im_start|>assistant\n",
     "<|im_start|>system\nYou are terse. <|im_end|>\n<|im_start|>user\n Hi there,\nhow are you? "
     "<|im_end|>\n<|im_start|>assistant\n"},
    {"oasst",
     "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<|system|>' + "
     "message['content'] + eos_token }}{% elif message['role'] == 'user' %}{{ '<|prompter|>' + "
     "message['content'] + eos_token }}{% elif message['role'] == 'assistant' %}{{ "
     "'<|assistant|>' + message['content'] + eos_token }}{% endif %}{% endfor %}{% if "
     "add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}",
     NULL, "<|endoftext|>", "oasst", NULL,
     "<|prompter|> Hi there,\nhow are you? <|endoftext|><|assistant|>",
     "<|system|>You are terse. <|endoftext|><|prompter|> Hi there,\nhow are you? "
     "<|endoftext|><|assistant|>"},
    {"llama2",
     "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
     "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% "
     "set system_message = false %}{% endif %}{% for message in loop_messages %}{% if "
     "(message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation "
     "roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == "
     "0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
     "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] "
     "%}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() "
     "+ ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + "
     "eos_token }}{% endif %}{% endfor %}",
     "<s>", "</s>", "llama2", NULL, "<s>[INST] Hi there,\nhow are you? [/INST]",
     "<s>[INST] <<SYS>>\nYou are terse. \n<</SYS>>\n\n Hi there,\nhow are you? [/INST]"},
    {"zephyr",
     "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
     "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ "
     "'<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == "
     "'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% "
     "if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}",
     "<s>", "</s>", "zephyr", NULL, "<|user|>\n Hi there,\nhow are you? </s>\n<|assistant|>\n",
     "<|system|>\nYou are terse. </s>\n<|user|>\n Hi there,\nhow are you? </s>\n"
     "<|assistant|>\n"},
};

static char tmpdir[256];

static int setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fl_chat_template_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *name, const char *text) {
    char path[400];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void remove_file(const char *name) {
    char path[400];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    unlink(path);
}

// tokenizer_config.json with the template (a string, or NULL for none) and special tokens.
static void write_config(const char *tmpl, const char *bos, const char *eos) {
    cJSON *cfg = cJSON_CreateObject();
    if (tmpl) cJSON_AddStringToObject(cfg, "chat_template", tmpl);
    if (bos) cJSON_AddStringToObject(cfg, "bos_token", bos);
    if (eos) { // the AddedToken object form, as older transformers save it
        cJSON *e = cJSON_AddObjectToObject(cfg, "eos_token");
        cJSON_AddStringToObject(e, "content", eos);
    }
    char *text = cJSON_Print(cfg);
    write_file("tokenizer_config.json", text);
    free(text);
    cJSON_Delete(cfg);
}

static chat_template *load_ok(const tokenizer *tok) {
    chat_template *t = NULL;
    fl_error err = {0};
    if (chat_template_load(tmpdir, tok, &t, &err)) fail_msg("%s", err.msg);
    return t;
}

static void expect_apply(const chat_template *t, const char *system, const char *user,
                         const char *want, const char *what) {
    char *got = NULL;
    fl_error err = {0};
    if (chat_template_apply(t, system, user, &got, &err)) fail_msg("%s: %s", what, err.msg);
    if (strcmp(got, want)) fail_msg("%s:\n got  \"%s\"\n want \"%s\"", what, got, want);
    free(got);
}

static void test_families_match_hf(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        const family_case *c = &families[i];
        write_config(c->tmpl, c->bos, c->eos);
        chat_template *t = load_ok(NULL);
        assert_string_equal(chat_template_kind_name(t), c->kind);
        const char *sys = chat_template_default_system(t);
        if (c->default_system)
            assert_string_equal(sys, c->default_system);
        else if (sys)
            fail_msg("%s: unexpected default system \"%s\"", c->name, sys);
        expect_apply(t, NULL, USER, c->want_user, c->name);
        expect_apply(t, SYSTEM, USER, c->want_system, c->name);
        chat_template_free(t);
    }
}

// An empty system message is a message (HF: "" != false), not the default.
static void test_empty_system(void **state) {
    (void)state;
    write_config(families[0].tmpl, NULL, NULL);
    chat_template *t = load_ok(NULL);
    expect_apply(t, "", "u",
                 "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nu<|im_end|>\n"
                 "<|im_start|>assistant\n",
                 "smollm2, empty system");
    chat_template_free(t);
    const family_case *llama2 = &families[5];
    write_config(llama2->tmpl, llama2->bos, llama2->eos);
    t = load_ok(NULL);
    expect_apply(t, "", USER, "<s>[INST] <<SYS>>\n\n<</SYS>>\n\n Hi there,\nhow are you? [/INST]",
                 "llama2, empty system");
    chat_template_free(t);
}

// The presets `falconlite eval --template` names: smollm2 is what SmolLM2's own template gives,
// oasst is FalconLite's client format.
static void test_presets(void **state) {
    (void)state;
    chat_template *t = NULL;
    fl_error err = {0};
    assert_int_equal(chat_template_create("smollm2", &t, &err), FL_OK);
    expect_apply(t, NULL, USER, families[0].want_user, "preset smollm2");
    chat_template_free(t);
    assert_int_equal(chat_template_create("chatml", &t, &err), FL_OK);
    expect_apply(t, NULL, USER, families[1].want_user, "preset chatml");
    chat_template_free(t);
    assert_int_equal(chat_template_create("oasst", &t, &err), FL_OK);
    expect_apply(t, NULL, "What is 2+2?", "<|prompter|>What is 2+2?<|endoftext|><|assistant|>",
                 "preset oasst");
    chat_template_free(t);
    assert_int_equal(chat_template_create("none", &t, &err), FL_OK);
    assert_int_equal(chat_template_format(t), CHAT_FORMAT_NONE);
    expect_apply(t, NULL, USER, USER, "preset none");
    expect_apply(t, NULL, "", "", "preset none, empty");
    chat_template_free(t);
    t = NULL;
    assert_int_equal(chat_template_create("jinja", &t, &err), FL_EINVAL);
    assert_null(t);
    assert_non_null(strstr(err.msg, "'jinja'"));
}

// HF's list of named templates, and chat_template.jinja beside tokenizer_config.json.
static void test_template_sources(void **state) {
    (void)state;
    cJSON *cfg = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(cfg, "chat_template");
    const char *names[] = {"tool_use", "default"}, *tmpls[] = {"[INST]", families[6].tmpl};
    for (int i = 0; i < 2; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", names[i]);
        cJSON_AddStringToObject(e, "template", tmpls[i]);
        cJSON_AddItemToArray(list, e);
    }
    cJSON_AddStringToObject(cfg, "eos_token", "</s>");
    char *text = cJSON_Print(cfg);
    write_file("tokenizer_config.json", text);
    free(text);
    cJSON_Delete(cfg);
    chat_template *t = load_ok(NULL);
    assert_string_equal(chat_template_kind_name(t), "zephyr");
    expect_apply(t, SYSTEM, USER, families[6].want_system, "zephyr from a template list");
    chat_template_free(t);

    write_file("chat_template.jinja", families[0].tmpl);
    t = load_ok(NULL);
    assert_string_equal(chat_template_kind_name(t), "chatml");
    assert_string_equal(chat_template_default_system(t), SMOLLM2_SYSTEM);
    chat_template_free(t);
    remove_file("chat_template.jinja");
}

// Falcon's golden tokenizer has <|prompter|> and <|assistant|> (FalconLite's vocabulary).
static tokenizer *falcon_tokenizer(void) {
    char path[512];
    const char *data = getenv("FL_TEST_DATA");
    snprintf(path, sizeof path, "%s/golden/data/tokenizer/tokenizer.json", data ? data : "tests");
    tokenizer *tok = NULL;
    fl_error err = {0};
    if (tokenizer_load(path, &tok, &err)) fail_msg("%s", err.msg);
    return tok;
}

static void test_vocabulary_fallback(void **state) {
    (void)state;
    tokenizer *falcon = falcon_tokenizer(), *chatml = NULL;
    fl_error err = {0};

    remove_file("tokenizer_config.json"); // FalconLite ships none
    chat_template *t = load_ok(falcon);
    assert_int_equal(chat_template_format(t), CHAT_FORMAT_OASST);
    expect_apply(t, NULL, "Hi", "<|prompter|>Hi<|endoftext|><|assistant|>", "falcon vocabulary");
    chat_template_free(t);

    write_config(NULL, NULL, "</s>"); // a config without chat_template: the vocabulary decides
    t = load_ok(falcon);
    expect_apply(t, NULL, "Hi", "<|prompter|>Hi<|endoftext|><|assistant|>", "falcon, config");
    chat_template_free(t);

    write_file("tokenizer.json",
               "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[]},"
               "\"added_tokens\":[{\"id\":2,\"content\":\"<|im_start|>\",\"special\":true},"
               "{\"id\":3,\"content\":\"<|im_end|>\",\"special\":true}]}");
    char path[400];
    snprintf(path, sizeof path, "%s/tokenizer.json", tmpdir);
    if (tokenizer_load(path, &chatml, &err)) fail_msg("%s", err.msg);
    t = load_ok(chatml);
    assert_int_equal(chat_template_format(t), CHAT_FORMAT_CHATML);
    assert_null(chat_template_default_system(t));
    expect_apply(t, NULL, USER, families[1].want_user, "im_start vocabulary");
    chat_template_free(t);

    t = load_ok(NULL); // no template, no tokenizer: plain
    assert_int_equal(chat_template_format(t), CHAT_FORMAT_NONE);
    expect_apply(t, SYSTEM, USER, USER, "no template");
    chat_template_free(t);

    // A template of a family not known here wins over the vocabulary: no guess.
    write_config("{% for m in messages %}{{ m['content'] }}{% endfor %}", NULL, NULL);
    t = load_ok(falcon);
    assert_int_equal(chat_template_format(t), CHAT_FORMAT_NONE);
    assert_string_equal(chat_template_kind_name(t), "none");
    chat_template_free(t);
    remove_file("tokenizer.json");
    tokenizer_free(chatml);
    tokenizer_free(falcon);
}

static void test_bad_files(void **state) {
    (void)state;
    chat_template *t = NULL;
    fl_error err = {0};
    write_file("tokenizer_config.json", "{\"chat_template\": ");
    assert_int_equal(chat_template_load(tmpdir, NULL, &t, &err), FL_EFORMAT);
    assert_null(t);
    assert_non_null(strstr(err.msg, "tokenizer_config.json"));
    write_file("tokenizer_config.json", "{\"chat_template\": 7}");
    assert_int_equal(chat_template_load(tmpdir, NULL, &t, &err), FL_EFORMAT);
    assert_null(t);
    assert_non_null(strstr(err.msg, "tokenizer_config.json: field 'chat_template'"));
    remove_file("tokenizer_config.json");
}

// Runs the falconlite binary; returns its exit status and its stdout in out (NUL-terminated).
static int run_cli(const char *args, char *out, size_t n) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s/falconlite' %s 2>'%s/stderr'", getenv("FL_BIN_DIR"), args,
             tmpdir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// generate --chat tokenizes the prompt in the model's format (the golden Falcon model:
// OpenAssistant from its vocabulary, as FalconLite) and refuses a model with no template it knows.
static void test_generate_chat(void **state) {
    (void)state;
    const char *bin = getenv("FL_BIN_DIR"), *data = getenv("FL_TEST_DATA");
    char path[512], model[512], args[1600], out[8192];
    snprintf(path, sizeof path, "%s/falconlite", bin ? bin : "");
    if (!bin || !data || access(path, X_OK)) skip();
    snprintf(model, sizeof model, "%s/golden/data/models/falcon40b_gqa_fp32", data);
    snprintf(args, sizeof args,
             "generate --model '%s' --prompt Hi --chat --json --max-new-tokens 1 --backend cpu",
             model);
    assert_int_equal(run_cli(args, out, sizeof out), 0);
    cJSON *root = cJSON_Parse(out), *ids = cJSON_GetObjectItem(root, "input_ids");
    tokenizer *tok = falcon_tokenizer();
    int32_t *want = NULL;
    int n_want = 0;
    const char *text = "<|prompter|>Hi<|endoftext|><|assistant|>";
    assert_int_equal(tokenizer_encode(tok, text, strlen(text), &want, &n_want, NULL), FL_OK);
    assert_int_equal(cJSON_GetArraySize(ids), n_want);
    for (int i = 0; i < n_want; i++)
        assert_int_equal(cJSON_GetArrayItem(ids, i)->valueint, want[i]);
    free(want);
    tokenizer_free(tok);
    cJSON_Delete(root);

    // The same model with an unknown template: a clear error, exit 1.
    const char *files[] = {"config.json", "model.safetensors", "tokenizer.json"};
    for (int i = 0; i < 3; i++) {
        char src[600], dst[600];
        snprintf(src, sizeof src, "%s/%s", model, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", tmpdir, files[i]);
        assert_int_equal(symlink(src, dst), 0);
    }
    write_config("{% for m in messages %}{{ m['content'] }}{% endfor %}", NULL, NULL);
    snprintf(args, sizeof args, "generate --model '%s' --prompt Hi --system 'Be brief' --json",
             tmpdir);
    assert_int_equal(run_cli(args, out, sizeof out), 1);
    char err_text[4096] = {0};
    snprintf(path, sizeof path, "%s/stderr", tmpdir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_true(fread(err_text, 1, sizeof err_text - 1, f) > 0);
    fclose(f);
    assert_non_null(strstr(err_text, "falconlite: error: generate --chat: "));
    assert_non_null(strstr(err_text, "no chat template"));
    for (int i = 0; i < 3; i++)
        remove_file(files[i]);
    remove_file("tokenizer_config.json");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_families_match_hf),
        cmocka_unit_test(test_empty_system),
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_template_sources),
        cmocka_unit_test(test_vocabulary_fallback),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_generate_chat),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
