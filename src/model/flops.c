/* flops.c — FLOP counts of a step (useful on real tokens, executed by the
 * layout) and the model's backend memory. */
#include "model/model.h"
#include "core/status.h"

/* Matmul FLOPs of a forward per token: 2 * in * out for every linear. */
static double matmul_flops_per_token(const rg_model *m) {
    double C = m->C, H = m->H, Q = m->Q, V = m->cfg.vocab_size;
    return 2.0 * (m->cfg.n_layers * (C * Q + C * C + 2.0 * C * H) + C * V);
}

rg_status rg_model_flops(const rg_model *m, const rg_batch *batch, bool train, double *useful, double *executed) {
    if (!m || !useful || !executed)
        return rg_fail(RG_ERR_INVALID_ARG, "rg_model_flops: model, useful or executed is NULL");
    rg_step_plan plan;
    /* The plan checks the batch; the host cu_seqlens of bidirectional padded
     * eval are not needed to count. */
    RG_TRY(rg_model_plan(m, batch, train, "rg_model_flops", NULL, &plan));
    double h = m->cfg.n_heads, hd = m->hd, L = m->cfg.n_layers;
    double per_tok = matmul_flops_per_token(m);
    double real_sq = 0, exec_sq = 0, n_real = 0;
    for (int32_t s = 0; s < batch->n_seqs; s++) {
        real_sq += (double)batch->seqlens[s] * batch->seqlens[s];
        n_real += batch->seqlens[s];
    }
    if (batch->layout == RG_LAYOUT_PACKED) exec_sq = real_sq;
    else if (plan.causal) exec_sq = (double)batch->n_rows * batch->row_len * batch->row_len;
    else /* each row: every slot's query over the row's real keys */
        for (int32_t s = 0; s < batch->n_seqs; s++) exec_sq += (double)batch->row_len * batch->seqlens[s];
    double attn_scale = 4.0 * h * hd * L * (plan.causal ? 0.5 : 1.0);
    double mm_mult = train ? 3.0 : 1.0, attn_mult = train ? 3.5 : 1.0;
    *useful = mm_mult * per_tok * n_real + attn_mult * attn_scale * real_sq;
    *executed = mm_mult * per_tok * batch->n_tokens + attn_mult * attn_scale * exec_sq;
    return RG_OK;
}

rg_status rg_model_memory_get(const rg_model *m, rg_model_memory *out) {
    if (!m || !out) return rg_fail(RG_ERR_INVALID_ARG, "rg_model_memory_get: model or out is NULL");
    size_t block = (size_t)m->n_alloc * sizeof(float);
    out->params = block + ((void *)m->compute != (void *)m->params ? (size_t)m->n_alloc * m->act_size : 0);
    out->grads = block;
    out->optim = (m->opt_m ? block : 0) + (m->opt_v ? block : 0);
    out->acts = m->arena_bytes + (size_t)m->losses_cap * sizeof(float);
    return RG_OK;
}
