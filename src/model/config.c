/* config.c — model presets by name and validation of a configuration. */
#include "model/model.h"
#include "core/status.h"
#include <math.h>
#include <string.h>

static const char *const preset_names[] = {"seed", "gpt2", "cpu", "tiny", NULL};

const char *const *rg_model_preset_names(void) { return preset_names; }

/* The seed article's architecture at a given size. */
static rg_model_config seed_like(int32_t layers, int32_t d, int32_t heads, int32_t vocab, int32_t len) {
    rg_model_config c = {
        .n_layers = layers, .d_model = d, .n_heads = heads, .n_kv_heads = heads,
        .vocab_size = vocab, .max_seq_len = len, .mlp_ratio = 4,
        .ln_bias = false, .linear_bias = true, .final_ln = false, .tied_embeddings = false,
        .lm_head_bias = true, .gelu = RG_GELU_KIND_ERF, .ln_eps = 1e-5f, .init = RG_INIT_TORCH,
    };
    return c;
}

rg_status rg_model_config_preset(const char *name, rg_model_config *out) {
    if (!name || !out) return rg_fail(RG_ERR_INVALID_ARG, "rg_model_config_preset: name or out is NULL");
    if (!strcmp(name, "seed")) {
        *out = seed_like(24, 1024, 16, 1024, 1024);
    } else if (!strcmp(name, "cpu")) {
        /* C = 256 with sequences up to 256 keeps the seed's ratio of attention
         * to GEMM work (max_len / (6 C)) while a step takes well under a second. */
        *out = seed_like(4, 256, 4, 1024, 256);
    } else if (!strcmp(name, "tiny")) {
        *out = seed_like(2, 32, 4, 64, 64);
    } else if (!strcmp(name, "gpt2")) {
        rg_model_config c = {
            .n_layers = 12, .d_model = 768, .n_heads = 12, .n_kv_heads = 12,
            .vocab_size = 50257, .max_seq_len = 1024, .mlp_ratio = 4,
            .ln_bias = true, .linear_bias = true, .final_ln = true, .tied_embeddings = true,
            .lm_head_bias = false, .gelu = RG_GELU_KIND_TANH, .ln_eps = 1e-5f, .init = RG_INIT_GPT2,
        };
        *out = c;
    } else {
        return rg_fail(RG_ERR_INVALID_ARG, "rg_model_config_preset: unknown preset '%s' "
                       "(expected seed, gpt2, cpu or tiny)", name);
    }
    return RG_OK;
}

#define BAD(...) rg_fail(RG_ERR_INVALID_ARG, "rg_model_config_validate: " __VA_ARGS__)

rg_status rg_model_config_validate(const rg_model_config *c) {
    if (!c) return BAD("cfg is NULL");
    if (c->n_layers < 1 || c->n_layers > 4096) return BAD("n_layers = %d, expected 1..4096", c->n_layers);
    if (c->n_heads < 1) return BAD("n_heads = %d, expected >= 1", c->n_heads);
    if (c->n_kv_heads < 1 || c->n_heads % c->n_kv_heads != 0)
        return BAD("n_kv_heads = %d must divide n_heads = %d", c->n_kv_heads, c->n_heads);
    if (c->d_model < 1 || c->d_model % c->n_heads != 0)
        return BAD("d_model = %d must be a positive multiple of n_heads = %d", c->d_model, c->n_heads);
    int32_t hd = c->d_model / c->n_heads;
    if (hd % 8 != 0 || hd > 256)
        return BAD("head_dim = d_model / n_heads = %d / %d = %d, expected a multiple of 8 in [8, 256]",
                   c->d_model, c->n_heads, hd);
    if (c->vocab_size < 2) return BAD("vocab_size = %d, expected >= 2", c->vocab_size);
    if (c->max_seq_len < 1) return BAD("max_seq_len = %d, expected >= 1", c->max_seq_len);
    if (c->mlp_ratio < 1) return BAD("mlp_ratio = %d, expected >= 1", c->mlp_ratio);
    if (c->gelu != RG_GELU_KIND_ERF && c->gelu != RG_GELU_KIND_TANH)
        return BAD("gelu = %d, expected RG_GELU_KIND_ERF (1) or RG_GELU_KIND_TANH (2)", (int)c->gelu);
    if (c->init != RG_INIT_GPT2 && c->init != RG_INIT_TORCH)
        return BAD("init = %d, expected RG_INIT_GPT2 (0) or RG_INIT_TORCH (1)", (int)c->init);
    if (!(c->ln_eps > 0) || !isfinite(c->ln_eps)) return BAD("ln_eps = %g, expected finite and > 0", c->ln_eps);
    /* Widths reach the ops as int: the MLP and the fused QKV must fit. */
    int64_t H = (int64_t)c->mlp_ratio * c->d_model;
    int64_t Q = (int64_t)(c->n_heads + 2 * (int64_t)c->n_kv_heads) * hd;
    if (H > INT32_MAX) return BAD("mlp_ratio * d_model = %lld does not fit int32", (long long)H);
    if (Q > INT32_MAX) return BAD("(n_heads + 2 n_kv_heads) * head_dim = %lld does not fit int32", (long long)Q);
    /* Parameter count must fit comfortably in int64 and a single tensor in int32 rows. */
    double per_layer = (double)Q * c->d_model + (double)c->d_model * c->d_model + 2.0 * H * c->d_model;
    double total = per_layer * c->n_layers + ((double)c->vocab_size + c->max_seq_len) * c->d_model * 2;
    if (total > 1e15) return BAD("the configuration has about %.3g parameters, more than 1e15", total);
    return RG_OK;
}
