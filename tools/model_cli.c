/* model_cli.c — the model flags shared by `ragged bench` and `ragged train` (see model_cli.h). */
#include "model_cli.h"
#include <limits.h>
#include <stdio.h>
#include <string.h>

/* "seed|gpt2|cpu|tiny" from the library's list. */
static const char *preset_choices(void) {
    static char buf[256];
    if (buf[0]) return buf;
    size_t k = 0;
    for (const char *const *p = rg_model_preset_names(); *p; p++)
        k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%s", k ? "|" : "", *p);
    return buf;
}

void model_flag_specs(model_flags *f, const char *section, arg_spec *s) {
    const arg_spec specs[MODEL_FLAG_SPECS] = {
        {section, "preset", 'p', ARG_CHOICE, &f->preset, preset_choices(), 1, 0,
         "seed: the article's 24 x 1024 decoder; cpu: the same at CPU size", NULL},
        {NULL, "layers", 0, ARG_INT, &f->layers, "N", 0, 4096, "blocks", "the preset's"},
        {NULL, "d-model", 0, ARG_INT, &f->d_model, "C", 0, INT_MAX, "model width", "the preset's"},
        {NULL, "heads", 0, ARG_INT, &f->heads, "H", 0, INT_MAX, "attention heads (head_dim = C / H)", "the preset's"},
        {NULL, "kv-heads", 0, ARG_INT, &f->kv_heads, "H", 0, INT_MAX, "key/value heads, dividing --heads",
         "--heads, or the preset's"},
        {NULL, "vocab", 0, ARG_INT, &f->vocab, "V", 0, INT_MAX, "vocabulary size", "the preset's"},
        {NULL, "max-seq-len", 0, ARG_INT, &f->max_seq_len, "L", 0, INT_MAX,
         "longest sequence (rows of the position embedding)", "the preset's"},
        {NULL, "mlp-ratio", 0, ARG_INT, &f->mlp_ratio, "R", 0, INT_MAX, "MLP width / C", "the preset's"},
    };
    memcpy(s, specs, sizeof specs);
}

bool model_flags_overridden(const model_flags *f) {
    return f->layers || f->d_model || f->heads || f->kv_heads || f->vocab || f->max_seq_len || f->mlp_ratio;
}

int model_flags_config(const model_flags *f, const char *cmd, rg_model_config *cfg) {
    if (rg_model_config_preset(f->preset, cfg) != RG_OK)
        return args_error(cmd, "--preset", "%s", rg_last_error());
    if (f->layers) cfg->n_layers = f->layers;
    if (f->d_model) cfg->d_model = f->d_model;
    if (f->heads) cfg->n_heads = cfg->n_kv_heads = f->heads;
    if (f->kv_heads) cfg->n_kv_heads = f->kv_heads;
    if (f->vocab) cfg->vocab_size = f->vocab;
    if (f->max_seq_len) cfg->max_seq_len = f->max_seq_len;
    if (f->mlp_ratio) cfg->mlp_ratio = f->mlp_ratio;
    if (rg_model_config_validate(cfg) != RG_OK) {
        const char *msg = rg_last_error(), *p = strstr(msg, ": ");
        return args_error(cmd, NULL, "model (--preset %s with the overrides): %s", f->preset, p ? p + 2 : msg);
    }
    return ARGS_OK;
}

double model_config_params(const rg_model_config *c) {
    double C = c->d_model, hd = (double)c->d_model / c->n_heads, H = (double)c->mlp_ratio * C;
    double Q = (c->n_heads + 2.0 * c->n_kv_heads) * hd, lnb = c->ln_bias ? 2 : 1, lb = c->linear_bias;
    double layer = 2 * lnb * C + Q * C + lb * Q + C * C + lb * C + H * C + lb * H + C * H + lb * C;
    double total = c->n_layers * layer + ((double)c->vocab_size + c->max_seq_len) * C;
    if (c->final_ln) total += lnb * C;
    if (!c->tied_embeddings) total += (double)c->vocab_size * C;
    if (c->lm_head_bias) total += c->vocab_size;
    return total;
}

void model_config_describe(const rg_model_config *c, char *buf, size_t size) {
    double p = model_config_params(c);
    snprintf(buf, size, "%d layers, d_model %d, %d heads of %d (%d kv), vocab %d, max_seq_len %d, mlp x%d, %.*fM params",
             c->n_layers, c->d_model, c->n_heads, c->d_model / c->n_heads, c->n_kv_heads, c->vocab_size,
             c->max_seq_len, c->mlp_ratio, p < 1e7 ? 2 : 1, p / 1e6);
}
