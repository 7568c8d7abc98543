/* test_model_grad.c — gradients of the whole model: finite differences for
 * every parameter tensor (shown able to fail), packed == pad-to-longest ==
 * pad-to-max == one sequence at a time (loss, logits and every gradient),
 * causality, gradient accumulation over micro-batches, and bit-identical
 * reruns. */
#include "test_model_util.h"

static double mean_loss(rg_model *m, const rg_batch *b) {
    rg_step_result r;
    TRY_OK(rg_model_eval_step(m, b, &r));
    return r.loss_sum / (double)r.n_targets;
}

/* Indices to probe in a tensor: the `top` largest |g| and `rnd` random others. */
static int pick(const float *g, int64_t n, rg_rng *rng, int top, int rnd, int64_t *idx) {
    int k = 0;
    if (n <= top + rnd) {
        for (int64_t i = 0; i < n; i++) idx[k++] = i;
        return k;
    }
    for (int t = 0; t < top; t++) {
        int64_t best = -1;
        for (int64_t i = 0; i < n; i++) {
            bool used = false;
            for (int j = 0; j < k; j++) used |= idx[j] == i;
            if (!used && (best < 0 || fabsf(g[i]) > fabsf(g[best]))) best = i;
        }
        idx[k++] = best;
    }
    while (k < top + rnd) {
        int64_t i = (int64_t)rg_rng_below(rng, (uint64_t)n);
        bool used = false;
        for (int j = 0; j < k; j++) used |= idx[j] == i;
        if (!used) idx[k++] = i;
    }
    return k;
}

/* Central differences of the mean loss (fp32 model, double sums, Richardson
 * extrapolated over steps 1e-2 and 5e-3) at sampled
 * elements of every tensor vs the analytic gradient. The analytic values of
 * tensor `corrupt` (if >= 0) are scaled by 1.05 first, to show the check
 * catches a 5% error. Returns the number of tensors that disagree. */
static int fd_check(rg_model *m, const rg_batch *b, rg_rng *rng, int corrupt, double tol, bool verbose) {
    rg_step_result r;
    TRY_OK(rg_model_grads(m, b, 1, &r));
    const double eps = 1e-2;
    int bad = 0;
    for (int32_t i = 0; i < rg_model_n_tensors(m); i++) {
        rg_model_tensor_info ti;
        TRY_OK(rg_model_tensor_info_get(m, i, &ti));
        float *p = malloc((size_t)ti.numel * sizeof *p), *g = malloc((size_t)ti.numel * sizeof *g);
        TRY_OK(rg_model_tensor_get(m, RG_MODEL_PARAMS, i, p));
        TRY_OK(rg_model_tensor_get(m, RG_MODEL_GRADS, i, g));
        int64_t idx[10];
        int k = pick(g, ti.numel, rng, 4, 6, idx);
        double num = 0, den = 0, worst_fd = 0, worst_an = 0, worst = -1;
        for (int j = 0; j < k; j++) {
            float keep = p[idx[j]];
            double d[2];
            for (int r = 0; r < 2; r++) {
                float step = (float)(r ? eps / 2 : eps);
                p[idx[j]] = keep + step;
                TRY_OK(rg_model_tensor_set(m, RG_MODEL_PARAMS, i, p));
                double lp = mean_loss(m, b);
                p[idx[j]] = keep - step;
                TRY_OK(rg_model_tensor_set(m, RG_MODEL_PARAMS, i, p));
                double lm = mean_loss(m, b);
                /* the step actually taken in fp32, so the quotient's denominator is exact */
                d[r] = (lp - lm) / ((double)(keep + step) - (double)(keep - step));
            }
            p[idx[j]] = keep;
            /* Richardson: the eps^2 error term of central differences cancels */
            double fd = (4 * d[1] - d[0]) / 3, an = g[idx[j]] * (i == corrupt ? 1.05 : 1.0);
            num += (fd - an) * (fd - an);
            den += an * an;
            if (fabs(fd - an) > worst) { worst = fabs(fd - an); worst_fd = fd; worst_an = an; }
        }
        TRY_OK(rg_model_tensor_set(m, RG_MODEL_PARAMS, i, p));
        double err = sqrt(num / fmax(den, 1e-30));
        if (verbose && getenv("RG_TEST_VERBOSE"))
            printf("  %-26s fd rel err %.2e (|g| of probed %.2e)\n", ti.name, err, sqrt(den));
        if (!(err <= tol) || den == 0) {
            bad++;
            if (verbose)
                printf("  %s: rel err %.3g (worst fd %.6g vs analytic %.6g, |g| %.3g)\n", ti.name, err, worst_fd,
                       worst_an, sqrt(den));
        }
        free(p);
        free(g);
    }
    return bad;
}

static void test_finite_differences(rg_backend *be, rg_rng *rng, rg_model_config cfg, const char *what) {
    rg_model *m = tm_model(be, &cfg, rg_rng_u64(rng));
    tm_randomize(m, rng, 0.4);
    int32_t lens[3] = {1 + (int32_t)rg_rng_below(rng, 3), 7, cfg.max_seq_len};
    int32_t **seqs = tm_random_seqs(rng, 3, lens, cfg.vocab_size);
    rg_batch b = tm_batch(RG_LAYOUT_PACKED, 3, seqs, lens, cfg.vocab_size, cfg.max_seq_len);
    int bad = fd_check(m, &b, rng, -1, 1e-2, true);
    CHECK(bad == 0, "%s: finite differences agree with every tensor's gradient (%d of %d disagree)", what, bad,
          rg_model_n_tensors(m));
    int victim = (int)rg_rng_below(rng, (uint64_t)rg_model_n_tensors(m));
    int caught = fd_check(m, &b, rng, victim, 1e-2, false);
    CHECK(caught >= 1, "%s: a 5%% error in one tensor's gradient is caught", what);
    rg_batch_free(&b);
    tm_free_seqs(seqs, 3);
    rg_model_free(m);
}

/* The same sequences in every layout (and one at a time) give the same loss,
 * logits and gradients. */
static void test_layouts(rg_backend *be, rg_rng *rng, rg_model_config cfg, const char *what) {
    rg_model *m = tm_model(be, &cfg, rg_rng_u64(rng));
    tm_randomize(m, rng, 0.3);
    enum { N = 6 };
    int32_t lens[N] = {1, cfg.max_seq_len};
    for (int i = 2; i < N; i++) lens[i] = 1 + (int32_t)rg_rng_below(rng, (uint64_t)cfg.max_seq_len);
    int32_t **seqs = tm_random_seqs(rng, N, lens, cfg.vocab_size);
    int V = cfg.vocab_size, L = cfg.max_seq_len;
    rg_batch packed = tm_batch(RG_LAYOUT_PACKED, N, seqs, lens, V, L);
    rg_step_result rp;
    TRY_OK(rg_model_grads(m, &packed, 1, &rp));
    float *gp = tm_get_all(m, RG_MODEL_GRADS);
    float *lp = malloc((size_t)packed.n_tokens * V * sizeof *lp);
    TRY_OK(rg_model_logits(m, &packed, lp));
    CHECK(rp.n_targets == packed.n_real - N, "%s: targets counted", what);

    rg_batch_layout pads[2] = {RG_LAYOUT_PAD_LONGEST, RG_LAYOUT_PAD_MAX};
    const char *names[2] = {"pad-to-longest", "pad-to-max"};
    for (int k = 0; k < 2; k++) {
        rg_batch b = tm_batch(pads[k], N, seqs, lens, V, L);
        rg_step_result r;
        TRY_OK(rg_model_grads(m, &b, 1, &r));
        float *g = tm_get_all(m, RG_MODEL_GRADS);
        CHECK(r.n_targets == rp.n_targets && fabs(r.loss_sum - rp.loss_sum) <= 1e-5 * fabs(rp.loss_sum),
              "%s %s: loss %.9g vs packed %.9g", what, names[k], r.loss_sum, rp.loss_sum);
        char label[96];
        snprintf(label, sizeof label, "%s %s grad", what, names[k]);
        tm_check_tensors(m, label, g, gp, 1e-5);
        /* logits of real tokens: slot s*row_len + i here, cu_seqlens[s] + i packed */
        float *lg = malloc((size_t)b.n_tokens * V * sizeof *lg);
        TRY_OK(rg_model_logits(m, &b, lg));
        float *gather = malloc((size_t)packed.n_tokens * V * sizeof *gather);
        for (int s = 0; s < N; s++)
            for (int i = 0; i < lens[s]; i++)
                memcpy(gather + ((size_t)packed.cu_seqlens[s] + i) * V, lg + ((size_t)s * b.row_len + i) * V,
                       (size_t)V * sizeof *lg);
        snprintf(label, sizeof label, "%s %s logits", what, names[k]);
        CHECK_CLOSE(label, gather, lp, (size_t)packed.n_tokens * V, 1e-5);
        free(lg); free(gather); free(g);
        rg_batch_free(&b);
    }

    /* One sequence at a time, as N micro-batches of one step. */
    rg_batch singles[N];
    double sum = 0;
    for (int s = 0; s < N; s++) {
        singles[s] = tm_batch(RG_LAYOUT_PACKED, 1, &seqs[s], &lens[s], V, L);
        rg_step_result r;
        TRY_OK(rg_model_eval_step(m, &singles[s], &r));
        sum += r.loss_sum;
    }
    CHECK(fabs(sum - rp.loss_sum) <= 1e-5 * fabs(rp.loss_sum), "%s: eval one at a time %.9g vs packed %.9g", what,
          sum, rp.loss_sum);
    rg_step_result r1;
    TRY_OK(rg_model_grads(m, singles, N, &r1));
    float *g1 = tm_get_all(m, RG_MODEL_GRADS);
    CHECK(r1.n_targets == rp.n_targets && fabs(r1.loss_sum - rp.loss_sum) <= 1e-5 * fabs(rp.loss_sum),
          "%s: one at a time (micro-batches) loss", what);
    char label[96];
    snprintf(label, sizeof label, "%s one-at-a-time grad", what);
    tm_check_tensors(m, label, g1, gp, 1e-5);
    CHECK(fabs(r1.grad_norm - rp.grad_norm) <= 1e-5 * rp.grad_norm, "%s: same grad norm", what);

    /* Causality: a sequence's prefix has the logits of the whole sequence's first tokens. */
    int s_long = 1, cut = 1 + (int)rg_rng_below(rng, (uint64_t)lens[s_long] - 1);
    rg_batch pre = tm_batch(RG_LAYOUT_PACKED, 1, &seqs[s_long], &cut, V, L);
    float *lpre = malloc((size_t)cut * V * sizeof *lpre);
    TRY_OK(rg_model_logits(m, &pre, lpre));
    snprintf(label, sizeof label, "%s causal prefix logits", what);
    CHECK_CLOSE(label, lpre, lp + (size_t)packed.cu_seqlens[s_long] * V, (size_t)cut * V, 1e-5);
    rg_batch_free(&pre);
    free(lpre);

    /* Bidirectional eval (the article's eval): the layouts still agree, and it
     * differs from causal. Padded rows must not let real queries see pads. */
    TRY_OK(rg_model_set_eval_causal(m, false));
    rg_step_result rb;
    TRY_OK(rg_model_eval_step(m, &packed, &rb));
    float *lb = malloc((size_t)packed.n_tokens * V * sizeof *lb);
    TRY_OK(rg_model_logits(m, &packed, lb));
    double diff = rg_rel_err(lb, lp, (size_t)packed.n_tokens * V);
    CHECK(diff > 1e-2 && rb.loss_sum != rp.loss_sum, "%s: bidirectional logits differ from causal (rel %.3g)", what,
          diff);
    free(lb);
    for (int k = 0; k < 2; k++) {
        rg_batch b = tm_batch(pads[k], N, seqs, lens, V, L);
        rg_step_result r;
        TRY_OK(rg_model_eval_step(m, &b, &r));
        CHECK(fabs(r.loss_sum - rb.loss_sum) <= 1e-5 * fabs(rb.loss_sum),
              "%s bidirectional %s: loss %.9g vs packed %.9g", what, names[k], r.loss_sum, rb.loss_sum);
        rg_batch_free(&b);
    }
    sum = 0;
    for (int s = 0; s < N; s++) {
        rg_step_result r;
        TRY_OK(rg_model_eval_step(m, &singles[s], &r));
        sum += r.loss_sum;
    }
    CHECK(fabs(sum - rb.loss_sum) <= 1e-5 * fabs(rb.loss_sum), "%s: bidirectional one at a time", what);
    TRY_OK(rg_model_set_eval_causal(m, true));

    for (int s = 0; s < N; s++) rg_batch_free(&singles[s]);
    free(g1); free(gp); free(lp);
    rg_batch_free(&packed);
    tm_free_seqs(seqs, N);
    rg_model_free(m);
}

/* Two micro-batches == one batch holding both: gradients, then the SGD update. */
static void test_accumulation(rg_backend *be, rg_rng *rng, rg_model_config cfg) {
    int V = cfg.vocab_size, L = cfg.max_seq_len;
    int32_t lens[5];
    for (int i = 0; i < 5; i++) lens[i] = 1 + (int32_t)rg_rng_below(rng, (uint64_t)L);
    int32_t **seqs = tm_random_seqs(rng, 5, lens, V);
    rg_batch both = tm_batch(RG_LAYOUT_PACKED, 5, seqs, lens, V, L);
    rg_batch micro[2] = {tm_batch(RG_LAYOUT_PAD_LONGEST, 2, seqs, lens, V, L),
                         tm_batch(RG_LAYOUT_PACKED, 3, seqs + 2, lens + 2, V, L)};
    uint64_t seed = rg_rng_u64(rng);
    rg_model *a = tm_model(be, &cfg, seed), *b = tm_model(be, &cfg, seed);
    rg_optim_config o;
    TRY_OK(rg_optim_config_default(RG_OPTIM_SGD, &o));
    o.lr = 0.5f;
    TRY_OK(rg_model_set_optim(a, &o));
    TRY_OK(rg_model_set_optim(b, &o));
    rg_step_result ra, rb;
    TRY_OK(rg_model_grads(a, &both, 1, &ra));
    TRY_OK(rg_model_grads(b, micro, 2, &rb));
    float *ga = tm_get_all(a, RG_MODEL_GRADS), *gb = tm_get_all(b, RG_MODEL_GRADS);
    CHECK(ra.n_targets == rb.n_targets && fabs(ra.loss_sum - rb.loss_sum) <= 1e-5 * fabs(ra.loss_sum),
          "accumulated loss %.9g vs one batch %.9g", rb.loss_sum, ra.loss_sum);
    tm_check_tensors(a, "accumulated grad", gb, ga, 1e-5);
    TRY_OK(rg_model_train_step(a, &both, 1, &ra));
    TRY_OK(rg_model_train_step(b, micro, 2, &rb));
    float *pa = tm_get_all(a, RG_MODEL_PARAMS), *pb = tm_get_all(b, RG_MODEL_PARAMS);
    tm_check_tensors(a, "SGD update after accumulation", pb, pa, 1e-6);
    free(ga); free(gb); free(pa); free(pb);
    rg_model_free(a);
    rg_model_free(b);
    rg_batch_free(&both);
    rg_batch_free(&micro[0]);
    rg_batch_free(&micro[1]);
    tm_free_seqs(seqs, 5);
}

/* Same seed, same threads: bit-identical losses and parameters. */
static void test_determinism(rg_backend *be, rg_rng *rng, rg_model_config cfg) {
    int V = cfg.vocab_size, L = cfg.max_seq_len;
    enum { STEPS = 4, NB = 3 };
    rg_batch batches[STEPS];
    for (int s = 0; s < STEPS; s++) {
        int32_t lens[NB];
        for (int i = 0; i < NB; i++) lens[i] = 1 + (int32_t)rg_rng_below(rng, (uint64_t)L);
        int32_t **seqs = tm_random_seqs(rng, NB, lens, V);
        batches[s] = tm_batch(s % 2 ? RG_LAYOUT_PACKED : RG_LAYOUT_PAD_MAX, NB, seqs, lens, V, L);
        tm_free_seqs(seqs, NB);
    }
    uint64_t seed = rg_rng_u64(rng);
    double loss[2][STEPS];
    float *params[2];
    for (int run = 0; run < 2; run++) {
        rg_model *m = tm_model(be, &cfg, seed);
        rg_optim_config o;
        TRY_OK(rg_optim_config_default(RG_OPTIM_ADAMW, &o));
        o.lr = 1e-2f;
        o.clip_norm = 1.0f;
        TRY_OK(rg_model_set_optim(m, &o));
        for (int s = 0; s < STEPS; s++) {
            rg_step_result r;
            TRY_OK(rg_model_train_step(m, &batches[s], 1, &r));
            loss[run][s] = r.loss_sum;
        }
        params[run] = tm_get_all(m, RG_MODEL_PARAMS);
        if (run == 1)
            CHECK(memcmp(params[0], params[1], (size_t)rg_model_n_params(m) * sizeof(float)) == 0,
                  "two runs end with bit-identical parameters");
        rg_model_free(m);
    }
    CHECK(memcmp(loss[0], loss[1], sizeof loss[0]) == 0, "two runs give bit-identical losses (%.17g .. %.17g)",
          loss[0][STEPS - 1], loss[1][STEPS - 1]);
    free(params[0]);
    free(params[1]);
    for (int s = 0; s < STEPS; s++) rg_batch_free(&batches[s]);
}

int main(void) {
    rg_rng rng;
    rg_test_init("test_model_grad", &rng);
    bool quick = rg_test_quick();
    /* Layouts, accumulation and determinism on every core first. */
    rg_backend *be;
    TRY_OK(rg_backend_init(RG_BACKEND_CPU, 0, &be));
    rg_model_config lay_seed = tm_seed_like(2, 2, 1, 29, quick ? 12 : 24);
    rg_model_config lay_gpt2 = tm_gpt2_like(3, 4, 4, 31, quick ? 10 : 20);
    test_layouts(be, &rng, lay_seed, "seed-like");
    test_layouts(be, &rng, lay_gpt2, "gpt2-like");
    test_accumulation(be, &rng, lay_gpt2);
    test_determinism(be, &rng, lay_seed);
    rg_backend_free(be);
    /* Finite differences on one thread: thousands of tiny forwards, where
     * OpenMP's barriers only cost time on a shared machine. The seed's
     * architecture (no LN bias, untied head with bias, exact GELU) and GPT-2's
     * (LN bias, final LN, tied, tanh) with grouped-query attention. */
    TRY_OK(rg_backend_init(RG_BACKEND_CPU, 1, &be));
    rg_model_config seed_cfg = tm_seed_like(2, 2, 2, 23, quick ? 9 : 13);
    rg_model_config gpt2_cfg = tm_gpt2_like(2, 4, 2, 19, quick ? 8 : 11);
    test_finite_differences(be, &rng, seed_cfg, "seed-like");
    test_finite_differences(be, &rng, gpt2_cfg, "gpt2-like GQA");
    rg_backend_free(be);
    return rg_test_finish();
}
