#include <stdlib.h>

#include "common/log.h"
#include "shard/engine/model_impl.h"

fl_code model_load(const char *dir, const model_options *opt, backend *be, model **out,
                   fl_error *err) {
    model_options single = {.rank = 0, .world = 1};
    if (!opt) opt = &single;
    if (opt->world > 1 && !opt->comm)
        return fl_error_set(err, FL_EINVAL, "model %s: tensor parallel world %d needs a comm", dir,
                            opt->world);
    model *m = calloc(1, sizeof *m);
    if (!m) return fl_error_set(err, FL_ENOMEM, "model %s: out of memory", dir);
    fl_code rc = model_config_load(dir, &opt->gptq, &m->cfg, err);
    if (!rc && opt->rope_override)
        rc = rope_config_apply_overrides(&m->cfg.rope, m->cfg.max_position_embeddings,
                                         opt->rope_override, &m->cfg.rope, err);
    if (rc) {
        free(m);
        return rc;
    }
    m->arch = arch_get(m->cfg.arch);
    m->be = be;
    m->comm = opt->comm;
    m->rank = opt->rank;
    m->world = opt->world;
    m->pos_scale = rope_position_scale(&m->cfg.rope);
    rc = model_weights_load(&m->w, dir, &m->cfg, m->rank, m->world, be, err);
    if (rc) {
        free(m);
        return rc;
    }
    log_info("model loaded dir=%s type=%s layers=%d d_model=%d heads=%d kv_heads=%d gptq=%d "
             "rope=%s rank=%d world=%d stream_bytes=%zu",
             dir, m->cfg.model_type, m->cfg.n_layer, m->cfg.d_model, m->cfg.n_head,
             m->cfg.n_head_kv, m->cfg.quant.gptq, rope_mode_name(m->cfg.rope.mode), m->rank,
             m->world, m->w.stream_bytes);
    *out = m;
    return FL_OK;
}

void model_free(model *m) {
    if (!m) return;
    fwd_scratch_free(m->scratch, m->be);
    model_weights_free(&m->w, m->be);
    free(m);
}

const model_config *model_get_config(const model *m) {
    return &m->cfg;
}

size_t model_weight_bytes(const model *m) {
    return m->w.stream_bytes;
}

fl_code model_kv_cache_create(const model *m, int n_blocks, kv_cache **out, fl_error *err) {
    return kv_cache_create(m->be, m->cfg.n_layer, m->w.n_head_kv, m->cfg.head_dim, n_blocks, out,
                           err);
}
