// The shared option parser: checked numbers and ranges, enums, --name=value, short aliases,
// environment fallback (the flag wins), error messages naming the flag, and --help from the table.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/options.h"
#include "common/rope.h"

typedef struct opts_fixture {
    int n, port, flag;
    uint32_t u;
    float x;
    const char *s;
    char buf[8];
    rope_overrides rope;
    opt_spec specs[7], rope_specs[ROPE_OPTS_N];
    opt_group groups[2];
} opts_fixture;

static void fixture_init(opts_fixture *f) {
    static const char *const colours[] = {"red", "green", NULL};
    memset(f, 0, sizeof *f);
    f->n = 7;
    f->rope = ROPE_OVERRIDES_NONE;
    const opt_spec specs[] = {
        OPT("max-input-length", OPT_U32, &f->u, "tokens", .env = "FL_TEST_MAX", OPT_MIN(1)),
        OPT("count", OPT_INT, &f->n, "a count"),
        OPT("port", OPT_INT, &f->port, "port", .short_name = 'p', OPT_RANGE(0, 65535)),
        OPT("ratio", OPT_FLOAT, &f->x, "ratio", OPT_MIN(0)),
        OPT("name", OPT_STRING, &f->s, "name", .choices = colours),
        OPT("copy", OPT_STRING, f->buf, "copied", .cap = sizeof f->buf),
        OPT("flag", OPT_BOOL, &f->flag, NULL),
    };
    memcpy(f->specs, specs, sizeof specs);
    rope_opts_bind(&f->rope, f->rope_specs);
    f->groups[0] = OPT_GROUP(NULL, f->specs);
    f->groups[1] = OPT_GROUP("rotary scaling", f->rope_specs);
}

static fl_code parse(opts_fixture *f, unsigned flags, char **argv, fl_error *err) {
    int argc = 0;
    while (argv[argc])
        argc++;
    bool help;
    fl_code rc = opts_parse(f->groups, 2, argc, argv, flags, &help, err);
    assert_false(help);
    return rc;
}

static void test_values(void **state) {
    opts_fixture f;
    fixture_init(&f);
    fl_error err = {0};
    char *argv[] = {"--max-input-length",
                    "12000",
                    "--count=-3",
                    "-p",
                    "443",
                    "--ratio",
                    "1.5",
                    "--name",
                    "green",
                    "--copy",
                    "abc",
                    "--flag",
                    "--rope-scaling",
                    "dynamic",
                    "--rope-factor=2",
                    NULL};
    assert_int_equal(parse(&f, 0, argv, &err), FL_OK);
    assert_int_equal(f.u, 12000);
    assert_int_equal(f.n, -3);
    assert_int_equal(f.port, 443);
    assert_float_equal(f.x, 1.5f, 0);
    assert_string_equal(f.s, "green");
    assert_string_equal(f.buf, "abc");
    assert_int_equal(f.flag, 1);
    assert_int_equal(f.rope.mode, ROPE_DYNAMIC);
    assert_float_equal(f.rope.factor, 2.0f, 0);
    assert_true(isnan(f.rope.alpha));
}

static void expect_error(char **argv, const char *message) {
    opts_fixture f;
    fixture_init(&f);
    fl_error err = {0};
    assert_int_equal(parse(&f, 0, argv, &err), FL_EINVAL);
    if (strcmp(err.msg, message)) fail_msg("'%s' != '%s'", err.msg, message);
}

static void test_errors(void **state) {
    expect_error((char *[]){"--max-input-length", "abc", NULL},
                 "--max-input-length: expected an integer >= 1, got 'abc'");
    expect_error((char *[]){"--max-input-length", "0", NULL},
                 "--max-input-length: expected an integer >= 1, got '0'");
    expect_error((char *[]){"--max-input-length", "-5", NULL},
                 "--max-input-length: expected an integer >= 1, got '-5'");
    expect_error((char *[]){"--count", "12x", NULL}, "--count: expected an integer, got '12x'");
    expect_error((char *[]){"--count", "99999999999", NULL},
                 "--count: expected an integer, got '99999999999'");
    expect_error((char *[]){"--port", "70000", NULL},
                 "--port: expected an integer in [0, 65535], got '70000'");
    expect_error((char *[]){"--ratio", "nan", NULL}, "--ratio: expected a number >= 0, got 'nan'");
    expect_error((char *[]){"--name", "blue", NULL}, "--name: expected red or green, got 'blue'");
    expect_error((char *[]){"--rope-scaling", "wild", NULL},
                 "--rope-scaling: expected none, falconlite, dynamic or linear, got 'wild'");
    expect_error((char *[]){"--rope-alpha", "x", NULL}, "--rope-alpha: expected a number, got 'x'");
    expect_error((char *[]){"--copy", "too long!", NULL},
                 "--copy: value too long (7 bytes at most)");
    expect_error((char *[]){"--count", NULL}, "--count needs a value");
    expect_error((char *[]){"--flag=1", NULL}, "--flag takes no value");
    expect_error((char *[]){"--bogus=1", NULL}, "unknown option '--bogus'");
    expect_error((char *[]){"stray", NULL}, "unexpected argument 'stray'");
}

static void test_env(void **state) {
    opts_fixture f;
    fixture_init(&f);
    fl_error err = {0};
    setenv("FL_TEST_MAX", "300", 1);
    setenv("ROPE_SCALING", "linear", 1);
    assert_int_equal(parse(&f, 0, (char *[]){NULL}, &err), FL_OK);
    assert_int_equal(f.u, 0); // without OPTS_ENV the environment is not read
    assert_int_equal(f.rope.mode, -1);
    assert_int_equal(parse(&f, OPTS_ENV, (char *[]){NULL}, &err), FL_OK);
    assert_int_equal(f.u, 300);
    assert_int_equal(f.rope.mode, ROPE_LINEAR);
    assert_int_equal(parse(&f, OPTS_ENV, (char *[]){"--max-input-length", "5", NULL}, &err), FL_OK);
    assert_int_equal(f.u, 5); // the flag wins
    setenv("FL_TEST_MAX", "many", 1);
    assert_int_equal(parse(&f, OPTS_ENV, (char *[]){NULL}, &err), FL_EINVAL);
    assert_string_equal(err.msg,
                        "environment FL_TEST_MAX: --max-input-length: expected an integer >= 1, "
                        "got 'many'");
    unsetenv("FL_TEST_MAX");
    unsetenv("ROPE_SCALING");
}

static void test_help(void **state) {
    opts_fixture f;
    fixture_init(&f);
    bool help = false;
    fl_error err = {0};
    char *argv[] = {"--count", "zzz", "-h"};
    assert_int_equal(opts_parse(f.groups, 2, 3, argv, 0, &help, &err), FL_OK);
    assert_true(help);
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    opts_usage(mem, f.groups, 2, OPTS_ENV);
    fclose(mem);
    assert_non_null(strstr(text, "  --max-input-length N"));
    assert_non_null(strstr(text, "[FL_TEST_MAX]"));
    assert_non_null(strstr(text, "--count N"));
    assert_non_null(strstr(text, "(default 7)"));
    assert_non_null(strstr(text, "--port N (-p)"));
    assert_non_null(strstr(text, "--rope-scaling none|falconlite|dynamic|linear"));
    assert_non_null(strstr(text, "rotary scaling:"));
    assert_null(strstr(text, "--flag")); // no help line: hidden
    free(text);
}

int main(void) {
    unsetenv("ROPE_SCALING");
    unsetenv("ROPE_FACTOR");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
