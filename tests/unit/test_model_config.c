// config.json parsing: HF `falcon` (40B new-arch and 7B multi-query), the legacy RefinedWeb /
// RefinedWebModel configs as published, Llama, rotary settings (rope_theta, rope_parameters,
// rope_scaling), GPTQ (files, the --gptq-* / GPTQ_* overrides read at the edges), the DNTK
// environment, malformed configs, and the rotary base against
// FalconLite's table.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/model_config.h"

static char tmpdir[256];
static quant_overrides gptq; // the operator's GPTQ overrides the loads below pass
static const char *const env_vars[] = {"GPTQ_BITS", "GPTQ_GROUPSIZE", "DNTK_ALPHA_SCALER",
                                       "PRETRAINED_MAX_TOKENS"};

static int env_clear(void **state) {
    for (size_t i = 0; i < sizeof env_vars / sizeof env_vars[0]; i++)
        unsetenv(env_vars[i]);
    gptq = (quant_overrides){0};
    char path[300];
    snprintf(path, sizeof path, "%s/quantize_config.json", tmpdir);
    unlink(path);
    return 0;
}

static int dir_setup(void **state) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fl_test_cfg_XXXXXX");
    return mkdtemp(tmpdir) ? env_clear(state) : -1;
}

static int dir_teardown(void **state) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void file_put(const char *name, const char *text) {
    char path[300];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static model_config load_ok(const char *config_json) {
    file_put("config.json", config_json);
    model_config cfg;
    fl_error err = {0};
    if (model_config_load(tmpdir, &gptq, &cfg, &err)) fail_msg("%s", err.msg);
    return cfg;
}

// Loads expecting `code` and a message containing "config.json" (or `file`) and `needle`.
static void load_fails(const char *config_json, fl_code code, const char *file,
                       const char *needle) {
    file_put("config.json", config_json);
    model_config cfg;
    fl_error err = {0};
    fl_code rc = model_config_load(tmpdir, &gptq, &cfg, &err);
    if (rc != code) {
        fail_msg("expected %s, got %s: %s (config %s)", fl_code_name(code), fl_code_name(rc),
                 err.msg, config_json);
    }
    if (!strstr(err.msg, file ? file : "config.json")) fail_msg("file not named: %s", err.msg);
    if (needle && !strstr(err.msg, needle)) fail_msg("'%s' not in: %s", needle, err.msg);
}

// HF `falcon` config of a Falcon-40B-shaped model.
static const char *falcon40b_hf =
    "{\"model_type\":\"falcon\",\"architectures\":[\"FalconForCausalLM\"],\"hidden_size\":256,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":8,\"num_kv_heads\":2,"
    "\"new_decoder_architecture\":true,\"parallel_attn\":true,\"bias\":false,\"alibi\":false,"
    "\"layer_norm_epsilon\":1e-05,\"vocab_size\":1000,\"bos_token_id\":11,\"eos_token_id\":11,"
    "\"rope_scaling\":null,\"num_ln_in_parallel_attn\":null,\"ffn_hidden_size\":null}";

static void test_falcon_40b_hf(void **state) {
    model_config c = load_ok(falcon40b_hf);
    assert_int_equal(c.arch, ARCH_FALCON);
    assert_string_equal(c.model_type, "falcon");
    assert_int_equal(c.d_model, 256);
    assert_int_equal(c.n_layer, 2);
    assert_int_equal(c.n_head, 8);
    assert_int_equal(c.n_head_kv, 2);
    assert_int_equal(c.head_dim, 32);
    assert_int_equal(c.d_ff, 1024);
    assert_int_equal(c.n_vocab, 1000);
    assert_int_equal(c.new_decoder_architecture, 1);
    assert_int_equal(c.n_norm_in_layer, 2);
    assert_int_equal(c.parallel_attn, 1);
    assert_int_equal(c.bias, 0);
    assert_int_equal(c.norm, NORM_LAYERNORM);
    assert_int_equal(c.mlp, MLP_GELU);
    assert_float_equal(c.norm_eps, 1e-5f, 1e-12);
    assert_int_equal(c.tie_word_embeddings, 1);
    assert_int_equal(c.bos_token_id, 11);
    assert_int_equal(c.eos_token_id, 11);
    assert_int_equal(c.max_position_embeddings, 2048);
    assert_int_equal(c.rope.mode, ROPE_NONE);
    assert_float_equal(c.rope.theta, 10000.0f, 0);
    assert_int_equal(c.rope.rot_dim, 32);
    assert_int_equal(c.quant.gptq, 0);

    // One shared layernorm when asked, and explicit ffn size / ids / tying.
    c = load_ok("{\"model_type\":\"falcon\",\"hidden_size\":256,\"num_hidden_layers\":2,"
                "\"num_attention_heads\":8,\"num_kv_heads\":4,\"new_decoder_architecture\":true,"
                "\"num_ln_in_parallel_attn\":1,\"vocab_size\":1000,\"ffn_hidden_size\":640,"
                "\"bias\":true,\"tie_word_embeddings\":false,\"eos_token_id\":[2,7],"
                "\"max_position_embeddings\":8192}");
    assert_int_equal(c.n_norm_in_layer, 1);
    assert_int_equal(c.n_head_kv, 4);
    assert_int_equal(c.d_ff, 640);
    assert_int_equal(c.bias, 1);
    assert_int_equal(c.tie_word_embeddings, 0);
    assert_int_equal(c.eos_token_id, 2);
    assert_int_equal(c.max_position_embeddings, 8192);
}

static void test_falcon_7b_hf(void **state) {
    // multi_query: one KV head whatever num_kv_heads says (HF ignores it without new arch).
    model_config c =
        load_ok("{\"model_type\":\"falcon\",\"hidden_size\":4544,\"num_hidden_layers\":32,"
                "\"num_attention_heads\":71,\"multi_query\":true,\"num_kv_heads\":71,"
                "\"new_decoder_architecture\":false,\"parallel_attn\":true,\"vocab_size\":65024}");
    assert_int_equal(c.n_head_kv, 1);
    assert_int_equal(c.head_dim, 64);
    assert_int_equal(c.n_norm_in_layer, 1);
    assert_int_equal(c.new_decoder_architecture, 0);
    assert_int_equal(c.parallel_attn, 1);
    assert_int_equal(c.d_ff, 4 * 4544);
    // Neither multi-query nor new arch: one KV head per head.
    c = load_ok("{\"model_type\":\"falcon\",\"hidden_size\":256,\"num_hidden_layers\":2,"
                "\"num_attention_heads\":8,\"multi_query\":false,\"parallel_attn\":false,"
                "\"vocab_size\":1000}");
    assert_int_equal(c.n_head_kv, 8);
    assert_int_equal(c.parallel_attn, 0);
    assert_int_equal(c.n_norm_in_layer, 1);
    // multi_query defaults to true, as in HF.
    c = load_ok("{\"model_type\":\"falcon\",\"hidden_size\":256,\"num_hidden_layers\":2,"
                "\"num_attention_heads\":8,\"vocab_size\":1000}");
    assert_int_equal(c.n_head_kv, 1);
}

// tiiuae/falcon-40b's config.json as published (FalconLite's has vocab_size 65040).
static void test_legacy_refinedweb(void **state) {
    model_config c = load_ok(
        "{\"alibi\":false,\"apply_residual_connection_post_layernorm\":false,"
        "\"architectures\":[\"RWForCausalLM\"],\"attention_dropout\":0.0,\"bias\":false,"
        "\"bos_token_id\":11,\"eos_token_id\":11,\"hidden_dropout\":0.0,\"hidden_size\":8192,"
        "\"initializer_range\":0.02,\"layer_norm_epsilon\":1e-05,\"model_type\":\"RefinedWeb\","
        "\"n_head\":128,\"n_head_kv\":8,\"n_layer\":60,\"parallel_attn\":true,"
        "\"torch_dtype\":\"bfloat16\",\"use_cache\":true,\"vocab_size\":65040}");
    assert_string_equal(c.model_type, "RefinedWeb");
    assert_int_equal(c.arch, ARCH_FALCON);
    assert_int_equal(c.d_model, 8192);
    assert_int_equal(c.n_layer, 60);
    assert_int_equal(c.n_head, 128);
    assert_int_equal(c.n_head_kv, 8);
    assert_int_equal(c.head_dim, 64);
    assert_int_equal(c.d_ff, 32768);
    assert_int_equal(c.n_vocab, 65040);
    assert_int_equal(c.new_decoder_architecture, 1);
    assert_int_equal(c.n_norm_in_layer, 2);
    assert_int_equal(c.rope.rot_dim, 64);
    // n_embed is the other legacy spelling of hidden_size; HF names work in RefinedWeb too.
    c = load_ok("{\"model_type\":\"RefinedWeb\",\"n_embed\":512,\"num_hidden_layers\":3,"
                "\"num_attention_heads\":8,\"num_kv_heads\":2,\"vocab_size\":100}");
    assert_int_equal(c.d_model, 512);
    assert_int_equal(c.n_layer, 3);
    assert_int_equal(c.n_head_kv, 2);
    assert_int_equal(c.new_decoder_architecture, 1);
}

// tiiuae/falcon-7b's config.json as published.
static void test_legacy_refinedwebmodel(void **state) {
    model_config c = load_ok(
        "{\"alibi\":false,\"apply_residual_connection_post_layernorm\":false,"
        "\"architectures\":[\"RWForCausalLM\"],\"attention_dropout\":0.0,\"bias\":false,"
        "\"bos_token_id\":11,\"eos_token_id\":11,\"hidden_dropout\":0.0,\"hidden_size\":4544,"
        "\"initializer_range\":0.02,\"layer_norm_epsilon\":1e-05,"
        "\"model_type\":\"RefinedWebModel\",\"multi_query\":true,\"n_head\":71,\"n_layer\":32,"
        "\"parallel_attn\":true,\"torch_dtype\":\"bfloat16\",\"use_cache\":true,"
        "\"vocab_size\":65024}");
    assert_int_equal(c.d_model, 4544);
    assert_int_equal(c.n_layer, 32);
    assert_int_equal(c.n_head, 71);
    assert_int_equal(c.n_head_kv, 1);
    assert_int_equal(c.new_decoder_architecture, 0);
    assert_int_equal(c.n_norm_in_layer, 1);
    assert_int_equal(c.parallel_attn, 1);
    // Legacy names in an HF `falcon` config.
    c = load_ok("{\"model_type\":\"falcon\",\"n_embed\":256,\"n_layer\":2,\"n_head\":8,"
                "\"n_head_kv\":4,\"new_decoder_architecture\":true,\"vocab_size\":1000}");
    assert_int_equal(c.d_model, 256);
    assert_int_equal(c.n_layer, 2);
    assert_int_equal(c.n_head_kv, 4);
}

// TinyLlama-1.1B's config.json.
static void test_llama(void **state) {
    model_config c = load_ok(
        "{\"architectures\":[\"LlamaForCausalLM\"],\"attention_bias\":false,\"bos_token_id\":1,"
        "\"eos_token_id\":2,\"hidden_act\":\"silu\",\"hidden_size\":2048,"
        "\"initializer_range\":0.02,\"intermediate_size\":5632,\"max_position_embeddings\":2048,"
        "\"model_type\":\"llama\",\"num_attention_heads\":32,\"num_hidden_layers\":22,"
        "\"num_key_value_heads\":4,\"pretraining_tp\":1,\"rms_norm_eps\":1e-05,"
        "\"rope_scaling\":null,\"rope_theta\":10000.0,\"tie_word_embeddings\":false,"
        "\"torch_dtype\":\"bfloat16\",\"use_cache\":true,\"vocab_size\":32000}");
    assert_int_equal(c.arch, ARCH_LLAMA);
    assert_int_equal(c.d_model, 2048);
    assert_int_equal(c.d_ff, 5632);
    assert_int_equal(c.n_layer, 22);
    assert_int_equal(c.n_head, 32);
    assert_int_equal(c.n_head_kv, 4);
    assert_int_equal(c.head_dim, 64);
    assert_int_equal(c.n_vocab, 32000);
    assert_int_equal(c.norm, NORM_RMSNORM);
    assert_int_equal(c.mlp, MLP_SWIGLU);
    assert_int_equal(c.n_norm_in_layer, 1);
    assert_int_equal(c.parallel_attn, 0);
    assert_int_equal(c.new_decoder_architecture, 0);
    assert_int_equal(c.bias, 0);
    assert_int_equal(c.tie_word_embeddings, 0);
    assert_float_equal(c.norm_eps, 1e-5f, 1e-12);
    assert_int_equal(c.bos_token_id, 1);
    assert_int_equal(c.eos_token_id, 2);
    assert_int_equal(c.rope.mode, ROPE_NONE);
    assert_float_equal(c.rope.theta, 10000.0f, 0);
    assert_int_equal(c.rope.rot_dim, 64);
    // Defaults (kv heads = heads, tie false) and an explicit head_dim.
    c = load_ok("{\"model_type\":\"llama\",\"hidden_size\":96,\"intermediate_size\":256,"
                "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"head_dim\":32,"
                "\"vocab_size\":300,\"attention_bias\":true,\"tie_word_embeddings\":true,"
                "\"rope_theta\":500000}");
    assert_int_equal(c.n_head_kv, 4);
    assert_int_equal(c.head_dim, 32);
    assert_int_equal(c.rope.rot_dim, 32);
    assert_int_equal(c.bias, 1);
    assert_int_equal(c.tie_word_embeddings, 1);
    assert_float_equal(c.rope.theta, 500000.0f, 0);
    assert_float_equal(c.norm_eps, 1e-6f, 1e-12);
}

#define SMALL_FALCON                                                                               \
    "\"model_type\":\"falcon\",\"hidden_size\":256,\"num_hidden_layers\":2,"                       \
    "\"num_attention_heads\":4,\"num_kv_heads\":2,\"new_decoder_architecture\":true,"              \
    "\"vocab_size\":1000"

static void test_rope_config(void **state) {
    model_config c = load_ok("{" SMALL_FALCON ",\"rope_theta\":1000000.0}");
    assert_float_equal(c.rope.theta, 1e6f, 0);
    assert_int_equal(c.rope.mode, ROPE_NONE);
    assert_int_equal(c.rope.rot_dim, 64);
    // transformers 5: rope_parameters wins over a top-level rope_theta.
    c = load_ok("{" SMALL_FALCON ",\"rope_theta\":1000.0,"
                "\"rope_parameters\":{\"rope_theta\":250000.0,\"rope_type\":\"default\"}}");
    assert_float_equal(c.rope.theta, 250000.0f, 0);
    assert_int_equal(c.rope.mode, ROPE_NONE);
    c = load_ok("{" SMALL_FALCON ",\"max_position_embeddings\":4096,\"rope_parameters\":"
                "{\"rope_theta\":10000.0,\"rope_type\":\"dynamic\",\"factor\":2.0}}");
    assert_int_equal(c.rope.mode, ROPE_DYNAMIC);
    assert_float_equal(c.rope.factor, 2.0f, 0);
    assert_int_equal(c.rope.threshold, 4096);
    // Legacy rope_scaling, "type" spelling, linear.
    c = load_ok("{" SMALL_FALCON ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":4.0}}");
    assert_int_equal(c.rope.mode, ROPE_LINEAR);
    assert_float_equal(rope_position_scale(&c.rope), 0.25f, 0);
    assert_float_equal(rope_base_for_length(&c.rope, 100000), 10000.0, 0);
    // rope_scaling with original_max_position_embeddings; theta from untyped rope_parameters.
    c = load_ok("{" SMALL_FALCON ",\"rope_parameters\":{\"rope_theta\":20000.0},"
                "\"rope_scaling\":{\"rope_type\":\"dynamic\",\"factor\":3.0,"
                "\"original_max_position_embeddings\":1024}}");
    assert_int_equal(c.rope.mode, ROPE_DYNAMIC);
    assert_float_equal(c.rope.theta, 20000.0f, 0);
    assert_int_equal(c.rope.threshold, 1024);
    assert_float_equal(rope_position_scale(&c.rope), 1.0f, 0);

    load_fails("{" SMALL_FALCON ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0}}",
               FL_EUNSUPPORTED, NULL, "yarn");
    load_fails("{" SMALL_FALCON ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":\"4\"}}",
               FL_EFORMAT, NULL, "'factor'");
    load_fails("{" SMALL_FALCON ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":0}}", FL_EINVAL,
               NULL, "factor");
    load_fails("{" SMALL_FALCON ",\"rope_scaling\":[1]}", FL_EFORMAT, NULL, "rope_scaling");
    load_fails("{" SMALL_FALCON ",\"rope_theta\":-1}", FL_EINVAL, NULL, "rope_theta");
}

// HF's _compute_dynamic_ntk_parameters: base * ((factor*L/T) - (factor-1))^(d/(d-2)).
static void test_rope_dynamic_base(void **state) {
    rope_config r = {
        .mode = ROPE_DYNAMIC, .theta = 10000, .factor = 2, .threshold = 2048, .rot_dim = 64};
    assert_float_equal(rope_base_for_length(&r, 2048), 10000.0, 0);
    assert_float_equal(rope_base_for_length(&r, 1), 10000.0, 0);
    assert_float_equal(rope_base_for_length(&r, 4096), 31082.236667168814, 1e-6);
    r = (rope_config){
        .mode = ROPE_DYNAMIC, .theta = 500000, .factor = 4, .threshold = 4096, .rot_dim = 128};
    assert_float_equal(rope_base_for_length(&r, 9000), 2976344.073059348, 1e-3);
    r.mode = ROPE_NONE;
    assert_float_equal(rope_base_for_length(&r, 9000), 500000.0, 0);
}

// FalconLite's deployed NTK (its custom TGI layer, falconlite/script/layers.py): theta 10000,
// d 64, alpha 0.25, T 2048.
static void test_rope_falconlite_table(void **state) {
    rope_config r = {.mode = ROPE_FALCONLITE,
                     .theta = 10000,
                     .alpha = 0.25f,
                     .threshold = 2048,
                     .factor = 1,
                     .rot_dim = 64};
    assert_float_equal(rope_base_for_length(&r, 1), 10000.0, 0);
    assert_float_equal(rope_base_for_length(&r, 2048), 10000.0, 0); // no continuity at T
    assert_float_equal(rope_base_for_length(&r, 2049), 41850.0, 0.5);
    assert_float_equal(rope_base_for_length(&r, 3300), 68446.0, 0.5);
    assert_float_equal(rope_base_for_length(&r, 5500), 115972.0, 0.5);
    assert_float_equal(rope_base_for_length(&r, 8192), 174970.0, 0.5);
    assert_float_equal(rope_base_for_length(&r, 10000), 214964.0, 0.5);
    assert_float_equal(rope_base_for_length(&r, 12000), 259479.0, 0.5);
}

// config.json's rotary settings with FalconLite's environment applied on top of the flags in o,
// as the router and the CLI do at their edges.
static fl_code rope_with_env(const model_config *c, rope_overrides o, rope_config *out,
                             fl_error *err) {
    fl_code rc = rope_overrides_add_env(&o, err);
    return rc ? rc
              : rope_config_apply_overrides(&c->rope, c->max_position_embeddings, &o, out, err);
}

static void test_env_dntk(void **state) {
    setenv("DNTK_ALPHA_SCALER", "0.25", 1);
    model_config c = load_ok(falcon40b_hf);
    assert_int_equal(c.rope.mode, ROPE_NONE); // model_config_load reads no rotary environment
    rope_config r;
    fl_error err = {0};
    assert_int_equal(rope_with_env(&c, ROPE_OVERRIDES_NONE, &r, &err), FL_OK);
    assert_int_equal(r.mode, ROPE_FALCONLITE);
    assert_float_equal(r.alpha, 0.25f, 0);
    assert_int_equal(r.threshold, 2048);
    r.rot_dim = 64; // the table's head size
    assert_float_equal(rope_base_for_length(&r, 3300), 68446.0, 0.5);
    // The environment overrides the config's own scaling, as FalconLite's patched layer does.
    setenv("PRETRAINED_MAX_TOKENS", "4096", 1);
    c = load_ok("{" SMALL_FALCON ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":4.0}}");
    assert_int_equal(c.rope.mode, ROPE_LINEAR);
    assert_int_equal(rope_with_env(&c, ROPE_OVERRIDES_NONE, &r, &err), FL_OK);
    assert_int_equal(r.mode, ROPE_FALCONLITE);
    assert_int_equal(r.threshold, 4096);
    assert_float_equal(rope_position_scale(&r), 1.0f, 0);
    // Flags win field by field over the environment.
    rope_overrides flags = ROPE_OVERRIDES_NONE;
    flags.mode = ROPE_DYNAMIC;
    flags.factor = 2.0f;
    assert_int_equal(rope_with_env(&c, flags, &r, &err), FL_OK);
    assert_int_equal(r.mode, ROPE_DYNAMIC);
    assert_float_equal(r.factor, 2.0f, 0);
    assert_int_equal(r.threshold, 4096);
    setenv("PRETRAINED_MAX_TOKENS", "lots", 1);
    assert_int_equal(rope_with_env(&c, ROPE_OVERRIDES_NONE, &r, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "PRETRAINED_MAX_TOKENS"));
    unsetenv("PRETRAINED_MAX_TOKENS");
    setenv("DNTK_ALPHA_SCALER", "-1", 1);
    assert_int_equal(rope_with_env(&c, ROPE_OVERRIDES_NONE, &r, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "DNTK_ALPHA_SCALER"));
    setenv("DNTK_ALPHA_SCALER", "", 1); // empty = unset
    c = load_ok(falcon40b_hf);
    assert_int_equal(rope_with_env(&c, ROPE_OVERRIDES_NONE, &r, &err), FL_OK);
    assert_int_equal(r.mode, ROPE_NONE);
}

static void test_gptq(void **state) {
    file_put("quantize_config.json", "{\"bits\":4,\"group_size\":128,\"damp_percent\":0.01,"
                                     "\"desc_act\":true,\"sym\":true,\"true_sequential\":true,"
                                     "\"model_name_or_path\":null,\"model_file_base_name\":null}");
    model_config c = load_ok("{" SMALL_FALCON "}");
    assert_int_equal(c.quant.gptq, 1);
    assert_int_equal(c.quant.bits, 4);
    assert_int_equal(c.quant.group_size, 128);
    assert_int_equal(c.quant.desc_act, 1);
    assert_int_equal(c.quant.sym, 1);
    // The overrides fill what the file lacks; the file wins where it has a value.
    gptq = (quant_overrides){.bits = 8, .group_size = 64};
    file_put("quantize_config.json", "{\"bits\":4,\"desc_act\":false}");
    c = load_ok("{" SMALL_FALCON "}");
    assert_int_equal(c.quant.bits, 4);
    assert_int_equal(c.quant.group_size, 64);
    assert_int_equal(c.quant.desc_act, 0);
    // A group size that does not divide d_model (256) or d_ff (1024).
    file_put("quantize_config.json", "{\"bits\":4,\"group_size\":96}");
    load_fails("{" SMALL_FALCON "}", FL_EINVAL, "quantize_config.json", "group_size");
    file_put("quantize_config.json", "{\"bits\":4,\"group_size\":-1}");
    c = load_ok("{" SMALL_FALCON "}");
    assert_int_equal(c.quant.group_size, -1);
    file_put("quantize_config.json", "{\"bits\":\"4\"}");
    load_fails("{" SMALL_FALCON "}", FL_EFORMAT, "quantize_config.json", "'bits'");
    file_put("quantize_config.json", "{\"bits\":5,\"group_size\":128}");
    load_fails("{" SMALL_FALCON "}", FL_EUNSUPPORTED, "quantize_config.json", "bits");
    file_put("quantize_config.json", "{\"bits\":4,");
    load_fails("{" SMALL_FALCON "}", FL_EFORMAT, "quantize_config.json", NULL);
    env_clear(state);

    // No file: the overrides alone mark the model GPTQ; messages name the flag that gave a value.
    c = load_ok("{" SMALL_FALCON "}");
    assert_int_equal(c.quant.gptq, 0);
    gptq = (quant_overrides){.bits = 4, .group_size = 128};
    c = load_ok("{" SMALL_FALCON "}");
    assert_int_equal(c.quant.gptq, 1);
    assert_int_equal(c.quant.bits, 4);
    assert_int_equal(c.quant.group_size, 128);
    gptq.group_size = 0;
    load_fails("{" SMALL_FALCON "}", FL_ENOTFOUND, "--gptq-bits", "--gptq-groupsize");
    gptq.group_size = 384;
    load_fails("{" SMALL_FALCON "}", FL_EINVAL, "--gptq-groupsize", "384");
    gptq = (quant_overrides){.bits = 5, .group_size = 128};
    load_fails("{" SMALL_FALCON "}", FL_EUNSUPPORTED, "--gptq-bits", "5");
    env_clear(state);
}

// GPTQ_BITS / GPTQ_GROUPSIZE: model_config_load ignores them; the edges read them into the
// overrides (flags win), and messages then name the variable.
static void test_gptq_env(void **state) {
    setenv("GPTQ_BITS", "4", 1);
    setenv("GPTQ_GROUPSIZE", "128", 1);
    model_config c = load_ok("{" SMALL_FALCON "}");
    assert_int_equal(c.quant.gptq, 0); // model_config_load reads no GPTQ environment
    fl_error err = {0};
    assert_int_equal(quant_overrides_add_env(&gptq, &err), FL_OK);
    c = load_ok("{" SMALL_FALCON "}");
    assert_int_equal(c.quant.gptq, 1);
    assert_int_equal(c.quant.bits, 4);
    assert_int_equal(c.quant.group_size, 128);
    // A flag wins, field by field.
    gptq = (quant_overrides){.bits = 8};
    assert_int_equal(quant_overrides_add_env(&gptq, &err), FL_OK);
    assert_int_equal(gptq.bits, 8);
    assert_int_equal(gptq.group_size, 128);
    assert_string_equal(quant_overrides_bits_source(&gptq), "--gptq-bits");
    assert_string_equal(quant_overrides_group_source(&gptq), "environment: GPTQ_GROUPSIZE");
    unsetenv("GPTQ_GROUPSIZE");
    gptq = (quant_overrides){0};
    assert_int_equal(quant_overrides_add_env(&gptq, &err), FL_OK);
    load_fails("{" SMALL_FALCON "}", FL_ENOTFOUND, "environment: GPTQ_BITS", "GPTQ_GROUPSIZE");
    setenv("GPTQ_GROUPSIZE", "12x", 1);
    gptq = (quant_overrides){0};
    assert_int_equal(quant_overrides_add_env(&gptq, &err), FL_EINVAL);
    assert_string_equal(err.msg, "environment: GPTQ_GROUPSIZE='12x' must be an integer");
    setenv("GPTQ_GROUPSIZE", "384", 1);
    gptq = (quant_overrides){0};
    assert_int_equal(quant_overrides_add_env(&gptq, &err), FL_OK);
    load_fails("{" SMALL_FALCON "}", FL_EINVAL, "environment: GPTQ_GROUPSIZE", "384");
    // Empty or 0: not given.
    setenv("GPTQ_BITS", "", 1);
    setenv("GPTQ_GROUPSIZE", "0", 1);
    gptq = (quant_overrides){0};
    assert_int_equal(quant_overrides_add_env(&gptq, &err), FL_OK);
    assert_false(quant_overrides_given(&gptq));
}

static void test_gptq_in_config(void **state) {
    // transformers' copy inside config.json.
    model_config c =
        load_ok("{" SMALL_FALCON ",\"quantization_config\":{\"quant_method\":\"gptq\",\"bits\":4,"
                "\"group_size\":32,\"desc_act\":true}}");
    assert_int_equal(c.quant.gptq, 1);
    assert_int_equal(c.quant.group_size, 32);
    load_fails("{" SMALL_FALCON ",\"quantization_config\":{\"quant_method\":\"awq\",\"bits\":4,"
               "\"group_size\":128}}",
               FL_EUNSUPPORTED, NULL, "awq");
}

static void test_malformed(void **state) {
    load_fails("{\"model_type\":\"falcon\",", FL_EFORMAT, NULL, "malformed JSON");
    load_fails("[1]", FL_EFORMAT, NULL, NULL);
    load_fails("{\"hidden_size\":256}", FL_ENOTFOUND, NULL, "model_type");
    load_fails("{\"model_type\":\"gpt2\",\"n_embd\":768}", FL_EUNSUPPORTED, NULL, "gpt2");
    load_fails("{\"model_type\":\"falcon\",\"num_hidden_layers\":2,\"num_attention_heads\":4,"
               "\"vocab_size\":10}",
               FL_ENOTFOUND, NULL, "missing required field 'hidden_size'");
    load_fails("{\"model_type\":\"falcon\",\"hidden_size\":\"256\",\"num_hidden_layers\":2,"
               "\"num_attention_heads\":4,\"vocab_size\":10}",
               FL_EFORMAT, NULL, "config.json: field 'hidden_size' must be an integer");
    load_fails("{\"model_type\":\"falcon\",\"hidden_size\":256.5,\"num_hidden_layers\":2,"
               "\"num_attention_heads\":4,\"vocab_size\":10}",
               FL_EFORMAT, NULL, "'hidden_size' must be an integer");
    load_fails("{\"model_type\":\"RefinedWeb\",\"n_embed\":256,\"n_layer\":2,\"n_head\":7,"
               "\"vocab_size\":10}",
               FL_EINVAL, NULL, "'n_head' (7)");
    load_fails("{\"model_type\":\"falcon\",\"hidden_size\":256,\"num_hidden_layers\":2,"
               "\"num_attention_heads\":4,\"num_kv_heads\":3,\"new_decoder_architecture\":true,"
               "\"vocab_size\":10}",
               FL_EINVAL, NULL, "kv heads (3)");
    load_fails("{\"model_type\":\"falcon\",\"hidden_size\":256,\"num_hidden_layers\":0,"
               "\"num_attention_heads\":4,\"vocab_size\":10}",
               FL_EINVAL, NULL, "num_hidden_layers");
    load_fails("{" SMALL_FALCON ",\"ffn_hidden_size\":-4}", FL_EINVAL, NULL, "ffn");
    load_fails("{" SMALL_FALCON ",\"alibi\":true}", FL_EUNSUPPORTED, NULL, "alibi");
    load_fails("{" SMALL_FALCON ",\"multi_query\":1}", FL_EFORMAT, NULL, "'multi_query'");
    load_fails("{" SMALL_FALCON ",\"activation\":\"relu\"}", FL_EUNSUPPORTED, NULL, "relu");
    load_fails("{" SMALL_FALCON ",\"eos_token_id\":\"11\"}", FL_EFORMAT, NULL, "eos_token_id");
    load_fails("{\"model_type\":\"llama\",\"hidden_size\":256,\"num_hidden_layers\":2,"
               "\"num_attention_heads\":4,\"vocab_size\":10}",
               FL_ENOTFOUND, NULL, "'intermediate_size'");
    load_fails("{\"model_type\":\"llama\",\"hidden_size\":250,\"intermediate_size\":512,"
               "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":10}",
               FL_EINVAL, NULL, "num_attention_heads");
    load_fails("{\"model_type\":\"llama\",\"hidden_size\":256,\"intermediate_size\":512,"
               "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":10,"
               "\"hidden_act\":\"gelu\"}",
               FL_EUNSUPPORTED, NULL, "hidden_act");

    model_config cfg;
    fl_error err = {0};
    char missing[300];
    snprintf(missing, sizeof missing, "%s/nowhere", tmpdir);
    assert_int_equal(model_config_load(missing, NULL, &cfg, &err), FL_EIO);
    assert_non_null(strstr(err.msg, "nowhere/config.json"));
}

static void test_rope_mode_names(void **state) {
    const char *names[] = {"none", "falconlite", "dynamic", "linear"};
    for (int i = 0; i < 4; i++) {
        rope_mode m;
        fl_error err = {0};
        assert_int_equal(rope_mode_parse(names[i], &m, &err), FL_OK);
        assert_string_equal(rope_mode_name(m), names[i]);
    }
    rope_mode m;
    fl_error err = {0};
    assert_int_equal(rope_mode_parse("ntk", &m, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "'ntk'"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_falcon_40b_hf, env_clear),
        cmocka_unit_test_setup(test_falcon_7b_hf, env_clear),
        cmocka_unit_test_setup(test_legacy_refinedweb, env_clear),
        cmocka_unit_test_setup(test_legacy_refinedwebmodel, env_clear),
        cmocka_unit_test_setup(test_llama, env_clear),
        cmocka_unit_test_setup(test_rope_config, env_clear),
        cmocka_unit_test(test_rope_dynamic_base),
        cmocka_unit_test(test_rope_falconlite_table),
        cmocka_unit_test_setup_teardown(test_env_dntk, env_clear, env_clear),
        cmocka_unit_test_setup_teardown(test_gptq, env_clear, env_clear),
        cmocka_unit_test_setup_teardown(test_gptq_env, env_clear, env_clear),
        cmocka_unit_test_setup_teardown(test_gptq_in_config, env_clear, env_clear),
        cmocka_unit_test_setup(test_malformed, env_clear),
        cmocka_unit_test(test_rope_mode_names),
    };
    return cmocka_run_group_tests(tests, dir_setup, dir_teardown);
}
