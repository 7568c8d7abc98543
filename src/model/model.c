/* model.c — model lifecycle (init/free), config access and step settings. */
#include "model/model.h"
#include "core/alloc.h"
#include "core/status.h"

void rg_model_free(rg_model *m) {
    if (!m) return;
    rg_backend *be = m->be;
    if ((void *)m->compute != (void *)m->params) rg_buffer_free(be, m->compute);
    rg_buffer_free(be, m->params);
    rg_buffer_free(be, m->grads);
    rg_buffer_free(be, m->opt_m);
    rg_buffer_free(be, m->opt_v);
    rg_buffer_free(be, m->arena);
    rg_buffer_free(be, m->losses);
    rg_free(m->losses_host);
    rg_free(m->cu_host);
    rg_free(m->layer_store);
    rg_free(m->tensors);
    rg_free(m->lp);
    rg_free(m);
}

/* The model needs every op of the table; a backend still missing one is
 * refused up front rather than failing (or crashing) inside a step. */
static rg_status check_ops(const rg_backend *be) {
    const rg_backend_ops *o = be->ops;
    struct { bool present; const char *name; } need[] = {
        {o->attn_forward != NULL, "attn_forward"}, {o->attn_backward != NULL, "attn_backward"},
        {o->embedding_forward != NULL, "embedding_forward"},
        {o->embedding_backward != NULL, "embedding_backward"},
        {o->layernorm_forward != NULL, "layernorm_forward"},
        {o->layernorm_backward != NULL, "layernorm_backward"},
        {o->matmul_forward != NULL, "matmul_forward"}, {o->matmul_backward != NULL, "matmul_backward"},
        {o->gelu_backward != NULL, "gelu_backward"}, {o->add != NULL, "add"},
        {o->xent_forward_backward != NULL, "xent_forward_backward"}, {o->convert != NULL, "convert"},
        {o->zero != NULL, "zero"}, {o->sum_squares != NULL, "sum_squares"},
        {o->sgd_update != NULL, "sgd_update"}, {o->adamw_update != NULL, "adamw_update"},
    };
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (!need[i].present)
            return rg_fail(RG_ERR_UNSUPPORTED, "rg_model_init: the %s backend has no %s op yet", o->name,
                           need[i].name);
    return RG_OK;
}

rg_status rg_model_init(rg_backend *be, const rg_model_config *cfg, uint64_t seed, rg_model **out) {
    if (!out) return rg_fail(RG_ERR_INVALID_ARG, "rg_model_init: out is NULL");
    *out = NULL;
    if (!be) return rg_fail(RG_ERR_INVALID_ARG, "rg_model_init: backend is NULL");
    RG_TRY(rg_model_config_validate(cfg));
    RG_TRY(check_ops(be));
    rg_model *m;
    RG_TRY(rg_calloc((void **)&m, 1, sizeof *m, "rg_model_init: model"));
    m->be = be;
    m->cfg = *cfg;
    m->C = cfg->d_model;
    m->hd = cfg->d_model / cfg->n_heads;
    m->H = cfg->mlp_ratio * cfg->d_model;
    m->Q = (cfg->n_heads + 2 * cfg->n_kv_heads) * m->hd;
    m->act_size = rg_dtype_size(be->ops->act_dtype);
    m->eval_causal = true;
    m->algo = RG_ATTN_AUTO;
    rg_optim_config_default(RG_OPTIM_SGD, &m->opt);
    size_t bytes = 0;
    rg_status s = rg_model_build_table(m);
    if (s == RG_OK) s = rg_calloc((void **)&m->layer_store, (size_t)cfg->n_layers, sizeof *m->layer_store,
                                  "rg_model_init: layer activations");
    if (s == RG_OK && !rg_mul_ok((size_t)m->n_alloc, sizeof(float), &bytes))
        s = rg_fail(RG_ERR_OVERFLOW, "rg_model_init: %lld parameters overflow size_t", (long long)m->n_alloc);
    if (s == RG_OK) s = rg_buffer_alloc(be, bytes, (void **)&m->params);
    if (s == RG_OK) s = rg_buffer_alloc(be, bytes, (void **)&m->grads);
    if (s == RG_OK) s = be->ops->zero(be, m->grads, bytes);
    if (s == RG_OK) {
        if (be->ops->act_dtype == RG_DTYPE_F32) m->compute = m->params;
        else s = rg_buffer_alloc(be, (size_t)m->n_alloc * m->act_size, &m->compute);
    }
    if (s == RG_OK) s = rg_model_init_params(m, seed);
    if (s != RG_OK) { rg_model_free(m); return s; }
    *out = m;
    return RG_OK;
}

const rg_model_config *rg_model_get_config(const rg_model *m) { return m ? &m->cfg : NULL; }

rg_status rg_model_set_eval_causal(rg_model *m, bool causal) {
    if (!m) return rg_fail(RG_ERR_INVALID_ARG, "rg_model_set_eval_causal: model is NULL");
    m->eval_causal = causal;
    return RG_OK;
}

rg_status rg_model_set_attn_algo(rg_model *m, rg_attn_algo algo) {
    if (!m) return rg_fail(RG_ERR_INVALID_ARG, "rg_model_set_attn_algo: model is NULL");
    if (algo < RG_ATTN_AUTO || algo > RG_ATTN_FLASH)
        return rg_fail(RG_ERR_INVALID_ARG, "rg_model_set_attn_algo: unknown algo %d", (int)algo);
    if (algo == RG_ATTN_REFERENCE && m->be->kind != RG_BACKEND_CPU)
        return rg_fail(RG_ERR_UNSUPPORTED, "rg_model_set_attn_algo: the reference algorithm runs on the CPU only");
    m->algo = algo;
    return RG_OK;
}
