/* bench_attn.h — the attention benchmark's options, problems and results,
 * shared by bench_attn.c (flags, report) and bench_attn_run.c (buffers, timing). */
#ifndef RG_TOOLS_BENCH_ATTN_H
#define RG_TOOLS_BENCH_ATTN_H
#include "ragged.h"
#include "msg.h"
#include "report.h"
#include <stdbool.h>
#include <stddef.h>

enum { IMPL_FLASH = 0, IMPL_PADDED, IMPL_REF, N_IMPL };

typedef struct attn_opts {
    const char *lengths_path;  /* NULL: generate */
    int batches, batch_size, max_len, seed;
    int heads, kv_heads, head_dim;
    bool causal;
    const char *mode, *impl;
    double ref_gflop;
    bool ref_full, check;
    int reps, warmup, threads;
    const char *backend;
    bool peak;
    int peak_n;
    const char *output;
    bool quiet;
    /* derived by validation */
    bool use[N_IMPL];
    bool bwd;          /* time the backward (mode fwd+bwd or both) */
    bool fwd_rows;     /* print fwd rows (mode fwd or both) */
    report_format format;
} attn_opts;

/* One problem: a batch (or the reference's sample) as host cu_seqlens. */
typedef struct attn_case {
    int32_t n_seqs;
    int32_t *cu;          /* (n_seqs + 1) packed: prefix sums of the lengths */
    int32_t *cu_pad;      /* (n_seqs + 1) padded: multiples of max_len */
    int32_t max_seqlen;   /* longest length */
    int32_t tokens;       /* cu[n_seqs] */
    double flops_fwd;     /* useful forward FLOPs (rg_attn_flops_forward) */
} attn_case;

/* Times of one implementation: per repetition, summed over its batches. */
typedef struct attn_result {
    int n_reps, n_batches;
    double *fwd_s, *bwd_s;   /* (n_reps) seconds */
    double flops_fwd;        /* useful forward FLOPs of one pass */
    double tokens;           /* real tokens of one pass */
    bool is_sample;          /* ran on the reference's sample, not on the batches */
} attn_result;

typedef struct attn_run {
    rg_backend *be;
    rg_dtype dt;              /* activation dtype */
    size_t es;                /* its size */
    attn_case *cases;         /* (n_cases) the timed batches */
    int n_cases;
    attn_case sample;         /* the reference's sample: the first sample_seqs of batch 1 */
    int sample_seqs, sample_of;
    attn_result res[N_IMPL];
    double peak_flops;        /* 0 when not measured; the larger of peak_at[] */
    double peak_at[2];        /* measured before and after the attention runs */
    int peak_n;
    char peak_why[384];
    char ref_skipped[256];    /* why the reference did not run, when it did not */
    bool check_done, check_failed;
    char check_text[256];
    /* device buffers, sized for the largest problem: q, o, dout, dq (rows, h, d);
     * k, v, dk, dv (rows, h_kv, d); lse (h, rows) fp32 */
    size_t rows;
    void *q, *k, *v, *o, *dout, *dq, *dk, *dv;
    float *lse;
    msg_progress progress;
} attn_run;

/* Fills c from n lengths; -1 (with a message in err naming `what`) when out of
 * memory or when the batch's tokens, packed or padded, overflow int32. */
int attn_case_init(attn_case *c, const int32_t *lens, int n, const attn_opts *o, const char *what, char *err,
                   size_t err_size);
/* Backend, peak, buffers, timed passes, the reference sample and the check.
 * Returns 0, or 1 after printing "ragged: bench attn: ..." to stderr. */
int attn_run_all(const attn_opts *o, attn_run *run);
/* Bytes the caller allocates beyond the packed tensors for impl (see the report's note). */
double attn_extra_bytes(const attn_opts *o, const attn_run *run, int impl, bool bwd);
void attn_run_free(attn_run *run);

int cmd_bench_attn(int argc, char **argv);

#endif
