/* test_model_util.h — helpers shared by the test_model*.c programs (header
 * only, static): tiny configs, random sequences and batches, whole-model
 * host copies of parameters and gradients, and the comparisons used by the
 * finite-difference check. */
#ifndef RG_TEST_MODEL_UTIL_H
#define RG_TEST_MODEL_UTIL_H
#include "check.h"
#include "ragged.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRY_OK(expr) do { rg_status s_ = (expr); if (s_ != RG_OK) { \
    CHECK(false, "%s failed: %s (%s)", #expr, rg_status_str(s_), rg_last_error()); exit(rg_test_finish()); } } while (0)

/* A preset's architecture at test size: h heads of 8, h_kv kv heads. */
static inline rg_model_config tm_preset_like(const char *preset, int layers, int h, int h_kv, int vocab,
                                             int max_len) {
    rg_model_config c;
    rg_model_config_preset(preset, &c);
    c.n_layers = layers;
    c.n_heads = h;
    c.n_kv_heads = h_kv;
    c.d_model = 8 * h;
    c.vocab_size = vocab;
    c.max_seq_len = max_len;
    return c;
}

/* The seed's architecture ("tiny" is the seed's shape) and GPT-2's, at test size. */
static inline rg_model_config tm_seed_like(int layers, int h, int h_kv, int vocab, int max_len) {
    return tm_preset_like("tiny", layers, h, h_kv, vocab, max_len);
}
static inline rg_model_config tm_gpt2_like(int layers, int h, int h_kv, int vocab, int max_len) {
    return tm_preset_like("gpt2", layers, h, h_kv, vocab, max_len);
}

/* n random sequences with the given lengths, tokens in [0, vocab). Free with tm_free_seqs. */
static inline int32_t **tm_random_seqs(rg_rng *rng, int n, const int32_t *lens, int vocab) {
    int32_t **s = calloc((size_t)n, sizeof *s);
    for (int i = 0; i < n; i++) {
        s[i] = malloc((size_t)lens[i] * sizeof **s);
        for (int j = 0; j < lens[i]; j++) s[i][j] = (int32_t)rg_rng_below(rng, (uint64_t)vocab);
    }
    return s;
}

static inline void tm_free_seqs(int32_t **s, int n) {
    for (int i = 0; i < n; i++) free(s[i]);
    free(s);
}

static inline rg_batch tm_batch(rg_batch_layout layout, int n, int32_t *const *seqs, const int32_t *lens,
                                int vocab, int max_len) {
    rg_batch_opts o = {.layout = layout, .max_len = max_len, .vocab_size = vocab, .pad_id = 0};
    rg_batch b;
    TRY_OK(rg_batch_build(&o, n, (const int32_t *const *)seqs, lens, &b));
    return b;
}

/* Logits of the last token of each of n sequences, recomputed from scratch in
 * one packed batch: (n, V) fp32, malloc'd. */
static inline float *tm_last_logits(rg_model *m, int n, int32_t *const *seqs, const int32_t *lens, int V,
                                    int max_len) {
    rg_batch b = tm_batch(RG_LAYOUT_PACKED, n, seqs, lens, V, max_len);
    float *all = malloc(sizeof(float) * (size_t)b.n_tokens * V), *last = malloc(sizeof(float) * (size_t)n * V);
    TRY_OK(rg_model_logits(m, &b, all));
    for (int i = 0; i < n; i++)
        memcpy(last + (size_t)i * V, all + (size_t)(b.cu_seqlens[i + 1] - 1) * V, sizeof(float) * V);
    rg_batch_free(&b);
    free(all);
    return last;
}

/* A case for argmax_rows: x (n, V) of small integers (exact in bf16, so many
 * ties, where the first maximum must win), row `neg_inf_row` all -inf; ref (n)
 * the first index of each row's maximum. x is malloc'd. */
static inline float *tm_argmax_case(rg_rng *rng, int n, int V, int neg_inf_row, int32_t *ref) {
    float *x = malloc(sizeof(float) * (size_t)n * V);
    for (int64_t i = 0; i < (int64_t)n * V; i++) x[i] = (float)((int)rg_rng_below(rng, 17) - 8);
    for (int j = 0; j < V; j++) x[(size_t)neg_inf_row * V + j] = -INFINITY;
    for (int i = 0; i < n; i++) {
        ref[i] = 0;
        for (int j = 1; j < V; j++)
            if (x[(size_t)i * V + j] > x[(size_t)i * V + ref[i]]) ref[i] = j;
    }
    return x;
}

static inline rg_model *tm_model(rg_backend *be, const rg_model_config *cfg, uint64_t seed) {
    rg_model *m;
    TRY_OK(rg_model_init(be, cfg, seed, &m));
    return m;
}

/* Replaces every parameter by a random value large enough that every path of
 * the gradient matters: weights N(0, scale), biases N(0, scale / 2),
 * LayerNorm weights 1 + N(0, 0.2). */
static inline void tm_randomize(rg_model *m, rg_rng *rng, double scale) {
    for (int32_t i = 0; i < rg_model_n_tensors(m); i++) {
        rg_model_tensor_info ti;
        TRY_OK(rg_model_tensor_info_get(m, i, &ti));
        float *x = malloc((size_t)ti.numel * sizeof *x);
        bool ln = strstr(ti.name, "ln_") != NULL, bias = strstr(ti.name, ".bias") != NULL;
        for (int64_t k = 0; k < ti.numel; k++) {
            double z = rg_rng_normal(rng);
            x[k] = (float)(ln ? (bias ? 0.2 * z : 1.0 + 0.2 * z) : (bias ? 0.5 * scale * z : scale * z));
        }
        TRY_OK(rg_model_tensor_set(m, RG_MODEL_PARAMS, i, x));
        free(x);
    }
}

/* Every tensor of `which`, concatenated in table order (n_params floats). */
static inline float *tm_get_all(rg_model *m, rg_model_state which) {
    float *x = malloc((size_t)rg_model_n_params(m) * sizeof *x);
    int64_t off = 0;
    for (int32_t i = 0; i < rg_model_n_tensors(m); i++) {
        rg_model_tensor_info ti;
        TRY_OK(rg_model_tensor_info_get(m, i, &ti));
        TRY_OK(rg_model_tensor_get(m, which, i, x + off));
        off += ti.numel;
    }
    return x;
}

static inline void tm_set_all(rg_model *m, rg_model_state which, const float *x) {
    int64_t off = 0;
    for (int32_t i = 0; i < rg_model_n_tensors(m); i++) {
        rg_model_tensor_info ti;
        TRY_OK(rg_model_tensor_info_get(m, i, &ti));
        TRY_OK(rg_model_tensor_set(m, which, i, x + off));
        off += ti.numel;
    }
}

/* Compares every tensor of two whole-model copies, naming the tensor. */
static inline void tm_check_tensors(rg_model *m, const char *what, const float *got, const float *ref, double tol) {
    int64_t off = 0;
    for (int32_t i = 0; i < rg_model_n_tensors(m); i++) {
        rg_model_tensor_info ti;
        TRY_OK(rg_model_tensor_info_get(m, i, &ti));
        char name[160];
        snprintf(name, sizeof name, "%s %s", what, ti.name);
        CHECK_CLOSE(name, got + off, ref + off, (size_t)ti.numel, tol);
        off += ti.numel;
    }
}

#endif
