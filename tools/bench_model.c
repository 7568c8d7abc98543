/* bench_model.c — `ragged bench`: the article's experiment on the model. The
 * same batches of sequences run under each batching strategy (pad-to-max,
 * pad-to-longest, packed, bucketed), in eval (forward + loss) and train
 * (forward, backward, SGD update); a table of ms/step, real tokens/s, useful
 * FLOP/s, % of the measured peak, padding, memory and speed-up, and
 * optionally the article's bar chart as SVG. */
#define _POSIX_C_SOURCE 200809L
#include "ragged.h"
#include "args.h"
#include "bench_model.h"
#include "cli.h"
#include "report.h"
#include "stats.h"
#include "svg.h"
#include "msg.h"
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CMD "bench"

static void opts_default(mbench_opts *o) {
    memset(o, 0, sizeof *o);
    o->model.preset = "cpu";
    o->lengths_path = NULL;
    o->batch_size = 32;
    o->min_len = 1;
    o->max_len = 0;
    o->seed = 42;
    o->steps = 3;
    o->warmup = 1;
    o->strategies = "pad-to-max,pad-to-longest,packed,bucketed";
    o->mode = "both";
    o->buckets = 0;
    o->token_budget = 0;
    o->threads = 0;
    o->backend = "cpu";
    o->peak = true;
    o->peak_n = 0;
    o->output = "md";
    o->plot = NULL;
    o->quiet = false;
}

static int parse_opts(mbench_opts *o, int argc, char **argv) {
    arg_spec specs[MODEL_FLAG_SPECS + 20];
    model_flag_specs(&o->model, "Model", specs);
    const arg_spec rest[] = {
        {"Batches", "lengths", 'l', ARG_STRING, &o->lengths_path, "FILE",
         1, 0, "lengths, one batch per line ('#' comments); the first --steps batches are timed", "none: generate"},
        {NULL, "batch-size", 'b', ARG_INT, &o->batch_size, "B", 1, INT_MAX,
         "sequences per generated batch (a lengths file sets its own)", NULL},
        {NULL, "min-len", 0, ARG_INT, &o->min_len, "N", 1, INT_MAX, "shortest generated length", NULL},
        {NULL, "max-len", 0, ARG_INT, &o->max_len, "N", 0, INT_MAX,
         "longest generated length (uniform in [--min-len, N])", "max_seq_len - 1"},
        {NULL, "seed", 's', ARG_INT, &o->seed, "S", 0, INT_MAX, "seed of lengths, tokens, bucket order, weights", NULL},
        {NULL, "strategies", 0, ARG_STRING, &o->strategies, "LIST", 1, 0,
         "subset of pad-to-max,pad-to-longest,packed,bucketed", NULL},
        {NULL, "buckets", 0, ARG_INT, &o->buckets, "N", 0, INT_MAX, "bucketed: length buckets of equal count",
         "0 = one per timed batch"},
        {NULL, "token-budget", 0, ARG_INT, &o->token_budget, "N", 0, INT_MAX,
         "bucketed: slots per batch (sequences x longest)", "0 = the real tokens of an average batch"},
        {"Timing", "mode", 'm', ARG_CHOICE, &o->mode, "eval|train|both",
         1, 0, "eval: forward + loss, non-causal; train: + backward + SGD, causal", NULL},
        {NULL, "steps", 'n', ARG_INT, &o->steps, "N", 1, INT_MAX,
         "timed steps (batches) per strategy and mode", NULL},
        {NULL, "warmup", 'w', ARG_INT, &o->warmup, "N", 0, INT_MAX, "untimed steps first, per strategy and mode", NULL},
        {NULL, "threads", 't', ARG_INT, &o->threads, "N", 0, INT_MAX, "CPU threads", "0 = every core"},
        {NULL, "backend", 0, ARG_CHOICE, &o->backend, "cpu|cuda", 1, 0, "device", NULL},
        {NULL, "peak", 0, ARG_BOOL, &o->peak, NULL, 1, 0,
         "measure the matmul rate for '% peak' (before and after; the larger)", NULL},
        {NULL, "peak-n", 0, ARG_INT, &o->peak_n, "N", 0, 65536, "size of the square peak matmul",
         "0 = 1024 on cpu, 8192 on cuda"},
        {"Output", "output", 'o', ARG_CHOICE, &o->output, "md|json|csv", 1, 0, "result format on stdout", NULL},
        {NULL, "plot", 0, ARG_STRING, &o->plot, "FILE.svg", 1, 0,
         "also write the bar chart of ms/step (eval, train per strategy)", "none"},
        {NULL, "quiet", 'q', ARG_BOOL, &o->quiet, NULL, 1, 0, "no progress on stderr", NULL},
    };
    int n = MODEL_FLAG_SPECS;
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++) specs[n++] = rest[i];
    static const char about[] =
        "The article's benchmark on the model: the same batches of random token\n"
        "sequences under each batching strategy, eval (forward + loss, NON-causal\n"
        "attention like the article's eval) and train (forward, backward, SGD lr 1e-3,\n"
        "causal). Strategies: pad-to-max (every row max_seq_len slots), pad-to-longest,\n"
        "packed (sequences end to end, cu_seqlens, no padding) and bucketed (length\n"
        "buckets cut at a token budget, padded to the longest). Reports ms/step\n"
        "(median ± half the interquartile range), real tokens/s, useful GFLOP/s and\n"
        "% of the measured matmul peak, padding, memory and the speed-up over\n"
        "pad-to-max. '--preset seed' is the article's configuration (24 x 1024, batch\n"
        "32, lengths in [1, 1023]; slow on a CPU). 'ragged bench attn' times attention alone.\n"
        "With RG_PROFILE=1 in the environment (CUDA), each op is timed on the device and\n"
        "a per-op table (ms/step, % of step, TFLOP/s or GB/s) follows the report.\n"
        "Exit status: 0 ok, 1 runtime failure, 2 bad usage.";
    return args_parse(CMD, "ragged bench [options]", about, specs, n, argc, argv);
}

static int validate_opts(mbench_opts *o) {
    if (model_flags_config(&o->model, CMD, &o->cfg) != ARGS_OK) return ARGS_ERROR;
    char list[512];
    snprintf(list, sizeof list, "%s", o->strategies);
    memset(o->use, 0, sizeof o->use);
    bool any = false;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        static const char *const alias[N_STRAT] = {"pad-max", "pad-longest", "varlen", "buckets"};
        int id = -1;
        for (int i = 0; i < N_STRAT; i++)
            if (!strcmp(tok, strat_names[i]) || !strcmp(tok, alias[i])) id = i;
        if (id < 0)
            return args_error(CMD, "--strategies", "expected a comma-separated list of pad-to-max, pad-to-longest, "
                              "packed, bucketed, got '%s'", o->strategies);
        o->use[id] = any = true;
    }
    if (!any) return args_error(CMD, "--strategies", "expected at least one strategy, got '%s'", o->strategies);
    o->run_mode[MODE_EVAL] = strcmp(o->mode, "train") != 0;
    o->run_mode[MODE_TRAIN] = strcmp(o->mode, "eval") != 0;
    if (!o->max_len) o->max_len = o->cfg.max_seq_len > 1 ? o->cfg.max_seq_len - 1 : 1;
    if (!o->lengths_path && o->max_len > o->cfg.max_seq_len)
        return args_error(CMD, "--max-len", "%d exceeds the model's max_seq_len %d", o->max_len, o->cfg.max_seq_len);
    if (!o->lengths_path && o->min_len > o->max_len)
        return args_error(CMD, "--min-len", "%d exceeds --max-len %d", o->min_len, o->max_len);
    report_parse_format(o->output, &o->format);
    return ARGS_OK;
}

/* The timed batches: --steps batches of the file (cycling) or generated.
 * Returns 0, 1 (runtime failure) or 2 (usage). */
static int setup_lengths(const mbench_opts *o, mbench_run *run) {
    rg_lengths src;
    if (o->lengths_path) {
        if (rg_lengths_read(o->lengths_path, &src) != RG_OK) {
            msg_error("--lengths: %s", rg_last_error());
            return 1;
        }
        if (src.longest > o->cfg.max_seq_len) {
            msg_error("--lengths: the longest length %d in %s exceeds the model's max_seq_len "
                      "%d (--preset seed or --max-seq-len)", src.longest, o->lengths_path, o->cfg.max_seq_len);
            rg_lengths_free(&src);
            return 2;
        }
        snprintf(run->lengths_desc, sizeof run->lengths_desc, "%s, batches 1..%d of %d%s", o->lengths_path,
                 o->steps < src.n_batches ? o->steps : src.n_batches, src.n_batches,
                 o->steps > src.n_batches ? " (cycling)" : "");
    } else {
        if (rg_lengths_uniform((uint64_t)o->seed, o->steps, o->batch_size, o->min_len, o->max_len, &src) != RG_OK) {
            msg_error("generating lengths: %s", rg_last_error());
            return 1;
        }
        snprintf(run->lengths_desc, sizeof run->lengths_desc, "generated, uniform in [%d, %d], seed %d", o->min_len,
                 o->max_len, o->seed);
    }
    int B = src.batch_size;
    if ((int64_t)B * o->steps > INT32_MAX) {
        rg_lengths_free(&src);
        msg_error("--steps %d x %d sequences per batch overflow int32", o->steps, B);
        return 2;
    }
    run->lengths.lens = malloc((size_t)o->steps * B * sizeof *run->lengths.lens);
    if (!run->lengths.lens) {
        rg_lengths_free(&src);
        msg_error("out of memory");
        return 1;
    }
    run->lengths.n_batches = o->steps;
    run->lengths.batch_size = B;
    for (int b = 0; b < o->steps; b++) {
        const int32_t *row = src.lens + (size_t)(b % src.n_batches) * B;
        for (int i = 0; i < B; i++) {
            int32_t l = row[i];
            run->lengths.lens[(size_t)b * B + i] = l;
            if (l > run->lengths.longest) run->lengths.longest = l;
        }
    }
    rg_lengths_free(&src);
    return 0;
}

static const report_col columns[] = {
    {"strategy", "strategy", REPORT_STR, 0, 0, NULL},
    {"mode", "mode", REPORT_STR, 0, 0, NULL},
    {"steps", "steps", REPORT_NUM, 0, 0, NULL},
    {"ms_median", "ms/step", REPORT_NUM, 0, -1, NULL},
    {"ms_spread", "", REPORT_NUM, REPORT_MD_PM, -1, NULL},
    {"ms_min", "", REPORT_NUM, REPORT_MD_HIDE, -1, NULL},
    {"ms_max", "", REPORT_NUM, REPORT_MD_HIDE, -1, NULL},
    {"tokens_per_s", "tokens/s", REPORT_NUM, 0, 0, NULL},
    {"gflops", "GFLOP/s", REPORT_NUM, 0, 1, NULL},
    {"pct_peak", "% peak", REPORT_NUM, 0, 1, NULL},
    {"padding_pct", "padding %", REPORT_NUM, 0, 1, NULL},
    {"mem_mib", "memory MiB", REPORT_NUM, 0, -1, NULL},
    {"speedup_vs_pad_to_max", "vs pad-to-max", REPORT_NUM, 0, 2, "x"},
    {"seqs", "", REPORT_NUM, REPORT_MD_HIDE, 0, NULL},
    {"real_tokens", "", REPORT_NUM, REPORT_MD_HIDE, 0, NULL},
    {"slots", "", REPORT_NUM, REPORT_MD_HIDE, 0, NULL},
    {"executed_gflops", "", REPORT_NUM, REPORT_MD_HIDE, -1, NULL},
    {"loss", "", REPORT_NUM, REPORT_MD_HIDE, -1, NULL},
};

/* ms per step of one strategy and mode; bucketed's steps are scaled to the
 * real tokens of an average fixed batch so that its ms/step compares. */
static bool step_stats(const mbench_run *run, int s, int mode, stats *out) {
    const mbench_strat *st = &run->strat[s];
    double *x = malloc((size_t)st->n_steps * sizeof *x);
    if (!x) return false;
    double avg = (double)st->real / run->lengths.n_batches;
    for (int i = 0; i < st->n_steps; i++)
        x[i] = st->ms[mode][i] * (s == STRAT_BUCKETED ? avg / st->batches[i].n_real : 1.0);
    bool ok = stats_compute(x, st->n_steps, out);
    free(x);
    return ok;
}

static double total_s(const mbench_strat *st, int mode) {
    double t = 0;
    for (int i = 0; i < st->n_steps; i++) t += st->ms[mode][i] * 1e-3;
    return t;
}

static void add_row(report *r, const mbench_opts *o, const mbench_run *run, int s, int mode) {
    const mbench_strat *st = &run->strat[s], *ref = &run->strat[STRAT_PAD_MAX];
    if (!st->done[mode]) return;
    stats ms;
    if (!step_stats(run, s, mode, &ms)) { r->oom = true; return; }
    double t = total_s(st, mode), tps = st->real / t;
    int row = report_add_row(r);
    report_set_str(r, row, "strategy", "%s", strat_names[s]);
    report_set_str(r, row, "mode", "%s", mode_names[mode]);
    report_set_num(r, row, "steps", st->n_steps);
    report_set_num(r, row, "ms_median", ms.median);
    if (ms.n > 1) report_set_num(r, row, "ms_spread", ms.spread);
    report_set_num(r, row, "ms_min", ms.min);
    report_set_num(r, row, "ms_max", ms.max);
    report_set_num(r, row, "tokens_per_s", tps);
    report_set_num(r, row, "gflops", st->useful[mode] / t / 1e9);
    if (run->peak_flops > 0) report_set_num(r, row, "pct_peak", 100.0 * st->useful[mode] / t / run->peak_flops);
    report_set_num(r, row, "padding_pct", 100.0 * (double)(st->slots - st->real) / (double)st->slots);
    report_set_num(r, row, "mem_mib", st->mem[mode] / 1048576.0);
    if (ref->done[mode]) report_set_num(r, row, "speedup_vs_pad_to_max", tps / (ref->real / total_s(ref, mode)));
    report_set_num(r, row, "seqs", (double)st->seqs);
    report_set_num(r, row, "real_tokens", (double)st->real);
    report_set_num(r, row, "slots", (double)st->slots);
    report_set_num(r, row, "executed_gflops", st->executed[mode] / t / 1e9);
    if (st->n_targets[mode]) report_set_num(r, row, "loss", st->loss_sum[mode] / st->n_targets[mode]);
    (void)o;
}

static void add_params_and_notes(report *r, const mbench_opts *o, const mbench_run *run) {
    char desc[256];
    model_config_describe(&o->cfg, desc, sizeof desc);
    report_param(r, "preset", "%s", o->model.preset);
    report_param(r, "layers", "%d", o->cfg.n_layers);
    report_param(r, "d_model", "%d", o->cfg.d_model);
    report_param(r, "heads", "%d", o->cfg.n_heads);
    report_param(r, "kv_heads", "%d", o->cfg.n_kv_heads);
    report_param(r, "vocab", "%d", o->cfg.vocab_size);
    report_param(r, "max_seq_len", "%d", o->cfg.max_seq_len);
    report_param(r, "batch_size", "%d", run->lengths.batch_size);
    report_param(r, "steps", "%d", o->steps);
    report_param(r, "warmup", "%d", o->warmup);
    report_param(r, "lengths", "%s", run->lengths_desc);
    report_param(r, "seed", "%d", o->seed);
    report_param(r, "peak_gflops", "%.1f", run->peak_flops / 1e9);
    report_param(r, "peak_gflops_before", "%.1f", run->peak_at[0] / 1e9);
    report_param(r, "peak_gflops_after", "%.1f", run->peak_at[1] / 1e9);
    report_param(r, "load_avg_before", "%.2f", run->load_before);
    report_param(r, "load_avg_after", "%.2f", run->load_after);

    report_note(r, "model: --preset %s: %s", o->model.preset, desc);
    report_note(r, "batches: %d of %d sequences, lengths %s (longest %d); random tokens in [1, %d), pad id 0",
                run->lengths.n_batches, run->lengths.batch_size, run->lengths_desc, run->lengths.longest,
                o->cfg.vocab_size);
    if (o->run_mode[MODE_EVAL])
        report_note(r, "eval: forward + cross-entropy with NON-causal (bidirectional) attention, as the article's eval; "
                       "padded rows attend to their real keys only");
    if (o->run_mode[MODE_TRAIN])
        report_note(r, "train: forward, backward and an SGD update (lr 1e-3, torch defaults) with causal attention");
    if (o->use[STRAT_BUCKETED]) {
        const mbench_strat *st = &run->strat[STRAT_BUCKETED];
        int32_t lo = INT32_MAX, hi = 0;
        for (int i = 0; i < st->n_steps; i++) {
            if (st->batches[i].n_seqs < lo) lo = st->batches[i].n_seqs;
            if (st->batches[i].n_seqs > hi) hi = st->batches[i].n_seqs;
        }
        report_note(r, "bucketed: the same %lld sequences in %d length buckets, batches cut at %lld slots (sequences x "
                       "longest), padded to their longest: %d steps of %d..%d sequences; its ms/step is scaled to the "
                       "real tokens of an average batch (ms x %.0f / step's real tokens)",
                    (long long)st->seqs, o->buckets ? o->buckets : run->lengths.n_batches, (long long)st->budget, st->n_steps, lo, hi,
                    (double)st->real / run->lengths.n_batches);
    }
    report_note(r, "ms/step: median ± half the interquartile range over the timed steps, after %d warm-up step%s per "
                   "strategy and mode; strategies interleaved step by step; one model reserved up front for the largest "
                   "batch (timed steps allocate nothing)", o->warmup, o->warmup == 1 ? "" : "s");
    report_note(r, "tokens/s: real tokens (padding excluded) over the timed steps; vs pad-to-max: the ratio of tokens/s "
                   "(every strategy runs the same sequences)");
    if (run->peak_flops > 0)
        report_note(r, "GFLOP/s: useful FLOPs (rg_model_flops: matmuls 2*n_real*in*out, attention on the real sequences; "
                       "train x3 matmuls, x3.5 attention); %% peak: of %.1f GFLOP/s, the larger of a %dx%d matmul measured "
                       "before (%.1f) and after (%.1f) the steps", run->peak_flops / 1e9, run->peak_n, run->peak_n,
                    run->peak_at[0] / 1e9, run->peak_at[1] / 1e9);
    else
        report_note(r, "GFLOP/s: useful FLOPs (rg_model_flops); %% peak not measured (%s)", run->peak_why);
    report_note(r, "memory MiB: parameters (+ gradients and optimizer state in train) + the activation arena reserved "
                   "for the strategy's largest batch (rg_model_memory_get)");
    if (run->load_before >= 0)
        report_note(r, "load average (1 min): %.2f before, %.2f after, on %ld cores; wall %.1f s", run->load_before,
                    run->load_after, sysconf(_SC_NPROCESSORS_ONLN), run->wall_s);
}

static int write_plot(const mbench_opts *o, const mbench_run *run) {
    const char *groups[N_STRAT], *series[N_MODE];
    double values[N_STRAT * N_MODE], spreads[N_STRAT * N_MODE];
    int ng = 0, ns = 0, mode_ix[N_MODE];
    for (int m = 0; m < N_MODE; m++)
        if (o->run_mode[m]) { mode_ix[ns] = m; series[ns++] = m == MODE_EVAL ? "eval (non-causal)" : "train (causal)"; }
    for (int s = 0; s < N_STRAT; s++) {
        if (!o->use[s]) continue;
        for (int k = 0; k < ns; k++) {
            stats st;
            if (!step_stats(run, s, mode_ix[k], &st)) { msg_error("out of memory"); return 1; }
            values[ng * ns + k] = st.median;
            spreads[ng * ns + k] = st.spread;
        }
        groups[ng++] = strat_names[s];
    }
    char sub[512], err[512];
    const rg_model_config *c = &o->cfg;
    snprintf(sub, sizeof sub, "preset %s (%d layers, d_model %d, %d heads, max_seq_len %d), batch %d; %s, %d threads",
             o->model.preset, c->n_layers, c->d_model, c->n_heads, c->max_seq_len, run->lengths.batch_size,
             rg_backend_name(run->be), rg_backend_n_threads(run->be));
    if (svg_bar_chart(o->plot, "ragged bench: ms per step (lower is better)", sub, "ms per step (median)", groups, ng,
                      series, ns, values, spreads, err, sizeof err)) {
        msg_error("--plot: %s", err);
        return 1;
    }
    return 0;
}

int cmd_bench_model(int argc, char **argv) {
    msg_command(CMD);
    mbench_opts o;
    opts_default(&o);
    int pr = parse_opts(&o, argc, argv);
    if (pr == ARGS_HELP) return 0;
    if (pr != ARGS_OK) return 2;
    if (validate_opts(&o) != ARGS_OK) return 2;

    mbench_run run;
    memset(&run, 0, sizeof run);
    msg_progress_start(&run.progress, o.quiet);
    int rc = setup_lengths(&o, &run);
    if (!rc) rc = mbench_run_all(&o, &run);
    if (!rc) {
        report rep;
        report_init(&rep, columns, (int)(sizeof columns / sizeof columns[0]));
        report_build_info(&rep, run.be);
        for (int m = 0; m < N_MODE; m++)
            for (int s = 0; s < N_STRAT; s++) add_row(&rep, &o, &run, s, m);
        add_params_and_notes(&rep, &o, &run);
        if (!report_print(&rep, stdout, o.format)) {
            msg_error("cannot write the report (out of memory or stdout closed)");
            rc = 1;
        }
        report_free(&rep);
        /* the profile tables follow a markdown report; other formats keep stdout machine-readable */
        if (!rc) mbench_print_profile(&o, &run, o.format == REPORT_MD ? stdout : stderr);
        if (!rc && o.plot) rc = write_plot(&o, &run);
    }
    mbench_run_free(&run);
    return rc;
}
