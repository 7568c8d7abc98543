/* acts.c — the activation arena: one backend allocation carved into the
 * buffers of rg_acts for a capacity of T slots and B sequences, plus the
 * per-step losses. Reallocated only when a step needs more than the capacity. */
#include "model/model.h"
#include "core/alloc.h"
#include "core/status.h"
#include <stdio.h>
#include <string.h>

#define RG_ARENA_ALIGN 256

typedef struct cursor {
    char *base;               /* NULL while only measuring */
    size_t off;
    bool overflow;
} cursor;

/* Next n elements of size bytes each. */
static void *carve(cursor *c, int64_t n, size_t size) {
    size_t bytes;
    if (n < 0 || !rg_mul_ok((size_t)n, size, &bytes) || bytes > SIZE_MAX / 2 || c->off > SIZE_MAX / 2) {
        c->overflow = true;
        return NULL;
    }
    size_t at = c->off;
    c->off = (c->off + bytes + RG_ARENA_ALIGN - 1) / RG_ARENA_ALIGN * RG_ARENA_ALIGN;
    return c->base ? c->base + at : NULL;
}

/* Lays the arena out (or measures it when c->base is NULL). */
static void layout(rg_model *m, cursor *c, int64_t T, int32_t B, bool train, rg_acts *a,
                   rg_layer_acts *layers) {
    size_t as = m->act_size, fs = sizeof(float), is = sizeof(int32_t);
    int32_t C = m->C, H = m->H, Q = m->Q, h = m->cfg.n_heads;
    memset(a, 0, sizeof *a);
    a->tokens = carve(c, T, is);
    a->pos = carve(c, T, is);
    a->targets = carve(c, T, is);
    a->cu_q = carve(c, 2 * (int64_t)B + 1, is);
    a->cu_k = carve(c, 2 * (int64_t)B + 1, is);
    a->x0 = carve(c, T * C, as);
    int32_t n_sets = train ? m->cfg.n_layers : 1;
    for (int32_t l = 0; l < n_sets; l++) {
        rg_layer_acts *L = &layers[l];
        L->ln1 = carve(c, T * C, as);
        L->mean1 = carve(c, T, fs);
        L->rstd1 = carve(c, T, fs);
        L->qkv = carve(c, T * Q, as);
        L->atty = carve(c, T * C, as);
        L->lse = train ? carve(c, T * h, fs) : NULL;
        L->x1 = carve(c, T * C, as);
        L->ln2 = carve(c, T * C, as);
        L->mean2 = carve(c, T, fs);
        L->rstd2 = carve(c, T, fs);
        L->fch = carve(c, T * H, as);
        L->fch_gelu = carve(c, T * H, as);
        /* In eval the block's output overwrites its input (dead once x1 exists). */
        L->x2 = train ? carve(c, T * C, as) : a->x0;
    }
    a->layer = layers;
    if (m->cfg.final_ln) {
        a->lnf = carve(c, T * C, as);
        a->meanf = carve(c, T, fs);
        a->rstdf = carve(c, T, fs);
    }
    a->logits = carve(c, T * m->cfg.vocab_size, as);
    if (train) {
        a->dres = carve(c, T * C, as);
        a->dtmp = carve(c, T * C, as);
        a->dbig = carve(c, T * (H > Q ? H : Q), as);
    }
}

rg_status rg_model_ensure_acts(rg_model *m, int64_t T, int32_t B, bool train) {
    if (m->arena && T <= m->cap_tokens && B <= m->cap_seqs && (!train || m->cap_train)) return RG_OK;
    /* Grow to cover both the old and the new demand. */
    if (m->arena) {
        if (m->cap_tokens > T) T = m->cap_tokens;
        if (m->cap_seqs > B) B = m->cap_seqs;
        train = train || m->cap_train;
    }
    cursor c = {0};
    rg_acts a;
    layout(m, &c, T, B, train, &a, m->layer_store);
    if (c.overflow) return rg_fail(RG_ERR_OVERFLOW, "rg_model: activations for %lld slots overflow size_t", (long long)T);
    void *arena;
    int32_t *cu_host;
    RG_TRY(rg_alloc((void **)&cu_host, 2 * (2 * (size_t)B + 1), sizeof *cu_host, "rg_model: host cu_seqlens"));
    rg_status s = rg_buffer_alloc(m->be, c.off, &arena);
    if (s != RG_OK) {
        rg_free(cu_host);
        char why[256];
        snprintf(why, sizeof why, "%s", rg_last_error()); /* rg_fail must not read its own buffer */
        return rg_fail(s, "rg_model: cannot allocate %zu bytes of activations for %lld slots, %d sequences (%s)",
                       c.off, (long long)T, B, why);
    }
    rg_buffer_free(m->be, m->arena);
    rg_free(m->cu_host);
    m->arena = arena;
    m->cu_host = cu_host;
    m->arena_bytes = c.off;
    m->cap_tokens = T;
    m->cap_seqs = B;
    m->cap_train = train;
    cursor w = {.base = arena};
    layout(m, &w, T, B, train, &m->acts, m->layer_store);
    return RG_OK;
}

rg_status rg_model_ensure_losses(rg_model *m, int64_t n) {
    if (n <= m->losses_cap) return RG_OK;
    float *dev, *host;
    RG_TRY(rg_alloc((void **)&host, (size_t)n, sizeof *host, "rg_model: host losses"));
    rg_status s = rg_buffer_alloc(m->be, (size_t)n * sizeof(float), (void **)&dev);
    if (s != RG_OK) { rg_free(host); return s; }
    rg_buffer_free(m->be, m->losses);
    rg_free(m->losses_host);
    m->losses = dev;
    m->losses_host = host;
    m->losses_cap = n;
    return RG_OK;
}

rg_status rg_model_reserve(rg_model *m, int64_t max_tokens, int32_t max_seqs, bool train) {
    if (!m) return rg_fail(RG_ERR_INVALID_ARG, "rg_model_reserve: model is NULL");
    if (max_tokens < 1 || max_tokens > INT32_MAX)
        return rg_fail(RG_ERR_INVALID_ARG, "rg_model_reserve: max_tokens = %lld, expected 1..%d",
                       (long long)max_tokens, INT32_MAX);
    if (max_seqs < 1 || max_seqs > max_tokens)
        return rg_fail(RG_ERR_INVALID_ARG, "rg_model_reserve: max_seqs = %d, expected 1..max_tokens (%lld)",
                       max_seqs, (long long)max_tokens);
    RG_TRY(rg_model_ensure_acts(m, max_tokens, max_seqs, train));
    return rg_model_ensure_losses(m, max_tokens);
}
