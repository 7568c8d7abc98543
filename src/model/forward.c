/* forward.c — the forward pass over one batch whose metadata is already in
 * the arena: embeddings, blocks, head, fused softmax + cross-entropy. */
#include "model/model.h"
#include <math.h>

_Static_assert((int)RG_GELU_KIND_ERF == RG_GELU_ERF && (int)RG_GELU_KIND_TANH == RG_GELU_TANH,
               "rg_gelu_kind values are passed to the ops as their gelu argument");

/* q, k, v are views into the fused qkv (T, Q): q at column 0, k at h*hd, v at
 * (h + h_kv)*hd, each with row stride Q. */
void rg_model_attn_args(const rg_model *m, const rg_step_plan *plan, rg_attn_args *a) {
    rg_attn_desc *d = &a->desc;
    *d = (rg_attn_desc){0};
    d->batch = plan->n_blocks;
    d->n_heads = m->cfg.n_heads;
    d->n_kv_heads = m->cfg.n_kv_heads;
    d->head_dim = m->hd;
    d->cu_seqlens_q = plan->cu_q_host;
    d->cu_seqlens_k = plan->cu_k_host;
    d->max_seqlen_q = plan->max_q;
    d->max_seqlen_k = plan->max_k;
    d->softmax_scale = 0;
    d->causal = plan->causal;
    d->algo = m->algo;
    d->stride_q = d->stride_k = d->stride_v = m->Q;
    d->mask_kind = RG_ATTN_MASK_NONE;
    a->cu_seqlens_q_dev = m->acts.cu_q;
    a->cu_seqlens_k_dev = m->acts.cu_k;
    a->scale = 1.0f / sqrtf((float)m->hd);
    a->total_q = plan->cu_q_host[plan->n_blocks];
    a->total_k = plan->cu_k_host[plan->n_blocks];
}

/* The activation set block l uses: its own in training, a shared one in eval
 * when the arena holds only one. */
static rg_layer_acts *layer_acts(rg_model *m, int32_t l) {
    return &m->acts.layer[m->cap_train ? l : 0];
}

rg_status rg_model_forward(rg_model *m, const rg_step_plan *plan, float *losses, float dloss) {
    rg_backend *be = m->be;
    const rg_backend_ops *op = be->ops;
    const rg_model_config *c = &m->cfg;
    rg_acts *A = &m->acts;
    int64_t T = plan->T;
    int C = m->C, H = m->H, Q = m->Q, V = c->vocab_size;
    int gelu = (int)c->gelu;
    rg_attn_args aa;
    rg_model_attn_args(m, plan, &aa);
    const int64_t k_off = rg_model_k_col(m), v_off = rg_model_v_col(m);

    RG_TRY(op->embedding_forward(be, A->x0, A->tokens, A->pos, rg_model_p(m, m->wte),
                                 rg_model_p(m, m->wpe), T, C));
    const void *x = A->x0;
    for (int32_t l = 0; l < c->n_layers; l++) {
        const rg_layer_params *p = &m->lp[l];
        rg_layer_acts *L = layer_acts(m, l);
        RG_TRY(op->layernorm_forward(be, L->ln1, L->mean1, L->rstd1, x, rg_model_p(m, p->ln1_w),
                                     rg_model_p(m, p->ln1_b), c->ln_eps, T, C));
        RG_TRY(op->matmul_forward(be, L->qkv, NULL, L->ln1, rg_model_p(m, p->qkv_w),
                                  rg_model_p(m, p->qkv_b), T, C, Q, RG_GELU_NONE));
        RG_TRY(op->attn_forward(be, &aa, L->qkv, rg_model_at(m, L->qkv, k_off), rg_model_at(m, L->qkv, v_off), L->atty,
                                plan->train ? L->lse : NULL));
        /* x1 = x + proj(atty): the residual add is the projection's epilogue */
        RG_TRY(op->matmul_forward_residual(be, L->x1, L->atty, rg_model_p(m, p->proj_w),
                                           rg_model_p(m, p->proj_b), x, T, C, C));
        RG_TRY(op->layernorm_forward(be, L->ln2, L->mean2, L->rstd2, L->x1, rg_model_p(m, p->ln2_w),
                                     rg_model_p(m, p->ln2_b), c->ln_eps, T, C));
        RG_TRY(op->matmul_forward(be, L->fch_gelu, L->fch, L->ln2, rg_model_p(m, p->fc_w),
                                  rg_model_p(m, p->fc_b), T, C, H, gelu));
        RG_TRY(op->matmul_forward_residual(be, L->x2, L->fch_gelu, rg_model_p(m, p->fc2_w),
                                           rg_model_p(m, p->fc2_b), L->x1, T, H, C));
        x = L->x2;
    }
    if (c->final_ln) {
        RG_TRY(op->layernorm_forward(be, A->lnf, A->meanf, A->rstdf, x, rg_model_p(m, m->lnf_w),
                                     rg_model_p(m, m->lnf_b), c->ln_eps, T, C));
        x = A->lnf;
    }
    RG_TRY(op->matmul_forward(be, A->logits, NULL, x, rg_model_p(m, m->lm_w), rg_model_p(m, m->lm_b),
                              T, C, V, RG_GELU_NONE));
    return op->xent_forward_backward(be, losses, plan->train ? A->logits : NULL, A->logits, A->targets,
                                     RG_IGNORE_INDEX, dloss, T, V);
}
