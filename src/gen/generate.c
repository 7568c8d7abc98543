/* generate.c — the generation engine (ragged.h section 9): a FIFO of waiting
 * requests, up to max_batch running sequences over a paged KV cache, and a
 * step that prefills the newly admitted prompts as one packed batch, then
 * decodes one token for every sequence that was already running
 * (continuous batching: finished sequences leave at once, waiting ones join
 * at the next step). Ops run through the model (forward_kv.c). */
#include "model/model.h"
#include "gen/sample.h"
#include "core/alloc.h"
#include "core/rng.h"
#include "core/status.h"
#include "core/timer.h"
#include <string.h>

typedef struct gen_req {
    int32_t *prompt;          /* (len) */
    int32_t len, max_new, eot;
    rg_sampling sampling;
    rg_rng rng;
    int32_t *out;             /* (max_new) generated tokens */
    int32_t n_out;
    rg_gen_finish finish;
} gen_req;

struct rg_generator {
    rg_model *m;
    rg_generator_opts opts;
    rg_kv_cache *kv;
    rg_gen_scratch *scratch;
    rg_sample_ws ws;
    int32_t V, max_len;
    gen_req **reqs;           /* (n_reqs) by id; NULL once released */
    int32_t n_reqs, cap_reqs;
    int32_t *waiting;         /* FIFO of ids: waiting[w_head..n_waiting) */
    int32_t w_head, n_waiting, cap_waiting;
    int32_t *running;         /* (max_batch) ids in admission order */
    int32_t n_running;
    /* per-pass host scratch */
    int32_t *ids, *counts, *cu; /* (max_batch), (max_batch), (max_batch + 1) */
    int32_t *tokens;          /* (max_prefill_tokens) */
    float *logits;            /* (max_batch, V) */
    int32_t *picked;          /* (max_batch) the backend's greedy picks */
};

static int32_t blocks_for(int64_t tokens, int32_t bs) { return (int32_t)((tokens + bs - 1) / bs); }

rg_status rg_generator_create(rg_model *m, const rg_generator_opts *opts, rg_generator **out) {
    const char *fn = "rg_generator_create";
    if (!out) return rg_fail(RG_ERR_INVALID_ARG, "%s: out is NULL", fn);
    *out = NULL;
    if (!m || !opts) return rg_fail(RG_ERR_INVALID_ARG, "%s: model or opts is NULL", fn);
    const rg_model_config *c = &m->cfg;
    rg_generator_opts o = *opts;
    if (o.max_batch < 1) return rg_fail(RG_ERR_INVALID_ARG, "%s: max_batch = %d, expected >= 1", fn, o.max_batch);
    if (o.block_size == 0) o.block_size = RG_KV_BLOCK_SIZE_DEFAULT;
    if (o.block_size < 1 || o.n_blocks < 0)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: block_size = %d, n_blocks = %d, expected >= 1 and >= 0", fn,
                       o.block_size, o.n_blocks);
    if (o.n_blocks == 0) {
        int64_t nb = (int64_t)o.max_batch * blocks_for(c->max_seq_len, o.block_size);
        if (nb > INT32_MAX) return rg_fail(RG_ERR_OVERFLOW, "%s: the default pool of %lld blocks overflows", fn,
                                           (long long)nb);
        o.n_blocks = (int32_t)nb;
    }
    if (o.max_prefill_tokens == 0) o.max_prefill_tokens = c->max_seq_len;
    if (o.max_prefill_tokens < c->max_seq_len)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: max_prefill_tokens = %d, expected >= max_seq_len %d (or 0)", fn,
                       o.max_prefill_tokens, c->max_seq_len);
    if (o.max_prefill_tokens < o.max_batch) o.max_prefill_tokens = o.max_batch;

    rg_generator *g;
    RG_TRY(rg_calloc((void **)&g, 1, sizeof *g, "generator"));
    g->m = m;
    g->opts = o;
    g->V = c->vocab_size;
    g->max_len = c->max_seq_len;
    rg_status s = rg_gen_scratch_init(m, o.max_prefill_tokens, o.max_batch, &g->scratch);
    if (s == RG_OK && o.no_graph) rg_gen_scratch_use_graphs(g->scratch, false);
    if (s == RG_OK)
        s = rg_kv_cache_init(m->be, c->n_layers, c->n_kv_heads, m->hd, o.block_size, o.n_blocks, &g->kv);
    if (s == RG_OK) s = rg_sample_ws_init(g->V, &g->ws);
    if (s == RG_OK) s = rg_alloc((void **)&g->running, (size_t)o.max_batch, sizeof(int32_t), "generator batch");
    if (s == RG_OK) s = rg_alloc((void **)&g->ids, (size_t)o.max_batch, sizeof(int32_t), "generator ids");
    if (s == RG_OK) s = rg_alloc((void **)&g->counts, (size_t)o.max_batch, sizeof(int32_t), "generator counts");
    if (s == RG_OK) s = rg_alloc((void **)&g->cu, (size_t)o.max_batch + 1, sizeof(int32_t), "generator cu");
    if (s == RG_OK) s = rg_alloc((void **)&g->tokens, (size_t)o.max_prefill_tokens, sizeof(int32_t), "generator tokens");
    if (s == RG_OK) s = rg_alloc((void **)&g->logits, (size_t)o.max_batch * (size_t)g->V, sizeof(float), "generator logits");
    if (s == RG_OK) s = rg_alloc((void **)&g->picked, (size_t)o.max_batch, sizeof(int32_t), "generator picks");
    if (s != RG_OK) { rg_generator_free(g); return s; }
    *out = g;
    return RG_OK;
}

static void req_free(gen_req *r) {
    if (!r) return;
    rg_free(r->prompt);
    rg_free(r->out);
    rg_free(r);
}

void rg_generator_free(rg_generator *g) {
    if (!g) return;
    for (int32_t i = 0; i < g->n_reqs; i++) req_free(g->reqs[i]);
    rg_free(g->reqs);
    rg_free(g->waiting);
    rg_free(g->running);
    rg_free(g->ids);
    rg_free(g->counts);
    rg_free(g->cu);
    rg_free(g->tokens);
    rg_free(g->logits);
    rg_free(g->picked);
    rg_sample_ws_free(&g->ws);
    rg_kv_cache_free(g->kv);
    rg_gen_scratch_free(g->scratch);
    rg_free(g);
}

/* Grows an int32/pointer array to hold n + 1 entries. */
static rg_status grow(void **arr, int32_t *cap, int32_t n, size_t size, const char *what) {
    if (n < *cap) return RG_OK;
    if (*cap > INT32_MAX / 2) return rg_fail(RG_ERR_OVERFLOW, "%s: too many requests", what);
    int32_t nc = *cap ? *cap * 2 : 16;
    void *p;
    RG_TRY(rg_alloc(&p, (size_t)nc, size, what));
    if (n) memcpy(p, *arr, (size_t)n * size);
    rg_free(*arr);
    *arr = p;
    *cap = nc;
    return RG_OK;
}

rg_status rg_generator_add(rg_generator *g, const rg_gen_request *req, int32_t *id) {
    const char *fn = "rg_generator_add";
    if (!g || !req || !id) return rg_fail(RG_ERR_INVALID_ARG, "%s: generator, request or id is NULL", fn);
    if (req->prompt_len < 1 || !req->prompt)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: empty prompt (prompt_len = %d); a request needs at least one "
                       "token", fn, req->prompt_len);
    if (req->prompt_len > g->max_len)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: prompt of %d tokens is longer than the model's max_seq_len "
                       "(n_positions) %d", fn, req->prompt_len, g->max_len);
    if (req->max_new_tokens < 1)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: max_new_tokens = %d, expected >= 1", fn, req->max_new_tokens);
    if ((int64_t)req->prompt_len + req->max_new_tokens > g->max_len)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: prompt of %d tokens + max_new_tokens %d = %lld exceeds the "
                       "model's max_seq_len (n_positions) %d (no truncation; lower max_new_tokens to %d)", fn,
                       req->prompt_len, req->max_new_tokens, (long long)req->prompt_len + req->max_new_tokens,
                       g->max_len, g->max_len - req->prompt_len);
    if (req->eot_id < -1 || req->eot_id >= g->V)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: eot_id = %d, expected -1 or an id in [0, %d)", fn, req->eot_id, g->V);
    for (int32_t i = 0; i < req->prompt_len; i++)
        if (req->prompt[i] < 0 || req->prompt[i] >= g->V)
            return rg_fail(RG_ERR_INVALID_ARG, "%s: prompt token %d at index %d outside [0, %d)", fn,
                           req->prompt[i], i, g->V);
    RG_TRY(rg_sampling_validate(&req->sampling));
    int32_t bs = rg_kv_cache_block_size(g->kv), pool = rg_kv_cache_n_blocks(g->kv);
    int32_t need = blocks_for((int64_t)req->prompt_len + req->max_new_tokens - 1, bs);
    if (need > pool)
        return rg_fail(RG_ERR_EXHAUSTED, "%s: kv cache: the request needs %d blocks of %d tokens (prompt %d + "
                       "max_new_tokens %d - 1), the whole pool has %d", fn, need, bs, req->prompt_len,
                       req->max_new_tokens, pool);
    RG_TRY(grow((void **)&g->reqs, &g->cap_reqs, g->n_reqs, sizeof *g->reqs, "generator requests"));
    RG_TRY(grow((void **)&g->waiting, &g->cap_waiting, g->n_waiting, sizeof *g->waiting, "generator queue"));
    gen_req *r;
    RG_TRY(rg_calloc((void **)&r, 1, sizeof *r, "generator request"));
    rg_status s = rg_alloc((void **)&r->prompt, (size_t)req->prompt_len, sizeof(int32_t), "request prompt");
    if (s == RG_OK) s = rg_alloc((void **)&r->out, (size_t)req->max_new_tokens, sizeof(int32_t), "request output");
    if (s != RG_OK) { req_free(r); return s; }
    memcpy(r->prompt, req->prompt, sizeof(int32_t) * (size_t)req->prompt_len);
    r->len = req->prompt_len;
    r->max_new = req->max_new_tokens;
    r->eot = req->eot_id;
    r->sampling = req->sampling;
    rg_rng_seed(&r->rng, req->sampling.seed);
    r->finish = RG_GEN_RUNNING;
    /* Compact the FIFO when its head has moved past half of it. */
    if (g->w_head > 0 && g->w_head * 2 >= g->n_waiting) {
        memmove(g->waiting, g->waiting + g->w_head, sizeof(int32_t) * (size_t)(g->n_waiting - g->w_head));
        g->n_waiting -= g->w_head;
        g->w_head = 0;
    }
    *id = g->n_reqs;
    g->reqs[g->n_reqs++] = r;
    g->waiting[g->n_waiting++] = *id;
    return RG_OK;
}

/* Reports the next token of request id and ends the request (freeing its
 * blocks) when it is done: sampled from its logits row, or, with logits NULL,
 * the backend's greedy pick. */
static rg_status take_token(rg_generator *g, int32_t id, float *logits, int32_t picked, int32_t *finished) {
    gen_req *r = g->reqs[id];
    int32_t tok = picked;
    if (logits) {
        rg_sample_penalize(&g->ws, logits, r->sampling.repetition_penalty, r->prompt, r->len, r->out, r->n_out);
        tok = rg_sample_pick(&g->ws, &r->sampling, &r->rng, logits);
    }
    r->out[r->n_out++] = tok;
    if (tok == r->eot) r->finish = RG_GEN_EOT;
    else if (r->n_out == r->max_new) r->finish = RG_GEN_LENGTH;
    if (g->opts.on_token) g->opts.on_token(g->opts.user, id, r->n_out - 1, tok, r->finish);
    if (r->finish == RG_GEN_RUNNING) return RG_OK;
    (*finished)++;
    return rg_kv_cache_remove_seq(g->kv, id);
}

/* One pass over the n sequences of g->ids (tokens and cu already set), then
 * one token for each. When all of them decode greedily without a penalty the
 * backend picks the tokens and n ints come back instead of n * V logits (the
 * same tokens: both take the first argmax). */
static rg_status pass(rg_generator *g, bool prefill, int32_t n, int32_t *finished) {
    bool greedy = true;
    for (int32_t b = 0; b < n && greedy; b++) {
        const rg_sampling *sp = &g->reqs[g->ids[b]]->sampling;
        greedy = rg_sample_is_greedy(sp) && sp->repetition_penalty == 1.0f;
    }
    RG_TRY(rg_model_forward_kv(g->m, g->scratch, g->kv, prefill, n, g->ids, g->cu, g->tokens,
                               greedy ? NULL : g->logits));
    if (greedy) RG_TRY(rg_gen_scratch_argmax(g->scratch, g->picked));
    if (prefill) {
        for (int32_t b = 0; b < n; b++) g->running[g->n_running + b] = g->ids[b];
        g->n_running += n;
    }
    for (int32_t b = 0; b < n; b++)
        RG_TRY(take_token(g, g->ids[b], greedy ? NULL : g->logits + (size_t)b * g->V, greedy ? g->picked[b] : -1,
                          finished));
    return RG_OK;
}

/* Drops finished requests from the running list, keeping order. */
static void compact_running(rg_generator *g) {
    int32_t k = 0;
    for (int32_t i = 0; i < g->n_running; i++)
        if (g->reqs[g->running[i]]->finish == RG_GEN_RUNNING) g->running[k++] = g->running[i];
    g->n_running = k;
}

/* Admits waiting requests in FIFO order while a slot, the prefill budget and
 * the pool allow; returns how many (their ids in g->ids, tokens packed). */
static rg_status admit(rg_generator *g, int32_t *n_out) {
    int32_t n = 0, T = 0, bs = rg_kv_cache_block_size(g->kv), free_blocks = rg_kv_cache_n_free_blocks(g->kv);
    g->cu[0] = 0;
    while (g->w_head < g->n_waiting && g->n_running + n < g->opts.max_batch) {
        int32_t id = g->waiting[g->w_head];
        gen_req *r = g->reqs[id];
        int32_t need = blocks_for((int64_t)r->len + r->max_new - 1, bs);
        if (T + r->len > g->opts.max_prefill_tokens || need > free_blocks) break;
        RG_TRY(rg_kv_cache_add_seq(g->kv, id));
        rg_status s = rg_kv_cache_reserve(g->kv, id, r->len + r->max_new - 1);
        if (s != RG_OK) { rg_kv_cache_remove_seq(g->kv, id); return s; }
        free_blocks -= need;
        memcpy(g->tokens + T, r->prompt, sizeof(int32_t) * (size_t)r->len);
        T += r->len;
        g->ids[n++] = id;
        g->cu[n] = T;
        g->w_head++;
    }
    *n_out = n;
    return RG_OK;
}

rg_status rg_generator_step(rg_generator *g, rg_gen_step_stats *stats) {
    if (!g) return rg_fail(RG_ERR_INVALID_ARG, "rg_generator_step: generator is NULL");
    rg_gen_step_stats st = {0};
    /* The sequences already running decode after the prefill; remember them. */
    int32_t n_old = g->n_running;

    double t0 = rg_now();
    int32_t n_new = 0;
    RG_TRY(admit(g, &n_new));
    if (n_new > 0) {
        for (int32_t b = 0; b < n_new; b++) g->counts[b] = g->cu[b + 1] - g->cu[b];
        RG_TRY(rg_kv_cache_append(g->kv, n_new, g->ids, g->counts));
        RG_TRY(pass(g, true, n_new, &st.finished));
        st.prefill_seqs = n_new;
        st.prefill_tokens = g->cu[n_new];
    }
    double t1 = rg_now();
    st.prefill_s = n_new ? t1 - t0 : 0;

    /* Decode: the sequences that were running before this step, still running. */
    int32_t n_dec = 0;
    for (int32_t i = 0; i < n_old; i++) {
        int32_t id = g->running[i];
        gen_req *r = g->reqs[id];
        if (r->finish != RG_GEN_RUNNING) continue;
        g->ids[n_dec] = id;
        g->tokens[n_dec] = r->out[r->n_out - 1];
        g->cu[n_dec] = n_dec;
        n_dec++;
    }
    if (n_dec > 0) {
        g->cu[n_dec] = n_dec;
        for (int32_t b = 0; b < n_dec; b++) g->counts[b] = 1;
        RG_TRY(rg_kv_cache_append(g->kv, n_dec, g->ids, g->counts));
        RG_TRY(pass(g, false, n_dec, &st.finished));
        st.decode_tokens = n_dec;
        st.decode_s = rg_now() - t1;
    }
    compact_running(g);
    st.running = g->n_running;
    st.waiting = g->n_waiting - g->w_head;
    if (stats) *stats = st;
    return RG_OK;
}

int32_t rg_generator_n_pending(const rg_generator *g) {
    return g ? g->n_running + g->n_waiting - g->w_head : 0;
}

rg_status rg_generator_tokens(const rg_generator *g, int32_t id, const int32_t **tokens, int32_t *n,
                              rg_gen_finish *finish) {
    const char *fn = "rg_generator_tokens";
    if (!g || !tokens || !n) return rg_fail(RG_ERR_INVALID_ARG, "%s: generator, tokens or n is NULL", fn);
    if (id < 0 || id >= g->n_reqs || !g->reqs[id])
        return rg_fail(RG_ERR_INVALID_ARG, "%s: unknown request %d", fn, id);
    const gen_req *r = g->reqs[id];
    *tokens = r->out;
    *n = r->n_out;
    if (finish) *finish = r->finish;
    return RG_OK;
}

rg_status rg_generator_release(rg_generator *g, int32_t id) {
    const char *fn = "rg_generator_release";
    if (!g) return rg_fail(RG_ERR_INVALID_ARG, "%s: generator is NULL", fn);
    if (id < 0 || id >= g->n_reqs || !g->reqs[id])
        return rg_fail(RG_ERR_INVALID_ARG, "%s: unknown request %d", fn, id);
    if (g->reqs[id]->finish == RG_GEN_RUNNING)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: request %d has not finished", fn, id);
    req_free(g->reqs[id]);
    g->reqs[id] = NULL;
    return RG_OK;
}
