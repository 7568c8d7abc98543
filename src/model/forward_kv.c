/* forward_kv.c — the model's generation passes over a paged KV cache:
 * prefill (the prompts of a step as one packed batch, varlen causal attention
 * over the new tokens, K/V written into the cache) and decode (one token per
 * sequence, attention over its cached blocks). Only the last row of each
 * sequence goes through the final LayerNorm and the LM head.
 *
 * Decode steps replay a recorded graph of their ops where the backend has
 * them (CUDA): per batch size S, the first step with a given layout runs the
 * ops directly (which also grows any workspace and warms the kernels), the
 * second records them and launches the recording, later ones only upload the
 * step's tokens, positions and cache tables into the same buffers and launch.
 * A recording bakes in every address and size its ops were given: the
 * scratch (fixed per S), the model's parameters, the cache's pools and the
 * device copy of its batch tables, whose layout depends on S and the tables'
 * width only (fixed here at the blocks of max_seq_len). So a graph is reused
 * while (cache, pool, table buffer, width) are the same; a grown table
 * buffer gives a new address, and the graph is recorded again. The backend
 * itself reports a graph stale when a workspace of its own has moved.
 * RG_NO_GRAPH=1 (or rg_gen_scratch_use_graphs) runs every op directly. */
#include "model/model.h"
#include "gen/kv_cache.h"
#include "core/alloc.h"
#include "core/status.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GEN_ALIGN 256

struct rg_gen_scratch {
    rg_model *m;
    int64_t cap_tokens;
    int32_t cap_seqs;
    void *arena;                 /* backend memory, carved below */
    int32_t *meta;               /* device: tokens (T) | pos (T) | cu (S+1) | rows (S) */
    int32_t *meta_host;          /* the same on the host, uploaded once per pass */
    void *x, *qkv, *atty, *x1, *fch;  /* (T, C|Q|C|C|H) act dtype */
    void *last, *logits;         /* (S, C), (S, V) */
    float *logits_f32;           /* (S, V) when the act dtype is not fp32: converted before the download */
    int32_t *argmax;             /* (S) greedy picks, read back instead of the logits */
    int32_t n_last;              /* sequences of the last pass (rows of logits) */
    bool use_graphs;             /* decode through recorded graphs when the backend has them */
    struct dec_graph *graphs;    /* (cap_seqs + 1) by batch size S */
    rg_gen_graph_stats gstats;
};

/* The decode graph of one batch size, and what it baked in from the cache. */
typedef struct dec_graph {
    void *h;                     /* the backend's graph; NULL: none yet */
    bool seen;                   /* a direct step ran with this key: record at the next one */
    bool broken;                 /* recording failed with this key: run directly until it changes */
    const rg_kv_cache *kv;
    const void *pool, *tables;
    int32_t width, block_size;
} dec_graph;

static size_t meta_len(int64_t T, int32_t S) { return 2 * (size_t)T + 2 * (size_t)S + 1; }

/* Next n elements of size bytes at *off (measuring when base is NULL). */
static void *carve(char *base, size_t *off, int64_t n, size_t size) {
    size_t at = *off;
    *off += ((size_t)n * size + GEN_ALIGN - 1) / GEN_ALIGN * GEN_ALIGN;
    return base ? base + at : NULL;
}

static size_t layout(rg_gen_scratch *g, char *base) {
    const rg_model *m = g->m;
    int64_t T = g->cap_tokens, S = g->cap_seqs;
    size_t as = m->act_size, off = 0;
    g->meta = carve(base, &off, (int64_t)meta_len(T, g->cap_seqs), sizeof(int32_t));
    g->x = carve(base, &off, T * m->C, as);
    g->qkv = carve(base, &off, T * m->Q, as);
    g->atty = carve(base, &off, T * m->C, as);
    g->x1 = carve(base, &off, T * m->C, as);
    g->fch = carve(base, &off, T * m->H, as);
    g->last = carve(base, &off, S * m->C, as);
    g->logits = carve(base, &off, S * m->cfg.vocab_size, as);
    g->logits_f32 = m->be->ops->act_dtype == RG_DTYPE_F32 ? NULL
                                                          : carve(base, &off, S * m->cfg.vocab_size, sizeof(float));
    g->argmax = carve(base, &off, S, sizeof(int32_t));
    return off;
}

/* Generation uses these ops; a backend still missing one is refused here,
 * before any work, rather than crashing inside a step. */
static rg_status check_ops(const rg_backend *be) {
    const rg_backend_ops *o = be->ops;
    struct { bool present; const char *name; } need[] = {
        {o->embedding_forward != NULL, "embedding_forward"}, {o->linear_infer != NULL, "linear_infer"},
        {o->attn_forward != NULL, "attn_forward"}, {o->attn_decode != NULL, "attn_decode"},
        {o->kv_write != NULL, "kv_write"}, {o->gather_rows != NULL, "gather_rows"},
        {o->argmax_rows != NULL, "argmax_rows"}, {o->convert != NULL, "convert"},
    };
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (!need[i].present)
            return rg_fail(RG_ERR_UNSUPPORTED, "generation: backend %s lacks %s", o->name, need[i].name);
    return RG_OK;
}

rg_status rg_gen_scratch_init(rg_model *m, int64_t max_tokens, int32_t max_seqs, rg_gen_scratch **out) {
    const char *fn = "rg_gen_scratch_init";
    *out = NULL;
    RG_TRY(check_ops(m->be));
    if (max_seqs < 1 || max_tokens < max_seqs || max_tokens > INT32_MAX / 4)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: max_tokens = %lld, max_seqs = %d, expected 1 <= max_seqs <= "
                       "max_tokens <= %d", fn, (long long)max_tokens, max_seqs, INT32_MAX / 4);
    /* Every carve is below T * max(Q, H, V) elements; check that product once. */
    int64_t widest = m->Q > m->H ? m->Q : m->H;
    if (m->cfg.vocab_size > widest) widest = m->cfg.vocab_size;
    size_t probe;
    if (!rg_mul_ok((size_t)max_tokens, (size_t)widest * 16 * m->act_size, &probe))
        return rg_fail(RG_ERR_OVERFLOW, "%s: scratch for %lld tokens overflows size_t", fn, (long long)max_tokens);
    rg_gen_scratch *g;
    RG_TRY(rg_calloc((void **)&g, 1, sizeof *g, "generation scratch"));
    g->m = m;
    g->cap_tokens = max_tokens;
    g->cap_seqs = max_seqs;
    const char *env = getenv("RG_NO_GRAPH");
    g->use_graphs = !(env && *env && strcmp(env, "0") != 0);
    size_t bytes = layout(g, NULL);
    rg_status s = rg_alloc((void **)&g->meta_host, meta_len(max_tokens, max_seqs), sizeof(int32_t),
                           "generation metadata");
    if (s == RG_OK) s = rg_calloc((void **)&g->graphs, (size_t)max_seqs + 1, sizeof *g->graphs, "decode graphs");
    if (s == RG_OK) s = rg_buffer_alloc(m->be, bytes, &g->arena);
    if (s != RG_OK) { rg_gen_scratch_free(g); return s; }
    layout(g, g->arena);
    *out = g;
    return RG_OK;
}

static void drop_graph(rg_gen_scratch *g, dec_graph *dg) {
    if (dg->h) g->m->be->ops->graph_free(g->m->be, dg->h);
    *dg = (dec_graph){0};
}

void rg_gen_scratch_free(rg_gen_scratch *g) {
    if (!g) return;
    if (g->graphs)
        for (int32_t S = 0; S <= g->cap_seqs; S++) drop_graph(g, &g->graphs[S]);
    rg_free(g->graphs);
    rg_buffer_free(g->m->be, g->arena);
    rg_free(g->meta_host);
    rg_free(g);
}

/* Host checks and metadata: tokens, positions (the last nn of each sequence),
 * cu, rows of the last tokens; *T = total new tokens. */
static rg_status fill_meta(rg_gen_scratch *g, const rg_kv_cache *kv, bool prefill, int32_t n, const int32_t *ids,
                           const int32_t *cu, const int32_t *tokens, int64_t *T_out) {
    const char *fn = "rg_model_forward_kv";
    const rg_model_config *c = &g->m->cfg;
    if (n < 1 || n > g->cap_seqs)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: %d sequences, expected 1..%d", fn, n, g->cap_seqs);
    if (cu[0] != 0) return rg_fail(RG_ERR_INVALID_ARG, "%s: cu_new[0] = %d, expected 0", fn, cu[0]);
    int64_t T = cu[n];
    if (T < n || T > g->cap_tokens)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: %lld new tokens, expected %d..%lld", fn, (long long)T, n,
                       (long long)g->cap_tokens);
    int32_t *htok = g->meta_host, *hpos = htok + T, *hcu = hpos + T, *hrows = hcu + n + 1;
    for (int32_t b = 0; b < n; b++) {
        int32_t nn = cu[b + 1] - cu[b], len = rg_kv_cache_seq_len(kv, ids[b]);
        if (nn < 1 || (!prefill && nn != 1) || (prefill && len != nn) || len > c->max_seq_len)
            return rg_fail(RG_ERR_INVALID_ARG, "%s: sequence %d brings %d new tokens with cache length %d (%s; "
                           "max_seq_len %d)", fn, ids[b], nn, len,
                           prefill ? "prefill: all of it, at least one" : "decode: exactly one", c->max_seq_len);
        for (int32_t i = 0; i < nn; i++) {
            int32_t t = cu[b] + i, tok = tokens[t];
            if (tok < 0 || tok >= c->vocab_size)
                return rg_fail(RG_ERR_INVALID_ARG, "%s: token %d at index %d outside [0, %d)", fn, tok, t,
                               c->vocab_size);
            htok[t] = tok;
            hpos[t] = len - nn + i;
        }
        hcu[b] = cu[b];
        hrows[b] = cu[b + 1] - 1;
    }
    hcu[n] = (int32_t)T;
    *T_out = T;
    return RG_OK;
}

/* The ops of a pass, from the embedding to the logits (S, V) in g->logits;
 * the metadata and the cache's batch are already on the device. Recorded
 * as they are into a decode graph, so nothing here may take a per-step value
 * from the host in a decode pass. */
static rg_status run_ops(rg_gen_scratch *g, rg_kv_cache *kv, bool prefill, int64_t T, int32_t S) {
    rg_model *m = g->m;
    const rg_model_config *c = &m->cfg;
    rg_backend *be = m->be;
    const rg_backend_ops *op = be->ops;
    const int C = m->C, H = m->H, Q = m->Q, V = c->vocab_size;
    int32_t *tok = g->meta, *pos = tok + T, *cu = pos + T, *rows = cu + S + 1;

    /* Prefill attention: each prompt is its own causal block over its new rows. */
    rg_attn_args aa = {0};
    if (prefill) {
        const int32_t *hcu = g->meta_host + 2 * T;
        int32_t max_len = 0;
        for (int32_t b = 0; b < S; b++)
            if (hcu[b + 1] - hcu[b] > max_len) max_len = hcu[b + 1] - hcu[b];
        rg_step_plan plan = {.T = T, .n_blocks = S, .cu_q_host = hcu, .cu_k_host = hcu, .max_q = max_len,
                             .max_k = max_len, .causal = true, .train = false};
        rg_model_attn_args(m, &plan, &aa);
        aa.cu_seqlens_q_dev = aa.cu_seqlens_k_dev = cu;
    }
    const int64_t k_off = rg_model_k_col(m), v_off = rg_model_v_col(m);

    RG_TRY(op->embedding_forward(be, g->x, tok, pos, rg_model_p(m, m->wte), rg_model_p(m, m->wpe), T, C));
    /* Every projection is one linear_infer: its LayerNorm, bias, GELU and
     * residual in the op (fused into one kernel where the backend has one). */
    const float eps = c->ln_eps;
    for (int32_t l = 0; l < c->n_layers; l++) {
        const rg_layer_params *p = &m->lp[l];
        RG_TRY(op->linear_infer(be, g->qkv, g->x, rg_model_p(m, p->ln1_w), rg_model_p(m, p->ln1_b), eps,
                                rg_model_p(m, p->qkv_w), rg_model_p(m, p->qkv_b), NULL, T, C, Q, RG_GELU_NONE));
        const void *k = rg_model_at(m, g->qkv, k_off), *v = rg_model_at(m, g->qkv, v_off);
        if (prefill) {
            RG_TRY(rg_kv_cache_write(kv, l, k, Q, v, Q));
            RG_TRY(op->attn_forward(be, &aa, g->qkv, k, v, g->atty, NULL));
        } else {
            /* kv_write folded into the decode attention: one kernel per layer
             * fewer, and its old K/V loads overlap the qkv projection (CUDA) */
            RG_TRY(rg_attn_decode_append(be, kv, l, c->n_heads, 0.0f, g->qkv, Q, k, Q, v, Q, g->atty));
        }
        RG_TRY(op->linear_infer(be, g->x1, g->atty, NULL, NULL, eps, rg_model_p(m, p->proj_w),
                                rg_model_p(m, p->proj_b), g->x, T, C, C, RG_GELU_NONE));
        RG_TRY(op->linear_infer(be, g->fch, g->x1, rg_model_p(m, p->ln2_w), rg_model_p(m, p->ln2_b), eps,
                                rg_model_p(m, p->fc_w), rg_model_p(m, p->fc_b), NULL, T, C, H, (int)c->gelu));
        /* The block's output overwrites its input, dead once x1 exists. */
        RG_TRY(op->linear_infer(be, g->x, g->fch, NULL, NULL, eps, rg_model_p(m, p->fc2_w), rg_model_p(m, p->fc2_b),
                                g->x1, T, H, C, RG_GELU_NONE));
    }
    /* Decode brings one row per sequence: they are already the last rows. */
    const void *last = g->x;
    if (T != S) {
        RG_TRY(op->gather_rows(be, g->last, g->x, rows, S, C));
        last = g->last;
    }
    RG_TRY(op->linear_infer(be, g->logits, last, c->final_ln ? rg_model_p(m, m->lnf_w) : NULL,
                            c->final_ln ? rg_model_p(m, m->lnf_b) : NULL, eps, rg_model_p(m, m->lm_w),
                            rg_model_p(m, m->lm_b), NULL, S, C, V, RG_GELU_NONE));
    return RG_OK;
}

/* Records the decode ops of batch size S into a graph; on any failure the
 * recording is dropped, the reason kept in g->gstats, and *out is NULL. */
static rg_status record(rg_gen_scratch *g, rg_kv_cache *kv, int32_t S, void **out) {
    rg_backend *be = g->m->be;
    *out = NULL;
    RG_TRY(be->ops->graph_begin(be));
    rg_status s = run_ops(g, kv, false, S, S);
    if (s != RG_OK) snprintf(g->gstats.last_fallback, sizeof g->gstats.last_fallback, "%s", rg_last_error());
    rg_status e = be->ops->graph_end(be, s != RG_OK, out);
    if (e != RG_OK) snprintf(g->gstats.last_fallback, sizeof g->gstats.last_fallback, "%s", rg_last_error());
    return s != RG_OK ? s : e;
}

/* A decode pass through the graph of batch size S (file comment): replayed
 * when its key matches, recorded at the second step with a key, direct
 * otherwise or when recording fails (then direct until the key changes). */
static rg_status decode_graph(rg_gen_scratch *g, rg_kv_cache *kv, int32_t S) {
    rg_backend *be = g->m->be;
    dec_graph *dg = &g->graphs[S];
    dec_graph key = {.kv = kv, .pool = kv->pool, .tables = kv->d_buf, .width = kv->b_max_blocks,
                     .block_size = kv->block_size};
    bool same = dg->kv == key.kv && dg->pool == key.pool && dg->tables == key.tables && dg->width == key.width &&
                dg->block_size == key.block_size;
    if (!same) {
        drop_graph(g, dg);
        *dg = key;
    }
    if (dg->h) {
        bool stale = false;
        RG_TRY(be->ops->graph_launch(be, dg->h, &stale));
        if (!stale) {
            g->gstats.replays++;
            return RG_OK;
        }
        be->ops->graph_free(be, dg->h);
        dg->h = NULL;
    }
    if (!dg->seen || dg->broken) {
        dg->seen = true;
        g->gstats.direct++;
        return run_ops(g, kv, false, S, S);
    }
    void *h = NULL;
    if (record(g, kv, S, &h) != RG_OK || !h) {
        dg->broken = true;
        g->gstats.fallbacks++;
        g->gstats.direct++;
        return run_ops(g, kv, false, S, S);
    }
    dg->h = h;
    g->gstats.captures++;
    bool stale = false;
    RG_TRY(be->ops->graph_launch(be, h, &stale));
    if (stale) {  /* cannot happen: nothing moved since the recording; run directly all the same */
        g->gstats.direct++;
        return run_ops(g, kv, false, S, S);
    }
    g->gstats.replays++;
    return RG_OK;
}

rg_status rg_model_forward_kv(rg_model *m, rg_gen_scratch *g, rg_kv_cache *kv, bool prefill, int32_t n_seqs,
                              const int32_t *seq_ids, const int32_t *cu_new, const int32_t *tokens,
                              float *logits_host) {
    const char *fn = "rg_model_forward_kv";
    if (!m || !g || !kv || !seq_ids || !cu_new || !tokens)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: NULL argument", fn);
    g->n_last = 0;
    if (g->m != m || kv->be != m->be)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: scratch or cache belongs to another model or backend", fn);
    const rg_model_config *c = &m->cfg;
    if (kv->n_layers != c->n_layers || kv->n_kv_heads != c->n_kv_heads || kv->head_dim != m->hd)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: cache shape (%d layers, %d kv heads of %d) differs from the "
                       "model's (%d, %d, %d)", fn, kv->n_layers, kv->n_kv_heads, kv->head_dim, c->n_layers,
                       c->n_kv_heads, m->hd);
    int64_t T = 0;
    RG_TRY(fill_meta(g, kv, prefill, n_seqs, seq_ids, cu_new, tokens, &T));

    const bool graphs = !prefill && g->use_graphs && m->be->ops->graph_begin;
    /* A graph's tables are as wide as the longest sequence the model allows. */
    int32_t width = graphs ? (int32_t)(((int64_t)c->max_seq_len + kv->block_size - 1) / kv->block_size) : 1;
    RG_TRY(rg_kv_set_batch_wide(kv, n_seqs, seq_ids, cu_new, width > 0 ? width : 1));
    rg_backend *be = m->be;
    const rg_backend_ops *op = be->ops;
    const int V = c->vocab_size, S = n_seqs;
    RG_TRY(rg_buffer_upload(be, g->meta, g->meta_host, sizeof(int32_t) * (size_t)(2 * T + 2 * S + 1)));
    if (graphs) RG_TRY(decode_graph(g, kv, S));
    else RG_TRY(run_ops(g, kv, prefill, T, S));
    g->n_last = S;
    if (!logits_host) return RG_OK;
    /* Convert on the device: the host would otherwise widen S * V values one by one. */
    const void *src = g->logits;
    if (g->logits_f32) {
        RG_TRY(op->convert(be, g->logits_f32, RG_DTYPE_F32, g->logits, op->act_dtype, (int64_t)S * V));
        src = g->logits_f32;
    }
    return rg_buffer_download(be, logits_host, src, sizeof(float) * (size_t)S * V);
}

rg_status rg_gen_scratch_argmax(rg_gen_scratch *g, int32_t *out_host) {
    if (!g || !out_host) return rg_fail(RG_ERR_INVALID_ARG, "rg_gen_scratch_argmax: NULL argument");
    if (g->n_last < 1) return rg_fail(RG_ERR_INVALID_ARG, "rg_gen_scratch_argmax: no pass has left logits");
    rg_backend *be = g->m->be;
    RG_TRY(be->ops->argmax_rows(be, g->argmax, g->logits, g->n_last, g->m->cfg.vocab_size));
    return rg_buffer_download(be, out_host, g->argmax, sizeof(int32_t) * (size_t)g->n_last);
}

void rg_gen_scratch_use_graphs(rg_gen_scratch *g, bool on) {
    if (g) g->use_graphs = on;
}

void rg_gen_scratch_graph_stats(const rg_gen_scratch *g, rg_gen_graph_stats *out) {
    if (g && out) *out = g->gstats;
}
