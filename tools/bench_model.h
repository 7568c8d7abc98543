/* bench_model.h — `ragged bench` (the model benchmark): its options, the
 * workload of each batching strategy and the timings, shared by
 * bench_model.c (flags, report, chart) and bench_model_run.c (batches, models, timing). */
#ifndef RG_TOOLS_BENCH_MODEL_H
#define RG_TOOLS_BENCH_MODEL_H
#include "ragged.h"
#include "model_cli.h"
#include "msg.h"
#include "report.h"
#include <stdbool.h>
#include <stdio.h>

enum { STRAT_PAD_MAX = 0, STRAT_PAD_LONGEST, STRAT_PACKED, STRAT_BUCKETED, N_STRAT };
enum { MODE_EVAL = 0, MODE_TRAIN, N_MODE };

extern const char *const strat_names[N_STRAT];   /* "pad-to-max", ... */
extern const char *const mode_names[N_MODE];     /* "eval", "train" */

typedef struct mbench_opts {
    model_flags model;
    const char *lengths_path;    /* NULL: generate */
    int batch_size, min_len, max_len, seed;
    int steps, warmup;
    const char *strategies, *mode;
    int buckets, token_budget;   /* bucketed sampler; token_budget 0 = auto */
    int threads;
    const char *backend;
    bool peak;
    int peak_n;
    const char *output, *plot;
    bool quiet;
    /* derived by validation */
    bool use[N_STRAT], run_mode[N_MODE];
    report_format format;
    rg_model_config cfg;
} mbench_opts;

/* One strategy's steps: batches built up front, timings per step and mode. */
typedef struct mbench_strat {
    int n_steps;                 /* batches (timed steps); the first `warmup` also run untimed first */
    rg_batch *batches;           /* (n_steps) */
    double *ms[N_MODE];          /* (n_steps) milliseconds per timed step */
    double useful[N_MODE];       /* useful FLOPs over the timed steps (rg_model_flops) */
    double executed[N_MODE];     /* FLOPs the layout runs */
    double loss_sum[N_MODE];     /* summed over the timed steps */
    int64_t n_targets[N_MODE];
    int64_t real, slots, seqs;   /* over the steps */
    size_t mem[N_MODE];          /* bytes: params (+ grads, optimizer) + activations reserved for its batches */
    bool done[N_MODE];
    int64_t budget;              /* bucketed: the token budget used */
} mbench_strat;

typedef struct mbench_run {
    rg_backend *be;
    rg_lengths lengths;          /* the timed batches' lengths (lens malloc'ed here, not by the library) */
    int32_t *tokens;             /* every sequence's tokens, end to end */
    int32_t **seqs;              /* (n_batches * batch_size) into tokens */
    mbench_strat strat[N_STRAT];
    double peak_flops;           /* 0 when not measured; the larger of peak_at[] */
    double peak_at[2];           /* measured before and after the steps */
    int peak_n;
    char peak_why[384];
    double wall_s, load_before, load_after;  /* load: 1-minute load average (-1 unknown) */
    msg_progress progress;
    char lengths_desc[320];
    /* RG_PROFILE=1 (a profiling backend): per-op totals over each mode's timed steps */
    rg_profile_entry *prof[N_MODE];
    int n_prof[N_MODE];
    int prof_steps[N_MODE];      /* timed steps of the mode (every strategy) */
    double prof_ms[N_MODE];      /* their summed wall ms */
} mbench_run;

/* Lengths, batches, peak, memory per strategy, warm-up and interleaved timed
 * steps. Returns 0, or 1 after printing "ragged: bench: ..." to stderr. */
int mbench_run_all(const mbench_opts *o, mbench_run *run);
/* The per-op profile tables (bench_model_prof.c), when the backend profiled. */
void mbench_print_profile(const mbench_opts *o, const mbench_run *run, FILE *f);
void mbench_run_free(mbench_run *run);

int cmd_bench_model(int argc, char **argv);

#endif
