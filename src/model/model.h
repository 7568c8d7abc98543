/* model.h — the GPT model's private state, shared by the files of src/model:
 *   config.c   presets and validation          params.c   parameter table, init, get/set
 *   acts.c     activation arena layout         forward.c  forward pass and loss
 *   backward.c backward pass                   step.c     batch checks, eval/grads/train steps
 *   optim.c    optimizer, lr schedule, clipping flops.c   FLOP counts and memory
 *   model.c    lifecycle and settings           forward_kv.c generation passes over a KV cache
 * Ops are called only through be->ops (src/backend.h). */
#ifndef RG_MODEL_MODEL_H
#define RG_MODEL_MODEL_H
#include "backend.h"
#include "core/status.h"

#define RG_MODEL_NAME_MAX 48

typedef struct rg_param_entry {
    char name[RG_MODEL_NAME_MAX];
    int32_t ndim;
    int64_t shape[2];
    int64_t numel;
    int64_t offset;           /* in elements from the start of the parameter block */
} rg_param_entry;

/* Indices into the table for one block; -1 where the config has no such tensor. */
typedef struct rg_layer_params {
    int32_t ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b;
    int32_t ln2_w, ln2_b, fc_w, fc_b, fc2_w, fc2_b;
} rg_layer_params;

/* One block's activations, each (T, width) in the act dtype unless typed float.
 * In eval every block shares one set (x2 is then the block's own input buffer). */
typedef struct rg_layer_acts {
    void *ln1;                /* (T, C) LN_1 output */
    float *mean1, *rstd1;     /* (T) */
    void *qkv;                /* (T, Q) */
    void *atty;               /* (T, C) attention output */
    float *lse;               /* (h, T); NULL in eval */
    void *x1;                 /* (T, C) residual after attention */
    void *ln2;                /* (T, C) */
    float *mean2, *rstd2;     /* (T) */
    void *fch;                /* (T, H) pre-GELU */
    void *fch_gelu;           /* (T, H) */
    void *x2;                 /* (T, C) residual after the MLP: the next block's input */
} rg_layer_acts;

/* Pointers into the arena for a capacity of T slots and B sequences. */
typedef struct rg_acts {
    void *x0;                 /* (T, C) embeddings: the first block's input */
    rg_layer_acts *layer;     /* n_layers entries (train) or 1 (eval) */
    void *lnf;                /* (T, C) final LayerNorm output (final_ln only) */
    float *meanf, *rstdf;     /* (T) */
    void *logits;             /* (T, V); dlogits in place during training */
    void *dres;               /* (T, C) gradient of the residual stream (train) */
    void *dtmp;               /* (T, C) scratch gradient (train) */
    void *dbig;               /* (T, max(Q, H)) scratch gradient (train) */
    int32_t *tokens, *pos, *targets; /* (T) per-step metadata in backend memory */
    int32_t *cu_q, *cu_k;     /* (2B + 1) attention blocks in backend memory */
} rg_acts;

struct rg_model {
    rg_backend *be;
    rg_model_config cfg;
    int32_t C, H, Q, hd;      /* width, MLP hidden, fused QKV width, head dim */
    size_t act_size;          /* bytes per activation element */

    int32_t n_tensors;
    rg_param_entry *tensors;
    rg_layer_params *lp;      /* (n_layers) */
    int32_t wte, wpe, lnf_w, lnf_b, lm_w, lm_b; /* lm_w == wte when tied */
    int64_t n_params;         /* sum of numel */
    int64_t n_alloc;          /* elements in each block, alignment gaps (always 0) included */

    float *params, *grads;    /* (n_alloc) fp32 in backend memory */
    void *compute;            /* (n_alloc) act dtype; == params when act dtype is fp32 */
    float *opt_m, *opt_v;     /* (n_alloc) or NULL */
    rg_optim_config opt;
    int64_t opt_step;

    /* activation arena and its capacity */
    void *arena;
    size_t arena_bytes;
    int64_t cap_tokens;
    int32_t cap_seqs;
    bool cap_train;
    rg_acts acts;
    rg_layer_acts *layer_store; /* (n_layers) backing for acts.layer */

    /* per-token losses of every micro-batch of a step, and their host copy */
    float *losses;
    float *losses_host;
    int64_t losses_cap;
    int32_t *cu_host;         /* (2 * (2 * cap_seqs + 1)) host cu_seqlens q | k */

    bool eval_causal;
    rg_attn_algo algo;
};

/* Attention blocks of one batch, as the step gives them to the kernel. */
typedef struct rg_step_plan {
    int64_t T;                /* slots */
    int32_t n_blocks;         /* B of the attention call */
    const int32_t *cu_q_host, *cu_k_host;
    int32_t max_q, max_k;
    bool causal;
    bool train;
    int64_t n_targets;        /* counted from the targets */
} rg_step_plan;

/* params.c */
rg_status rg_model_build_table(rg_model *m);
rg_status rg_model_init_params(rg_model *m, uint64_t seed);
rg_status rg_model_refresh_compute(rg_model *m, int64_t offset, int64_t n);
/* Parameter (compute copy, act dtype) and gradient (fp32) of tensor i; NULL for i < 0. */
const void *rg_model_p(const rg_model *m, int32_t i);
float *rg_model_g(const rg_model *m, int32_t i);

/* acts.c: (re)allocates the arena when (T, B, train) exceeds the capacity. */
rg_status rg_model_ensure_acts(rg_model *m, int64_t T, int32_t B, bool train);
rg_status rg_model_ensure_losses(rg_model *m, int64_t n);

/* forward.c: forward over the batch whose metadata is in acts; per-token
 * losses into losses (T) and, when plan->train, dlogits = dloss * (softmax - onehot)
 * in place of the logits. */
rg_status rg_model_forward(rg_model *m, const rg_step_plan *plan, float *losses, float dloss);
void rg_model_attn_args(const rg_model *m, const rg_step_plan *plan, rg_attn_args *a);

/* Element offset -> pointer inside an act-dtype buffer (views into fused tensors). */
static inline const void *rg_model_at(const rg_model *m, const void *base, int64_t elems) {
    return (const char *)base + (size_t)elems * m->act_size;
}
static inline void *rg_model_at_mut(const rg_model *m, void *base, int64_t elems) {
    return (char *)base + (size_t)elems * m->act_size;
}
/* Column offsets of k and v inside a fused qkv row (q sits at column 0). */
static inline int64_t rg_model_k_col(const rg_model *m) { return (int64_t)m->cfg.n_heads * m->hd; }
static inline int64_t rg_model_v_col(const rg_model *m) {
    return rg_model_k_col(m) + (int64_t)m->cfg.n_kv_heads * m->hd;
}
/* backward.c: accumulates every parameter gradient (+=) from the dlogits left by the forward. */
rg_status rg_model_backward(rg_model *m, const rg_step_plan *plan);

/* step.c: checks a batch against the model and fills the plan (host work only). */
rg_status rg_model_plan(const rg_model *m, const rg_batch *b, bool train, const char *fn,
                        int32_t *cu_host, rg_step_plan *plan);

/* forward_kv.c: generation. A scratch arena sized once for up to max_tokens
 * new tokens and max_seqs sequences per pass (no allocation per step). */
typedef struct rg_gen_scratch rg_gen_scratch;
rg_status rg_gen_scratch_init(rg_model *m, int64_t max_tokens, int32_t max_seqs, rg_gen_scratch **out);
void rg_gen_scratch_free(rg_gen_scratch *g);
/* One pass over n_seqs sequences of the cache whose new tokens were already
 * appended (rg_kv_cache_append): sequence b's new tokens are
 * tokens[cu_new[b]..cu_new[b+1]) (host), its last positions. prefill: every
 * sequence's cache held nothing before (its new tokens are all of it; varlen
 * causal attention over them); otherwise each brings exactly one token
 * (decode attention over its cache). Writes the new K/V into the cache and
 * the logits of each sequence's last token to logits_host (n_seqs, V) fp32,
 * or, with logits_host NULL, leaves them on the device for
 * rg_gen_scratch_argmax. */
rg_status rg_model_forward_kv(rg_model *m, rg_gen_scratch *g, rg_kv_cache *kv, bool prefill, int32_t n_seqs,
                              const int32_t *seq_ids, const int32_t *cu_new, const int32_t *tokens,
                              float *logits_host);
/* The greedy pick (first argmax) of every sequence of the last pass, computed
 * on the backend; out_host (n_seqs of that pass) int32. */
rg_status rg_gen_scratch_argmax(rg_gen_scratch *g, int32_t *out_host);
/* Decode passes replay a recorded graph of their ops where the backend can
 * (forward_kv.c); on by default unless RG_NO_GRAPH=1. What they did so far: */
typedef struct rg_gen_graph_stats {
    int64_t captures;            /* graphs recorded */
    int64_t replays;             /* decode passes run as one graph launch */
    int64_t direct;              /* decode passes with graphs on that ran op by op */
    int64_t fallbacks;           /* recordings that failed (then op by op) */
    char last_fallback[192];     /* why the last one failed */
} rg_gen_graph_stats;
void rg_gen_scratch_use_graphs(rg_gen_scratch *g, bool on);
void rg_gen_scratch_graph_stats(const rg_gen_scratch *g, rg_gen_graph_stats *out);

/* optim.c: one update with the gradients in m->grads scaled by grad_scale. */
rg_status rg_model_apply_update(rg_model *m, float lr, float grad_scale);

#endif
