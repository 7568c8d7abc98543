/* ragged.h — the public C API of ragged: GPT-style transformers on packed
 * variable-length batches (no padding). One header, in sections:
 *   1. status and errors      2. backends and memory     3. attention (varlen)
 *   4. batches                5. samplers                6. model (later)
 * Conventions: every function that can fail returns rg_status; on failure
 * rg_last_error() says what was wrong (argument, index, expected vs got) and no
 * output was written. Nothing here aborts or exits the process.
 * Shapes are written (dim0, dim1, ...), row-major. */
#ifndef RAGGED_H
#define RAGGED_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ===== 1. status and errors ============================================ */

typedef enum rg_status {
    RG_OK = 0,
    RG_ERR_INVALID_ARG,    /* an argument is out of its documented range */
    RG_ERR_OUT_OF_MEMORY,  /* host or device allocation failed */
    RG_ERR_OVERFLOW,       /* a size does not fit its integer type */
    RG_ERR_IO,             /* a file could not be opened, read or written */
    RG_ERR_FORMAT,         /* a file's contents are malformed */
    RG_ERR_UNSUPPORTED,    /* valid, but not supported by this build/backend */
    RG_ERR_BACKEND,        /* the device (CUDA, cuBLAS) reported a failure */
    RG_ERR_EXHAUSTED,      /* a fixed pool (e.g. KV cache blocks) is full */
} rg_status;

/* Name of a status ("invalid argument", ...); never NULL. */
const char *rg_status_str(rg_status s);

/* Message of the last failure on this thread ("" if none). */
const char *rg_last_error(void);

/* Library version string, e.g. "0.1.0". */
const char *rg_version(void);

/* ===== 2. backends and memory ========================================== */

/* A backend runs ops on one device. CPU is the reference (fp32 everywhere);
 * CUDA keeps activations in bf16. Memory passed to ops lives on the backend's
 * device: allocate it with rg_buffer_alloc. */
typedef struct rg_backend rg_backend;

typedef enum rg_backend_kind {
    RG_BACKEND_CPU = 0,
    RG_BACKEND_CUDA = 1,
} rg_backend_kind;

typedef enum rg_dtype {
    RG_DTYPE_F32 = 0,
    RG_DTYPE_BF16 = 1,
    RG_DTYPE_F16 = 2,
    RG_DTYPE_I32 = 3,
} rg_dtype;

size_t rg_dtype_size(rg_dtype t);
const char *rg_dtype_name(rg_dtype t);

/* n_threads <= 0 picks the machine's core count (CPU; ignored by CUDA). */
rg_status rg_backend_init(rg_backend_kind kind, int n_threads, rg_backend **out);
void rg_backend_free(rg_backend *be);
/* True when this build has the backend and a device for it is present. */
bool rg_backend_available(rg_backend_kind kind);
const char *rg_backend_name(const rg_backend *be);
/* The dtype of activations (q, k, v, o, ...) on this backend. */
rg_dtype rg_backend_act_dtype(const rg_backend *be);
/* Wait for all work queued on the backend. */
rg_status rg_backend_sync(rg_backend *be);

/* Device memory. Buffers are uninitialised; rg_buffer_free(be, NULL) is a no-op. */
rg_status rg_buffer_alloc(rg_backend *be, size_t bytes, void **out);
void rg_buffer_free(rg_backend *be, void *p);
/* Copies n elements between host float32 and a device buffer of dtype t,
 * converting (rounding to nearest even for bf16/f16). */
rg_status rg_buffer_upload_f32(rg_backend *be, void *dst, rg_dtype t, const float *src, size_t n);
rg_status rg_buffer_download_f32(rg_backend *be, float *dst, const void *src, rg_dtype t, size_t n);
/* Raw byte copies host <-> device (no conversion). */
rg_status rg_buffer_upload(rg_backend *be, void *dst, const void *src, size_t bytes);
rg_status rg_buffer_download(rg_backend *be, void *dst, const void *src, size_t bytes);

/* ===== 3. attention on packed (varlen) batches ========================= */

/* FlashAttention's varlen contract. Sequence b owns query rows
 * cu_seqlens_q[b]..cu_seqlens_q[b+1] and key rows cu_seqlens_k[b]..cu_seqlens_k[b+1].
 *   q    (total_q, h, d)      k, v (total_k, h_kv, d)     o (total_q, h, d)
 *   lse  (h, total_q) fp32    natural-log log-sum-exp of the scaled scores
 * h % h_kv == 0 (query head i reads kv head i / (h / h_kv)); d a multiple of 8, <= 256.
 * causal: aligned bottom-right per sequence, i.e. query i of a sequence with
 * lq queries and lk keys sees keys j <= i + lk - lq. A row that sees no key
 * outputs 0 and lse = -inf. softmax_scale <= 0 means 1/sqrt(d).
 * cu_seqlens_* are int32 (batch + 1) in the backend's memory; max_seqlen_* are
 * upper bounds (used to size work, checked against cu_seqlens). */
typedef enum rg_attn_mask_kind {
    RG_ATTN_MASK_NONE = 0,
    RG_ATTN_MASK_BOOL,      /* uint8: 1 = may attend, 0 = masked */
    RG_ATTN_MASK_ADDITIVE,  /* float: added to the scaled score (-INFINITY masks) */
} rg_attn_mask_kind;

typedef enum rg_attn_algo {
    RG_ATTN_AUTO = 0,       /* the backend's fast kernel */
    RG_ATTN_REFERENCE,      /* plain loops, the definition of right (CPU only) */
    RG_ATTN_FLASH,          /* tiled online-softmax kernel */
} rg_attn_algo;

typedef struct rg_attn_desc {
    int32_t batch;               /* number of sequences B >= 1 */
    int32_t n_heads;             /* h */
    int32_t n_kv_heads;          /* h_kv, divides h */
    int32_t head_dim;            /* d */
    const int32_t *cu_seqlens_q; /* (B+1), starts at 0, non-decreasing */
    const int32_t *cu_seqlens_k; /* (B+1) */
    int32_t max_seqlen_q;
    int32_t max_seqlen_k;
    float softmax_scale;         /* <= 0: 1/sqrt(d) */
    bool causal;
    rg_attn_algo algo;
    /* Row strides in elements between consecutive tokens of q/dq, k/dk, v/dv;
     * 0 means contiguous (h*d for q, h_kv*d for k and v). This lets q, k, v be
     * views into one fused (T, (h + 2*h_kv)*d) projection. o and dout are contiguous. */
    int32_t stride_q, stride_k, stride_v;
    /* Optional explicit mask, reference algorithm only. Sequence b's block is
     * (len_q_b, len_k_b) row-major and starts at element sum_{c<b} len_q_c*len_k_c. */
    rg_attn_mask_kind mask_kind;
    const void *mask;
} rg_attn_desc;

/* Forward: writes o and lse (lse may be NULL when no backward follows). */
rg_status rg_attn_forward(rg_backend *be, const rg_attn_desc *desc,
                          const void *q, const void *k, const void *v,
                          void *o, float *lse);

/* Backward: given o, lse from the forward and dout (total_q, h, d), writes
 * dq (total_q, h, d), dk and dv (total_k, h_kv, d). Gradients of query heads
 * sharing a kv head are summed into it. Outputs are overwritten, not accumulated. */
rg_status rg_attn_backward(rg_backend *be, const rg_attn_desc *desc,
                           const void *q, const void *k, const void *v,
                           const void *o, const float *lse, const void *dout,
                           void *dq, void *dk, void *dv);

/* Useful FLOPs of one forward: 4 * sum_b lq_b * lk_b * h * d, halved when
 * causal (the convention of FlashAttention's and PyTorch's benchmarks; a
 * forward+backward counts 3.5x this). */
double rg_attn_flops_forward(int32_t batch, const int32_t *cu_seqlens_q,
                             const int32_t *cu_seqlens_k, int32_t n_heads,
                             int32_t head_dim, bool causal);

/* ===== 4. batches ====================================================== */

/* Targets equal to this are ignored by the loss (PyTorch's default). */
#define RG_IGNORE_INDEX (-100)

typedef enum rg_batch_layout {
    RG_LAYOUT_PAD_MAX = 0,   /* B rows of opts.max_len slots, padded with pad_id */
    RG_LAYOUT_PAD_LONGEST,   /* B rows as long as the batch's longest sequence */
    RG_LAYOUT_PACKED,        /* one row: sequences end to end, T = sum of lengths */
} rg_batch_layout;

typedef struct rg_batch_opts {
    rg_batch_layout layout;
    int32_t max_len;         /* longest sequence allowed (>= 1); PAD_MAX's row length */
    int32_t vocab_size;      /* token ids must lie in [0, vocab_size) */
    int32_t pad_id;          /* token written to padding slots, in [0, vocab_size) */
} rg_batch_opts;

/* A batch in one of the three layouts. Every per-slot array has n_tokens
 * entries: slot r*row_len + i is position i of row r. In padded layouts row b
 * holds sequence b, real tokens first; in PACKED there is one row. */
typedef struct rg_batch {
    rg_batch_layout layout;
    int32_t n_seqs;          /* B */
    int32_t n_rows;          /* B when padded, 1 when packed */
    int32_t row_len;         /* padded: max_len or the longest length; packed: T */
    int32_t n_tokens;        /* slots = n_rows * row_len */
    int32_t n_real;          /* real tokens = sum of lengths */
    int32_t n_targets;       /* targets that are not RG_IGNORE_INDEX = n_real - B */
    int32_t max_seqlen;      /* longest sequence in the batch */
    int32_t *tokens;         /* (n_tokens) token ids; pad_id in padding */
    int32_t *targets;        /* (n_tokens) next token of the same sequence, or RG_IGNORE_INDEX
                                at each sequence's last token and in padding */
    int32_t *position_ids;   /* (n_tokens) 0.. within each sequence; padding continues the row's count */
    int32_t *seq_ids;        /* (n_tokens) sequence index, -1 in padding */
    uint8_t *key_mask;       /* (n_tokens) 1 for real tokens, 0 for padding */
    int32_t *cu_seqlens;     /* (B+1) attention blocks: packed, the prefix sum of lengths;
                                padded, r*row_len (pad keys are then excluded by key_mask
                                or, for causal attention, never seen by a real query) */
    int32_t *seqlens;        /* (B) real lengths */
} rg_batch;

/* Builds a batch from n_seqs sequences (seqs[b] has lens[b] tokens). Fails
 * with RG_ERR_INVALID_ARG (naming the sequence and token) on an empty batch,
 * a zero-length sequence, a length above max_len, or a token outside the
 * vocabulary, and with RG_ERR_OVERFLOW if the slot count exceeds INT32_MAX;
 * on failure *out is zeroed and nothing is allocated. */
rg_status rg_batch_build(const rg_batch_opts *opts, int32_t n_seqs, const int32_t *const *seqs,
                         const int32_t *lens, rg_batch *out);
/* Frees the arrays of a built batch and zeroes it; NULL or zeroed is a no-op. */
void rg_batch_free(rg_batch *b);

/* ===== 5. samplers ===================================================== */
/* (section owned by src/batch) */

/* ===== 6. model ======================================================== */

/* A GPT-style decoder over a backend. With C = d_model, H = mlp_ratio * C,
 * hd = C / n_heads, Q = (n_heads + 2 * n_kv_heads) * hd, V = vocab_size:
 *   x = wte[token] + wpe[position]                        x (T, C)
 *   n_layers blocks (pre-LayerNorm):
 *     a = LN_1(x);  qkv = a @ c_attn^T + b                 qkv (T, Q), columns q | k | v
 *     y = varlen attention(q, k, v)  (causal, per sequence) y (T, C)
 *     x = x + y @ attn.c_proj^T + b
 *     m = GELU(LN_2(x) @ mlp.c_fc^T + b)                   m (T, H)
 *     x = x + m @ mlp.c_proj^T + b
 *   x = LN_f(x) if final_ln;  logits = x @ lm_head^T (+ b)  logits (T, V)
 * Positions come from the batch (they restart in every packed sequence), so
 * a packed batch computes exactly what each sequence would alone. */

typedef enum rg_gelu_kind {
    RG_GELU_KIND_ERF = 1,     /* exact: x * Phi(x) (torch.nn.GELU()) */
    RG_GELU_KIND_TANH = 2,    /* GPT-2's tanh approximation */
} rg_gelu_kind;

typedef enum rg_init_kind {
    RG_INIT_GPT2 = 0,         /* N(0, 0.02), residual projections N(0, 0.02/sqrt(2 n_layers)),
                                 biases 0, LayerNorm weight 1 (HF GPT2PreTrainedModel) */
    RG_INIT_TORCH = 1,        /* torch module defaults: Embedding N(0, 1), Linear weight and
                                 bias U(-1/sqrt(in), 1/sqrt(in)), LayerNorm weight 1, bias 0 */
} rg_init_kind;

typedef struct rg_model_config {
    int32_t n_layers;         /* >= 1 */
    int32_t d_model;          /* C = n_heads * head_dim */
    int32_t n_heads;          /* h >= 1 */
    int32_t n_kv_heads;       /* h_kv, divides h (GQA; h_kv == h is plain multi-head) */
    int32_t vocab_size;       /* V >= 2 */
    int32_t max_seq_len;      /* rows of wpe: positions lie in [0, max_seq_len) */
    int32_t mlp_ratio;        /* H = mlp_ratio * C, >= 1 */
    bool ln_bias;             /* LayerNorms have a bias */
    bool linear_bias;         /* c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj have biases */
    bool final_ln;            /* LayerNorm ln_f before the head */
    bool tied_embeddings;     /* the head reuses wte (no lm_head.weight tensor) */
    bool lm_head_bias;        /* the head has a bias lm_head.bias (V) */
    rg_gelu_kind gelu;
    float ln_eps;             /* LayerNorm epsilon, finite and > 0 */
    rg_init_kind init;
} rg_model_config;

/* Presets by name:
 *   "seed"  the article's decoder: 24 layers, C 1024, 16 heads of 64, V 1024,
 *           max_seq_len 1024, LayerNorm without bias, linear biases, exact GELU,
 *           untied output linear with bias, no final LayerNorm, torch init
 *   "gpt2"  GPT-2 124M: 12 layers, C 768, 12 heads, V 50257, 1024 positions,
 *           LayerNorm with bias, final LayerNorm, tanh GELU, tied, no head bias
 *   "cpu"   the seed's architecture at CPU size: 4 layers, C 256, 4 heads of 64,
 *           V 1024, max_seq_len 256 (same attention/GEMM balance as "seed")
 *   "tiny"  the seed's architecture for tests: 2 layers, C 32, 4 heads, V 64, 64
 * All use mlp_ratio 4 and ln_eps 1e-5. Fails on an unknown name. */
rg_status rg_model_config_preset(const char *name, rg_model_config *out);
/* The preset names, NULL-terminated. */
const char *const *rg_model_preset_names(void);
/* Checks every field and that every size fits the ops' int32 arguments; the
 * error names the field, its value and what was expected. */
rg_status rg_model_config_validate(const rg_model_config *cfg);

typedef struct rg_model rg_model;

/* Creates a model on be (which must outlive it) with parameters initialised
 * from seed (cfg->init), the SGD optimizer with torch defaults, and no
 * activation memory yet (see rg_model_reserve). */
rg_status rg_model_init(rg_backend *be, const rg_model_config *cfg, uint64_t seed, rg_model **out);
void rg_model_free(rg_model *m);
const rg_model_config *rg_model_get_config(const rg_model *m);
/* Number of parameters (sum of the tensors' numel). */
int64_t rg_model_n_params(const rg_model *m);

/* ---- parameter table ----
 * Tensors in order, named as HF GPT-2's (without "transformer."), with
 * torch.nn.Linear's (out, in) layout (HF's Conv1D weights are the transpose):
 *   wte (V, C)  wpe (max_seq_len, C)
 *   h.N.ln_1.weight (C)  h.N.ln_1.bias (C)           [ln_bias]
 *   h.N.attn.c_attn.weight (Q, C)  .bias (Q)           [linear_bias]
 *   h.N.attn.c_proj.weight (C, C)  .bias (C)           [linear_bias]
 *   h.N.ln_2.weight (C)  h.N.ln_2.bias (C)           [ln_bias]
 *   h.N.mlp.c_fc.weight (H, C)  .bias (H)              [linear_bias]
 *   h.N.mlp.c_proj.weight (C, H)  .bias (C)            [linear_bias]
 *   ln_f.weight (C)  ln_f.bias (C)                     [final_ln, ln_bias]
 *   lm_head.weight (V, C)                              [not tied_embeddings]
 *   lm_head.bias (V)                                   [lm_head_bias]
 * Parameters, gradients and optimizer state share this layout in one fp32
 * allocation each. */
typedef struct rg_model_tensor_info {
    const char *name;         /* owned by the model */
    int32_t ndim;             /* 1 or 2 */
    int64_t shape[2];         /* shape[1] = 1 when ndim == 1 */
    int64_t numel;
} rg_model_tensor_info;

int32_t rg_model_n_tensors(const rg_model *m);
rg_status rg_model_tensor_info_get(const rg_model *m, int32_t i, rg_model_tensor_info *out);
/* Index of the tensor called name; RG_ERR_INVALID_ARG when there is none. */
rg_status rg_model_tensor_find(const rg_model *m, const char *name, int32_t *index);

/* Which per-parameter state a get/set addresses. */
typedef enum rg_model_state {
    RG_MODEL_PARAMS = 0,      /* fp32 master weights */
    RG_MODEL_GRADS,           /* gradients of the last rg_model_grads / train step */
    RG_MODEL_OPT_M,           /* AdamW first moment, or SGD momentum buffer */
    RG_MODEL_OPT_V,           /* AdamW second moment */
} rg_model_state;

/* Copies tensor i (numel floats, row-major) between host fp32 and the model.
 * Setting parameters refreshes the backend's compute copy. OPT_M / OPT_V fail
 * with RG_ERR_INVALID_ARG when the current optimizer keeps no such state. */
rg_status rg_model_tensor_get(rg_model *m, rg_model_state which, int32_t i, float *dst);
rg_status rg_model_tensor_set(rg_model *m, rg_model_state which, int32_t i, const float *src);

/* ---- optimizer, schedule, clipping ---- */
typedef enum rg_optim_kind {
    RG_OPTIM_SGD = 0,         /* torch.optim.SGD (dampening 0, no Nesterov) */
    RG_OPTIM_ADAMW = 1,       /* torch.optim.AdamW (decoupled decay, bias correction) */
} rg_optim_kind;

typedef struct rg_optim_config {
    rg_optim_kind kind;
    float lr;                 /* peak learning rate, > 0 */
    float min_lr;             /* cosine floor, in [0, lr] */
    int64_t warmup_steps;     /* >= 0: lr rises linearly over the first warmup_steps */
    int64_t total_steps;      /* > warmup_steps: cosine decay to min_lr at total_steps;
                                 0: constant lr after warm-up */
    float momentum;           /* SGD, in [0, 1) */
    float beta1, beta2;       /* AdamW, in [0, 1) */
    float eps;                /* AdamW, > 0 */
    float weight_decay;       /* >= 0; SGD adds it to the gradient (L2), AdamW decays weights */
    bool decay_matrices_only; /* false: every tensor (torch with one parameter group);
                                 true: 2-D tensors only (no biases, no LayerNorm) */
    float clip_norm;          /* > 0: scale gradients so their global L2 norm is at most
                                 clip_norm (torch clip_grad_norm_); <= 0: no clipping */
} rg_optim_config;

/* torch's defaults: SGD lr 1e-3, momentum 0, weight_decay 0; AdamW lr 1e-3,
 * betas (0.9, 0.999), eps 1e-8, weight_decay 1e-2. No warm-up, constant lr,
 * no clipping. */
rg_status rg_optim_config_default(rg_optim_kind kind, rg_optim_config *out);
rg_status rg_optim_config_validate(const rg_optim_config *cfg);
/* The learning rate of update number step (0-based): lr * (step+1)/warmup_steps
 * during warm-up, then min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2 with
 * p = (step - warmup) / (total - warmup) clamped to [0, 1]; lr if total_steps == 0. */
float rg_optim_lr(const rg_optim_config *cfg, int64_t step);

/* Sets the optimizer. A different kind (or SGD momentum turned on) allocates
 * fresh zeroed state and restarts the step count; the same kind keeps them. */
rg_status rg_model_set_optim(rg_model *m, const rg_optim_config *cfg);
rg_status rg_model_get_optim(const rg_model *m, rg_optim_config *out);
/* Updates taken so far (AdamW's t is this + 1 at the next update); settable for resuming. */
int64_t rg_model_optim_step(const rg_model *m);
rg_status rg_model_set_optim_step(rg_model *m, int64_t step);

/* ---- steps ----
 * A step takes batches in any layout (ragged.h section 4). Padded layouts run
 * attention over whole rows (cu_seqlens r * row_len): causal attention keeps
 * every real query away from the row's padding, pad targets are ignored, and
 * pad rows contribute exactly zero to every gradient: padding only costs time.
 * The loss is the sum of per-token cross-entropies over targets that are not
 * RG_IGNORE_INDEX; gradients are of the mean over every target of the step
 * (all micro-batches together). */
typedef struct rg_step_result {
    double loss_sum;          /* sum of the per-target losses; mean = loss_sum / n_targets */
    int64_t n_targets;
    double grad_norm;         /* global L2 norm of the gradient before clipping (0 in eval) */
    float lr;                 /* learning rate of the update (0 when none was made) */
} rg_step_result;

/* Sizes the activation arena for batches of up to max_tokens slots
 * (rg_batch.n_tokens) and max_seqs sequences; train = true also keeps every
 * layer's activations for the backward (eval needs one layer's). A step whose
 * batch does not fit grows the arena before any of its work; reserve the
 * largest batch up front to keep every step allocation-free. */
rg_status rg_model_reserve(rg_model *m, int64_t max_tokens, int32_t max_seqs, bool train);

/* Forward + loss. Uses causal attention unless rg_model_set_eval_causal(m, false). */
rg_status rg_model_eval_step(rg_model *m, const rg_batch *batch, rg_step_result *out);
/* Forward + backward over n_micro batches, the gradients of the mean loss left
 * in RG_MODEL_GRADS (overwritten), grad_norm set; no update. */
rg_status rg_model_grads(rg_model *m, const rg_batch *micro, int32_t n_micro, rg_step_result *out);
/* rg_model_grads, then clipping, the lr schedule and one optimizer update. */
rg_status rg_model_train_step(rg_model *m, const rg_batch *micro, int32_t n_micro, rg_step_result *out);
/* Forward only, logits (batch->n_tokens, V) copied to host fp32 (row t is slot t). */
rg_status rg_model_logits(rg_model *m, const rg_batch *batch, float *out);

/* Eval attention: causal (default: a decoder's loss) or bidirectional (the
 * article's eval benchmark; padded rows then attend to their real tokens only). */
rg_status rg_model_set_eval_causal(rg_model *m, bool causal);
/* Attention algorithm for every step (default RG_ATTN_AUTO). */
rg_status rg_model_set_attn_algo(rg_model *m, rg_attn_algo algo);

/* FLOPs of one step on batch (eval: forward; train: forward + backward).
 * useful counts real tokens only: matmuls 2 * n_real * in * out, attention
 * rg_attn_flops_forward over the real sequences; train = 3x the matmuls and
 * 3.5x the attention (FlashAttention's convention, the backward is 2.5x).
 * executed counts what the layout runs: matmuls over every slot, attention
 * over the blocks the step gives the kernel (whole rows when padded). */
rg_status rg_model_flops(const rg_model *m, const rg_batch *batch, bool train,
                         double *useful, double *executed);

/* Backend memory held by the model, in bytes. */
typedef struct rg_model_memory {
    size_t params;            /* fp32 master + compute copy (if act dtype is not fp32) */
    size_t grads;
    size_t optim;             /* m (and v) */
    size_t acts;              /* activation arena + per-step metadata + losses */
} rg_model_memory;
rg_status rg_model_memory_get(const rg_model *m, rg_model_memory *out);

#ifdef __cplusplus
}
#endif
#endif /* RAGGED_H */
