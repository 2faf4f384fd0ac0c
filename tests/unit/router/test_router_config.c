// Launcher flags and their environment variables, as the model card's start script uses them,
// and TGI's argument rules.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "router/config.h"

static fl_code parse(int argc, char **argv, router_config *c, fl_error *err) {
    bool help = false;
    return router_config_parse(argc, argv, c, &help, err);
}

static void test_defaults(void **state) {
    char *argv[] = {"router", "--model-id", "/m", NULL};
    router_config c;
    fl_error err = {0};
    assert_int_equal(parse(3, argv, &c, &err), FL_OK);
    assert_string_equal(c.model_id, "/m");
    assert_int_equal(c.max_input_length, 1024);
    assert_int_equal(c.max_total_tokens, 2048);
    assert_int_equal(c.max_batch_prefill_tokens, 4096);
    assert_int_equal(c.max_batch_total_tokens, 16000);
    assert_int_equal(c.max_concurrent_requests, 128);
    assert_true(c.waiting_served_ratio > 1.19f && c.waiting_served_ratio < 1.21f);
    assert_int_equal(c.max_waiting_tokens, 20);
    assert_int_equal(c.max_best_of, 2);
    assert_int_equal(c.max_stop_sequences, 4);
    assert_int_equal(c.port, 3000);
    // Loopback and a private socket directory unless asked otherwise (SECURITY.md).
    assert_string_equal(c.hostname, "127.0.0.1");
    assert_string_equal(c.shard_uds_path, "");
    assert_int_equal(c.shard_step_timeout_ms, 300000);
    assert_int_equal(c.shutdown_grace_ms, 90000);
    assert_string_equal(c.api_key, "");
    assert_int_equal(c.prefill_chunk_tokens, 1024);
}

// --prefill-chunk-tokens and PREFILL_CHUNK_TOKENS (the flag wins); 0 turns chunking off.
static void test_prefill_chunk_tokens(void **state) {
    router_config c;
    fl_error err = {0};
    setenv("PREFILL_CHUNK_TOKENS", "0", 1);
    char *env_only[] = {"router", "--model-id", "/m", NULL};
    assert_int_equal(parse(3, env_only, &c, &err), FL_OK);
    assert_int_equal(c.prefill_chunk_tokens, 0);
    char *flag[] = {"router", "--model-id", "/m", "--prefill-chunk-tokens", "256", NULL};
    assert_int_equal(parse(5, flag, &c, &err), FL_OK);
    assert_int_equal(c.prefill_chunk_tokens, 256);
    unsetenv("PREFILL_CHUNK_TOKENS");
    char *bad[] = {"router", "--model-id", "/m", "--prefill-chunk-tokens", "-1", NULL};
    assert_int_equal(parse(5, bad, &c, &err), FL_EINVAL);
}

// start_falconlite.sh: flags on the command line, GPTQ/NTK settings in the environment.
static void test_model_card_flags_and_env(void **state) {
    setenv("MAX_CONCURRENT_REQUESTS", "7", 1);
    setenv("PORT", "8080", 1);
    setenv("HOSTNAME", "buildhost-1", 1); // a machine name, not an address: ignored
    char *argv[] = {"router",
                    "--model-id",
                    "amazon/FalconLite",
                    "--num-shard",
                    "4",
                    "--max-input-length",
                    "12000",
                    "--max-total-tokens",
                    "12001",
                    "--max-batch-prefill-tokens",
                    "12001",
                    "--max-batch-total-tokens",
                    "12001",
                    "--trust-remote-code",
                    "--quantize",
                    "gptq",
                    "-p",
                    "443",
                    NULL};
    router_config c;
    fl_error err = {0};
    fl_code rc = parse(18, argv, &c, &err);
    if (rc != FL_OK) print_error("%s\n", err.msg);
    assert_int_equal(rc, FL_OK);
    assert_int_equal(c.num_shard, 4);
    assert_int_equal(c.max_input_length, 12000);
    assert_int_equal(c.max_batch_total_tokens, 12001);
    assert_string_equal(c.quantize, "gptq");
    assert_int_equal(c.max_concurrent_requests, 7); // from the environment
    assert_int_equal(c.port, 443);                  // the flag wins over PORT
    assert_string_equal(c.hostname, "127.0.0.1");   // HOSTNAME held no address
    unsetenv("MAX_CONCURRENT_REQUESTS");
    unsetenv("PORT");
    unsetenv("HOSTNAME");
}

// The hardening flags: seconds, the key from the environment or a file, TLS files in pairs.
static void test_hardening_flags(void **state) {
    char key_path[] = "/tmp/fl_test_keyXXXXXX";
    int fd = mkstemp(key_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "s3cret\n", 7), 7);
    close(fd);
    router_config c;
    fl_error err = {0};
    setenv("API_KEY", "from-env", 1);
    char *a1[] = {"router", "--model-id",         "m", "--shard-step-timeout",
                  "5",      "--shutdown-timeout", "2", NULL};
    assert_int_equal(parse(7, a1, &c, &err), FL_OK);
    assert_int_equal(c.shard_step_timeout_ms, 5000);
    assert_int_equal(c.shutdown_grace_ms, 2000);
    assert_string_equal(c.api_key, "from-env");
    unsetenv("API_KEY");
    char *a2[] = {"router", "--model-id", "m", "--api-key-file", key_path, NULL};
    assert_int_equal(parse(5, a2, &c, &err), FL_OK);
    assert_string_equal(c.api_key, "s3cret");
    unlink(key_path);
    char *a3[] = {"router", "--model-id", "m", "--tls-cert", "c.pem", NULL};
    assert_int_equal(parse(5, a3, &c, &err), FL_EINVAL);
    char *a4[] = {"router", "--model-id", "m", "--shard-step-timeout", "0", NULL};
    assert_int_equal(parse(5, a4, &c, &err), FL_EINVAL);
}

static void test_rules(void **state) {
    router_config c;
    fl_error err = {0};
    char *a[] = {"router", "--model-id", "/m", "--max-input-length", "2048", NULL};
    assert_int_equal(parse(5, a, &c, &err), FL_EINVAL);
    assert_string_equal(err.msg, "`max_input_length` must be < `max_total_tokens`");
    char *b[] = {"router", "--model-id", "/m", "--max-batch-prefill-tokens", "100", NULL};
    assert_int_equal(parse(5, b, &c, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "`max_batch_prefill_tokens` must be >= `max_input_length`"));
    char *d[] = {"router", "--model-id", "/m", "--max-batch-total-tokens", "2000", NULL};
    assert_int_equal(parse(5, d, &c, &err), FL_EINVAL);
    char *e[] = {"router", "--model-id", "/m", "--max-input-length", "abc", NULL};
    assert_int_equal(parse(5, e, &c, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "--max-input-length"));
    char *f[] = {"router", "--model-id", "/m", "--no-such-flag", NULL};
    assert_int_equal(parse(4, f, &c, &err), FL_EINVAL);
    char *g[] = {"router", NULL};
    assert_int_equal(parse(1, g, &c, &err), FL_EINVAL);
}

// FalconLite's rotary environment and the --rope-* flags reach the shards as explicit, checked
// flags; the shards themselves read no rotary environment.
static void test_rope_to_shards(void **state) {
    router_config c;
    fl_error err = {0};
    char buf[160], *args[8];
    char *plain[] = {"router", "--model-id", "/m", NULL};
    assert_int_equal(parse(3, plain, &c, &err), FL_OK);
    assert_int_equal(router_config_rope_args(&c, buf, sizeof buf, args), 0);
    setenv("DNTK_ALPHA_SCALER", "0.25", 1);
    setenv("PRETRAINED_MAX_TOKENS", "4096", 1);
    assert_int_equal(parse(3, plain, &c, &err), FL_OK);
    int n = router_config_rope_args(&c, buf, sizeof buf, args);
    assert_int_equal(n, 8);
    const char *want[] = {"--rope-scaling",   "falconlite", "--rope-alpha",  "0.25",
                          "--rope-threshold", "4096",       "--rope-factor", "1"};
    for (int i = 0; i < n; i++)
        assert_string_equal(args[i], want[i]);
    // A flag wins over the environment, field by field.
    char *flags[] = {"router", "--model-id", "/m", "--rope-alpha", "0.5", NULL};
    assert_int_equal(parse(5, flags, &c, &err), FL_OK);
    assert_float_equal(c.rope.alpha, 0.5f, 0);
    assert_int_equal(c.rope.threshold, 4096);
    setenv("DNTK_ALPHA_SCALER", "-1", 1);
    assert_int_equal(parse(3, plain, &c, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "DNTK_ALPHA_SCALER"));
    unsetenv("DNTK_ALPHA_SCALER");
    unsetenv("PRETRAINED_MAX_TOKENS");
    char *bad[] = {"router", "--model-id", "/m", "--rope-alpha", "abc", NULL};
    assert_int_equal(parse(5, bad, &c, &err), FL_EINVAL);
    assert_string_equal(err.msg, "--rope-alpha: expected a number, got 'abc'");
    char *mode[] = {"router", "--model-id", "/m", "--rope-scaling", "wild", NULL};
    assert_int_equal(parse(5, mode, &c, &err), FL_EINVAL);
}

// TGI's GPTQ_BITS / GPTQ_GROUPSIZE are read here, once, and reach the shards as explicit
// --gptq-* flags (the flags win, field by field); the shards read no GPTQ environment.
static void test_gptq_to_shards(void **state) {
    router_config c;
    fl_error err = {0};
    char buf[32], *args[4];
    char *plain[] = {"router", "--model-id", "/m", NULL};
    assert_int_equal(parse(3, plain, &c, &err), FL_OK);
    assert_int_equal(router_config_quant_args(&c, buf, sizeof buf, args), 0);
    setenv("GPTQ_BITS", "4", 1);
    setenv("GPTQ_GROUPSIZE", "128", 1);
    assert_int_equal(parse(3, plain, &c, &err), FL_OK);
    int n = router_config_quant_args(&c, buf, sizeof buf, args);
    assert_int_equal(n, 4);
    const char *want[] = {"--gptq-bits", "4", "--gptq-groupsize", "128"};
    for (int i = 0; i < n; i++)
        assert_string_equal(args[i], want[i]);
    char *flags[] = {"router", "--model-id", "/m", "--gptq-groupsize", "-1", NULL};
    assert_int_equal(parse(5, flags, &c, &err), FL_OK);
    n = router_config_quant_args(&c, buf, sizeof buf, args);
    const char *want_flag[] = {"--gptq-bits", "4", "--gptq-groupsize", "-1"};
    assert_int_equal(n, 4);
    for (int i = 0; i < n; i++)
        assert_string_equal(args[i], want_flag[i]);
    setenv("GPTQ_BITS", "four", 1);
    assert_int_equal(parse(3, plain, &c, &err), FL_EINVAL);
    assert_string_equal(err.msg, "environment: GPTQ_BITS='four' must be an integer");
    unsetenv("GPTQ_BITS");
    unsetenv("GPTQ_GROUPSIZE");
    char *bad[] = {"router", "--model-id", "/m", "--gptq-bits", "x", NULL};
    assert_int_equal(parse(5, bad, &c, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "--gptq-bits"));
}

int main(void) {
    unsetenv("MODEL_ID");
    unsetenv("DNTK_ALPHA_SCALER");
    unsetenv("ROPE_SCALING");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_prefill_chunk_tokens),
        cmocka_unit_test(test_model_card_flags_and_env),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_hardening_flags),
        cmocka_unit_test(test_rope_to_shards),
        cmocka_unit_test(test_gptq_to_shards),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
