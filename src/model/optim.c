/* optim.c — optimizer configuration and state, the warm-up + cosine learning
 * rate schedule, and one update over the parameter block. */
#include "model/model.h"
#include "core/status.h"
#include <math.h>

rg_status rg_optim_config_default(rg_optim_kind kind, rg_optim_config *out) {
    if (!out) return rg_fail(RG_ERR_INVALID_ARG, "rg_optim_config_default: out is NULL");
    if (kind != RG_OPTIM_SGD && kind != RG_OPTIM_ADAMW)
        return rg_fail(RG_ERR_INVALID_ARG, "rg_optim_config_default: unknown kind %d", (int)kind);
    *out = (rg_optim_config){
        .kind = kind, .lr = 1e-3f, .min_lr = 0, .warmup_steps = 0, .total_steps = 0,
        .momentum = 0, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
        .weight_decay = kind == RG_OPTIM_ADAMW ? 1e-2f : 0.0f, .decay_matrices_only = false, .clip_norm = 0,
    };
    return RG_OK;
}

#define BAD(...) rg_fail(RG_ERR_INVALID_ARG, "rg_optim_config_validate: " __VA_ARGS__)

rg_status rg_optim_config_validate(const rg_optim_config *c) {
    if (!c) return BAD("cfg is NULL");
    if (c->kind != RG_OPTIM_SGD && c->kind != RG_OPTIM_ADAMW) return BAD("unknown kind %d", (int)c->kind);
    if (!(c->lr > 0) || !isfinite(c->lr)) return BAD("lr = %g, expected finite and > 0", c->lr);
    if (!(c->min_lr >= 0 && c->min_lr <= c->lr)) return BAD("min_lr = %g, expected in [0, lr = %g]", c->min_lr, c->lr);
    if (c->warmup_steps < 0) return BAD("warmup_steps = %lld, expected >= 0", (long long)c->warmup_steps);
    if (c->total_steps != 0 && c->total_steps <= c->warmup_steps)
        return BAD("total_steps = %lld, expected 0 (constant lr) or > warmup_steps = %lld",
                   (long long)c->total_steps, (long long)c->warmup_steps);
    if (!(c->momentum >= 0 && c->momentum < 1)) return BAD("momentum = %g, expected in [0, 1)", c->momentum);
    if (!(c->beta1 >= 0 && c->beta1 < 1)) return BAD("beta1 = %g, expected in [0, 1)", c->beta1);
    if (!(c->beta2 >= 0 && c->beta2 < 1)) return BAD("beta2 = %g, expected in [0, 1)", c->beta2);
    if (!(c->eps > 0) || !isfinite(c->eps)) return BAD("eps = %g, expected finite and > 0", c->eps);
    if (!(c->weight_decay >= 0) || !isfinite(c->weight_decay))
        return BAD("weight_decay = %g, expected finite and >= 0", c->weight_decay);
    if (isnan(c->clip_norm) || isinf(c->clip_norm)) return BAD("clip_norm = %g, expected finite", c->clip_norm);
    return RG_OK;
}

float rg_optim_lr(const rg_optim_config *c, int64_t step) {
    if (!c) return 0;
    if (step < 0) step = 0;
    if (step < c->warmup_steps) return c->lr * (float)((double)(step + 1) / (double)c->warmup_steps);
    if (c->total_steps <= 0) return c->lr;
    double p = (double)(step - c->warmup_steps) / (double)(c->total_steps - c->warmup_steps);
    if (p > 1) p = 1;
    const double pi = 3.14159265358979323846;
    return (float)(c->min_lr + (c->lr - c->min_lr) * 0.5 * (1.0 + cos(pi * p)));
}

/* Whether the kind of state (m, v) changes between two configurations. */
static bool needs_m(const rg_optim_config *c) { return c->kind == RG_OPTIM_ADAMW || c->momentum > 0; }

rg_status rg_model_set_optim(rg_model *m, const rg_optim_config *cfg) {
    if (!m) return rg_fail(RG_ERR_INVALID_ARG, "rg_model_set_optim: model is NULL");
    RG_TRY(rg_optim_config_validate(cfg));
    bool same = cfg->kind == m->opt.kind && needs_m(cfg) == (m->opt_m != NULL);
    if (same) { m->opt = *cfg; return RG_OK; }
    size_t bytes = (size_t)m->n_alloc * sizeof(float);
    float *nm = NULL, *nv = NULL;
    rg_backend *be = m->be;
    if (needs_m(cfg)) RG_TRY(rg_buffer_alloc(be, bytes, (void **)&nm));
    rg_status s = RG_OK;
    if (cfg->kind == RG_OPTIM_ADAMW) s = rg_buffer_alloc(be, bytes, (void **)&nv);
    if (s == RG_OK && nm) s = be->ops->zero(be, nm, bytes);
    if (s == RG_OK && nv) s = be->ops->zero(be, nv, bytes);
    if (s != RG_OK) { rg_buffer_free(be, nm); rg_buffer_free(be, nv); return s; }
    rg_buffer_free(be, m->opt_m);
    rg_buffer_free(be, m->opt_v);
    m->opt_m = nm;
    m->opt_v = nv;
    m->opt = *cfg;
    m->opt_step = 0;
    return RG_OK;
}

rg_status rg_model_get_optim(const rg_model *m, rg_optim_config *out) {
    if (!m || !out) return rg_fail(RG_ERR_INVALID_ARG, "rg_model_get_optim: model or out is NULL");
    *out = m->opt;
    return RG_OK;
}

int64_t rg_model_optim_step(const rg_model *m) { return m ? m->opt_step : 0; }

rg_status rg_model_set_optim_step(rg_model *m, int64_t step) {
    if (!m) return rg_fail(RG_ERR_INVALID_ARG, "rg_model_set_optim_step: model is NULL");
    if (step < 0) return rg_fail(RG_ERR_INVALID_ARG, "rg_model_set_optim_step: step = %lld, expected >= 0",
                                 (long long)step);
    m->opt_step = step;
    return RG_OK;
}

/* Updates elements [off, off + n) with weight decay wd. */
static rg_status update_range(rg_model *m, int64_t off, int64_t n, float lr, float wd, float grad_scale) {
    rg_backend *be = m->be;
    const rg_optim_config *o = &m->opt;
    void *compute = (void *)m->compute == (void *)m->params
                        ? NULL : (char *)m->compute + (size_t)off * m->act_size;
    float *mb = m->opt_m ? m->opt_m + off : NULL;
    if (o->kind == RG_OPTIM_SGD)
        return be->ops->sgd_update(be, m->params + off, compute, mb, m->grads + off, n, lr, o->momentum, wd,
                                   grad_scale);
    return be->ops->adamw_update(be, m->params + off, compute, mb, m->opt_v + off, m->grads + off, n, lr,
                                 o->beta1, o->beta2, o->eps, wd, grad_scale, m->opt_step + 1);
}

rg_status rg_model_apply_update(rg_model *m, float lr, float grad_scale) {
    float wd = m->opt.weight_decay;
    if (!m->opt.decay_matrices_only || wd == 0) return update_range(m, 0, m->n_alloc, lr, wd, grad_scale);
    /* Runs of consecutive tensors with the same decay, so that few calls cover the block. */
    int32_t i = 0;
    while (i < m->n_tensors) {
        bool decay = m->tensors[i].ndim == 2;
        int32_t j = i + 1;
        while (j < m->n_tensors && (m->tensors[j].ndim == 2) == decay) j++;
        int64_t off = m->tensors[i].offset;
        int64_t end = j < m->n_tensors ? m->tensors[j].offset : m->n_alloc;
        RG_TRY(update_range(m, off, end - off, lr, decay ? wd : 0.0f, grad_scale));
        i = j;
    }
    return RG_OK;
}
