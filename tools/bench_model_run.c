/* bench_model_run.c — the model benchmark's work: random token sequences of
 * the timed lengths, every strategy's batches built up front, the measured
 * peak, each strategy's memory (a model reserved for its batches alone), then
 * one model reserved for the largest batch running the warm-up and the timed
 * steps, strategies interleaved step by step so that a noisy spell on a shared
 * machine hits them alike. */
#define _POSIX_C_SOURCE 200809L
#include "bench_model.h"
#include "msg.h"
#include "rand.h"
#include "stats.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const strat_names[N_STRAT] = {"pad-to-max", "pad-to-longest", "packed", "bucketed"};
const char *const mode_names[N_MODE] = {"eval", "train"};

/* The 1-minute load average, or -1 where /proc/loadavg cannot be read. */
static double loadavg(void) {
    FILE *f = fopen("/proc/loadavg", "r");
    double x = -1;
    if (f) {
        if (fscanf(f, "%lf", &x) != 1) x = -1;
        fclose(f);
    }
    return x;
}

/* Random token sequences for the timed lengths: tokens in [1, V) (0 is the
 * padding id, as in the article's script), a function of --seed alone. */
static int make_sequences(const mbench_opts *o, mbench_run *run) {
    size_t n = (size_t)run->lengths.n_batches * run->lengths.batch_size;
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) total += run->lengths.lens[i];
    run->tokens = malloc((size_t)total * sizeof *run->tokens);
    run->seqs = malloc(n * sizeof *run->seqs);
    if (!run->tokens || !run->seqs) return msg_error("out of memory for %lld tokens", (long long)total);
    uint64_t st = (uint64_t)o->seed ^ 0x70CE45EEDull;
    int32_t *p = run->tokens;
    for (size_t i = 0; i < n; i++) {
        run->seqs[i] = p;
        for (int32_t t = 0; t < run->lengths.lens[i]; t++)
            *p++ = 1 + (int32_t)tool_rand_below(&st, (uint64_t)o->cfg.vocab_size - 1);
    }
    return 0;
}

static int alloc_strat(mbench_strat *st, int n_steps) {
    st->n_steps = n_steps;
    st->batches = calloc((size_t)n_steps, sizeof *st->batches);
    for (int m = 0; m < N_MODE; m++) st->ms[m] = calloc((size_t)n_steps, sizeof *st->ms[m]);
    return st->batches && st->ms[0] && st->ms[1] ? 0 : msg_error("out of memory");
}

/* pad-to-max, pad-to-longest and packed: one step per timed batch. */
static int build_fixed(const mbench_opts *o, mbench_run *run, int s) {
    mbench_strat *st = &run->strat[s];
    int nb = run->lengths.n_batches, B = run->lengths.batch_size;
    if (alloc_strat(st, nb)) return 1;
    rg_batch_opts bo = {.layout = s == STRAT_PAD_MAX ? RG_LAYOUT_PAD_MAX
                                  : s == STRAT_PAD_LONGEST ? RG_LAYOUT_PAD_LONGEST : RG_LAYOUT_PACKED,
                        .max_len = o->cfg.max_seq_len, .vocab_size = o->cfg.vocab_size, .pad_id = 0};
    for (int b = 0; b < nb; b++) {
        rg_status rs = rg_batch_build(&bo, B, (const int32_t *const *)run->seqs + (size_t)b * B,
                                      run->lengths.lens + (size_t)b * B, &st->batches[b]);
        if (rs != RG_OK) return msg_fail(rs, "%s: building batch %d", strat_names[s], b + 1);
    }
    return 0;
}

/* bucketed: the same sequences, sorted into --buckets length buckets
 * (section 5's BUCKETS sampler, shuffled within buckets and across batches;
 * by default as many buckets as timed batches),
 * cut at a token budget of B x longest slots, each batch padded to its longest. */
static int build_bucketed(const mbench_opts *o, mbench_run *run) {
    mbench_strat *st = &run->strat[STRAT_BUCKETED];
    int32_t n = run->lengths.n_batches * run->lengths.batch_size;
    int64_t real = 0;
    for (int32_t i = 0; i < n; i++) real += run->lengths.lens[i];
    /* Auto budget: the real tokens of an average batch, so a bucketed step
     * carries about as much work as a batch of the other strategies. */
    int64_t budget = o->token_budget ? o->token_budget : (real + run->lengths.n_batches - 1) / run->lengths.n_batches;
    if (budget < run->lengths.longest) budget = run->lengths.longest;
    st->budget = budget;
    rg_sampler_opts so = {.kind = RG_SAMPLER_BUCKETS, .seed = (uint64_t)o->seed, .shuffle = true, .batch_size = 0,
                          .token_budget = budget, .n_buckets = o->buckets ? o->buckets : run->lengths.n_batches};
    rg_plan plan;
    rg_status rs = rg_plan_build(&so, n, run->lengths.lens, &plan);
    if (rs != RG_OK) return msg_fail(rs, "bucketed: planning batches (--token-budget %lld)", (long long)budget);
    int rc = alloc_strat(st, plan.n_batches);
    const int32_t **seqs = malloc((size_t)n * sizeof *seqs);
    int32_t *lens = malloc((size_t)n * sizeof *lens);
    if (!rc && (!seqs || !lens)) rc = msg_error("out of memory");
    rg_batch_opts bo = {.layout = RG_LAYOUT_PAD_LONGEST, .max_len = o->cfg.max_seq_len,
                        .vocab_size = o->cfg.vocab_size, .pad_id = 0};
    for (int32_t b = 0; !rc && b < plan.n_batches; b++) {
        int32_t k = 0;
        for (int32_t j = plan.batch_offsets[b]; j < plan.batch_offsets[b + 1]; j++, k++) {
            seqs[k] = run->seqs[plan.order[j]];
            lens[k] = run->lengths.lens[plan.order[j]];
        }
        rs = rg_batch_build(&bo, k, (const int32_t *const *)seqs, lens, &st->batches[b]);
        if (rs != RG_OK) rc = msg_fail(rs, "bucketed: building batch %d", b + 1);
    }
    free(seqs);
    free(lens);
    rg_plan_free(&plan);
    return rc;
}

/* Largest slot and sequence counts over a strategy's batches. */
static void largest(const mbench_strat *st, int64_t *T, int32_t *B) {
    for (int i = 0; i < st->n_steps; i++) {
        if (st->batches[i].n_tokens > *T) *T = st->batches[i].n_tokens;
        if (st->batches[i].n_seqs > *B) *B = st->batches[i].n_seqs;
    }
}

/* Memory of each strategy: a model of its own, reserved for its batches alone. */
static int measure_memory(const mbench_opts *o, mbench_run *run, int s) {
    mbench_strat *st = &run->strat[s];
    int64_t T = 0;
    int32_t B = 0;
    largest(st, &T, &B);
    msg_step(&run->progress, "%s: memory for batches of up to %lld slots, %d sequences", strat_names[s], (long long)T, B);
    rg_model *m;
    rg_status rs = rg_model_init(run->be, &o->cfg, (uint64_t)o->seed, &m);
    if (rs != RG_OK) return msg_fail(rs, "creating the model");
    for (int mode = 0; mode < N_MODE && rs == RG_OK; mode++) {
        if (!o->run_mode[mode]) continue;
        rg_model_memory mem;
        rs = rg_model_reserve(m, T, B, mode == MODE_TRAIN);
        if (rs == RG_OK) rs = rg_model_memory_get(m, &mem);
        if (rs == RG_OK)
            st->mem[mode] = mem.params + mem.acts + (mode == MODE_TRAIN ? mem.grads + mem.optim : 0);
    }
    rg_model_free(m);
    return rs == RG_OK ? 0 : msg_fail(rs, "%s: reserving activations for %lld slots", strat_names[s], (long long)T);
}

/* One step of strategy s on batch i; its time in st->ms when timed. */
static int one_step(const mbench_opts *o, mbench_run *run, rg_model *m, int s, int mode, int i, bool timed) {
    mbench_strat *st = &run->strat[s];
    const rg_batch *b = &st->batches[i];
    if (timed) msg_step(&run->progress, "%s %s: step %d/%d", mode_names[mode], strat_names[s], i + 1, st->n_steps);
    else msg_step(&run->progress, "%s %s: warm-up %d", mode_names[mode], strat_names[s], i + 1);
    rg_step_result r;
    double t0 = bench_now();
    rg_status rs = mode == MODE_TRAIN ? rg_model_train_step(m, b, 1, &r) : rg_model_eval_step(m, b, &r);
    if (rs == RG_OK) rs = rg_backend_sync(run->be);
    double t = bench_now() - t0;
    if (rs != RG_OK) return msg_fail(rs, "%s %s, step %d (%d sequences, %d slots)", mode_names[mode], strat_names[s], i + 1,
                                 b->n_seqs, b->n_tokens);
    if (timed) {
        st->ms[mode][i] = 1e3 * t;
        st->loss_sum[mode] += r.loss_sum;
        st->n_targets[mode] += r.n_targets;
    }
    return 0;
}

/* The profile of mode's timed steps (all strategies), kept for the report. */
static int read_profile(const mbench_opts *o, mbench_run *run, int mode) {
    int n = 0;
    if (rg_backend_profile_read(run->be, NULL, 0, &n) != RG_OK) return msg_error("profile: %s", rg_last_error());
    run->prof[mode] = calloc((size_t)(n ? n : 1), sizeof *run->prof[mode]);
    if (!run->prof[mode]) return msg_error("out of memory");
    if (rg_backend_profile_read(run->be, run->prof[mode], n, &run->n_prof[mode]) != RG_OK)
        return msg_error("profile: %s", rg_last_error());
    for (int s = 0; s < N_STRAT; s++) {
        if (!o->use[s]) continue;
        for (int i = 0; i < run->strat[s].n_steps; i++) run->prof_ms[mode] += run->strat[s].ms[mode][i];
        run->prof_steps[mode] += run->strat[s].n_steps;
    }
    return 0;
}

static int timed_steps(const mbench_opts *o, mbench_run *run, rg_model *m) {
    for (int mode = 0; mode < N_MODE; mode++) {
        if (!o->run_mode[mode]) continue;
        int most = 0;
        for (int s = 0; s < N_STRAT; s++) {
            if (!o->use[s]) continue;
            mbench_strat *st = &run->strat[s];
            for (int i = 0; i < st->n_steps; i++) {
                double u, e;
                rg_status rs = rg_model_flops(m, &st->batches[i], mode == MODE_TRAIN, &u, &e);
                if (rs != RG_OK) return msg_fail(rs, "%s: counting FLOPs", strat_names[s]);
                st->useful[mode] += u;
                st->executed[mode] += e;
            }
            for (int w = 0; w < o->warmup && w < st->n_steps; w++)
                if (one_step(o, run, m, s, mode, w, false)) return 1;
            if (st->n_steps > most) most = st->n_steps;
        }
        bool prof = rg_backend_profiling(run->be);
        if (prof && rg_backend_profile_reset(run->be) != RG_OK) return msg_error("profile: %s", rg_last_error());
        for (int i = 0; i < most; i++)
            for (int s = 0; s < N_STRAT; s++)
                if (o->use[s] && i < run->strat[s].n_steps && one_step(o, run, m, s, mode, i, true)) return 1;
        if (prof && read_profile(o, run, mode)) return 1;
        for (int s = 0; s < N_STRAT; s++) run->strat[s].done[mode] = o->use[s];
    }
    return 0;
}

/* The peak, measured before (when = 0) and after (1) the steps: on a shared
 * machine one measurement can fall in a busy spell, so the larger of the two
 * is the ceiling quoted (as `ragged bench attn` does). */
static void measure_peak(const mbench_opts *o, mbench_run *run, int when) {
    msg_step(&run->progress, "peak: %dx%d matmul%s", run->peak_n, run->peak_n, when ? " again" : "");
    double f = 0;
    rg_status rs = rg_backend_measure_peak(run->be, run->peak_n, &f);
    if (rs == RG_OK) {
        run->peak_at[when] = f;
        if (f > run->peak_flops) run->peak_flops = f;
        return;
    }
    if (when == 0) run->progress.total--;   /* no second measurement follows */
    if (run->peak_flops == 0)
        snprintf(run->peak_why, sizeof run->peak_why, "%s: %s", rg_status_str(rs), rg_last_error());
}

int mbench_run_all(const mbench_opts *o, mbench_run *run) {
    double t_start = bench_now();
    run->load_before = loadavg();
    bool cuda = !strcmp(o->backend, "cuda");
    rg_status rs = rg_backend_init(cuda ? RG_BACKEND_CUDA : RG_BACKEND_CPU, o->threads, &run->be);
    if (rs != RG_OK) return msg_error("--backend %s: unavailable: %s", o->backend, rg_last_error());
    if (make_sequences(o, run)) return 1;
    for (int s = 0; s < N_STRAT; s++) {
        if (!o->use[s]) continue;
        if (s == STRAT_BUCKETED ? build_bucketed(o, run) : build_fixed(o, run, s)) return 1;
        mbench_strat *st = &run->strat[s];
        for (int i = 0; i < st->n_steps; i++) {
            st->real += st->batches[i].n_real;
            st->slots += st->batches[i].n_tokens;
            st->seqs += st->batches[i].n_seqs;
        }
    }
    int n_modes = o->run_mode[0] + o->run_mode[1], n_strat = 0, per_mode = 0;
    for (int s = 0; s < N_STRAT; s++) {
        if (!o->use[s]) continue;
        n_strat++;
        int n = run->strat[s].n_steps;
        per_mode += n + (o->warmup < n ? o->warmup : n);
    }
    run->progress.total = 2 * o->peak + n_strat + n_modes * per_mode;

    if (o->peak) {
        run->peak_n = o->peak_n ? o->peak_n : cuda ? 8192 : 1024;
        measure_peak(o, run, 0);
    } else {
        snprintf(run->peak_why, sizeof run->peak_why, "--no-peak");
    }
    for (int s = 0; s < N_STRAT; s++)
        if (o->use[s] && measure_memory(o, run, s)) return 1;

    /* The timing model, reserved up front for the largest batch of every
     * strategy, so that no timed step allocates. */
    int64_t T = 0;
    int32_t B = 0;
    for (int s = 0; s < N_STRAT; s++)
        if (o->use[s]) largest(&run->strat[s], &T, &B);
    rg_model *m;
    rs = rg_model_init(run->be, &o->cfg, (uint64_t)o->seed, &m);
    if (rs != RG_OK) return msg_fail(rs, "creating the model");
    if (rs == RG_OK) rs = rg_model_set_eval_causal(m, false);
    if (rs == RG_OK) rs = rg_model_reserve(m, T, B, o->run_mode[MODE_TRAIN]);
    int rc = rs == RG_OK ? timed_steps(o, run, m) : msg_fail(rs, "reserving activations for %lld slots", (long long)T);
    rg_model_free(m);
    if (!rc && run->peak_flops > 0) measure_peak(o, run, 1);
    run->load_after = loadavg();
    run->wall_s = bench_now() - t_start;
    if (!rc) msg_done(&run->progress, run->wall_s);
    return rc;
}

void mbench_run_free(mbench_run *run) {
    for (int s = 0; s < N_STRAT; s++) {
        mbench_strat *st = &run->strat[s];
        for (int i = 0; st->batches && i < st->n_steps; i++) rg_batch_free(&st->batches[i]);
        free(st->batches);
        for (int m = 0; m < N_MODE; m++) free(st->ms[m]);
    }
    for (int m = 0; m < N_MODE; m++) free(run->prof[m]);
    free(run->tokens);
    free(run->seqs);
    free(run->lengths.lens);
    rg_backend_free(run->be);
    memset(run, 0, sizeof *run);
}
