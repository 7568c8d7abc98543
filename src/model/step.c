/* step.c — eval and train steps: every batch is checked against the model on
 * the host before any work starts, its metadata goes to the backend once, the
 * per-token losses come back once at the end of the step. */
#include "model/model.h"
#include "core/status.h"
#include <math.h>
#include <stdio.h>

rg_status rg_model_plan(const rg_model *m, const rg_batch *b, bool train, const char *fn, int32_t *cu_host,
                        rg_step_plan *plan) {
    const rg_model_config *c = &m->cfg;
    if (!b) return rg_fail(RG_ERR_INVALID_ARG, "%s: batch is NULL", fn);
    if (b->layout < RG_LAYOUT_PAD_MAX || b->layout > RG_LAYOUT_PACKED)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: unknown batch layout %d", fn, (int)b->layout);
    bool packed = b->layout == RG_LAYOUT_PACKED;
    if (b->n_seqs < 1 || b->n_rows != (packed ? 1 : b->n_seqs) || b->row_len < 1 ||
        (int64_t)b->n_rows * b->row_len != b->n_tokens)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: inconsistent batch shape (n_seqs %d, n_rows %d, row_len %d, "
                       "n_tokens %d)", fn, b->n_seqs, b->n_rows, b->row_len, b->n_tokens);
    if (!b->tokens || !b->targets || !b->position_ids || !b->cu_seqlens || !b->seqlens)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: batch arrays (tokens, targets, position_ids, cu_seqlens, "
                       "seqlens) must not be NULL", fn);
    if (!packed && b->row_len > c->max_seq_len)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: padded row length %d exceeds the model's max_seq_len %d", fn,
                       b->row_len, c->max_seq_len);
    int32_t B = b->n_seqs, max_len = 0;
    if (b->cu_seqlens[0] != 0 || b->cu_seqlens[B] != b->n_tokens)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: cu_seqlens must run from 0 to n_tokens %d (got %d..%d)", fn,
                       b->n_tokens, b->cu_seqlens[0], b->cu_seqlens[B]);
    for (int32_t s = 0; s < B; s++) {
        int32_t start = b->cu_seqlens[s], end = b->cu_seqlens[s + 1], len = b->seqlens[s];
        bool ok = packed ? (end - start == len) : (start == s * b->row_len && end == start + b->row_len);
        if (!ok || len < 1 || len > end - start)
            return rg_fail(RG_ERR_INVALID_ARG, "%s: sequence %d: cu_seqlens %d..%d and length %d do not match "
                           "the %s layout", fn, s, start, end, len, packed ? "packed" : "padded");
        if (len > max_len) max_len = len;
    }
    if (max_len > c->max_seq_len)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: a sequence of %d tokens exceeds the model's max_seq_len %d", fn,
                       max_len, c->max_seq_len);
    int64_t n_targets = 0;
    for (int32_t t = 0; t < b->n_tokens; t++) {
        int32_t tok = b->tokens[t], tg = b->targets[t], pos = b->position_ids[t];
        if (tok < 0 || tok >= c->vocab_size)
            return rg_fail(RG_ERR_INVALID_ARG, "%s: token %d at slot %d outside [0, %d)", fn, tok, t, c->vocab_size);
        if (tg != RG_IGNORE_INDEX && (tg < 0 || tg >= c->vocab_size))
            return rg_fail(RG_ERR_INVALID_ARG, "%s: target %d at slot %d outside [0, %d) and not RG_IGNORE_INDEX",
                           fn, tg, t, c->vocab_size);
        if (pos < 0 || pos >= c->max_seq_len)
            return rg_fail(RG_ERR_INVALID_ARG, "%s: position %d at slot %d outside [0, %d)", fn, pos, t,
                           c->max_seq_len);
        n_targets += tg != RG_IGNORE_INDEX;
    }
    plan->T = b->n_tokens;
    plan->train = train;
    plan->causal = train || m->eval_causal;
    plan->n_targets = n_targets;
    if (packed || plan->causal) {
        /* Packed: one block per sequence. Padded and causal: one block per row;
         * a real query never sees the padding after it. */
        plan->n_blocks = B;
        plan->cu_q_host = plan->cu_k_host = b->cu_seqlens;
        plan->max_q = plan->max_k = packed ? max_len : b->row_len;
        return RG_OK;
    }
    /* Padded and bidirectional: each row becomes two blocks, every query of the
     * row over the real keys, then no query over the pad keys, so that pad keys
     * are masked exactly as a key-padding mask would (cu_host has 2 * (2B + 1);
     * NULL while only checking). */
    plan->n_blocks = 2 * B;
    plan->max_q = plan->max_k = b->row_len;
    plan->cu_q_host = plan->cu_k_host = NULL;
    if (!cu_host) return RG_OK;
    int32_t *cq = cu_host, *ck = cu_host + 2 * B + 1, L = b->row_len;
    cq[0] = ck[0] = 0;
    for (int32_t s = 0; s < B; s++) {
        cq[2 * s + 1] = (s + 1) * L;
        cq[2 * s + 2] = (s + 1) * L;
        ck[2 * s + 1] = s * L + b->seqlens[s];
        ck[2 * s + 2] = (s + 1) * L;
    }
    plan->cu_q_host = cq;
    plan->cu_k_host = ck;
    return RG_OK;
}

/* Uploads a batch's metadata into the arena (sized for it already). */
static rg_status upload_meta(rg_model *m, const rg_batch *b, const rg_step_plan *plan) {
    const rg_backend_ops *op = m->be->ops;
    size_t tb = (size_t)plan->T * sizeof(int32_t), cb = ((size_t)plan->n_blocks + 1) * sizeof(int32_t);
    RG_TRY(op->upload(m->be, m->acts.tokens, b->tokens, tb));
    RG_TRY(op->upload(m->be, m->acts.pos, b->position_ids, tb));
    RG_TRY(op->upload(m->be, m->acts.targets, b->targets, tb));
    RG_TRY(op->upload(m->be, m->acts.cu_q, plan->cu_q_host, cb));
    return op->upload(m->be, m->acts.cu_k, plan->cu_k_host, cb);
}

/* Checks the micro-batches and sizes the arena and losses for all of them. */
static rg_status prepare(rg_model *m, const rg_batch *micro, int32_t n_micro, bool train, const char *fn,
                         int64_t *total_targets, int64_t *total_slots) {
    if (!m) return rg_fail(RG_ERR_INVALID_ARG, "%s: model is NULL", fn);
    if (!micro || n_micro < 1)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: expected n_micro >= 1 batches (got %d%s)", fn, n_micro,
                       micro ? "" : ", NULL array");
    int64_t maxT = 0, targets = 0, slots = 0;
    int32_t maxB = 0;
    for (int32_t i = 0; i < n_micro; i++) {
        rg_step_plan plan;
        rg_status s = rg_model_plan(m, &micro[i], train, fn, NULL, &plan);
        if (s != RG_OK) {
            if (n_micro == 1) return s;
            char why[512];
            snprintf(why, sizeof why, "%s", rg_last_error()); /* rg_fail must not read its own buffer */
            return rg_fail(s, "%s (micro-batch %d)", why, i);
        }
        if (plan.T > maxT) maxT = plan.T;
        if (micro[i].n_seqs > maxB) maxB = micro[i].n_seqs;
        targets += plan.n_targets;
        slots += plan.T;
    }
    RG_TRY(rg_model_ensure_acts(m, maxT, maxB, train));
    RG_TRY(rg_model_ensure_losses(m, slots));
    *total_targets = targets;
    *total_slots = slots;
    return RG_OK;
}

/* Runs forward (and backward when train) over every micro-batch, then reads
 * the losses back and sums them in slot order (deterministic). */
static rg_status run(rg_model *m, const rg_batch *micro, int32_t n_micro, bool train, int64_t total_targets,
                     int64_t total_slots, const char *fn, double *loss_sum) {
    float dloss = total_targets ? (float)(1.0 / (double)total_targets) : 0.0f;
    int64_t off = 0;
    for (int32_t i = 0; i < n_micro; i++) {
        rg_step_plan plan;
        RG_TRY(rg_model_plan(m, &micro[i], train, fn, m->cu_host, &plan));
        RG_TRY(upload_meta(m, &micro[i], &plan));
        RG_TRY(rg_model_forward(m, &plan, m->losses + off, dloss));
        if (train) RG_TRY(rg_model_backward(m, &plan));
        off += plan.T;
    }
    RG_TRY(m->be->ops->download(m->be, m->losses_host, m->losses, (size_t)total_slots * sizeof(float)));
    double sum = 0;
    for (int64_t t = 0; t < total_slots; t++) sum += m->losses_host[t];
    *loss_sum = sum;
    return RG_OK;
}

rg_status rg_model_eval_step(rg_model *m, const rg_batch *batch, rg_step_result *out) {
    if (!out) return rg_fail(RG_ERR_INVALID_ARG, "rg_model_eval_step: out is NULL");
    int64_t targets = 0, slots = 0;
    RG_TRY(prepare(m, batch, 1, false, "rg_model_eval_step", &targets, &slots));
    double loss;
    RG_TRY(run(m, batch, 1, false, targets, slots, "rg_model_eval_step", &loss));
    *out = (rg_step_result){.loss_sum = loss, .n_targets = targets};
    return RG_OK;
}

static rg_status grads(rg_model *m, const rg_batch *micro, int32_t n_micro, rg_step_result *out, const char *fn) {
    if (!out) return rg_fail(RG_ERR_INVALID_ARG, "%s: out is NULL", fn);
    int64_t targets = 0, slots = 0;
    RG_TRY(prepare(m, micro, n_micro, true, fn, &targets, &slots));
    RG_TRY(m->be->ops->zero(m->be, m->grads, (size_t)m->n_alloc * sizeof(float)));
    double loss, sq;
    RG_TRY(run(m, micro, n_micro, true, targets, slots, fn, &loss));
    RG_TRY(m->be->ops->sum_squares(m->be, &sq, m->grads, m->n_alloc));
    *out = (rg_step_result){.loss_sum = loss, .n_targets = targets, .grad_norm = sqrt(sq)};
    return RG_OK;
}

rg_status rg_model_grads(rg_model *m, const rg_batch *micro, int32_t n_micro, rg_step_result *out) {
    return grads(m, micro, n_micro, out, "rg_model_grads");
}

rg_status rg_model_train_step(rg_model *m, const rg_batch *micro, int32_t n_micro, rg_step_result *out) {
    rg_step_result r;
    RG_TRY(grads(m, micro, n_micro, &r, "rg_model_train_step"));
    if (!isfinite(r.grad_norm))
        return rg_fail(RG_ERR_INVALID_ARG, "rg_model_train_step: the gradient norm is %g (loss %g over %lld "
                       "targets); no update was made", r.grad_norm, r.loss_sum, (long long)r.n_targets);
    /* torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1. */
    float scale = 1.0f;
    if (m->opt.clip_norm > 0) {
        double coef = m->opt.clip_norm / (r.grad_norm + 1e-6);
        if (coef < 1.0) scale = (float)coef;
    }
    r.lr = rg_optim_lr(&m->opt, m->opt_step);
    RG_TRY(rg_model_apply_update(m, r.lr, scale));
    m->opt_step++;
    *out = r;
    return RG_OK;
}

rg_status rg_model_logits(rg_model *m, const rg_batch *batch, float *out) {
    if (!out) return rg_fail(RG_ERR_INVALID_ARG, "rg_model_logits: out is NULL");
    int64_t targets = 0, slots = 0;
    RG_TRY(prepare(m, batch, 1, false, "rg_model_logits", &targets, &slots));
    rg_step_plan plan;
    RG_TRY(rg_model_plan(m, batch, false, "rg_model_logits", m->cu_host, &plan));
    RG_TRY(upload_meta(m, batch, &plan));
    RG_TRY(rg_model_forward(m, &plan, m->losses, 0.0f));
    return rg_buffer_download_f32(m->be, out, m->acts.logits, m->be->ops->act_dtype,
                                  (size_t)plan.T * m->cfg.vocab_size);
}
