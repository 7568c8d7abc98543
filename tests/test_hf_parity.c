/* test_hf_parity.c — CPU parity with transformers without PyTorch: the fixture written
 * by `python3 scripts/hf_parity.py --fixture tests/data/hf_gpt2_tiny` (config.json +
 * model.safetensors from save_pretrained, batch.txt, expected.safetensors holding
 * transformers' logits (n_real, V) of each sequence alone in packed order, the mean
 * loss (1) and grad.<HF name> for every parameter in HF layout) must match ragged's
 * logits from a PACKED and a PAD_LONGEST batch, its loss and every gradient to 1e-4
 * relative. Gradients are put in HF names and Conv1D layout by rg_hf_gpt2_save of a
 * twin model whose parameters are the gradients (as tests/hf_parity.c does).
 * RG_HF_FIXTURE_DIR overrides the fixture directory. Skips (77) when it is absent. */
#define _POSIX_C_SOURCE 200809L
#include "hf_util.h"
#include "test_model_util.h"
#include <unistd.h>

#define TOL 1e-4

static bool file_exists(const char *dir, const char *name) {
    char *p = hf_join(dir, name);
    FILE *f = p ? fopen(p, "rb") : NULL;
    if (f) fclose(f);
    free(p);
    return f != NULL;
}

/* Expected tensor `name` as float32 with `numel` elements (malloc'ed), or NULL after a failed check. */
static float *expected(const rg_safetensors *st, const char *name, int64_t numel) {
    rg_tensor_info ti;
    if (!CHECK(rg_safetensors_find(st, name, &ti) == RG_OK, "expected.safetensors holds %s", name)) return NULL;
    if (!CHECK(ti.numel == numel, "%s has %lld elements, expected %lld", name, (long long)ti.numel,
               (long long)numel))
        return NULL;
    float *x = malloc((size_t)(numel > 0 ? numel : 1) * sizeof *x);
    if (!CHECK(x && rg_safetensors_read_f32(st, name, x, (size_t)numel) == RG_OK, "read %s: %s", name,
               rg_last_error())) {
        free(x);
        return NULL;
    }
    return x;
}

/* Every gradient of m (after rg_model_grads) against grad.<name> in exp. */
static void check_grads(rg_backend *be, const rg_model_config *cfg, rg_model *m, const rg_safetensors *exp) {
    rg_model *g = NULL;
    TRY_OK(rg_model_init(be, cfg, 2, &g));
    float *buf = malloc((size_t)rg_model_n_params(m) * sizeof *buf);
    CHECK(buf != NULL, "out of memory");
    for (int32_t i = 0; buf && i < rg_model_n_tensors(m); i++) {
        TRY_OK(rg_model_tensor_get(m, RG_MODEL_GRADS, i, buf));
        TRY_OK(rg_model_tensor_set(g, RG_MODEL_PARAMS, i, buf));
    }
    free(buf);
    char tmp[] = "/tmp/rg_test_hf_parity_XXXXXX";
    if (!CHECK(mkdtemp(tmp) != NULL, "mkdtemp")) { rg_model_free(g); return; }
    TRY_OK(rg_hf_gpt2_save(g, tmp));
    rg_model_free(g);

    char *path = hf_join(tmp, "model.safetensors");
    rg_safetensors *got = NULL;
    TRY_OK(rg_safetensors_open(path, &got));
    size_t n_matched = 0, n_exp = 0;
    for (size_t i = 0; i < rg_safetensors_count(got); i++) {
        rg_tensor_info ti;
        TRY_OK(rg_safetensors_info(got, i, &ti));
        char name[256];
        snprintf(name, sizeof name, "grad.%s", ti.name);
        rg_tensor_info te;
        if (!CHECK(rg_safetensors_find(exp, name, &te) == RG_OK, "expected.safetensors holds %s", name)) continue;
        bool same_shape = te.ndim == ti.ndim;
        for (int32_t d = 0; same_shape && d < ti.ndim; d++) same_shape = te.shape[d] == ti.shape[d];
        if (!CHECK(same_shape, "%s: shape differs between ragged's HF layout and transformers'", name)) continue;
        float *ref = expected(exp, name, ti.numel), *x = malloc((size_t)ti.numel * sizeof *x);
        if (ref && CHECK(x && rg_safetensors_read_f32(got, ti.name, x, (size_t)ti.numel) == RG_OK, "read %s", ti.name))
            CHECK_CLOSE(name, x, ref, (size_t)ti.numel, TOL);
        n_matched++;
        free(ref);
        free(x);
    }
    for (size_t i = 0; i < rg_safetensors_count(exp); i++) {
        rg_tensor_info te;
        TRY_OK(rg_safetensors_info(exp, i, &te));
        if (!strncmp(te.name, "grad.", 5)) n_exp++;
    }
    CHECK(n_matched == n_exp && n_exp > 0, "gradients: ragged has %zu, transformers %zu (every parameter once)",
          n_matched, n_exp);
    rg_safetensors_close(got);
    unlink(path);
    free(path);
    path = hf_join(tmp, "config.json");
    unlink(path);
    free(path);
    rmdir(tmp);
}

int main(void) {
    rg_test_init("test_hf_parity", NULL);
    char dir[1024];
    const char *over = getenv("RG_HF_FIXTURE_DIR"), *src = getenv("RG_SOURCE_DIR");
    if (over) snprintf(dir, sizeof dir, "%s", over);
    else snprintf(dir, sizeof dir, "%s/tests/data/hf_gpt2_tiny", src ? src : ".");
    const char *need[] = {"config.json", "model.safetensors", "batch.txt", "expected.safetensors"};
    for (int i = 0; i < 4; i++) {
        if (!file_exists(dir, need[i])) {
            printf("test_hf_parity: skipped: no %s in %s (run: python3 scripts/hf_parity.py --fixture "
                   "tests/data/hf_gpt2_tiny on a machine with transformers)\n", need[i], dir);
            return 77;
        }
    }

    rg_backend *be = NULL;
    rg_model *m = NULL;
    rg_model_config cfg;
    TRY_OK(rg_backend_init(RG_BACKEND_CPU, 0, &be));
    TRY_OK(rg_hf_gpt2_config_read(dir, &cfg));
    TRY_OK(rg_model_init(be, &cfg, 1, &m));
    TRY_OK(rg_hf_gpt2_load(m, dir));
    char *p = hf_join(dir, "expected.safetensors");
    rg_safetensors *exp = NULL;
    TRY_OK(rg_safetensors_open(p, &exp));
    free(p);

    int32_t *seqs[HF_MAX_SEQS] = {0}, lens[HF_MAX_SEQS], n_seqs = 0;
    p = hf_join(dir, "batch.txt");
    bool read_ok = p && hf_read_batch(p, seqs, lens, &n_seqs) == 0;
    free(p);
    if (!CHECK(read_ok, "read batch.txt")) exit(rg_test_finish());
    const int32_t V = cfg.vocab_size;
    rg_batch_opts o = {.layout = RG_LAYOUT_PACKED, .max_len = cfg.max_seq_len, .vocab_size = V, .pad_id = 0};
    rg_batch packed = {0}, padded = {0};
    TRY_OK(rg_batch_build(&o, n_seqs, (const int32_t *const *)seqs, lens, &packed));
    o.layout = RG_LAYOUT_PAD_LONGEST;
    TRY_OK(rg_batch_build(&o, n_seqs, (const int32_t *const *)seqs, lens, &padded));
    printf("  %s: %d layers, C %d, %d heads, V %d; %d sequences, %lld tokens\n", dir, cfg.n_layers, cfg.d_model,
           cfg.n_heads, V, (int)n_seqs, (long long)packed.n_real);

    /* Logits: packed slot t is real token t; padded row b holds sequence b's tokens first. */
    size_t n_real = (size_t)packed.n_real;
    float *ref = expected(exp, "logits", (int64_t)n_real * V);
    float *real = malloc(n_real * (size_t)V * sizeof *real);
    float *all = malloc((size_t)padded.n_tokens * (size_t)V * sizeof *all);
    if (ref && CHECK(real && all, "out of memory")) {
        TRY_OK(rg_model_logits(m, &packed, real));
        CHECK_CLOSE("logits packed", real, ref, n_real * (size_t)V, TOL);
        TRY_OK(rg_model_logits(m, &padded, all));
        size_t k = 0;
        for (int32_t b = 0; b < n_seqs; b++)
            for (int32_t i = 0; i < lens[b]; i++, k++)
                memcpy(real + k * (size_t)V, all + ((size_t)b * (size_t)padded.row_len + (size_t)i) * (size_t)V,
                       (size_t)V * sizeof *real);
        CHECK_CLOSE("logits padded", real, ref, n_real * (size_t)V, TOL);
    }
    free(ref);
    free(real);
    free(all);

    rg_step_result res;
    TRY_OK(rg_model_grads(m, &packed, 1, &res));
    float *loss = expected(exp, "loss", 1);
    if (loss && CHECK(res.n_targets > 0, "the batch has targets")) {
        double got = res.loss_sum / (double)res.n_targets;
        printf("  loss ragged %.7f transformers %.7f\n", got, (double)loss[0]);
        CHECK(fabs(got - loss[0]) <= TOL * fabs((double)loss[0]), "loss %.7f vs transformers %.7f", got,
              (double)loss[0]);
    }
    free(loss);
    check_grads(be, &cfg, m, exp);

    for (int32_t b = 0; b < n_seqs; b++) free(seqs[b]);
    rg_batch_free(&packed);
    rg_batch_free(&padded);
    rg_safetensors_close(exp);
    rg_model_free(m);
    rg_backend_free(be);
    return rg_test_finish();
}
