/* backend.h — the backend interface: a small table of ops over device memory,
 * private to the library. The CPU backend (src/cpu) is the reference; the CUDA
 * backend (src/cuda) implements the same table. The model (src/model) calls ops
 * only through this table. Public entry points (src/backend.c, src/attention.c)
 * validate arguments before an op is called, so ops may assume valid input. */
#ifndef RG_BACKEND_H
#define RG_BACKEND_H
#include "ragged.h"

/* Attention arguments as an op sees them: the public description (with
 * cu_seqlens in host memory, already validated, strides resolved to non-zero) plus the same cu_seqlens in
 * backend memory and the resolved scale. On the CPU both pointers are equal. */
typedef struct rg_attn_args {
    rg_attn_desc desc;            /* desc.cu_seqlens_* are host pointers */
    const int32_t *cu_seqlens_q_dev;
    const int32_t *cu_seqlens_k_dev;
    float scale;                  /* resolved softmax scale (> 0) */
    int64_t total_q, total_k;     /* cu_seqlens_q[B], cu_seqlens_k[B] */
} rg_attn_args;

/* Decode attention over a paged KV cache (rg_attn_decode, ragged.h section 9).
 * k_cache, v_cache (n_blocks, block_size, h_kv, d) of one layer; block_tables
 * (n_seqs, max_blocks) and seq_lens (n_seqs) int32 in backend memory, with
 * seq_lens_host the same lengths on the host (a backend may size its split
 * from them; the CUDA one derives it on the device, so that a recorded graph
 * stays right when the lengths change). */
typedef struct rg_attn_decode_args {
    int32_t n_seqs, n_heads, n_kv_heads, head_dim;
    int32_t block_size, max_blocks;
    int32_t max_seq_len;          /* max over seq_lens */
    int32_t stride_q;             /* resolved (> 0) */
    float scale;                  /* resolved (> 0) */
    const int32_t *block_tables, *seq_lens, *seq_lens_host;
} rg_attn_decode_args;

typedef struct rg_backend_ops {
    const char *name;
    rg_dtype act_dtype;           /* dtype of activations on this backend */
    void (*destroy)(rg_backend *be);

    /* memory */
    rg_status (*alloc)(rg_backend *be, size_t bytes, void **out);
    void (*free)(rg_backend *be, void *p);
    rg_status (*upload)(rg_backend *be, void *dst, const void *src, size_t bytes);
    rg_status (*download)(rg_backend *be, void *dst, const void *src, size_t bytes);
    rg_status (*sync)(rg_backend *be);

    /* attention: see rg_attn_forward / rg_attn_backward in ragged.h */
    rg_status (*attn_forward)(rg_backend *be, const rg_attn_args *a,
                              const void *q, const void *k, const void *v,
                              void *o, float *lse);
    rg_status (*attn_backward)(rg_backend *be, const rg_attn_args *a,
                               const void *q, const void *k, const void *v,
                               const void *o, const float *lse, const void *dout,
                               void *dq, void *dk, void *dv);

    /* ---- model ops (src/model uses these) ----
     * Conventions (llm.c's): outputs first, then inputs, then sizes. T is the
     * number of token slots in the batch, C the model width. "act" pointers are
     * in the backend's act_dtype (CPU f32, CUDA bf16); parameters are read from
     * the model's compute copy (act_dtype); everything typed float* is fp32 on
     * every backend. Activation gradients are OVERWRITTEN unless marked (+=);
     * parameter gradients (fp32) are always ACCUMULATED (+=), so gradient
     * accumulation over micro-batches is free. No op allocates or synchronises
     * unless it says so. */

    /* out (T,C) = wte[tokens[t]] + wpe[pos[t]]; tokens, pos int32 (T) in backend memory. */
    rg_status (*embedding_forward)(rg_backend *be, void *out, const int32_t *tokens, const int32_t *pos,
                                   const void *wte, const void *wpe, int64_t T, int C);
    /* dwte[tokens[t]] += dout[t]; dwpe[pos[t]] += dout[t] (fp32 grads). */
    rg_status (*embedding_backward)(rg_backend *be, float *dwte, float *dwpe, const void *dout,
                                    const int32_t *tokens, const int32_t *pos, int64_t T, int C);

    /* out (T,C) = (inp - mean) * rstd * weight + bias; bias may be NULL.
     * mean, rstd (T) fp32 are saved for the backward. */
    rg_status (*layernorm_forward)(rg_backend *be, void *out, float *mean, float *rstd, const void *inp,
                                   const void *weight, const void *bias, float eps, int64_t T, int C);
    /* dinp (+=) because a layernorm's input is always the residual stream;
     * dweight (+=), dbias (+=, may be NULL). */
    rg_status (*layernorm_backward)(rg_backend *be, void *dinp, float *dweight, float *dbias,
                                    const void *dout, const void *inp, const void *weight,
                                    const float *mean, const float *rstd, int64_t T, int C);

    /* out (T,OC) = inp (T,C) @ weight^T + bias, weight (OC,C) as in torch.nn.Linear;
     * bias may be NULL. gelu != RG_GELU_NONE applies GELU to the result and
     * stores the pre-activation in pre_gelu (T,OC) for the backward (an epilogue
     * on CUDA); otherwise pre_gelu is unused. */
    rg_status (*matmul_forward)(rg_backend *be, void *out, void *pre_gelu, const void *inp,
                                const void *weight, const void *bias, int64_t T, int C, int OC,
                                int gelu);
    /* dinp (T,C) = dout @ weight (overwritten; may be NULL to skip);
     * dweight (OC,C) += dout^T @ inp; dbias (OC) += sum_t dout (may be NULL). */
    rg_status (*matmul_backward)(rg_backend *be, void *dinp, float *dweight, float *dbias,
                                 const void *dout, const void *inp, const void *weight,
                                 int64_t T, int C, int OC);

    /* GELU on its own: out = gelu(inp); backward: dinp = dout * gelu'(inp). n elements. */
    rg_status (*gelu_forward)(rg_backend *be, void *out, const void *inp, int64_t n, int gelu);
    rg_status (*gelu_backward)(rg_backend *be, void *dinp, const void *inp, const void *dout,
                               int64_t n, int gelu);

    /* out = a + b (n elements; out may alias a). */
    rg_status (*add)(rg_backend *be, void *out, const void *a, const void *b, int64_t n);

    /* Fused softmax + cross-entropy over logits (T,V) with targets (T) int32.
     * losses (T) fp32: -log softmax(logits[t])[targets[t]], 0 where
     * targets[t] == ignore_index. If dlogits is not NULL it receives
     * (softmax - onehot) * dloss for non-ignored rows and 0 for ignored ones;
     * dlogits may alias logits (no vocabulary-sized probability buffer is kept). */
    rg_status (*xent_forward_backward)(rg_backend *be, float *losses, void *dlogits, const void *logits,
                                       const int32_t *targets, int32_t ignore_index, float dloss,
                                       int64_t T, int V);

    /* ---- parameters and optimizers (fp32 master weights) ---- */
    /* dst (n, dst_dtype) = src (n, src_dtype); both in backend memory; f32 <-> act dtype. */
    rg_status (*convert)(rg_backend *be, void *dst, rg_dtype dst_dtype, const void *src,
                         rg_dtype src_dtype, int64_t n);
    /* Sets bytes of backend memory to zero. */
    rg_status (*zero)(rg_backend *be, void *p, size_t bytes);
    /* *out_host = sum g[i]^2 over n fp32 elements, in double. Synchronises (end of step only). */
    rg_status (*sum_squares)(rg_backend *be, double *out_host, const float *g, int64_t n);
    /* One optimizer step over n fp32 parameters. grad_scale multiplies every
     * gradient first (global-norm clipping, 1/accumulation). If compute is not
     * NULL it receives the updated parameters in the act dtype. */
    rg_status (*sgd_update)(rg_backend *be, float *param, void *compute, float *momentum_buf,
                            const float *grad, int64_t n, float lr, float momentum,
                            float weight_decay, float grad_scale);
    /* AdamW as torch.optim.AdamW: decoupled weight decay param *= 1 - lr*wd,
     * bias-corrected moments with step t >= 1. */
    rg_status (*adamw_update)(rg_backend *be, float *param, void *compute, float *m, float *v,
                              const float *grad, int64_t n, float lr, float beta1, float beta2,
                              float eps, float weight_decay, float grad_scale, int64_t t);

    /* ---- generation (src/gen uses these) ---- */
    /* o (n_seqs, h, d) = softmax(scale * q k^T) v per sequence over its cached
     * keys; q (n_seqs, h, d) with row stride a->stride_q. May allocate scratch. */
    rg_status (*attn_decode)(rg_backend *be, const rg_attn_decode_args *a, void *o, const void *q,
                             const void *k_cache, const void *v_cache);
    /* k_cache[slots[t]] = k[t], v_cache[slots[t]] = v[t] for t < T; a slot is
     * block * block_size + offset, a row is `row` act elements; k, v rows are
     * stride_k, stride_v elements apart; slots int32 (T) in backend memory. */
    rg_status (*kv_write)(rg_backend *be, void *k_cache, void *v_cache, const void *k, int32_t stride_k,
                          const void *v, int32_t stride_v, const int32_t *slots, int64_t T, int32_t row);
    /* out (n, C) = inp[rows[i]] row by row, act dtype; rows int32 (n) in backend memory. */
    rg_status (*gather_rows)(rg_backend *be, void *out, const void *inp, const int32_t *rows, int64_t n, int C);
    /* out (n) int32 in backend memory = the index of the largest value of each
     * row of x (n, V), act dtype; ties go to the lowest index (as the host
     * sampler's argmax); a row holding NaN gives some index in [0, V). Greedy
     * decoding then downloads n ints instead of n * V logits. */
    rg_status (*argmax_rows)(rg_backend *be, int32_t *out, const void *x, int64_t n, int V);

    /* ---- fused model ops (issue 4; appended) ---- */
    /* out (T,OC) = inp (T,C) @ weight^T + bias + residual (T,OC): a projection
     * that ends in a residual add, in one pass (CUDA: the GEMM with beta = 1).
     * bias may be NULL; out may alias residual. */
    rg_status (*matmul_forward_residual)(rg_backend *be, void *out, const void *inp, const void *weight,
                                         const void *bias, const void *residual, int64_t T, int C, int OC);
    /* gelu_backward over (T,OC) (dinp may alias dout) and, when dbias is not
     * NULL, dbias (OC) += sum_t dinp[t] (fp32, summed before dinp is rounded
     * to the act dtype): the bias gradient of the linear layer that produced
     * inp, in the same pass. */
    rg_status (*gelu_backward_dbias)(rg_backend *be, void *dinp, float *dbias, const void *inp, const void *dout,
                                     int64_t T, int OC, int gelu);

    /* layernorm_backward and, when dinp_sum is not NULL, dinp_sum (C) += sum_t
     * dinp[t] of dinp as the op leaves it (after the +=, as stored in the act
     * dtype): the residual stream's gradient summed over tokens, which is the
     * bias gradient of the projection that wrote that stream (attn proj, fc2),
     * exactly what matmul_backward's dbias would sum from it. */
    rg_status (*layernorm_backward_sum)(rg_backend *be, void *dinp, float *dweight, float *dbias, float *dinp_sum,
                                        const void *dout, const void *inp, const void *weight, const float *mean,
                                        const float *rstd, int64_t T, int C);

    /* ---- replayable op sequences (issue 6: the decode step as one CUDA graph; appended) ----
     * NULL where unsupported (the CPU backend, CUDA with RG_PROFILE=1).
     * graph_begin starts recording: the ops called until graph_end are
     * recorded, not run, each with the pointers and sizes it was given baked
     * in, so they must take nothing from the host that is meant to change
     * between replays (upload such values into fixed buffers before each
     * graph_launch). An op that must not be recorded (e.g. it would allocate)
     * fails. graph_end stops recording: with failed = true (an op failed) it
     * discards the recording and returns RG_OK with *out = NULL; otherwise
     * *out receives an opaque graph, or an error is returned with *out = NULL
     * when the backend cannot make one. Either way nothing is recording after
     * graph_end. graph_launch runs the graph on the stream (asynchronous, as
     * the ops) unless a buffer of the backend's own that it baked in has moved
     * since (a grown workspace): then it runs nothing and sets *stale, and the
     * caller records a new one. graph_free releases a graph (NULL is fine). */
    rg_status (*graph_begin)(rg_backend *be);
    rg_status (*graph_end)(rg_backend *be, bool failed, void **out);
    rg_status (*graph_launch)(rg_backend *be, void *graph, bool *stale);
    void (*graph_free)(rg_backend *be, void *graph);

    /* ---- inference projection (issue 6; appended) ---- */
    /* Inference projection (generation): out (T,OC) = act(LN(inp) @ weight^T + bias) + residual.
     * LN over C with ln_w (C) and ln_b (C, may be NULL) and eps, skipped when ln_w is NULL;
     * act is GELU when gelu != RG_GELU_NONE, else identity; bias and residual (T,OC) may be NULL.
     * Nothing is saved for a backward. out must not alias inp; out may alias residual. */
    rg_status (*linear_infer)(rg_backend *be, void *out, const void *inp, const void *ln_w,
                              const void *ln_b, float eps, const void *weight, const void *bias,
                              const void *residual, int64_t T, int C, int OC, int gelu);

    /* ---- decode attention with the step's new K/V (issue 6; appended) ---- */
    /* The decode step's kv_write + attn_decode in one op: for every sequence b
     * with seq_lens[b] >= 1 the key and value of its last position len - 1 are
     * k[b], v[b] (rows of h_kv * d act elements, stride_k, stride_v apart;
     * usually views into the qkv projection's output): they are written to
     * that position's cache slot (through block_tables), and o is then
     * exactly what attn_decode gives over positions 0 .. len - 1. The slot's
     * previous contents are never read; a length-0 sequence writes nothing
     * and gives zeros. Every other cache row is only read, so a backend may
     * read them before the kernel that produces q, k, v has finished (CUDA:
     * programmatic dependent launch). NULL: the caller composes the two ops. */
    rg_status (*attn_decode_append)(rg_backend *be, const rg_attn_decode_args *a, void *o, const void *q,
                                    void *k_cache, void *v_cache, const void *k, int32_t stride_k, const void *v,
                                    int32_t stride_v);

    /* ---- per-op profile (ragged.h section 2); NULL when the backend is not profiling ---- */
    rg_status (*profile_reset)(rg_backend *be);
    rg_status (*profile_read)(rg_backend *be, rg_profile_entry *out, int cap, int *n);
} rg_backend_ops;

/* GELU variants (the `gelu` argument of the ops above). */
enum { RG_GELU_NONE = 0, RG_GELU_ERF = 1, RG_GELU_TANH = 2 };

struct rg_backend {
    const rg_backend_ops *ops;
    rg_backend_kind kind;
    int n_threads;
    void *impl;                   /* the backend's own state */
    /* rg_attn_decode_append runs ops->attn_decode_append for batches of at
     * most this many sequences (0: any) and kv_write + attn_decode above,
     * where the fused op was measured slower (the CUDA backend's value). */
    int32_t decode_append_max_seqs;
};

/* Constructors, one per backend. */
rg_status rg_backend_cpu_create(int n_threads, rg_backend **out);
#ifdef RAGGED_HAVE_CUDA
rg_status rg_backend_cuda_create(rg_backend **out);
bool rg_backend_cuda_device_present(void);
#endif

#endif
