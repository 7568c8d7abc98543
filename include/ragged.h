/* ragged.h — the public C API of ragged: GPT-style transformers on packed
 * variable-length batches (no padding). One header, in sections:
 *   1. status and errors      2. backends and memory     3. attention (varlen)
 *   4. batches                5. samplers, lengths, synthetic data
 *   6. model                  7. checkpoints (safetensors)
 *   8. tokenizer and shards   9. KV cache, decode attention, generation
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

/* Threads the backend runs host-side work on (CPU: the OpenMP team size; CUDA: 1).
 * 0 for a NULL backend. */
int rg_backend_n_threads(const rg_backend *be);

/* Measures the backend's dense matmul rate, the ceiling benchmarks quote as
 * "% of peak": an (n, n) @ (n, n)^T product through the backend's matmul op in
 * its activation dtype (CPU: fp32 through BLAS sgemm; CUDA: bf16), inputs random,
 * one warm-up run, then the median of at least 3 timed runs (more while under
 * about 0.25 s in all, at most 25). *flops_per_s = 2 n^3 / median seconds.
 * n in [1, 65536]. RG_ERR_UNSUPPORTED when the backend has no matmul op. */
rg_status rg_backend_measure_peak(rg_backend *be, int n, double *flops_per_s);

/* Measures the backend's memory bandwidth, the ceiling of memory-bound work
 * (generation's decode floor): out = a + b over three buffers of `bytes`
 * each in the act dtype through the backend's add op (STREAM's "add"), one
 * warm-up, then the median of at least 3 timed runs (more while under about
 * 0.25 s in all, at most 25). *bytes_per_s = 3 * bytes / median seconds.
 * bytes in [1 MiB, 16 GiB]. RG_ERR_UNSUPPORTED when the backend has no add op. */
rg_status rg_backend_measure_bandwidth(rg_backend *be, size_t bytes, double *bytes_per_s);

/* Per-op device profile (CUDA; opt-in: RG_PROFILE=1 in the environment when
 * the backend is created, read once). While on, every op call is timed on
 * the device by an event pair, read back when the backend next synchronises
 * (no extra synchronisation inside a step unless the event pool fills), and
 * summed per (op, shape). The shape leaves out the token count, which varies
 * from batch to batch. Off, nothing is recorded and the ops run unchanged. */
typedef struct rg_profile_entry {
    char op[40];              /* "matmul_forward gemm", "layernorm_backward", ... */
    char shape[88];           /* "C=1024 OC=3072 bias", ... */
    int64_t calls;
    double ms;                /* device time, summed over the calls */
    double host_ms;           /* host time inside the calls (launches, cuBLASLt planning) */
    double flops, bytes;      /* useful FLOPs, fewest bytes moved, summed (0: not counted) */
} rg_profile_entry;
/* True when be profiles its ops (false for NULL). */
bool rg_backend_profiling(const rg_backend *be);
/* Clears the totals. RG_ERR_UNSUPPORTED when be is not profiling. */
rg_status rg_backend_profile_reset(rg_backend *be);
/* Waits for queued work, then copies up to cap entries, longest total
 * first, into out and their number (all of them, even past cap) into *n. */
rg_status rg_backend_profile_read(rg_backend *be, rg_profile_entry *out, int cap, int *n);

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
 * with RG_ERR_INVALID_ARG (naming the sequence and token) on NULL arguments,
 * bad opts (max_len < 1, vocab_size < 1, pad_id outside the vocabulary), an
 * empty batch, a zero-length sequence, a length above max_len, or a token
 * outside the vocabulary, and with RG_ERR_OVERFLOW if the slot count exceeds
 * INT32_MAX. Lengths and the slot count are checked before any token is read.
 * On failure *out is zeroed (when out is not NULL) and nothing is allocated. */
rg_status rg_batch_build(const rg_batch_opts *opts, int32_t n_seqs, const int32_t *const *seqs,
                         const int32_t *lens, rg_batch *out);
/* Frees the arrays of a built batch and zeroes it; NULL or zeroed is a no-op. */
void rg_batch_free(rg_batch *b);

/* ===== 5. samplers ===================================================== */

/* A plan splits a dataset of n sequences, known by their lengths, into
 * batches; every sequence appears exactly once. A batch is made of rows:
 *  - FIXED, TOKEN_BUDGET, BUCKETS: one sequence per row, the batch's rows
 *    padded to its longest sequence (the PAD_LONGEST layout);
 *  - BEST_FIT: several whole sequences per row, end to end, each row padded
 *    to row_capacity (a PACKED batch of such rows needs no padding at all).
 * The plan's padding fraction is measured in that implied layout, so that
 * strategies can be compared. Randomness comes from opts.seed alone: the same
 * opts and lengths give the same plan on every platform. */
typedef enum rg_sampler_kind {
    RG_SAMPLER_FIXED = 0,    /* groups of batch_size sequences, in dataset (or shuffled) order */
    RG_SAMPLER_TOKEN_BUDGET, /* dataset (or shuffled) order, cut greedily so that
                                B * longest <= token_budget (and B <= batch_size if > 0) */
    RG_SAMPLER_BUCKETS,      /* sort by length into n_buckets buckets of equal count, then
                                batch within each bucket: by token_budget if > 0, else by batch_size */
    RG_SAMPLER_BEST_FIT,     /* best-fit-decreasing packing into rows of row_capacity tokens,
                                rows_per_batch rows per batch */
} rg_sampler_kind;

typedef struct rg_sampler_opts {
    rg_sampler_kind kind;
    uint64_t seed;
    /* FIXED, TOKEN_BUDGET: shuffle the dataset before cutting it into batches.
     * BUCKETS: shuffle within each bucket, then shuffle the order of batches.
     * BEST_FIT: shuffle the order of rows (the packing itself does not depend on it).
     * false: no randomness at all (FIXED then keeps dataset order, BUCKETS goes short to long). */
    bool shuffle;
    int32_t batch_size;      /* FIXED (>= 1), BUCKETS without budget (>= 1): sequences per batch,
                                the last batch (of each bucket) may be smaller;
                                TOKEN_BUDGET and BUCKETS with budget: a cap on B when > 0 */
    int64_t token_budget;    /* TOKEN_BUDGET (>= 1), BUCKETS (0 = none): max B * longest */
    int32_t n_buckets;       /* BUCKETS: >= 1 (buckets beyond the dataset's size stay empty) */
    int32_t row_capacity;    /* BEST_FIT: tokens per row, >= 1 */
    int32_t rows_per_batch;  /* BEST_FIT: rows per batch, >= 1; the last batch may have fewer */
} rg_sampler_opts;

/* Batch i owns rows batch_rows[i]..batch_rows[i+1] and sequences
 * order[batch_offsets[i]..batch_offsets[i+1]]; row r owns sequences
 * order[row_offsets[r]..row_offsets[r+1]]. No batch and no row is empty. */
typedef struct rg_plan {
    rg_sampler_kind kind;
    int32_t n_seqs;          /* sequences in the dataset */
    int32_t n_batches;
    int32_t n_rows;          /* n_seqs for the padded strategies, packed rows for BEST_FIT */
    int32_t *order;          /* (n_seqs) dataset indices, batch after batch, row after row */
    int32_t *batch_offsets;  /* (n_batches + 1) into order */
    int32_t *batch_rows;     /* (n_batches + 1) into rows */
    int32_t *row_offsets;    /* (n_rows + 1) into order */
    int32_t *row_len;        /* (n_batches) slots per row of the batch: its longest
                                sequence, or row_capacity for BEST_FIT */
    int64_t n_real;          /* sum of lengths */
    int64_t n_slots;         /* sum over batches of rows * row_len */
    double pad_fraction;     /* (n_slots - n_real) / n_slots */
} rg_plan;

/* Plans batches for n_seqs sequences of lengths lens[0..n_seqs). Fails with
 * RG_ERR_INVALID_ARG on NULL arguments, n_seqs < 1, a length < 1, options
 * out of range for the kind, or a sequence that cannot fit: longer than
 * token_budget, or than row_capacity for BEST_FIT (the message names the
 * first such sequence; split or drop long sequences before planning).
 * On failure *out is zeroed and nothing is allocated.
 * BEST_FIT: sequences are placed longest first (ties: lower index first),
 * each into the row with the least room left that still fits it (ties: the
 * row opened first), or into a new row; a row's sequences are listed in the
 * order they were placed. */
rg_status rg_plan_build(const rg_sampler_opts *opts, int32_t n_seqs, const int32_t *lens,
                        rg_plan *out);
/* Frees a plan's arrays and zeroes it; NULL or zeroed is a no-op. */
void rg_plan_free(rg_plan *p);
/* "fixed", "token-budget", "buckets", "best-fit" ("unknown" otherwise). */
const char *rg_sampler_name(rg_sampler_kind k);

/* Documents for training on real text: n_docs documents of a token stream,
 * document d = tokens doc_offsets[d]..doc_offsets[d+1] (each >= 1 token).
 * Each document is cut into pieces of at most row_len tokens (a longer one
 * into consecutive pieces; the next-token target across a cut is lost, one per
 * cut), then the pieces are packed by best-fit-decreasing into rows of row_len
 * tokens, rows_per_batch rows per batch (rg_plan_build's BEST_FIT over the
 * piece lengths; shuffle with seed reorders the rows). A batch's pieces, built
 * with RG_LAYOUT_PACKED, are attention blocks of their own with positions
 * restarting, at most rows_per_batch * row_len tokens and no padding at all.
 * Every token of every document lies in exactly one piece. */
typedef struct rg_doc_pack {
    int32_t row_len;
    int64_t n_docs;
    int32_t n_pieces;
    int64_t n_split;         /* documents longer than row_len (cut into several pieces) */
    int64_t *piece_start;    /* (n_pieces) offset of the piece's first token in the stream */
    int32_t *piece_len;      /* (n_pieces) in [1, row_len] */
    rg_plan plan;            /* over pieces: batch i holds pieces plan.order[plan.batch_offsets[i]..] */
    int64_t n_real;          /* tokens of all pieces = of all documents */
    int64_t pad_max_slots;   /* n_pieces * row_len: the same pieces padded to row_len each */
} rg_doc_pack;

/* Fails with RG_ERR_INVALID_ARG on NULL arguments, n_docs < 1, row_len or
 * rows_per_batch < 1, or a document of fewer than 1 token (naming it), and with
 * RG_ERR_OVERFLOW past INT32_MAX pieces. On failure *out is zeroed. */
rg_status rg_doc_pack_build(int64_t n_docs, const int64_t *doc_offsets, int32_t row_len, int32_t rows_per_batch,
                            uint64_t seed, bool shuffle, rg_doc_pack *out);
/* Frees and zeroes; NULL or zeroed is a no-op. */
void rg_doc_pack_free(rg_doc_pack *p);

/* Sequence lengths for benchmarks: n_batches batches of batch_size lengths. */
typedef struct rg_lengths {
    int32_t n_batches;
    int32_t batch_size;
    int32_t longest;         /* the largest length */
    int32_t *lens;           /* (n_batches, batch_size), every entry >= 1 */
} rg_lengths;

/* Reads a lengths file: lines whose first non-blank character is '#' are
 * comments, blank lines are skipped, every other line is one batch of
 * whitespace-separated positive integers (<= INT32_MAX), all lines of the
 * same count. Fails with RG_ERR_IO if the file cannot be read and with
 * RG_ERR_FORMAT naming the file, line and field (1-based) if it is malformed
 * or holds no batch; on failure *out is zeroed. */
rg_status rg_lengths_read(const char *path, rg_lengths *out);
/* n_batches x batch_size lengths drawn uniformly from [lo, hi] (1 <= lo <= hi),
 * a function of seed alone. */
rg_status rg_lengths_uniform(uint64_t seed, int32_t n_batches, int32_t batch_size, int32_t lo,
                             int32_t hi, rg_lengths *out);
/* Frees the lengths and zeroes *l; NULL or zeroed is a no-op. */
void rg_lengths_free(rg_lengths *l);

/* A learnable synthetic dataset of variable-length sequences, for training
 * demos and tests: each sequence is one of a few string tasks,
 *     TASK x_1 .. x_n SEP y_1 .. y_n EOS          (length 2n + 3)
 *   copy: y = x;  reverse: y = x backwards;  sort: y = x in ascending order,
 * the x drawn uniformly from n_symbols symbol tokens and n uniform over the
 * values that keep the length within [min_len, max_len]. Everything after SEP
 * follows from what came before, so a model can drive its loss there towards
 * 0 while the x stay at ln(n_symbols): the mean loss can fall far below
 * ln(vocab_size). Token ids: RG_SYNTH_SEP, RG_SYNTH_EOS, the task markers
 * RG_SYNTH_TASK0 + (0 copy, 1 reverse, 2 sort), then the symbols from
 * RG_SYNTH_FIRST_SYMBOL; id 0 never occurs (free for padding).
 * Sequence i of a split is a function of (seed, split, i) alone, so a trainer
 * can start anywhere in the stream (resuming needs no saved data state). The
 * held-out split is drawn independently of the training one; with small
 * alphabets and short lengths some of its sequences also occur in training. */
enum {
    RG_SYNTH_SEP = 1, RG_SYNTH_EOS = 2, RG_SYNTH_TASK0 = 3, RG_SYNTH_FIRST_SYMBOL = 6,
};
typedef enum rg_synth_task {
    RG_SYNTH_COPY = 1u, RG_SYNTH_REVERSE = 2u, RG_SYNTH_SORT = 4u, RG_SYNTH_ALL = 7u,
} rg_synth_task;
typedef enum rg_synth_split { RG_SYNTH_TRAIN = 0, RG_SYNTH_HELDOUT = 1 } rg_synth_split;

typedef struct rg_synth_opts {
    uint64_t seed;
    uint32_t tasks;          /* non-empty OR of rg_synth_task; a sequence's task is uniform among them */
    int32_t vocab_size;      /* >= RG_SYNTH_FIRST_SYMBOL + 2 */
    int32_t n_symbols;       /* in [2, vocab_size - RG_SYNTH_FIRST_SYMBOL]; 0 = all of them */
    int32_t min_len;         /* >= 1 (lengths below 5 cannot occur: the shortest sequence is 5) */
    int32_t max_len;         /* >= max(min_len, 5), and some 2n + 3 must lie in [min_len, max_len] */
} rg_synth_opts;

/* Checks the options; the error names the field, its value and the range. */
rg_status rg_synth_validate(const rg_synth_opts *o);
/* Writes sequence `index` (>= 0) of a split to tokens[0..*len); cap (>= the
 * sequence's length; max_len always suffices) is the room in tokens. */
rg_status rg_synth_sequence(const rg_synth_opts *o, rg_synth_split split, int64_t index, int32_t *tokens,
                            int32_t cap, int32_t *len);
/* "copy", "reverse", "sort" for one task bit ("unknown" otherwise). */
const char *rg_synth_task_name(rg_synth_task t);

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
 * (all micro-batches together). Every batch is checked (tokens and targets in
 * the vocabulary, positions and lengths within max_seq_len, cu_seqlens
 * consistent with the layout) before any work; only a backend failure inside
 * the work can leave gradients (and, for a train step, parameters) partly updated.
 * Once the arena is reserved (rg_model_reserve), a step neither allocates nor
 * synchronises, except to read the gradient norm (before the update) and the
 * losses back. */
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
/* rg_model_grads, then clipping, the lr schedule and one optimizer update.
 * A gradient norm that is not finite fails (RG_ERR_INVALID_ARG) before any update. */
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

/* ---- HuggingFace GPT-2 (GPT2LMHeadModel) checkpoints ----
 * A directory as save_pretrained writes it: config.json + model.safetensors
 * (or a sharded model.safetensors.index.json). HF names (optionally prefixed
 * "transformer."): wte.weight, wpe.weight, h.N.{ln_1,ln_2}.{weight,bias},
 * h.N.attn.{c_attn,c_proj}.{weight,bias}, h.N.mlp.{c_fc,c_proj}.{weight,bias},
 * ln_f.{weight,bias}. HF's Conv1D weights are (in, out): the transpose of the
 * parameter table's (out, in). */

/* Reads config.json (the path of the file, or a directory holding it) into a
 * GPT-2-shaped config: n_layer, n_embd, n_head, vocab_size, n_positions,
 * layer_norm_epsilon, n_inner (null: 4 n_embd; else a multiple of n_embd),
 * activation_function ("gelu_new" / "gelu_pytorch_tanh": tanh, "gelu": erf);
 * absent fields take transformers' GPT2Config defaults (12, 768, 12, 50257,
 * 1024, 1e-5, null, "gelu_new"). model_type, when present, must be "gpt2".
 * Options that change the computation (scale_attn_weights false,
 * scale_attn_by_inverse_layer_idx, add_cross_attention, tie_word_embeddings
 * false, another activation) fail with RG_ERR_UNSUPPORTED naming the value;
 * a malformed file or field with RG_ERR_FORMAT; a config that
 * rg_model_config_validate refuses with RG_ERR_FORMAT quoting its message. */
rg_status rg_hf_gpt2_config_read(const char *dir_or_config_json, rg_model_config *out);

/* Loads the parameters of a GPT-2-shaped model (ln and linear biases, final
 * LayerNorm, tied, no head bias, n_kv_heads == n_heads) from a checkpoint
 * (a .safetensors file, a directory, or an index; see rg_checkpoint_open).
 * Every expected tensor must be present with the model's shape (the error
 * names the tensor, expected vs got) in F32, BF16 or F16. The attn.bias /
 * attn.masked_bias buffers are skipped; lm_head.weight, when present, must
 * equal wte.weight exactly (it is the same tensor in a tied model); any other
 * tensor fails (RG_ERR_FORMAT naming it). Everything is read and checked
 * before the model is touched: on failure the model is unchanged (except
 * after a backend failure while copying the parameters in). Gradients and
 * optimizer state are left as they were. */
rg_status rg_hf_gpt2_load(rg_model *m, const char *path);

/* Writes dir/model.safetensors (F32, "transformer."-prefixed HF names,
 * Conv1D layout, no lm_head.weight since it is tied, metadata {"format":"pt"})
 * and dir/config.json (model_type "gpt2", architectures ["GPT2LMHeadModel"],
 * the hyperparameters above, n_ctx = n_positions), so that
 * GPT2LMHeadModel.from_pretrained(dir) loads it. Creates dir (one level) if
 * missing. Each file is replaced atomically (temporary file, fsync, rename);
 * the weights are written first, then config.json. A model that is not
 * GPT-2-shaped fails with RG_ERR_UNSUPPORTED naming the field. */
rg_status rg_hf_gpt2_save(rg_model *m, const char *dir);

/* ===== 7. checkpoints (safetensors) ==================================== */

/* The safetensors format (HuggingFace): an 8-byte little-endian header length
 * N, N bytes of JSON header, then the data region. The header maps each tensor
 * name to {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
 * (byte offsets into the data region; little-endian, row-major) and may hold
 * "__metadata__": {"key": "value", ...} (strings only).
 *
 * Reading memory-maps the file and validates all of it before returning: the
 * header length (<= 100 MB, inside the file), the JSON, every entry (known
 * dtype, shape of non-negative integers whose element count does not overflow,
 * end - begin == element count * dtype size, inside the data region, no two
 * tensors overlapping), unique names. A bad file fails with RG_ERR_FORMAT and a
 * message naming the file, the tensor and the problem (expected vs got); a file
 * that cannot be opened or mapped fails with RG_ERR_IO. The mapping stays valid
 * until close; the file must not be truncated meanwhile. */
typedef struct rg_safetensors rg_safetensors;  /* one open file, or all shards of a checkpoint */

/* One tensor of an open checkpoint; pointers stay valid until close. */
typedef struct rg_tensor_info {
    const char *name;
    const char *dtype_name;  /* as in the file: "F32", "BF16", "F16", "I32", "F64", "I64", "U8", ... */
    bool known_dtype;        /* the dtype is one of rg_dtype (F32, BF16, F16, I32); dtype is then set */
    rg_dtype dtype;
    bool convertible;        /* F32, BF16 or F16: rg_safetensors_read_f32 accepts it */
    int32_t ndim;            /* 0 for a scalar */
    const int64_t *shape;    /* (ndim) */
    int64_t numel;           /* product of shape; 1 for a scalar, 0 if any dimension is 0 */
    size_t nbytes;
    const void *data;        /* nbytes raw little-endian bytes inside the mapping; may be unaligned */
    const char *file;        /* path of the file (shard) that holds it */
} rg_tensor_info;

/* Opens one .safetensors file. */
rg_status rg_safetensors_open(const char *path, rg_safetensors **out);
/* Opens a checkpoint given as a .safetensors file, a directory holding
 * model.safetensors (preferred) or model.safetensors.index.json, or the path of
 * such an index ({"weight_map": {tensor: shard file}}; shard files are relative
 * to the index's directory). All shards are presented as one flat set of
 * tensors. Fails (naming the files) on a missing or bad shard, a tensor the
 * index maps to a shard that does not hold it, or a shard holding a tensor
 * the index does not map to it. Metadata is the union over shards (the first
 * shard in file-name order wins on a repeated key). */
rg_status rg_checkpoint_open(const char *path, rg_safetensors **out);
/* Unmaps and frees; NULL is a no-op. */
void rg_safetensors_close(rg_safetensors *st);

/* Tensors are listed in bytewise name order, i in [0, count). */
size_t rg_safetensors_count(const rg_safetensors *st);
rg_status rg_safetensors_info(const rg_safetensors *st, size_t i, rg_tensor_info *out);
/* By name: RG_ERR_FORMAT ("no tensor named ...") when absent. */
rg_status rg_safetensors_find(const rg_safetensors *st, const char *name, rg_tensor_info *out);
bool rg_safetensors_has(const rg_safetensors *st, const char *name);
/* Converts tensor `name` (F32, BF16 or F16) to float32 in dst[0..n). n must
 * equal its element count (RG_ERR_INVALID_ARG otherwise); other dtypes give
 * RG_ERR_UNSUPPORTED. */
rg_status rg_safetensors_read_f32(const rg_safetensors *st, const char *name, float *dst, size_t n);

/* __metadata__: entries in bytewise key order; lookup gives NULL when absent. */
size_t rg_safetensors_metadata_count(const rg_safetensors *st);
rg_status rg_safetensors_metadata_at(const rg_safetensors *st, size_t i, const char **key, const char **value);
const char *rg_safetensors_metadata(const rg_safetensors *st, const char *key);

/* A tensor to write: host memory in the file's dtype (native byte order). */
typedef struct rg_tensor_view {
    const char *name;        /* non-empty UTF-8, unique, not "__metadata__" */
    rg_dtype dtype;          /* F32, BF16, F16 or I32 */
    int32_t ndim;            /* 0 (scalar) .. RG_SAFETENSORS_MAX_NDIM */
    const int64_t *shape;    /* (ndim) non-negative */
    const void *data;        /* numel * rg_dtype_size(dtype) bytes; may be NULL when that is 0 */
} rg_tensor_view;

#define RG_SAFETENSORS_MAX_NDIM 64

/* Writes n tensors and n_meta metadata pairs (metadata_kv[2i] = key,
 * metadata_kv[2i+1] = value, UTF-8, unique keys) to path, laid out as the
 * safetensors Python library does: tensors ordered by dtype (F32, I32, BF16,
 * F16) then name, header keys in that order after "__metadata__" (its keys
 * sorted), header padded with spaces to a multiple of 8 bytes, data in header
 * order. Atomic: everything is validated first, then written to
 * "<path>.tmp.<pid>" in the same directory, fsync'ed and renamed over path (and
 * the directory fsync'ed). On failure the temporary file is removed and any
 * previous file at path is untouched. Two threads of one process must not save
 * to the same path at once (they would share the temporary file). */
rg_status rg_safetensors_write(const char *path, const rg_tensor_view *tensors, size_t n,
                               const char *const *metadata_kv, size_t n_meta);

/* ===== 8. tokenizer and token shards =================================== */

/* GPT-2 byte-level BPE. Loaded from vocab.json (a flat JSON object: token
 * string -> id, token strings in GPT-2's byte-to-unicode alphabet) and
 * merges.txt (an optional "#version" first line, then one "a b" pair per line,
 * by rank). Text is pre-tokenised as GPT-2's regex does
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * over UTF-8, then each piece is merged by rank. Letters and numbers: ASCII
 * exactly; beyond it, Latin-1, Latin Extended A/B and Additional, IPA, Greek,
 * Cyrillic, Armenian, Hebrew, Arabic, Devanagari, Thai, Hangul, kana, CJK
 * ideographs (with extensions A and B) and fullwidth Latin as letters, and the
 * common digit ranges (Latin-1 superscripts and fractions, Arabic-Indic,
 * Devanagari, fullwidth, super/subscripts, Roman numerals, circled numbers) as
 * numbers; every other code point, combining marks included, counts as
 * "other" (GPT-2 may group some of them differently). Bytes that are not valid
 * UTF-8 each count as one "other" character, so any byte string is encoded
 * and decode(encode(s)) == s always holds.
 * Encoding updates a per-tokenizer cache: do not encode with one tokenizer
 * from two threads at once (decode is read-only). */
typedef struct rg_tokenizer rg_tokenizer;

/* Flags of rg_tokenizer_encode. */
#define RG_TOKENIZE_ALLOW_SPECIAL 1u  /* "<|endoftext|>" in the text becomes the EOT id */

/* A growable array of token ids; zero-initialise before first use. */
typedef struct rg_token_buf {
    int32_t *ids;
    size_t n, cap;
} rg_token_buf;
/* A growable byte string (kept NUL-terminated); zero-initialise before first use. */
typedef struct rg_byte_buf {
    char *data;
    size_t n, cap;
} rg_byte_buf;
void rg_token_buf_free(rg_token_buf *b);   /* frees and zeroes; NULL is a no-op */
void rg_byte_buf_free(rg_byte_buf *b);

/* Loads a tokenizer. Fails with RG_ERR_IO if a file cannot be read and with
 * RG_ERR_FORMAT naming the file and line if it is malformed: bad JSON, an id
 * outside [0, INT32_MAX) or repeated, a token with a character outside the
 * byte alphabet, a missing single-byte token, a merge line that is not two
 * known tokens whose concatenation is also a token. */
rg_status rg_tokenizer_load(const char *vocab_json, const char *merges_txt, rg_tokenizer **out);
void rg_tokenizer_free(rg_tokenizer *t);
/* Loads HuggingFace tokenizers' tokenizer.json for GPT-2-style byte-level BPE:
 * model.vocab (token -> id, byte alphabet) and model.merges (by rank, each
 * "a b" or ["a", "b"]), added_tokens holding at most "<|endoftext|>" (added to
 * the vocabulary with its id when model.vocab lacks it). Everything else must
 * keep GPT-2's behaviour: model.type "BPE" (or absent) with no dropout,
 * unk_token, subword prefix/suffix, fuse_unk, byte_fallback or ignore_merges;
 * normalizer, truncation and padding null; pre_tokenizer ByteLevel with
 * add_prefix_space false and use_regex true; post_processor and decoder null
 * or ByteLevel. Anything else fails with RG_ERR_UNSUPPORTED naming the field
 * ("normalizer", "model.type", "pre_tokenizer.type", "added_tokens[1]", ...);
 * malformed contents with RG_ERR_FORMAT naming the file, line and field. */
rg_status rg_tokenizer_load_json(const char *tokenizer_json, rg_tokenizer **out);
/* dir/tokenizer.json when it exists, else dir/vocab.json + dir/merges.txt
 * (RG_ERR_IO naming dir when neither is there). */
rg_status rg_tokenizer_load_dir(const char *dir, rg_tokenizer **out);
/* 1 + the largest id of the vocabulary. */
int32_t rg_tokenizer_vocab_size(const rg_tokenizer *t);
/* The id of "<|endoftext|>", or -1 if the vocabulary has none. */
int32_t rg_tokenizer_eot_id(const rg_tokenizer *t);
/* Appends the ids of text[0..len) (any bytes, NUL included) to out. On failure
 * (out of memory) out keeps its previous contents. */
rg_status rg_tokenizer_encode(rg_tokenizer *t, const void *text, size_t len, unsigned flags,
                              rg_token_buf *out);
/* Appends the bytes of ids[0..n) to out. Fails with RG_ERR_INVALID_ARG naming
 * the index and id of the first id that is not in the vocabulary; out then
 * keeps its previous contents. */
rg_status rg_tokenizer_decode(const rg_tokenizer *t, const int32_t *ids, size_t n, rg_byte_buf *out);

/* Token shards in llm.c's format: a header of 256 little-endian int32
 * (header[0] = 20240520, header[1] = 1, header[2] = token count), then the
 * tokens as uint16. Each document is written prefixed by the EOT token. */
#define RG_SHARD_MAGIC 20240520
#define RG_SHARD_VERSION 1
#define RG_SHARD_HEADER_BYTES 1024

/* Writes documents into shards "<prefix>_000000.bin", "<prefix>_000001.bin", ...
 * A document never straddles two shards: a shard is finished when the next
 * document (with its EOT) would take it past shard_tokens, and a document
 * longer than that gets a shard of its own. Every shard is written to
 * "<name>.tmp", flushed to disk and renamed, so a shard file that exists is
 * complete. */
typedef struct rg_shard_writer rg_shard_writer;

/* shard_tokens in [1, INT32_MAX]; eot_id in [0, 65536). */
rg_status rg_shard_writer_open(const char *prefix, int64_t shard_tokens, int32_t eot_id,
                               rg_shard_writer **out);
/* Appends EOT then ids[0..n) (n may be 0). Ids outside [0, 65536) fail with
 * RG_ERR_INVALID_ARG naming the index before anything is written; a document
 * of more than INT32_MAX - 1 tokens fails with RG_ERR_OVERFLOW. After an I/O
 * failure the writer refuses further documents (close it). */
rg_status rg_shard_writer_add(rg_shard_writer *w, const int32_t *ids, size_t n);
/* Finishes the current shard (if it holds any token) and frees the writer,
 * even on failure (a half-written shard is then removed). n_shards and
 * n_tokens (may be NULL) receive the totals written, EOTs included. */
rg_status rg_shard_writer_close(rg_shard_writer *w, int32_t *n_shards, int64_t *n_tokens);

/* One shard in memory, split into documents at every EOT token: document i
 * is tokens[doc_offsets[i] .. doc_offsets[i+1]) and starts with its EOT,
 * except a first document made of tokens that precede the shard's first EOT
 * (a shard cut inside a document, as llm.c's own shards are). */
typedef struct rg_shard {
    int64_t n_tokens;
    uint16_t *tokens;        /* (n_tokens) */
    int64_t n_docs;
    int64_t *doc_offsets;    /* (n_docs + 1), from 0 to n_tokens */
} rg_shard;

/* Reads and validates a shard: RG_ERR_IO if it cannot be read, RG_ERR_FORMAT
 * naming the file and the field if the header's magic, version or token count
 * disagree with the format or with the file's length. On failure *out is zeroed. */
rg_status rg_shard_read(const char *path, int32_t eot_id, rg_shard *out);
/* Frees a shard's arrays and zeroes it; NULL or zeroed is a no-op. */
void rg_shard_free(rg_shard *s);

/* ===== 9. KV cache, decode attention, generation ====================== */

/* A paged KV cache (PagedAttention) for generation. For every layer, K and V
 * live in pools of n_blocks fixed-size blocks in the backend's memory, each
 * block (block_size, h_kv, d) in the act dtype; only the kv heads are stored
 * (GQA/MQA shrink the cache). A sequence, known by a caller-chosen id >= 0,
 * owns a list of blocks (its block table): token i of the sequence lives in
 * slot i % block_size of its block i / block_size, in every layer. Blocks
 * come from a shared free list and go back to it when the sequence is removed.
 *
 * A step of generation:
 *   1. rg_kv_cache_append: each sequence of the step grows by its new tokens
 *      (blocks allocated as needed, all or nothing);
 *   2. rg_kv_cache_set_batch: the step's sequences, in batch order, and how
 *      many new tokens each brings (cu_new); builds the (n_seqs, max_blocks)
 *      block table, lengths and slot mapping on the host and uploads them once;
 *   3. per layer: rg_kv_cache_write scatters the new K/V rows into their slots
 *      (the last cu_new[b+1]-cu_new[b] positions of sequence b), then
 *      rg_attn_decode lets each sequence's last token attend over its cache.
 * Any change to the sequences (add, remove, reserve, append) makes the batch
 * stale: write and decode then fail until set_batch is called again.
 * Not thread-safe: one thread drives a cache. */
typedef struct rg_kv_cache rg_kv_cache;

#define RG_KV_BLOCK_SIZE_DEFAULT 16

/* n_layers, n_kv_heads, block_size, n_blocks >= 1; head_dim a multiple of 8 in
 * [8, 256] (the attention contract). Allocates 2 * n_layers * n_blocks *
 * block_size * n_kv_heads * head_dim act-dtype elements on the backend
 * (uninitialised); RG_ERR_OVERFLOW if that does not fit a size_t. */
rg_status rg_kv_cache_init(rg_backend *be, int32_t n_layers, int32_t n_kv_heads, int32_t head_dim,
                           int32_t block_size, int32_t n_blocks, rg_kv_cache **out);
/* Frees the pools and the tables; NULL is a no-op. */
void rg_kv_cache_free(rg_kv_cache *kv);

/* A new empty sequence (RG_ERR_INVALID_ARG if the id is negative or in use). */
rg_status rg_kv_cache_add_seq(rg_kv_cache *kv, int32_t seq_id);
/* Removes a sequence and returns its blocks to the free list. */
rg_status rg_kv_cache_remove_seq(rg_kv_cache *kv, int32_t seq_id);
/* Makes room for n_tokens >= 0 more tokens of a sequence without changing its
 * length. RG_ERR_EXHAUSTED ("kv cache: sequence 3 needs 2 more blocks, 1 free
 * of 512") when the pool is too small; nothing changes then. */
rg_status rg_kv_cache_reserve(rg_kv_cache *kv, int32_t seq_id, int32_t n_tokens);
/* Sequence seq_ids[b] grows by n_new[b] >= 0 tokens, allocating blocks as
 * needed; all or nothing (on RG_ERR_EXHAUSTED the message names the first
 * sequence that does not fit, the blocks it needs and those left, and the
 * total asked and free; no sequence changed). Ids must be distinct. */
rg_status rg_kv_cache_append(rg_kv_cache *kv, int32_t n_seqs, const int32_t *seq_ids,
                             const int32_t *n_new);

/* Length (tokens) of a sequence, or -1 if the id is unknown. */
int32_t rg_kv_cache_seq_len(const rg_kv_cache *kv, int32_t seq_id);
/* Blocks on the free list, and in the pool. */
int32_t rg_kv_cache_n_free_blocks(const rg_kv_cache *kv);
int32_t rg_kv_cache_n_blocks(const rg_kv_cache *kv);
int32_t rg_kv_cache_block_size(const rg_kv_cache *kv);
/* The blocks a sequence owns, in order: *n_out = their count (reserved ones
 * included); the first min(count, cap) are written to blocks (may be NULL when cap = 0). */
rg_status rg_kv_cache_seq_blocks(const rg_kv_cache *kv, int32_t seq_id, int32_t cap,
                                 int32_t *blocks, int32_t *n_out);
/* Host-side flattened block table of n_seqs sequences: table (n_seqs,
 * max_blocks) row b = the blocks holding sequence seq_ids[b]'s tokens, padded
 * with -1; lens (n_seqs) their lengths. RG_ERR_INVALID_ARG if a sequence has
 * more than max_blocks blocks of tokens. */
rg_status rg_kv_cache_block_table(const rg_kv_cache *kv, int32_t n_seqs, const int32_t *seq_ids,
                                  int32_t max_blocks, int32_t *table, int32_t *lens);

/* The step's batch: n_seqs >= 1 distinct sequences in batch order; cu_new
 * (n_seqs + 1, host, starts at 0, non-decreasing) says that sequence b's new
 * tokens are rows cu_new[b]..cu_new[b+1] of the packed K/V given to write,
 * and they are its last cu_new[b+1] - cu_new[b] positions (<= its length). */
rg_status rg_kv_cache_set_batch(rg_kv_cache *kv, int32_t n_seqs, const int32_t *seq_ids,
                                const int32_t *cu_new);
/* Scatters the batch's new rows of one layer into the cache: k, v (T, h_kv, d)
 * in backend memory, T = cu_new[n_seqs], row strides in elements (0 =
 * contiguous h_kv * d; at least that otherwise, so that k and v may be views
 * into a fused qkv projection). */
rg_status rg_kv_cache_write(rg_kv_cache *kv, int32_t layer, const void *k, int32_t stride_k,
                            const void *v, int32_t stride_v);

/* Decode attention: for each sequence b of the batch, query row b of q
 * (n_seqs, h, d) attends over all seq_len(b) cached keys and values of the
 * layer (the just-written tokens included); o (n_seqs, h, d) contiguous.
 * h = n_heads, a multiple of the cache's h_kv (query head i reads kv head
 * i / (h / h_kv)); d the cache's head_dim; stride_q the row stride of q in
 * elements (0 = h * d); softmax_scale <= 0 means 1/sqrt(d). A sequence of
 * length 0 outputs zeros. Long contexts are split over the KV length
 * (partitions of RG_ATTN_DECODE_PARTITION keys, then a reduction). Scratch
 * comes from a buffer the backend keeps, grown to the largest call so far. */
#define RG_ATTN_DECODE_PARTITION 256
rg_status rg_attn_decode(rg_backend *be, const rg_kv_cache *kv, int32_t layer, int32_t n_heads,
                         float softmax_scale, const void *q, int32_t stride_q, void *o);

/* ---- generation (continuous batching over the KV cache) ----
 * Sampling settings of one request, applied to its next-token logits in
 * HuggingFace's order: repetition penalty, then greedy (argmax, the lowest id
 * on a tie) or temperature, top-k, top-p and a draw from the request's own
 * RNG stream (seeded by `seed`, one draw per token), so that a request's
 * tokens do not depend on which other requests share its batches. */
typedef struct rg_sampling {
    bool greedy;              /* argmax; also implied by temperature <= 0 or top_k == 1 */
    float temperature;        /* > 0 divides the logits; <= 0 means greedy */
    int32_t top_k;            /* > 0: keep the k most likely tokens (ties: lower id first); 0: all */
    float top_p;              /* (0, 1]: keep the smallest set of most likely tokens whose
                                 probability reaches top_p; 1: all */
    float repetition_penalty; /* > 0, 1 = off. As HF: each distinct token of the prompt and of the
                                 output so far has its logit divided by it when positive,
                                 multiplied by it when negative */
    uint64_t seed;
} rg_sampling;

/* Defaults: sampling at temperature 1, top_k 0, top_p 1, no penalty, seed 0. */
void rg_sampling_default(rg_sampling *out);
/* RG_ERR_INVALID_ARG naming the field when a setting is out of its range. */
rg_status rg_sampling_validate(const rg_sampling *s);

/* Why a request stopped. */
typedef enum rg_gen_finish {
    RG_GEN_RUNNING = 0,       /* not finished (the token is not its last) */
    RG_GEN_EOT,               /* it produced eot_id (the last token reported is eot_id) */
    RG_GEN_LENGTH,            /* it produced max_new_tokens tokens */
} rg_gen_finish;

/* Called for every generated token as soon as it is sampled, during
 * rg_generator_step; index is the token's rank in the request's output. */
typedef void (*rg_gen_token_fn)(void *user, int32_t request, int32_t index, int32_t token, rg_gen_finish finish);

typedef struct rg_generator_opts {
    int32_t max_batch;        /* running sequences at most, >= 1 */
    int32_t block_size;       /* KV cache block size; 0: RG_KV_BLOCK_SIZE_DEFAULT */
    int32_t n_blocks;         /* KV pool; 0: room for max_batch sequences of max_seq_len tokens */
    int32_t max_prefill_tokens; /* prompt tokens per prefill pass (>= max_seq_len); 0: max_seq_len */
    rg_gen_token_fn on_token; /* may be NULL (poll with rg_generator_tokens) */
    void *user;
    bool no_graph;            /* decode op by op even where the backend can replay a recorded step
                                 (CUDA graphs; also off with RG_NO_GRAPH=1 or RG_PROFILE=1) */
} rg_generator_opts;

/* One request: prompt ids (copied), 1 <= prompt_len, 1 <= max_new_tokens and
 * prompt_len + max_new_tokens <= the model's max_seq_len (no truncation: a
 * longer request is refused); eot_id >= 0 stops at that token, -1 never stops early. */
typedef struct rg_gen_request {
    const int32_t *prompt;
    int32_t prompt_len;
    int32_t max_new_tokens;
    int32_t eot_id;
    rg_sampling sampling;
} rg_gen_request;

/* What one step did (also the reports' timings). Generated tokens = prefill_seqs + decode_tokens. */
typedef struct rg_gen_step_stats {
    int32_t prefill_seqs;     /* requests admitted and prefilled (each also got its first token) */
    int64_t prefill_tokens;   /* prompt tokens through the model */
    double prefill_s;         /* seconds of the prefill pass, sampling included */
    int64_t decode_tokens;    /* one per running sequence of the decode pass */
    double decode_s;
    int32_t finished;         /* requests that ended in this step */
    int32_t running, waiting; /* after the step */
} rg_gen_step_stats;

/* The generation engine over a model (which must outlive it): a paged KV
 * cache, a FIFO of waiting requests and up to max_batch running sequences.
 * Each rg_generator_step admits waiting requests in order while a batch slot,
 * the prefill budget and the KV pool allow (a request's blocks for
 * prompt_len + max_new_tokens - 1 tokens are reserved at admission, so a
 * running sequence never runs out of cache; a request that does not fit yet
 * WAITS for running ones to finish), prefills them as one packed batch and
 * samples their first token, then runs one decode step over the sequences
 * that were already running. A finished sequence leaves the batch at once and
 * frees its blocks; waiting requests join at the next step. Not thread-safe.
 * After a failed step (a backend error) free the generator. */
typedef struct rg_generator rg_generator;

rg_status rg_generator_create(rg_model *m, const rg_generator_opts *opts, rg_generator **out);
void rg_generator_free(rg_generator *g);
/* Queues a request; *id (>= 0, in order of submission) names it. Fails with
 * RG_ERR_INVALID_ARG on an empty prompt, a token outside the vocabulary, a
 * prompt longer than max_seq_len or prompt + max_new_tokens beyond it, bad
 * sampling settings; with RG_ERR_EXHAUSTED when the request alone needs more
 * KV blocks than the whole pool (the message names both counts). */
rg_status rg_generator_add(rg_generator *g, const rg_gen_request *req, int32_t *id);
/* One step (see above); stats may be NULL. Nothing to do is not an error. */
rg_status rg_generator_step(rg_generator *g, rg_gen_step_stats *stats);
/* Requests waiting or running. */
int32_t rg_generator_n_pending(const rg_generator *g);
/* A request's output so far (valid until the next step or release) and whether it finished. */
rg_status rg_generator_tokens(const rg_generator *g, int32_t id, const int32_t **tokens, int32_t *n,
                              rg_gen_finish *finish);
/* Forgets a finished request (its tokens); RG_ERR_INVALID_ARG if unknown or not finished. */
rg_status rg_generator_release(rg_generator *g, int32_t id);

#ifdef __cplusplus
}
#endif
#endif /* RAGGED_H */
