#include "common/options.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// "none, falconlite, dynamic or linear"
static void choices_format(const char *const *choices, char *out, size_t cap) {
    size_t len = 0;
    out[0] = 0;
    for (int i = 0; choices[i] && len < cap; i++) {
        const char *sep = i == 0 ? "" : choices[i + 1] ? ", " : " or ";
        len += (size_t)snprintf(out + len, cap - len, "%s%s", sep, choices[i]);
    }
}

static int choice_index(const char *const *choices, const char *v) {
    for (int i = 0; choices[i]; i++)
        if (!strcmp(choices[i], v)) return i;
    return -1;
}

// "an integer", "an integer >= 1", "an integer in [0, 65535]" (and "a number ...").
static void expected_format(const opt_spec *o, char *out, size_t cap) {
    const char *what = o->type == OPT_FLOAT ? "a number" : "an integer";
    if (o->has_min && o->has_max)
        snprintf(out, cap, "%s in [%g, %g]", what, o->min, o->max);
    else if (o->has_min)
        snprintf(out, cap, "%s >= %g", what, o->min);
    else if (o->has_max)
        snprintf(out, cap, "%s <= %g", what, o->max);
    else
        snprintf(out, cap, "%s", what);
}

static fl_code bad_value(const opt_spec *o, const char *v, fl_error *err) {
    char expected[256];
    if (o->choices)
        choices_format(o->choices, expected, sizeof expected);
    else
        expected_format(o, expected, sizeof expected);
    return fl_error_set(err, FL_EINVAL, "--%s: expected %s, got '%s'", o->name, expected, v);
}

// A whole-string integer in [lo, hi] (and the spec's range).
static fl_code int_parse(const opt_spec *o, const char *v, long long lo, unsigned long long hi,
                         long long *out, fl_error *err) {
    char *end = NULL;
    errno = 0;
    long long x;
    if (lo >= 0) {
        if (strchr(v, '-')) return bad_value(o, v, err);
        unsigned long long u = strtoull(v, &end, 10);
        if (errno || end == v || *end || u > hi) return bad_value(o, v, err);
        x = (long long)u;
    } else {
        x = strtoll(v, &end, 10);
        if (errno || end == v || *end || x < lo || (x > 0 && (unsigned long long)x > hi))
            return bad_value(o, v, err);
    }
    if ((o->has_min && (double)x < o->min) || (o->has_max && (double)x > o->max))
        return bad_value(o, v, err);
    *out = x;
    return FL_OK;
}

static fl_code value_set(const opt_spec *o, const char *v, bool from_env, fl_error *err) {
    long long x = 0;
    fl_code rc = FL_OK;
    if (o->choices && choice_index(o->choices, v) < 0) return bad_value(o, v, err);
    if (!o->dst) return FL_OK;
    switch (o->type) {
    case OPT_BOOL:
        *(int *)o->dst = 1;
        break;
    case OPT_STRING:
        if (!o->cap) {
            *(const char **)o->dst = v;
        } else if (strlen(v) >= o->cap) {
            rc = fl_error_set(err, FL_EINVAL, "--%s: value too long (%zu bytes at most)", o->name,
                              o->cap - 1);
        } else {
            memcpy(o->dst, v, strlen(v) + 1);
        }
        break;
    case OPT_INT:
        if (!(rc = int_parse(o, v, INT_MIN, INT_MAX, &x, err))) *(int *)o->dst = (int)x;
        break;
    case OPT_U32:
        if (!(rc = int_parse(o, v, 0, UINT32_MAX, &x, err))) *(uint32_t *)o->dst = (uint32_t)x;
        break;
    case OPT_U64: {
        char *end = NULL;
        errno = 0;
        unsigned long long u = strchr(v, '-') ? 0 : strtoull(v, &end, 10);
        if (strchr(v, '-') || errno || end == v || *end || (o->has_min && (double)u < o->min) ||
            (o->has_max && (double)u > o->max))
            return bad_value(o, v, err);
        *(uint64_t *)o->dst = u;
        break;
    }
    case OPT_FLOAT: {
        char *end = NULL;
        errno = 0;
        float f = strtof(v, &end);
        if (errno || end == v || *end || !isfinite(f) || (o->has_min && f < o->min) ||
            (o->has_max && f > o->max))
            return bad_value(o, v, err);
        *(float *)o->dst = f;
        break;
    }
    case OPT_ENUM:
        *(int *)o->dst = choice_index(o->choices, v);
        break;
    case OPT_CUSTOM:
        rc = o->parse(v, from_env, o->dst, err);
        break;
    }
    return rc;
}

// The option argument a names ("--name", "--name=value" or "-p"); *value is set for "=value".
static const opt_spec *spec_find(const opt_group *groups, int n_groups, const char *a,
                                 const char **value) {
    *value = NULL;
    if (a[0] == '-' && a[1] && a[1] != '-' && !a[2]) {
        for (int g = 0; g < n_groups; g++)
            for (int i = 0; i < groups[g].n; i++)
                if (groups[g].specs[i].short_name == a[1]) return &groups[g].specs[i];
        return NULL;
    }
    if (strncmp(a, "--", 2)) return NULL;
    const char *name = a + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    for (int g = 0; g < n_groups; g++) {
        for (int i = 0; i < groups[g].n; i++) {
            const opt_spec *o = &groups[g].specs[i];
            if (strlen(o->name) == len && !strncmp(o->name, name, len)) {
                if (eq) *value = eq + 1;
                return o;
            }
        }
    }
    return NULL;
}

fl_code opts_parse(const opt_group *groups, int n_groups, int argc, char **argv, unsigned flags,
                   bool *help, fl_error *err) {
    *help = false;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            *help = true;
            return FL_OK;
        }
    }
    fl_code rc;
    if (flags & OPTS_ENV) {
        for (int g = 0; g < n_groups; g++) {
            for (int i = 0; i < groups[g].n; i++) {
                const opt_spec *o = &groups[g].specs[i];
                const char *v = o->env ? getenv(o->env) : NULL;
                if (v && *v && (rc = value_set(o, v, true, err)))
                    return fl_error_wrap(err, "environment %s", o->env);
            }
        }
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v;
        const opt_spec *o = spec_find(groups, n_groups, a, &v);
        if (!o && a[0] == '-')
            return fl_error_set(err, FL_EINVAL, "unknown option '%.*s'", (int)strcspn(a, "="), a);
        if (!o) return fl_error_set(err, FL_EINVAL, "unexpected argument '%s'", a);
        if (o->type == OPT_BOOL) {
            if (v) return fl_error_set(err, FL_EINVAL, "--%s takes no value", o->name);
        } else if (!v) {
            if (i + 1 >= argc) return fl_error_set(err, FL_EINVAL, "--%s needs a value", o->name);
            v = argv[++i];
        }
        if ((rc = value_set(o, v ? v : "", false, err))) return rc;
    }
    return FL_OK;
}

// The current value of o (its default when called before parsing), "" when there is none to show.
static void default_format(const opt_spec *o, char *out, size_t cap) {
    out[0] = 0;
    if (!o->dst) return;
    switch (o->type) {
    case OPT_STRING: {
        const char *s = o->cap ? (const char *)o->dst : *(const char **)o->dst;
        if (s && *s) snprintf(out, cap, "%s", s);
        break;
    }
    case OPT_INT:
        if (*(int *)o->dst) snprintf(out, cap, "%d", *(int *)o->dst);
        break;
    case OPT_U32:
        if (*(uint32_t *)o->dst) snprintf(out, cap, "%" PRIu32, *(uint32_t *)o->dst);
        break;
    case OPT_U64:
        if (*(uint64_t *)o->dst) snprintf(out, cap, "%" PRIu64, *(uint64_t *)o->dst);
        break;
    case OPT_FLOAT:
        if (!isnan(*(float *)o->dst) && *(float *)o->dst != 0)
            snprintf(out, cap, "%g", *(float *)o->dst);
        break;
    case OPT_ENUM: {
        int k = *(int *)o->dst;
        if (k >= 0) snprintf(out, cap, "%s", o->choices[k]);
        break;
    }
    case OPT_BOOL:
    case OPT_CUSTOM:
        break;
    }
}

void opts_usage(FILE *f, const opt_group *groups, int n_groups, unsigned flags) {
    static const char *const value_names[] = {
        [OPT_BOOL] = "",    [OPT_STRING] = " STR", [OPT_INT] = " N", [OPT_U64] = " N",
        [OPT_FLOAT] = " X", [OPT_U32] = " N",      [OPT_ENUM] = "",  [OPT_CUSTOM] = " STR"};
    for (int g = 0; g < n_groups; g++) {
        fprintf(f, "\n%s:\n", groups[g].title ? groups[g].title : "options");
        for (int i = 0; i < groups[g].n; i++) {
            const opt_spec *o = &groups[g].specs[i];
            if (!o->help) continue;
            char left[128], value[160] = "", def[128];
            if (o->choices) {
                value[0] = ' ';
                for (int k = 0; o->choices[k]; k++)
                    snprintf(value + strlen(value), sizeof value - strlen(value), "%s%s",
                             k ? "|" : "", o->choices[k]);
            } else {
                snprintf(value, sizeof value, "%s", value_names[o->type]);
            }
            if (o->short_name)
                snprintf(left, sizeof left, "--%s%s (-%c)", o->name, value, o->short_name);
            else
                snprintf(left, sizeof left, "--%s%s", o->name, value);
            default_format(o, def, sizeof def);
            if (strstr(o->help, "default")) def[0] = 0; // the help states it already
            fprintf(f, "  %-30s %s", left, o->help);
            if (def[0]) fprintf(f, " (default %s)", def);
            if (o->env && (flags & OPTS_ENV)) fprintf(f, " [%s]", o->env);
            fputc('\n', f);
        }
    }
}
