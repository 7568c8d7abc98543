/* bench_attn.c — `ragged bench attn`: varlen attention, flash vs reference vs
 * pad-to-max, forward and forward+backward, on batches of sequence lengths.
 * Each repetition is one pass over the batches; a batch's forward and backward
 * are timed separately, so one pass gives both the fwd and the fwd+bwd rows. */
#define _POSIX_C_SOURCE 200809L
#include "ragged.h"
#include "args.h"
#include "bench_attn.h"
#include "cli.h"
#include "report.h"
#include "stats.h"
#include "msg.h"
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const impl_names[N_IMPL] = {"flash", "padded", "reference"};

static void opts_default(attn_opts *o) {
    memset(o, 0, sizeof *o);
    o->lengths_path = NULL;
    o->batches = 2;
    o->batch_size = 32;
    o->max_len = 1024;
    o->seed = 42;
    o->heads = 16;
    o->kv_heads = 0;
    o->head_dim = 64;
    o->causal = true;
    o->mode = "both";
    o->impl = "flash,padded,reference";
    o->ref_gflop = 2.0;
    o->ref_full = false;
    o->check = true;
    o->reps = 3;
    o->warmup = 1;
    o->threads = 0;
    o->backend = "cpu";
    o->peak = true;
    o->peak_n = 0;
    o->output = "md";
    o->quiet = false;
}

#define INT_SPEC(sec, name, sh, var, meta, lo, hi, help, dflt) \
    {sec, name, sh, ARG_INT, &o->var, meta, lo, hi, help, dflt}

/* Parses argv into *o; returns ARGS_OK, ARGS_HELP or ARGS_ERROR. */
static int parse_opts(attn_opts *o, int argc, char **argv) {
    const arg_spec specs[] = {
        {"Batches", "lengths", 'l', ARG_STRING, &o->lengths_path, "FILE", 1, 0,
         "batches of sequence lengths: one batch per line, all of one count, '#' comment lines", "none: generate them"},
        INT_SPEC(NULL, "batches", 'n', batches, "N", 0, INT_MAX, "batches to time, the first ones (0 = every batch in --lengths)", NULL),
        INT_SPEC(NULL, "batch-size", 'b', batch_size, "B", 1, INT_MAX, "sequences per generated batch", NULL),
        INT_SPEC(NULL, "max-len", 0, max_len, "L", 2, INT_MAX,
                 "pad-to-max length; generated lengths are uniform in [1, L-1]", NULL),
        INT_SPEC(NULL, "seed", 's', seed, "S", 0, 2147483647, "seed of generated lengths and of the inputs", NULL),
        INT_SPEC("Attention", "heads", 0, heads, "H", 1, INT_MAX, "query heads", NULL),
        INT_SPEC(NULL, "kv-heads", 0, kv_heads, "H", 0, INT_MAX, "key/value heads, dividing --heads", "0 = --heads"),
        INT_SPEC(NULL, "head-dim", 'd', head_dim, "D", 1, 0, "head dimension, a multiple of 8 in [8, 256]", NULL),
        {NULL, "causal", 'c', ARG_BOOL, &o->causal, NULL, 1, 0, "causal mask (bottom-right aligned)", NULL},
        {NULL, "mode", 'm', ARG_CHOICE, &o->mode, "fwd|fwd+bwd|both", 1, 0, "what to time", NULL},
        {"Implementations", "impl", 'i', ARG_STRING, &o->impl, "LIST", 1, 0,
         "comma-separated subset of flash, padded, reference", NULL},
        {NULL, "ref-gflop", 0, ARG_DOUBLE, &o->ref_gflop, "X", 0, HUGE_VAL,
         "the reference runs once on the sequences of batch 1 that fit in X useful GFLOP", NULL},
        {NULL, "ref-full", 0, ARG_BOOL, &o->ref_full, NULL, 1, 0,
         "time the reference on every batch like the others (slow)", NULL},
        {NULL, "check", 0, ARG_BOOL, &o->check, NULL, 1, 0,
         "compare flash with the reference on that sample", NULL},
        INT_SPEC("Timing", "reps", 'r', reps, "N", 1, INT_MAX, "timed repetitions (passes over the batches)", NULL),
        INT_SPEC(NULL, "warmup", 'w', warmup, "N", 0, INT_MAX, "untimed runs of batch 1 per kernel first (padded shares flash's)", NULL),
        INT_SPEC(NULL, "threads", 't', threads, "N", 0, INT_MAX, "CPU threads", "0 = every core"),
        {NULL, "backend", 0, ARG_CHOICE, &o->backend, "cpu|cuda", 1, 0, "device", NULL},
        {NULL, "peak", 0, ARG_BOOL, &o->peak, NULL, 1, 0, "measure the backend's matmul rate for '% peak'", NULL},
        INT_SPEC(NULL, "peak-n", 0, peak_n, "N", 0, 65536, "size of the square peak matmul",
                 "0 = 1024 on cpu, 8192 on cuda"),
        {"Output", "output", 'o', ARG_CHOICE, &o->output, "md|json|csv", 1, 0, "result format on stdout", NULL},
        {NULL, "quiet", 'q', ARG_BOOL, &o->quiet, NULL, 1, 0, "no progress on stderr", NULL},
    };
    static const char about[] =
        "Times varlen attention on packed batches: the flash kernel, the reference\n"
        "(plain loops, slow: by default one run on a small sample) and 'padded', the\n"
        "flash kernel over every sequence padded to --max-len (what pad-to-max costs).\n"
        "Reports ms per batch (median ± half the interquartile range over --reps),\n"
        "useful GFLOP/s (4*sum(len^2)*h*d, /2 causal, x3.5 fwd+bwd), % of the measured\n"
        "matmul peak, extra memory and the speed-up over padded.\n"
        "Exit status: 0 ok, 1 runtime failure, 2 bad usage.";
    return args_parse("bench attn", "ragged bench attn [options]", about, specs,
                      (int)(sizeof specs / sizeof specs[0]), argc, argv);
}

/* Checks what the flag table cannot: combinations and lists. */
static int validate_opts(attn_opts *o) {
    const char *cmd = "bench attn";
    if (o->head_dim < 8 || o->head_dim > 256 || o->head_dim % 8) return args_error(cmd, "--head-dim", "expected a multiple of 8 in [8, 256], got '%d'", o->head_dim);
    if (o->kv_heads == 0) o->kv_heads = o->heads;
    if (o->heads % o->kv_heads)
        return args_error(cmd, "--kv-heads", "%d does not divide --heads %d", o->kv_heads, o->heads);
    if (!o->lengths_path && o->batches == 0)
        return args_error(cmd, "--batches", "0 (every batch) needs --lengths FILE");
    char list[256];
    snprintf(list, sizeof list, "%s", o->impl);
    memset(o->use, 0, sizeof o->use);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int id = -1;
        for (int i = 0; i < N_IMPL; i++)
            if (!strcmp(tok, impl_names[i])) id = i;
        if (!strcmp(tok, "ref")) id = IMPL_REF;
        if (id < 0)
            return args_error(cmd, "--impl", "expected a comma-separated list of flash, padded, reference, got '%s'", o->impl);
        o->use[id] = true;
    }
    if (!o->use[IMPL_FLASH] && !o->use[IMPL_PADDED] && !o->use[IMPL_REF])
        return args_error(cmd, "--impl", "expected at least one implementation, got '%s'", o->impl);
    o->bwd = strcmp(o->mode, "fwd") != 0;
    o->fwd_rows = strcmp(o->mode, "fwd+bwd") != 0;
    report_parse_format(o->output, &o->format);
    return ARGS_OK;
}

/* Cases for the batches to time and the reference's sample. */
static int build_cases(attn_opts *o, const rg_lengths *ls, attn_run *run, char *err, size_t err_size) {
    int nb = o->batches == 0 || o->batches > ls->n_batches ? ls->n_batches : o->batches, n = ls->batch_size;
    run->n_cases = nb;
    run->cases = calloc((size_t)nb, sizeof *run->cases);
    if (!run->cases) { snprintf(err, err_size, "out of memory"); return -1; }
    for (int b = 0; b < nb; b++) {
        char what[32];
        snprintf(what, sizeof what, "batch %d", b + 1);
        if (attn_case_init(&run->cases[b], ls->lens + (size_t)b * n, n, o, what, err, err_size)) return -1;
    }
    /* The reference's sample: the sequences of batch 1 that fit the budget
     * first-fit in batch order (the shortest one when none fits). */
    const int32_t *lens = ls->lens;
    int take = 0, shortest = 0;
    int32_t *pick = malloc((size_t)n * sizeof *pick);
    if (!pick) { snprintf(err, err_size, "out of memory"); return -1; }
    double f = 0, mult = o->bwd ? 3.5 : 1.0;
    for (int i = 0; i < n; i++) {
        int32_t cu[2] = {0, lens[i]};
        double add = rg_attn_flops_forward(1, cu, cu, o->heads, o->head_dim, o->causal) * mult;
        if (lens[i] < lens[shortest]) shortest = i;
        if (f + add > o->ref_gflop * 1e9) continue;
        f += add;
        pick[take++] = lens[i];
    }
    if (take == 0) pick[take++] = lens[shortest];
    run->sample_seqs = take;
    run->sample_of = n;
    int rc = attn_case_init(&run->sample, pick, take, o, "the reference's sample", err, err_size);
    free(pick);
    return rc;
}

static const report_col columns[] = {
    {"impl", "impl", REPORT_STR, 0, 0, NULL},
    {"mode", "mode", REPORT_STR, 0, 0, NULL},
    {"batches", "batches", REPORT_STR, 0, 0, NULL},
    {"ms_median", "ms/batch", REPORT_NUM, 0, -1, NULL},
    {"ms_spread", "", REPORT_NUM, REPORT_MD_PM, -1, NULL},
    {"ms_min", "", REPORT_NUM, REPORT_MD_HIDE, -1, NULL},
    {"ms_max", "", REPORT_NUM, REPORT_MD_HIDE, -1, NULL},
    {"reps", "", REPORT_NUM, REPORT_MD_HIDE, 0, NULL},
    {"gflops", "GFLOP/s", REPORT_NUM, 0, 1, NULL},
    {"pct_peak", "% peak", REPORT_NUM, 0, 1, NULL},
    {"extra_mib", "extra MiB", REPORT_NUM, 0, -1, NULL},
    {"speedup_vs_padded", "vs padded", REPORT_NUM, 0, 2, "x"},
    {"tokens_per_batch", "", REPORT_NUM, REPORT_MD_HIDE, 0, NULL},
    {"useful_gflop_per_batch", "", REPORT_NUM, REPORT_MD_HIDE, -1, NULL},
};

/* Statistics of ms per batch over res's repetitions (fwd, or fwd+bwd when bwd). */
static bool ms_stats(const attn_result *res, int bwd, stats *st) {
    double *ms = malloc((size_t)res->n_reps * sizeof *ms);
    if (!ms) return false;
    for (int i = 0; i < res->n_reps; i++) ms[i] = 1e3 * (res->fwd_s[i] + (bwd ? res->bwd_s[i] : 0)) / res->n_batches;
    bool ok = stats_compute(ms, res->n_reps, st);
    free(ms);
    return ok;
}

/* Useful GFLOP/s of res at a median of ms per batch. */
static double useful_gflops(const attn_result *res, int bwd, double ms) {
    return res->flops_fwd * (bwd ? 3.5 : 1.0) / res->n_batches / (ms * 1e-3) / 1e9;
}

/* Adds one row for (impl, mode) from its per-repetition times. */
static void add_row(report *r, const attn_opts *o, const attn_run *run, int impl, int bwd) {
    const attn_result *res = &run->res[impl], *pad = &run->res[IMPL_PADDED];
    if (!res->n_reps) return;
    stats st, ps;
    if (!ms_stats(res, bwd, &st)) { r->oom = true; return; }
    double gflops = useful_gflops(res, bwd, st.median);
    int row = report_add_row(r);
    report_set_str(r, row, "impl", "%s", impl_names[impl]);
    report_set_str(r, row, "mode", "%s", bwd ? "fwd+bwd" : "fwd");
    if (res->is_sample)
        report_set_str(r, row, "batches", "%d of %d seqs of batch 1", run->sample_seqs, run->sample_of);
    else
        report_set_str(r, row, "batches", "%d", res->n_batches);
    report_set_num(r, row, "ms_median", st.median);
    if (st.n > 1) report_set_num(r, row, "ms_spread", st.spread);
    report_set_num(r, row, "ms_min", st.min);
    report_set_num(r, row, "ms_max", st.max);
    report_set_num(r, row, "reps", st.n);
    report_set_num(r, row, "gflops", gflops);
    if (run->peak_flops > 0) report_set_num(r, row, "pct_peak", 100.0 * gflops * 1e9 / run->peak_flops);
    report_set_num(r, row, "extra_mib", attn_extra_bytes(o, run, impl, bwd) / 1048576.0);
    /* The ratio of useful rates: the time ratio on the same batches, and still
     * meaningful for the reference's sample. */
    if (pad->n_reps) {
        if (!ms_stats(pad, bwd, &ps)) { r->oom = true; return; }
        report_set_num(r, row, "speedup_vs_padded", gflops / useful_gflops(pad, bwd, ps.median));
    }
    report_set_num(r, row, "tokens_per_batch", res->tokens / res->n_batches);
    report_set_num(r, row, "useful_gflop_per_batch", res->flops_fwd * (bwd ? 3.5 : 1.0) / res->n_batches / 1e9);
}

/* The run's parameters for json/csv readers (markdown has them in the notes). */
static void add_params(report *r, const attn_opts *o, const attn_run *run) {
    report_param(r, "lengths", "%s", o->lengths_path ? o->lengths_path : "uniform");
    report_param(r, "n_batches", "%d", run->n_cases);
    if (!o->lengths_path) report_param(r, "batch_size", "%d", o->batch_size);
    report_param(r, "max_len", "%d", o->max_len);
    report_param(r, "seed", "%d", o->seed);
    report_param(r, "heads", "%d", o->heads);
    report_param(r, "kv_heads", "%d", o->kv_heads);
    report_param(r, "head_dim", "%d", o->head_dim);
    report_param(r, "causal", "%s", o->causal ? "true" : "false");
    report_param(r, "repetitions", "%d", o->reps);
    report_param(r, "warmup", "%d", o->warmup);
    if (run->peak_flops > 0) report_param(r, "peak_gflops", "%.3f", run->peak_flops / 1e9);
    if (run->res[IMPL_REF].is_sample) report_param(r, "ref_sample_seqs", "%d", run->sample_seqs);
}

static void add_notes(report *r, const attn_opts *o, const attn_run *run, const rg_lengths *ls) {
    int nb = run->n_cases;
    double tok = 0, pad_flops = 0, useful = 0;
    int32_t lo = INT32_MAX, hi = 0, bs_lo = INT32_MAX, bs_hi = 0;
    for (int b = 0; b < nb; b++) {
        const attn_case *c = &run->cases[b];
        tok += c->tokens;
        useful += c->flops_fwd;
        pad_flops += rg_attn_flops_forward(c->n_seqs, c->cu_pad, c->cu_pad, o->heads, o->head_dim, o->causal);
        if (c->n_seqs < bs_lo) bs_lo = c->n_seqs;
        if (c->n_seqs > bs_hi) bs_hi = c->n_seqs;
        for (int i = 0; i < c->n_seqs; i++) {
            int32_t len = c->cu[i + 1] - c->cu[i];
            if (len < lo) lo = len;
            if (len > hi) hi = len;
        }
    }
    char bs[32];
    if (bs_lo == bs_hi) snprintf(bs, sizeof bs, "%d", bs_lo);
    else snprintf(bs, sizeof bs, "%d-%d", bs_lo, bs_hi);
    if (o->lengths_path)
        report_note(r, "batches: the first %d of %d in %s (%s sequences, lengths %d-%d, %.0f tokens per batch on average)",
                    nb, ls->n_batches, o->lengths_path, bs, lo, hi, tok / nb);
    else
        report_note(r, "batches: %d generated with seed %d (%s sequences, lengths uniform in [1, %d], %.0f tokens per batch on average)",
                    nb, o->seed, bs, o->max_len - 1, tok / nb);
    report_note(r, "attention: h=%d, h_kv=%d, d=%d, %s; padded = every sequence padded to %d rows (%.2fx the useful work)",
                o->heads, o->kv_heads, o->head_dim, o->causal ? "causal" : "not causal", o->max_len,
                useful > 0 ? pad_flops / useful : 0);
    report_note(r, "ms/batch: median ± half the interquartile range over %d repetition%s (one pass over the batches "
                   "each, implementations interleaved), after %d untimed run%s of batch 1 per kernel; fwd+bwd = forward "
                   "then backward", o->reps, o->reps == 1 ? "" : "s", o->warmup, o->warmup == 1 ? "" : "s");
    report_note(r, "GFLOP/s: useful FLOPs only, 4*sum(len^2)*h*d, /2 causal, x3.5 fwd+bwd; vs padded: that rate over "
                   "padded's in the same mode (the time ratio on the same batches)");
    if (run->peak_flops > 0)
        report_note(r, "peak: %.1f GFLOP/s, a %dx%d %s matmul through the backend (rg_backend_measure_peak), the larger "
                       "of %.1f before and %.1f after the attention runs",
                    run->peak_flops / 1e9, run->peak_n, run->peak_n, rg_dtype_name(run->dt), run->peak_at[0] / 1e9,
                    run->peak_at[1] / 1e9);
    else
        report_note(r, "peak: not measured (%s)", run->peak_why);
    if (run->res[IMPL_REF].n_reps && run->res[IMPL_REF].is_sample) {
        const attn_case *c = &run->sample;
        int32_t slo = INT32_MAX;
        for (int i = 0; i < c->n_seqs; i++)
            if (c->cu[i + 1] - c->cu[i] < slo) slo = c->cu[i + 1] - c->cu[i];
        report_note(r, "reference: one run on a sample of batch 1, the %d of its %d sequences that fit first-fit in "
                       "--ref-gflop %g useful GFLOP (lengths %d-%d, %d tokens, %.2f GFLOP fwd%s); its ms are for that "
                       "sample, its GFLOP/s and speed-up compare (--ref-full times it on every batch)",
                    run->sample_seqs, run->sample_of, o->ref_gflop, slo, c->max_seqlen, c->tokens,
                    c->flops_fwd * (o->bwd ? 3.5 : 1) / 1e9, o->bwd ? "+bwd" : "");
    }
    if (run->ref_skipped[0]) report_note(r, "reference: %s", run->ref_skipped);
    if (run->check_done)
        report_note(r, "check: flash vs reference on that sample, relative L2 error: %s%s", run->check_text,
                    run->check_failed ? "  <-- MISMATCH" : "");
    report_note(r, "extra MiB: what the caller allocates beyond the packed q, k, v, o%s for the largest batch: "
                   "lse (h, T) fp32, plus every padding row for padded; scratch inside the kernels is not visible "
                   "through the API and not counted",
                o->bwd ? " (and dout, dq, dk, dv for fwd+bwd)" : "");
}

int cmd_bench_attn(int argc, char **argv) {
    msg_command("bench attn");
    attn_opts o;
    opts_default(&o);
    int pr = parse_opts(&o, argc, argv);
    if (pr == ARGS_HELP) return 0;
    if (pr != ARGS_OK) return 2;
    if (validate_opts(&o) != ARGS_OK) return 2;

    char err[512];
    rg_lengths ls;
    if (o.lengths_path) {
        if (rg_lengths_read(o.lengths_path, &ls) != RG_OK) {
            msg_error("--lengths: %s", rg_last_error());
            return 1;
        }
        if (ls.longest > o.max_len) {
            msg_error("--max-len: %d is below the longest length %d in %s",
                      o.max_len, ls.longest, o.lengths_path);
            rg_lengths_free(&ls);
            return 2;
        }
    } else if (rg_lengths_uniform((uint64_t)o.seed, o.batches, o.batch_size, 1, o.max_len - 1, &ls) != RG_OK) {
        msg_error("generating lengths: %s", rg_last_error());
        return 1;
    }

    attn_run run;
    memset(&run, 0, sizeof run);
    msg_progress_start(&run.progress, o.quiet);
    int rc = 1;
    if (build_cases(&o, &ls, &run, err, sizeof err)) {
        msg_error("%s", err);
        goto done;
    }
    rc = attn_run_all(&o, &run);
    if (rc) goto done;

    report rep;
    report_init(&rep, columns, (int)(sizeof columns / sizeof columns[0]));
    report_build_info(&rep, run.be);
    for (int bwd = 0; bwd <= 1; bwd++) {
        if ((bwd && !o.bwd) || (!bwd && !o.fwd_rows)) continue;
        for (int i = 0; i < N_IMPL; i++) add_row(&rep, &o, &run, i, bwd);
    }
    add_params(&rep, &o, &run);
    add_notes(&rep, &o, &run, &ls);
    if (!report_print(&rep, stdout, o.format)) {
        msg_error("cannot write the report (out of memory or stdout closed)");
        rc = 1;
    } else if (run.check_failed) {
        msg_error("flash disagrees with the reference (%s)", run.check_text);
        rc = 1;
    }
    report_free(&rep);
done:
    attn_run_free(&run);
    rg_lengths_free(&ls);
    return rc;
}
