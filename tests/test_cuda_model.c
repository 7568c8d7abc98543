/* test_cuda_model.c — the whole model on the CUDA backend against the CPU
 * reference backend: loss and every parameter gradient on a small config,
 * packed vs padded on the GPU, and a few hundred AdamW steps whose loss curve
 * follows the CPU's. Skips (exit 77) without a CUDA device.
 * Thresholds: CUDA keeps activations in bf16 (8 significant bits, unit
 * roundoff 2^-9 = 2e-3); through 2 layers and a 96-way softmax the loss moves
 * by well under 1% and the gradients by a few percent in relative L2 (measured
 * on an H100, 2026-11-22: loss 7e-5, worst gradient 8.5e-3). */
#include "test_model_util.h"

/* Copies every parameter of src (fp32 master) into dst. */
static void copy_params(rg_model *dst, rg_model *src) {
    for (int32_t i = 0; i < rg_model_n_tensors(src); i++) {
        rg_model_tensor_info ti;
        TRY_OK(rg_model_tensor_info_get(src, i, &ti));
        float *x = malloc((size_t)ti.numel * sizeof *x);
        TRY_OK(rg_model_tensor_get(src, RG_MODEL_PARAMS, i, x));
        TRY_OK(rg_model_tensor_set(dst, RG_MODEL_PARAMS, i, x));
        free(x);
    }
}

/* Loss and gradients of one packed batch on both backends. */
static void compare_grads(const char *what, rg_backend *cpu, rg_backend *gpu, const rg_model_config *cfg,
                          rg_rng *rng) {
    static const int32_t lens[] = {1, 7, 33, 64, 100, 2, 129};
    const int n = (int)(sizeof lens / sizeof lens[0]);
    int32_t **seqs = tm_random_seqs(rng, n, lens, cfg->vocab_size);
    rg_batch packed = tm_batch(RG_LAYOUT_PACKED, n, seqs, lens, cfg->vocab_size, cfg->max_seq_len);
    rg_batch padded = tm_batch(RG_LAYOUT_PAD_LONGEST, n, seqs, lens, cfg->vocab_size, cfg->max_seq_len);
    rg_model *mc = tm_model(cpu, cfg, 7), *mg = tm_model(gpu, cfg, 8);
    copy_params(mg, mc);
    TRY_OK(rg_model_reserve(mc, padded.n_tokens, n, true));
    TRY_OK(rg_model_reserve(mg, padded.n_tokens, n, true));

    rg_step_result rc, rgp, rgd;
    TRY_OK(rg_model_grads(mc, &packed, 1, &rc));
    TRY_OK(rg_model_grads(mg, &packed, 1, &rgp));
    double lc = rc.loss_sum / (double)rc.n_targets, lg = rgp.loss_sum / (double)rgp.n_targets;
    printf("%s: loss cpu %.6f cuda %.6f (rel %.2e), grad norm cpu %.5f cuda %.5f\n", what, lc, lg,
           fabs(lg - lc) / lc, rc.grad_norm, rgp.grad_norm);
    CHECK(rc.n_targets == rgp.n_targets, "%s: same target count", what);
    CHECK(isfinite(lg) && fabs(lg - lc) <= 1e-2 * lc, "%s: cuda loss %.6f vs cpu %.6f", what, lg, lc);
    CHECK(fabs(rgp.grad_norm - rc.grad_norm) <= 3e-2 * rc.grad_norm, "%s: grad norm %.5f vs %.5f", what,
          rgp.grad_norm, rc.grad_norm);
    double worst = 0;
    const char *worst_name = "";
    for (int32_t i = 0; i < rg_model_n_tensors(mc); i++) {
        rg_model_tensor_info ti;
        TRY_OK(rg_model_tensor_info_get(mc, i, &ti));
        float *gc = malloc((size_t)ti.numel * sizeof *gc), *gg = malloc((size_t)ti.numel * sizeof *gg);
        TRY_OK(rg_model_tensor_get(mc, RG_MODEL_GRADS, i, gc));
        TRY_OK(rg_model_tensor_get(mg, RG_MODEL_GRADS, i, gg));
        char name[160];
        snprintf(name, sizeof name, "%s: grad %s", what, ti.name);
        double e = rg_rel_err(gg, gc, (size_t)ti.numel);
        if (e > worst) { worst = e; worst_name = ti.name; }
        CHECK_CLOSE(name, gg, gc, (size_t)ti.numel, 5e-2);
        free(gc);
        free(gg);
    }
    printf("%s: worst gradient rel L2 error %.3e (%s)\n", what, worst, worst_name);

    /* padded on the GPU: same loss as packed on the GPU */
    TRY_OK(rg_model_grads(mg, &padded, 1, &rgd));
    double ld = rgd.loss_sum / (double)rgd.n_targets;
    CHECK(rgd.n_targets == rgp.n_targets && fabs(ld - lg) <= 5e-3 * lg,
          "%s: cuda padded loss %.6f vs packed %.6f", what, ld, lg);
    rg_model_free(mc);
    rg_model_free(mg);
    rg_batch_free(&packed);
    rg_batch_free(&padded);
    tm_free_seqs(seqs, n);
}

/* AdamW on the same batches from the same weights: the curves must agree. */
static void compare_training(rg_backend *cpu, rg_backend *gpu, const rg_model_config *cfg, rg_rng *rng,
                             int steps) {
    rg_model *mc = tm_model(cpu, cfg, 11), *mg = tm_model(gpu, cfg, 12);
    copy_params(mg, mc);
    rg_optim_config oc;
    TRY_OK(rg_optim_config_default(RG_OPTIM_ADAMW, &oc));
    oc.lr = 3e-3f;
    oc.warmup_steps = 20;
    oc.total_steps = steps;
    oc.min_lr = 3e-4f;
    oc.clip_norm = 1.0f;
    TRY_OK(rg_model_set_optim(mc, &oc));
    TRY_OK(rg_model_set_optim(mg, &oc));
    TRY_OK(rg_model_reserve(mc, 8 * 64, 8, true));
    TRY_OK(rg_model_reserve(mg, 8 * 64, 8, true));
    double first_c = 0, last_c = 0, last_g = 0, worst = 0;
    for (int s = 0; s < steps; s++) {
        /* a learnable stream: token t+1 = (token t * 3 + 1) mod V, random starts */
        int32_t lens[8], *seqs[8];
        for (int i = 0; i < 8; i++) {
            lens[i] = 1 + (int32_t)rg_rng_below(rng, 64);
            seqs[i] = malloc((size_t)lens[i] * sizeof(int32_t));
            seqs[i][0] = (int32_t)rg_rng_below(rng, (uint64_t)cfg->vocab_size);
            for (int j = 1; j < lens[i]; j++) seqs[i][j] = (seqs[i][j - 1] * 3 + 1) % cfg->vocab_size;
        }
        rg_batch b = tm_batch(RG_LAYOUT_PACKED, 8, seqs, lens, cfg->vocab_size, cfg->max_seq_len);
        rg_step_result rc, rgs;
        TRY_OK(rg_model_train_step(mc, &b, 1, &rc));
        TRY_OK(rg_model_train_step(mg, &b, 1, &rgs));
        double lc = rc.loss_sum / (double)(rc.n_targets ? rc.n_targets : 1);
        double lg = rgs.loss_sum / (double)(rgs.n_targets ? rgs.n_targets : 1);
        if (s == 0) first_c = lc;
        if (s >= steps - 10) { last_c += lc / 10; last_g += lg / 10; }
        /* the curves must coincide on the scale of the curve itself (its start):
         * a relative error of a loss near 0 would only measure bf16 noise */
        worst = fmax(worst, fabs(lg - lc));
        if (s % 50 == 0 || s == steps - 1) printf("train step %3d: loss cpu %.4f cuda %.4f\n", s, lc, lg);
        rg_batch_free(&b);
        for (int i = 0; i < 8; i++) free(seqs[i]);
    }
    printf("train: worst |loss cuda - loss cpu| over %d steps %.4f (start %.4f)\n", steps, worst, first_c);
    CHECK(worst <= 1e-2 * first_c, "every step: cuda loss within 1%% of the starting loss of cpu's (worst %.4f, start %.4f)",
          worst, first_c);
    CHECK(last_c < 0.3 * first_c, "cpu learned the stream (%.4f -> %.4f)", first_c, last_c);
    CHECK(fabs(last_g - last_c) <= 0.1 * first_c, "final losses agree: cuda %.4f cpu %.4f (start %.4f)",
          last_g, last_c, first_c);
    rg_model_free(mc);
    rg_model_free(mg);
}

int main(void) {
    rg_rng rng;
    rg_test_init("test_cuda_model", &rng);
    if (!rg_backend_available(RG_BACKEND_CUDA)) {
        printf("test_cuda_model: skipped, no CUDA device (or a build without CUDA)\n");
        return 77;
    }
    rg_backend *cpu, *gpu;
    TRY_OK(rg_backend_init(RG_BACKEND_CPU, 0, &cpu));
    TRY_OK(rg_backend_init(RG_BACKEND_CUDA, 0, &gpu));

    rg_model_config seed = tm_seed_like(2, 2, 2, 96, 160);
    seed.d_model = 128; /* 2 heads of 64: the fast attention path */
    compare_grads("seed-like", cpu, gpu, &seed, &rng);
    rg_model_config gpt2 = tm_gpt2_like(2, 4, 2, 96, 160);
    gpt2.d_model = 128; /* 4 heads of 32, 2 kv heads */
    compare_grads("gpt2-like gqa", cpu, gpu, &gpt2, &rng);
    compare_training(cpu, gpu, &seed, &rng, rg_test_quick() ? 60 : 200);

    rg_backend_free(gpu);
    rg_backend_free(cpu);
    return rg_test_finish();
}
