/* params.c — the parameter table (names, shapes, offsets into one block),
 * initialisation from a seed, and host get/set of parameters, gradients and
 * optimizer state. */
#include "model/model.h"
#include "core/alloc.h"
#include "core/rng.h"
#include "core/status.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Tensors start on 64-element boundaries (256 bytes in fp32) so that every
 * backend can use its widest aligned loads; the gaps hold zeros forever. */
#define RG_PARAM_ALIGN 64

static int32_t add_tensor(rg_model *m, const char *name, int64_t d0, int64_t d1) {
    rg_param_entry *e = &m->tensors[m->n_tensors];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->ndim = d1 ? 2 : 1;
    e->shape[0] = d0;
    e->shape[1] = d1 ? d1 : 1;
    e->numel = d0 * e->shape[1];
    e->offset = m->n_alloc;
    m->n_alloc += (e->numel + RG_PARAM_ALIGN - 1) / RG_PARAM_ALIGN * RG_PARAM_ALIGN;
    m->n_params += e->numel;
    return m->n_tensors++;
}

static int32_t add_layer_tensor(rg_model *m, int32_t l, const char *what, int64_t d0, int64_t d1) {
    char name[RG_MODEL_NAME_MAX];
    snprintf(name, sizeof name, "h.%d.%s", l, what);
    return add_tensor(m, name, d0, d1);
}

rg_status rg_model_build_table(rg_model *m) {
    const rg_model_config *c = &m->cfg;
    int32_t C = m->C, H = m->H, Q = m->Q;
    int32_t max_tensors = 12 * c->n_layers + 8;
    RG_TRY(rg_calloc((void **)&m->tensors, (size_t)max_tensors, sizeof *m->tensors, "rg_model_init: tensor table"));
    RG_TRY(rg_calloc((void **)&m->lp, (size_t)c->n_layers, sizeof *m->lp, "rg_model_init: layer table"));
    m->wte = add_tensor(m, "wte", c->vocab_size, C);
    m->wpe = add_tensor(m, "wpe", c->max_seq_len, C);
    for (int32_t l = 0; l < c->n_layers; l++) {
        rg_layer_params *p = &m->lp[l];
        bool lb = c->linear_bias;
        p->ln1_w = add_layer_tensor(m, l, "ln_1.weight", C, 0);
        p->ln1_b = c->ln_bias ? add_layer_tensor(m, l, "ln_1.bias", C, 0) : -1;
        p->qkv_w = add_layer_tensor(m, l, "attn.c_attn.weight", Q, C);
        p->qkv_b = lb ? add_layer_tensor(m, l, "attn.c_attn.bias", Q, 0) : -1;
        p->proj_w = add_layer_tensor(m, l, "attn.c_proj.weight", C, C);
        p->proj_b = lb ? add_layer_tensor(m, l, "attn.c_proj.bias", C, 0) : -1;
        p->ln2_w = add_layer_tensor(m, l, "ln_2.weight", C, 0);
        p->ln2_b = c->ln_bias ? add_layer_tensor(m, l, "ln_2.bias", C, 0) : -1;
        p->fc_w = add_layer_tensor(m, l, "mlp.c_fc.weight", H, C);
        p->fc_b = lb ? add_layer_tensor(m, l, "mlp.c_fc.bias", H, 0) : -1;
        p->fc2_w = add_layer_tensor(m, l, "mlp.c_proj.weight", C, H);
        p->fc2_b = lb ? add_layer_tensor(m, l, "mlp.c_proj.bias", C, 0) : -1;
    }
    m->lnf_w = c->final_ln ? add_tensor(m, "ln_f.weight", C, 0) : -1;
    m->lnf_b = c->final_ln && c->ln_bias ? add_tensor(m, "ln_f.bias", C, 0) : -1;
    m->lm_w = c->tied_embeddings ? m->wte : add_tensor(m, "lm_head.weight", c->vocab_size, C);
    m->lm_b = c->lm_head_bias ? add_tensor(m, "lm_head.bias", c->vocab_size, 0) : -1;
    return RG_OK;
}

const void *rg_model_p(const rg_model *m, int32_t i) {
    if (i < 0) return NULL;
    return (const char *)m->compute + (size_t)m->tensors[i].offset * m->act_size;
}

float *rg_model_g(const rg_model *m, int32_t i) {
    return i < 0 ? NULL : m->grads + m->tensors[i].offset;
}

rg_status rg_model_refresh_compute(rg_model *m, int64_t offset, int64_t n) {
    if ((void *)m->compute == (void *)m->params) return RG_OK;
    return m->be->ops->convert(m->be, (char *)m->compute + (size_t)offset * m->act_size,
                               m->be->ops->act_dtype, m->params + offset, RG_DTYPE_F32, n);
}

/* What kind of tensor a name is, for initialisation. */
static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* Fills x (numel) for tensor e following cfg->init. */
static void init_tensor(const rg_model *m, const rg_param_entry *e, rg_rng *rng, float *x) {
    const rg_model_config *c = &m->cfg;
    bool is_ln = strstr(e->name, "ln_") != NULL;
    bool is_bias = ends_with(e->name, ".bias");
    bool is_emb = !strcmp(e->name, "wte") || !strcmp(e->name, "wpe");
    if (is_ln) {
        for (int64_t i = 0; i < e->numel; i++) x[i] = is_bias ? 0.0f : 1.0f;
        return;
    }
    if (c->init == RG_INIT_GPT2) {
        if (is_bias) { memset(x, 0, (size_t)e->numel * sizeof *x); return; }
        double sd = 0.02;
        if (ends_with(e->name, "c_proj.weight")) sd /= sqrt(2.0 * c->n_layers);
        for (int64_t i = 0; i < e->numel; i++) x[i] = (float)(sd * rg_rng_normal(rng));
        return;
    }
    /* torch defaults: Embedding N(0, 1); Linear kaiming_uniform(a = sqrt(5)),
     * i.e. U(-1/sqrt(in), 1/sqrt(in)), for weight and bias alike. */
    if (is_emb) {
        for (int64_t i = 0; i < e->numel; i++) x[i] = (float)rg_rng_normal(rng);
        return;
    }
    int64_t fan_in;
    if (e->ndim == 2) fan_in = e->shape[1];
    else if (strstr(e->name, "mlp.c_proj")) fan_in = m->H;
    else fan_in = m->C; /* every other bias belongs to a Linear reading C inputs */
    float bound = (float)(1.0 / sqrt((double)fan_in));
    rg_rng_fill_uniform(rng, x, (size_t)e->numel, -bound, bound);
}

rg_status rg_model_init_params(rg_model *m, uint64_t seed) {
    int64_t largest = 0;
    for (int32_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].numel > largest) largest = m->tensors[i].numel;
    float *host;
    RG_TRY(rg_alloc((void **)&host, (size_t)largest, sizeof *host, "rg_model_init: staging buffer"));
    rg_rng rng;
    rg_rng_seed(&rng, seed);
    rg_status s = m->be->ops->zero(m->be, m->params, (size_t)m->n_alloc * sizeof(float));
    for (int32_t i = 0; i < m->n_tensors && s == RG_OK; i++) {
        const rg_param_entry *e = &m->tensors[i];
        init_tensor(m, e, &rng, host);
        s = m->be->ops->upload(m->be, m->params + e->offset, host, (size_t)e->numel * sizeof(float));
    }
    rg_free(host);
    if (s == RG_OK) s = rg_model_refresh_compute(m, 0, m->n_alloc);
    return s;
}

/* ---- public table access ---- */

int32_t rg_model_n_tensors(const rg_model *m) { return m ? m->n_tensors : 0; }

int64_t rg_model_n_params(const rg_model *m) { return m ? m->n_params : 0; }

rg_status rg_model_tensor_info_get(const rg_model *m, int32_t i, rg_model_tensor_info *out) {
    if (!m || !out) return rg_fail(RG_ERR_INVALID_ARG, "rg_model_tensor_info_get: model or out is NULL");
    if (i < 0 || i >= m->n_tensors)
        return rg_fail(RG_ERR_INVALID_ARG, "rg_model_tensor_info_get: index %d outside [0, %d)", i, m->n_tensors);
    const rg_param_entry *e = &m->tensors[i];
    out->name = e->name;
    out->ndim = e->ndim;
    out->shape[0] = e->shape[0];
    out->shape[1] = e->shape[1];
    out->numel = e->numel;
    return RG_OK;
}

rg_status rg_model_tensor_find(const rg_model *m, const char *name, int32_t *index) {
    if (!m || !name || !index) return rg_fail(RG_ERR_INVALID_ARG, "rg_model_tensor_find: NULL argument");
    for (int32_t i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) { *index = i; return RG_OK; }
    return rg_fail(RG_ERR_INVALID_ARG, "rg_model_tensor_find: the model has no tensor '%s'", name);
}

/* The fp32 block that `which` names, or NULL with the error set. */
static float *state_block(rg_model *m, rg_model_state which, const char *fn) {
    switch (which) {
    case RG_MODEL_PARAMS: return m->params;
    case RG_MODEL_GRADS: return m->grads;
    case RG_MODEL_OPT_M:
    case RG_MODEL_OPT_V: {
        float *p = which == RG_MODEL_OPT_M ? m->opt_m : m->opt_v;
        if (!p) rg_fail(RG_ERR_INVALID_ARG, "%s: the optimizer (%s%s) keeps no %s state", fn,
                        m->opt.kind == RG_OPTIM_ADAMW ? "AdamW" : "SGD",
                        m->opt.kind == RG_OPTIM_SGD && m->opt.momentum == 0 ? " without momentum" : "",
                        which == RG_MODEL_OPT_M ? "first-moment (m)" : "second-moment (v)");
        return p;
    }
    }
    rg_fail(RG_ERR_INVALID_ARG, "%s: unknown state %d", fn, (int)which);
    return NULL;
}

static rg_status check_index(const rg_model *m, int32_t i, const void *buf, const char *fn) {
    if (!m || !buf) return rg_fail(RG_ERR_INVALID_ARG, "%s: model or buffer is NULL", fn);
    if (i < 0 || i >= m->n_tensors)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: tensor index %d outside [0, %d)", fn, i, m->n_tensors);
    return RG_OK;
}

rg_status rg_model_tensor_get(rg_model *m, rg_model_state which, int32_t i, float *dst) {
    RG_TRY(check_index(m, i, dst, "rg_model_tensor_get"));
    float *block = state_block(m, which, "rg_model_tensor_get");
    if (!block) return RG_ERR_INVALID_ARG;
    const rg_param_entry *e = &m->tensors[i];
    return m->be->ops->download(m->be, dst, block + e->offset, (size_t)e->numel * sizeof(float));
}

rg_status rg_model_tensor_set(rg_model *m, rg_model_state which, int32_t i, const float *src) {
    RG_TRY(check_index(m, i, src, "rg_model_tensor_set"));
    float *block = state_block(m, which, "rg_model_tensor_set");
    if (!block) return RG_ERR_INVALID_ARG;
    const rg_param_entry *e = &m->tensors[i];
    for (int64_t k = 0; k < e->numel; k++)
        if (!isfinite(src[k]))
            return rg_fail(RG_ERR_INVALID_ARG, "rg_model_tensor_set: %s[%lld] = %g is not finite",
                           e->name, (long long)k, src[k]);
    RG_TRY(m->be->ops->upload(m->be, block + e->offset, src, (size_t)e->numel * sizeof(float)));
    if (which == RG_MODEL_PARAMS) return rg_model_refresh_compute(m, e->offset, e->numel);
    return RG_OK;
}
