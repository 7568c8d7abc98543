/* backward.c — the backward pass, blocks in reverse, from the dlogits that the
 * fused cross-entropy left in place of the logits. Every parameter gradient is
 * accumulated (+=) by its op, so micro-batches add up for free. */
#include "model/model.h"

rg_status rg_model_backward(rg_model *m, const rg_step_plan *plan) {
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
    const void *x_last = A->layer[c->n_layers - 1].x2;

    /* The projections that write the residual stream (attn proj, fc2) get
     * their bias gradient, the stream's gradient summed over tokens, from the
     * layernorm backward that leaves that gradient (layernorm_backward_sum);
     * fc2_sum_done says whether the next fc2 bias gradient was summed so. */
    bool fc2_sum_done = false;
    /* Head: dres = d(loss)/d(residual stream after the last block). */
    if (c->final_ln) {
        RG_TRY(op->matmul_backward(be, A->dtmp, rg_model_g(m, m->lm_w), rg_model_g(m, m->lm_b), A->logits,
                                   A->lnf, rg_model_p(m, m->lm_w), T, C, V));
        RG_TRY(op->zero(be, A->dres, (size_t)T * C * m->act_size));
        RG_TRY(op->layernorm_backward_sum(be, A->dres, rg_model_g(m, m->lnf_w), rg_model_g(m, m->lnf_b),
                                          rg_model_g(m, m->lp[c->n_layers - 1].fc2_b), A->dtmp, x_last,
                                          rg_model_p(m, m->lnf_w), A->meanf, A->rstdf, T, C));
        fc2_sum_done = true;
    } else {
        RG_TRY(op->matmul_backward(be, A->dres, rg_model_g(m, m->lm_w), rg_model_g(m, m->lm_b), A->logits,
                                   x_last, rg_model_p(m, m->lm_w), T, C, V));
    }

    for (int32_t l = c->n_layers - 1; l >= 0; l--) {
        const rg_layer_params *p = &m->lp[l];
        rg_layer_acts *L = &A->layer[l];
        const void *x = l ? A->layer[l - 1].x2 : A->x0;
        /* x2 = x1 + fc2(gelu(fc(ln2(x1)))): dres flows straight to x1 and through the MLP. */
        RG_TRY(op->matmul_backward(be, A->dbig, rg_model_g(m, p->fc2_w), fc2_sum_done ? NULL : rg_model_g(m, p->fc2_b),
                                   A->dres, L->fch_gelu, rg_model_p(m, p->fc2_w), T, H, C));
        /* fch_gelu is dead now: it receives d(pre-GELU), and fc's bias gradient
         * (its column sums) comes out of the same pass. */
        RG_TRY(op->gelu_backward_dbias(be, L->fch_gelu, rg_model_g(m, p->fc_b), L->fch, A->dbig, T, H, gelu));
        RG_TRY(op->matmul_backward(be, A->dtmp, rg_model_g(m, p->fc_w), NULL, L->fch_gelu,
                                   L->ln2, rg_model_p(m, p->fc_w), T, C, H));
        RG_TRY(op->layernorm_backward_sum(be, A->dres, rg_model_g(m, p->ln2_w), rg_model_g(m, p->ln2_b),
                                          rg_model_g(m, p->proj_b), A->dtmp, L->x1, rg_model_p(m, p->ln2_w),
                                          L->mean2, L->rstd2, T, C));
        /* x1 = x + proj(attn(qkv(ln1(x)))); proj's bias gradient was summed just above. */
        RG_TRY(op->matmul_backward(be, A->dtmp, rg_model_g(m, p->proj_w), NULL, A->dres,
                                   L->atty, rg_model_p(m, p->proj_w), T, C, C));
        RG_TRY(op->attn_backward(be, &aa, L->qkv, rg_model_at(m, L->qkv, k_off), rg_model_at(m, L->qkv, v_off), L->atty, L->lse,
                                 A->dtmp, A->dbig, rg_model_at_mut(m, A->dbig, k_off), rg_model_at_mut(m, A->dbig, v_off)));
        RG_TRY(op->matmul_backward(be, A->dtmp, rg_model_g(m, p->qkv_w), rg_model_g(m, p->qkv_b), A->dbig,
                                   L->ln1, rg_model_p(m, p->qkv_w), T, C, Q));
        /* dres is now the gradient of the previous block's output: its sum is that block's fc2 bias gradient */
        RG_TRY(op->layernorm_backward_sum(be, A->dres, rg_model_g(m, p->ln1_w), rg_model_g(m, p->ln1_b),
                                          l ? rg_model_g(m, m->lp[l - 1].fc2_b) : NULL, A->dtmp, x,
                                          rg_model_p(m, p->ln1_w), L->mean1, L->rstd1, T, C));
        fc2_sum_done = true;
    }
    return op->embedding_backward(be, rg_model_g(m, m->wte), rg_model_g(m, m->wpe), A->dres, A->tokens, A->pos,
                                  T, C);
}
