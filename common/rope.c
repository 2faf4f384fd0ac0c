#include "common/rope.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_util.h"
#include "common/options.h"

static const char *const rope_mode_names[] = {[ROPE_NONE] = "none",
                                              [ROPE_FALCONLITE] = "falconlite",
                                              [ROPE_DYNAMIC] = "dynamic",
                                              [ROPE_LINEAR] = "linear",
                                              NULL};
enum { ROPE_N_MODES = sizeof rope_mode_names / sizeof rope_mode_names[0] - 1 };

fl_code rope_config_parse(const cJSON *c, const char *path, int max_position_embeddings,
                          int head_dim, rope_config *r, fl_error *err) {
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(c, "rope_parameters");
    const cJSON *scaling = cJSON_GetObjectItemCaseSensitive(c, "rope_scaling");
    const char *f_params = "rope_parameters";
    if (params && !cJSON_IsNull(params) && !cJSON_IsObject(params))
        return fl_error_set(err, FL_EFORMAT, "%s: field 'rope_parameters' must be an object", path);
    if (scaling && !cJSON_IsNull(scaling) && !cJSON_IsObject(scaling))
        return fl_error_set(err, FL_EFORMAT, "%s: field 'rope_scaling' must be an object", path);
    if (!cJSON_IsObject(params)) params = NULL;
    if (!cJSON_IsObject(scaling)) scaling = NULL;
    // The scaling type lives in rope_parameters when it names one, else in legacy rope_scaling.
    int params_typed = params && (json_has(params, "rope_type") || json_has(params, "type"));
    const cJSON *sc = params_typed || !scaling ? params : scaling;
    if (sc == scaling) f_params = "rope_scaling";
    char where[4200];
    snprintf(where, sizeof where, "%s: %s", path, f_params);
    float theta;
    const char *type = "default";
    fl_code rc;
    memset(r, 0, sizeof *r);
    if ((rc = json_get_float(c, "rope_theta", 10000.0f, &theta, path, err))) return rc;
    if (params && (rc = json_get_float(params, "rope_theta", theta, &theta, path, err))) return rc;
    if (sc && ((rc = json_get_string(sc, json_pick_name(sc, "rope_type", "type"), "default", &type,
                                     where, err)) ||
               (rc = json_get_float(sc, "factor", 1.0f, &r->factor, where, err)) ||
               (rc = json_get_int(sc, "original_max_position_embeddings", max_position_embeddings,
                                  &r->threshold, where, err))))
        return rc;
    if (!sc) {
        r->factor = 1.0f;
        r->threshold = max_position_embeddings;
    }
    r->theta = theta;
    r->alpha = 1.0f;
    r->rot_dim = head_dim;
    if (!strcmp(type, "default"))
        r->mode = ROPE_NONE;
    else if (!strcmp(type, "linear"))
        r->mode = ROPE_LINEAR;
    else if (!strcmp(type, "dynamic"))
        r->mode = ROPE_DYNAMIC;
    else
        return fl_error_set(err, FL_EUNSUPPORTED,
                            "%s: rope type '%s' is not supported (default, "
                            "linear, dynamic)",
                            where, type);
    if (!(r->theta > 0))
        return fl_error_set(err, FL_EINVAL, "%s: field 'rope_theta' must be positive", path);
    if (!(r->factor > 0) || r->threshold <= 0)
        return fl_error_set(err, FL_EINVAL,
                            "%s: 'factor' and 'original_max_position_embeddings' "
                            "must be positive",
                            where);
    return FL_OK;
}

fl_code rope_mode_parse(const char *name, rope_mode *out, fl_error *err) {
    for (int i = 0; i < ROPE_N_MODES; i++) {
        if (!strcmp(name, rope_mode_names[i])) {
            *out = (rope_mode)i;
            return FL_OK;
        }
    }
    return fl_error_set(err, FL_EINVAL,
                        "unknown rope scaling '%s' (none, falconlite, dynamic, linear)", name);
}

const char *rope_mode_name(rope_mode mode) {
    return (unsigned)mode < ROPE_N_MODES ? rope_mode_names[mode] : "unknown";
}

double rope_base_for_length(const rope_config *rope, int length) {
    double theta = rope->theta, d = rope->rot_dim, exponent = d / (d - 2.0);
    double L = length, T = rope->threshold;
    switch (rope->mode) {
    case ROPE_FALCONLITE:
        return L > T ? theta * pow(L / rope->alpha / T, exponent) : theta;
    case ROPE_DYNAMIC:
        return L > T ? theta * pow(rope->factor * L / T - (rope->factor - 1.0), exponent) : theta;
    case ROPE_NONE:
    case ROPE_LINEAR:
        break;
    }
    return theta;
}

float rope_position_scale(const rope_config *rope) {
    return rope->mode == ROPE_LINEAR ? 1.0f / rope->factor : 1.0f;
}

int rope_overrides_given(const rope_overrides *o) {
    return o->mode >= 0 || !isnan(o->alpha) || !isnan(o->factor) || o->threshold;
}

void rope_opts_bind(rope_overrides *o, opt_spec *out) {
    const opt_spec specs[ROPE_OPTS_N] = {
        OPT("rope-scaling", OPT_ENUM, &o->mode, "rotary scaling (default: config.json's)",
            .env = "ROPE_SCALING", .choices = rope_mode_names),
        OPT("rope-alpha", OPT_FLOAT, &o->alpha, "falconlite alpha (as DNTK_ALPHA_SCALER)"),
        OPT("rope-threshold", OPT_INT, &o->threshold,
            "trained length (as PRETRAINED_MAX_TOKENS; default: max_position_embeddings)",
            OPT_MIN(1)),
        OPT("rope-factor", OPT_FLOAT, &o->factor, "dynamic / linear scaling factor",
            .env = "ROPE_FACTOR"),
    };
    memcpy(out, specs, sizeof specs);
}

fl_code rope_overrides_add_env(rope_overrides *o, fl_error *err) {
    const char *a = getenv("DNTK_ALPHA_SCALER"), *t = getenv("PRETRAINED_MAX_TOKENS");
    if (!a || !*a) return FL_OK;
    char *end;
    double alpha = strtod(a, &end);
    if (*end || !(alpha > 0) || !isfinite(alpha))
        return fl_error_set(err, FL_EINVAL,
                            "environment: DNTK_ALPHA_SCALER='%s' must be a positive number", a);
    long threshold = 2048;
    if (t && *t) {
        errno = 0;
        threshold = strtol(t, &end, 10);
        if (errno || *end || threshold < INT_MIN || threshold > INT_MAX)
            return fl_error_set(err, FL_EINVAL,
                                "environment: PRETRAINED_MAX_TOKENS='%s' must be an integer", t);
        if (threshold <= 0)
            return fl_error_set(err, FL_EINVAL,
                                "environment: PRETRAINED_MAX_TOKENS must be positive");
    }
    if (o->mode < 0) o->mode = ROPE_FALCONLITE;
    if (isnan(o->alpha)) o->alpha = (float)alpha;
    if (!o->threshold) o->threshold = (int)threshold;
    if (isnan(o->factor)) o->factor = 1.0f;
    return FL_OK;
}

fl_code rope_config_apply_overrides(const rope_config *base, int max_position_embeddings,
                                    const rope_overrides *o, rope_config *out, fl_error *err) {
    *out = *base;
    if (o->mode >= ROPE_N_MODES)
        return fl_error_set(err, FL_EINVAL, "--rope-scaling: unknown mode %d", o->mode);
    if (o->threshold < 0)
        return fl_error_set(err, FL_EINVAL, "--rope-threshold must be positive, got %d",
                            o->threshold);
    if (o->mode >= 0) out->mode = (rope_mode)o->mode;
    if (!isnan(o->alpha)) out->alpha = o->alpha;
    if (!isnan(o->factor)) out->factor = o->factor;
    if (o->threshold) out->threshold = o->threshold;
    if (out->mode != ROPE_NONE && out->threshold <= 0) out->threshold = max_position_embeddings;
    if (out->mode == ROPE_FALCONLITE && !(out->alpha > 0))
        return fl_error_set(err, FL_EINVAL, "--rope-scaling falconlite needs --rope-alpha > 0");
    if ((out->mode == ROPE_DYNAMIC || out->mode == ROPE_LINEAR) && !(out->factor > 0))
        return fl_error_set(err, FL_EINVAL, "--rope-scaling %s needs --rope-factor > 0",
                            rope_mode_name(out->mode));
    return FL_OK;
}
