/* test_model.c — the model's API: presets and config validation, the
 * parameter table and initialisation, get/set, batch checks, the optimizers
 * and schedule against a host reference, FLOP counts, and arena reuse. */
#include "test_model_util.h"

static bool err_has(rg_status got, rg_status want, const char *needle) {
    return got == want && strstr(rg_last_error(), needle) != NULL;
}

static void test_presets(void) {
    const char *const *names = rg_model_preset_names();
    int n = 0;
    for (; names[n]; n++) {
        rg_model_config c;
        CHECK(rg_model_config_preset(names[n], &c) == RG_OK, "preset %s loads", names[n]);
        CHECK(rg_model_config_validate(&c) == RG_OK, "preset %s is valid: %s", names[n], rg_last_error());
    }
    CHECK(n >= 4, "at least seed, gpt2, cpu, tiny (got %d)", n);
    rg_model_config c;
    CHECK(err_has(rg_model_config_preset("gpt3", &c), RG_ERR_INVALID_ARG, "gpt3"), "unknown preset named");

    /* The article's decoder (torch_seed_bench.py). */
    rg_model_config_preset("seed", &c);
    CHECK(c.n_layers == 24 && c.d_model == 1024 && c.n_heads == 16 && c.n_kv_heads == 16 && c.vocab_size == 1024 &&
          c.max_seq_len == 1024 && c.mlp_ratio == 4 && !c.ln_bias && c.linear_bias && !c.final_ln &&
          !c.tied_embeddings && c.lm_head_bias && c.gelu == RG_GELU_KIND_ERF && c.ln_eps == 1e-5f,
          "seed preset is the article's decoder");
    /* GPT-2 124M: its parameter count is the well-known 124,439,808. */
    rg_model_config_preset("gpt2", &c);
    CHECK(c.n_layers == 12 && c.d_model == 768 && c.n_heads == 12 && c.vocab_size == 50257 && c.ln_bias &&
          c.final_ln && c.tied_embeddings && !c.lm_head_bias && c.gelu == RG_GELU_KIND_TANH,
          "gpt2 preset is GPT-2 small");
    int64_t C = c.d_model, V = c.vocab_size, P = c.max_seq_len, H = 4 * C;
    int64_t per_layer = 2 * C + (3 * C * C + 3 * C) + (C * C + C) + 2 * C + (H * C + H) + (C * H + C);
    CHECK(V * C + P * C + c.n_layers * per_layer + 2 * C == 124439808, "gpt2 parameter formula");
}

static void test_validation(void) {
    rg_model_config base = tm_seed_like(2, 4, 2, 50, 16), c;
    CHECK(rg_model_config_validate(&base) == RG_OK, "base config valid");
    CHECK(err_has(rg_model_config_validate(NULL), RG_ERR_INVALID_ARG, "NULL"), "NULL config");
#define BAD_CFG(field, value, needle) do { c = base; c.field = value; \
    CHECK(err_has(rg_model_config_validate(&c), RG_ERR_INVALID_ARG, needle), \
          #field " = " #value " rejected naming " needle ": '%s'", rg_last_error()); } while (0)
    BAD_CFG(n_layers, 0, "n_layers");
    BAD_CFG(n_heads, 0, "n_heads");
    BAD_CFG(n_kv_heads, 3, "n_kv_heads");
    BAD_CFG(n_kv_heads, 0, "n_kv_heads");
    BAD_CFG(d_model, 30, "d_model");          /* not a multiple of 4 heads */
    BAD_CFG(d_model, 0, "d_model");
    BAD_CFG(d_model, 4 * 12, "head_dim");     /* head dim 12 */
    BAD_CFG(d_model, 4 * 264, "head_dim");    /* head dim 264 > 256 */
    BAD_CFG(vocab_size, 1, "vocab_size");
    BAD_CFG(max_seq_len, 0, "max_seq_len");
    BAD_CFG(mlp_ratio, 0, "mlp_ratio");
    BAD_CFG(gelu, (rg_gelu_kind)0, "gelu");
    BAD_CFG(init, (rg_init_kind)7, "init");
    BAD_CFG(ln_eps, 0.0f, "ln_eps");
    BAD_CFG(ln_eps, NAN, "ln_eps");
    BAD_CFG(mlp_ratio, 1 << 30, "mlp_ratio");  /* H overflows int32 */
#undef BAD_CFG
    c = base;
    c.d_model = 8 * 256;
    c.n_heads = 8;
    c.n_kv_heads = 8;
    CHECK(rg_model_config_validate(&c) == RG_OK, "head_dim 256 is allowed");
    rg_backend *be;
    TRY_OK(rg_backend_init(RG_BACKEND_CPU, 0, &be));
    rg_model *m = (rg_model *)1;
    c = base;
    c.n_kv_heads = 3;
    CHECK(rg_model_init(be, &c, 1, &m) == RG_ERR_INVALID_ARG && m == NULL, "init refuses a bad config, *out NULL");
    CHECK(rg_model_init(NULL, &base, 1, &m) == RG_ERR_INVALID_ARG, "init refuses a NULL backend");
    rg_backend_free(be);
}

/* Expected table for a config, as (name, d0, d1) with d1 = 0 for vectors. */
static void test_table(rg_backend *be) {
    rg_model_config cfgs[2] = {tm_seed_like(2, 4, 2, 50, 16), tm_gpt2_like(3, 2, 1, 40, 12)};
    for (int k = 0; k < 2; k++) {
        rg_model_config *c = &cfgs[k];
        rg_model *m = tm_model(be, c, 7);
        int64_t C = c->d_model, hd = C / c->n_heads, Q = (c->n_heads + 2 * c->n_kv_heads) * hd, H = 4 * C;
        char names[128][64];
        int64_t shapes[128][2];
        int n = 0;
#define E(nm, a, b) do { snprintf(names[n], 64, "%s", nm); shapes[n][0] = a; shapes[n][1] = b; n++; } while (0)
        E("wte", c->vocab_size, C);
        E("wpe", c->max_seq_len, C);
        for (int l = 0; l < c->n_layers; l++) {
            char b[64];
#define L_(suffix, a, bb) do { snprintf(b, sizeof b, "h.%d.%s", l, suffix); E(b, a, bb); } while (0)
            L_("ln_1.weight", C, 0);
            if (c->ln_bias) L_("ln_1.bias", C, 0);
            L_("attn.c_attn.weight", Q, C);
            L_("attn.c_attn.bias", Q, 0);
            L_("attn.c_proj.weight", C, C);
            L_("attn.c_proj.bias", C, 0);
            L_("ln_2.weight", C, 0);
            if (c->ln_bias) L_("ln_2.bias", C, 0);
            L_("mlp.c_fc.weight", H, C);
            L_("mlp.c_fc.bias", H, 0);
            L_("mlp.c_proj.weight", C, H);
            L_("mlp.c_proj.bias", C, 0);
#undef L_
        }
        if (c->final_ln) { E("ln_f.weight", C, 0); E("ln_f.bias", C, 0); }
        if (!c->tied_embeddings) E("lm_head.weight", c->vocab_size, C);
        if (c->lm_head_bias) E("lm_head.bias", c->vocab_size, 0);
#undef E
        CHECK(rg_model_n_tensors(m) == n, "config %d: %d tensors (expected %d)", k, rg_model_n_tensors(m), n);
        int64_t total = 0;
        bool ok = true;
        for (int i = 0; i < n && i < rg_model_n_tensors(m); i++) {
            rg_model_tensor_info ti;
            TRY_OK(rg_model_tensor_info_get(m, i, &ti));
            bool same = !strcmp(ti.name, names[i]) && ti.shape[0] == shapes[i][0] &&
                        ti.ndim == (shapes[i][1] ? 2 : 1) && ti.shape[1] == (shapes[i][1] ? shapes[i][1] : 1) &&
                        ti.numel == ti.shape[0] * ti.shape[1];
            if (!same) printf("  tensor %d: got %s (%lld, %lld), expected %s\n", i, ti.name,
                              (long long)ti.shape[0], (long long)ti.shape[1], names[i]);
            ok &= same;
            int32_t idx = -1;
            ok &= rg_model_tensor_find(m, names[i], &idx) == RG_OK && idx == i;
            total += ti.numel;
        }
        CHECK(ok, "config %d: names, shapes and find match the HF layout", k);
        CHECK(total == rg_model_n_params(m), "n_params is the sum of numel");
        int32_t idx;
        CHECK(err_has(rg_model_tensor_find(m, "h.99.ln_1.weight", &idx), RG_ERR_INVALID_ARG, "h.99"),
              "unknown tensor name reported");
        rg_model_tensor_info ti;
        CHECK(rg_model_tensor_info_get(m, n, &ti) == RG_ERR_INVALID_ARG, "index past the table refused");
        rg_model_free(m);
    }
}

static double mean_of(const float *x, int64_t n) { double s = 0; for (int64_t i = 0; i < n; i++) s += x[i]; return s / n; }
static double sd_of(const float *x, int64_t n) {
    double mu = mean_of(x, n), s = 0;
    for (int64_t i = 0; i < n; i++) s += (x[i] - mu) * (x[i] - mu);
    return sqrt(s / n);
}

static void test_init(rg_backend *be) {
    rg_model_config c = tm_gpt2_like(2, 4, 4, 300, 64);
    c.d_model = 64;
    c.n_heads = 4;
    c.n_kv_heads = 4;
    rg_model *a = tm_model(be, &c, 11), *b = tm_model(be, &c, 11), *d = tm_model(be, &c, 12);
    float *pa = tm_get_all(a, RG_MODEL_PARAMS), *pb = tm_get_all(b, RG_MODEL_PARAMS), *pd = tm_get_all(d, RG_MODEL_PARAMS);
    size_t n = (size_t)rg_model_n_params(a);
    CHECK(memcmp(pa, pb, n * sizeof(float)) == 0, "same seed, same parameters");
    CHECK(memcmp(pa, pd, n * sizeof(float)) != 0, "different seed, different parameters");
    /* GPT-2 init: wte N(0, 0.02), c_proj N(0, 0.02 / sqrt(2 L)), biases 0, LN weight 1. */
    int32_t i;
    rg_model_tensor_info ti;
    float *x = malloc(300 * 256 * sizeof *x);
    TRY_OK(rg_model_tensor_find(a, "wte", &i));
    TRY_OK(rg_model_tensor_info_get(a, i, &ti));
    TRY_OK(rg_model_tensor_get(a, RG_MODEL_PARAMS, i, x));
    CHECK(fabs(sd_of(x, ti.numel) - 0.02) < 0.002 && fabs(mean_of(x, ti.numel)) < 0.002, "gpt2 wte sd %.4f",
          sd_of(x, ti.numel));
    TRY_OK(rg_model_tensor_find(a, "h.1.mlp.c_proj.weight", &i));
    TRY_OK(rg_model_tensor_info_get(a, i, &ti));
    TRY_OK(rg_model_tensor_get(a, RG_MODEL_PARAMS, i, x));
    CHECK(fabs(sd_of(x, ti.numel) - 0.01) < 0.001, "gpt2 c_proj sd %.4f, expected 0.02/sqrt(4)", sd_of(x, ti.numel));
    TRY_OK(rg_model_tensor_find(a, "h.0.attn.c_attn.bias", &i));
    TRY_OK(rg_model_tensor_get(a, RG_MODEL_PARAMS, i, x));
    CHECK(x[0] == 0 && x[191] == 0, "gpt2 biases are zero");
    TRY_OK(rg_model_tensor_find(a, "ln_f.weight", &i));
    TRY_OK(rg_model_tensor_get(a, RG_MODEL_PARAMS, i, x));
    CHECK(x[0] == 1 && x[63] == 1, "LayerNorm weights are one");
    rg_model_free(a); rg_model_free(b); rg_model_free(d);
    free(pa); free(pb); free(pd);

    /* torch init: Embedding N(0, 1), Linear U(+-1/sqrt(in)). */
    c = tm_seed_like(1, 8, 8, 300, 64);
    a = tm_model(be, &c, 3);
    TRY_OK(rg_model_tensor_find(a, "wpe", &i));
    TRY_OK(rg_model_tensor_info_get(a, i, &ti));
    TRY_OK(rg_model_tensor_get(a, RG_MODEL_PARAMS, i, x));
    CHECK(fabs(sd_of(x, ti.numel) - 1.0) < 0.05, "torch embedding sd %.3f", sd_of(x, ti.numel));
    TRY_OK(rg_model_tensor_find(a, "h.0.mlp.c_proj.weight", &i));
    TRY_OK(rg_model_tensor_info_get(a, i, &ti));
    TRY_OK(rg_model_tensor_get(a, RG_MODEL_PARAMS, i, x));
    float mx = 0;
    for (int64_t k = 0; k < ti.numel; k++) mx = fmaxf(mx, fabsf(x[k]));
    double bound = 1 / sqrt(256.0); /* in = H = 4 * 64 */
    CHECK(mx <= bound && mx > 0.9 * bound && fabs(sd_of(x, ti.numel) - bound / sqrt(3.0)) < 0.1 * bound,
          "torch linear U(+-1/sqrt(in)): max %.4f sd %.4f bound %.4f", mx, sd_of(x, ti.numel), bound);
    TRY_OK(rg_model_tensor_find(a, "lm_head.bias", &i));
    TRY_OK(rg_model_tensor_info_get(a, i, &ti));
    TRY_OK(rg_model_tensor_get(a, RG_MODEL_PARAMS, i, x));
    mx = 0;
    for (int64_t k = 0; k < ti.numel; k++) mx = fmaxf(mx, fabsf(x[k]));
    CHECK(mx <= 1 / sqrt(64.0) && mx > 0.5 / sqrt(64.0), "torch head bias U(+-1/sqrt(C))");
    rg_model_free(a);
    free(x);
}

static void test_get_set(rg_backend *be, rg_rng *rng) {
    rg_model_config c = tm_seed_like(1, 2, 2, 20, 8);
    rg_model *m = tm_model(be, &c, 1);
    int32_t i;
    rg_model_tensor_info ti;
    TRY_OK(rg_model_tensor_find(m, "h.0.mlp.c_fc.weight", &i));
    TRY_OK(rg_model_tensor_info_get(m, i, &ti));
    float *x = malloc((size_t)ti.numel * sizeof *x), *y = malloc((size_t)ti.numel * sizeof *y);
    rg_rng_fill_uniform(rng, x, (size_t)ti.numel, -1, 1);
    TRY_OK(rg_model_tensor_set(m, RG_MODEL_PARAMS, i, x));
    TRY_OK(rg_model_tensor_get(m, RG_MODEL_PARAMS, i, y));
    CHECK(memcmp(x, y, (size_t)ti.numel * sizeof *x) == 0, "set then get returns the same parameters");
    float keep = x[3];
    x[3] = NAN;
    CHECK(err_has(rg_model_tensor_set(m, RG_MODEL_PARAMS, i, x), RG_ERR_INVALID_ARG, "h.0.mlp.c_fc.weight[3]"),
          "a NaN parameter is refused, naming the element: %s", rg_last_error());
    TRY_OK(rg_model_tensor_get(m, RG_MODEL_PARAMS, i, y));
    x[3] = keep;
    CHECK(memcmp(x, y, (size_t)ti.numel * sizeof *x) == 0, "a refused set writes nothing");
    CHECK(err_has(rg_model_tensor_get(m, RG_MODEL_OPT_M, i, y), RG_ERR_INVALID_ARG, "SGD"),
          "plain SGD has no OPT_M: %s", rg_last_error());
    CHECK(rg_model_tensor_get(m, RG_MODEL_PARAMS, 999, y) == RG_ERR_INVALID_ARG, "bad index refused");
    CHECK(rg_model_tensor_get(m, (rg_model_state)9, i, y) == RG_ERR_INVALID_ARG, "bad state refused");
    rg_optim_config o;
    TRY_OK(rg_optim_config_default(RG_OPTIM_ADAMW, &o));
    TRY_OK(rg_model_set_optim(m, &o));
    TRY_OK(rg_model_tensor_set(m, RG_MODEL_OPT_V, i, x));
    TRY_OK(rg_model_tensor_get(m, RG_MODEL_OPT_V, i, y));
    CHECK(memcmp(x, y, (size_t)ti.numel * sizeof *x) == 0, "AdamW v round-trips");
    TRY_OK(rg_model_set_optim_step(m, 41));
    o.lr = 5e-4f;
    TRY_OK(rg_model_set_optim(m, &o));
    TRY_OK(rg_model_tensor_get(m, RG_MODEL_OPT_V, i, y));
    CHECK(rg_model_optim_step(m) == 41 && memcmp(x, y, (size_t)ti.numel * sizeof *x) == 0,
          "same optimizer kind keeps state and step");
    TRY_OK(rg_optim_config_default(RG_OPTIM_SGD, &o));
    TRY_OK(rg_model_set_optim(m, &o));
    CHECK(rg_model_optim_step(m) == 0 && rg_model_tensor_get(m, RG_MODEL_OPT_V, i, y) == RG_ERR_INVALID_ARG,
          "another kind resets state and step");
    o.lr = -1;
    CHECK(err_has(rg_model_set_optim(m, &o), RG_ERR_INVALID_ARG, "lr"), "negative lr refused");
    TRY_OK(rg_optim_config_default(RG_OPTIM_ADAMW, &o));
    o.total_steps = 5; o.warmup_steps = 5;
    CHECK(err_has(rg_optim_config_validate(&o), RG_ERR_INVALID_ARG, "total_steps"), "total <= warmup refused");
    o.total_steps = 0; o.beta2 = 1;
    CHECK(err_has(rg_optim_config_validate(&o), RG_ERR_INVALID_ARG, "beta2"), "beta2 = 1 refused");
    free(x);
    free(y);
    rg_model_free(m);
}

static void test_schedule(void) {
    rg_optim_config o;
    TRY_OK(rg_optim_config_default(RG_OPTIM_ADAMW, &o));
    CHECK(o.lr == 1e-3f && o.beta1 == 0.9f && o.beta2 == 0.999f && o.eps == 1e-8f && o.weight_decay == 1e-2f,
          "AdamW defaults are torch's");
    CHECK(rg_optim_lr(&o, 0) == o.lr && rg_optim_lr(&o, 1000000) == o.lr, "constant lr by default");
    o.lr = 1.0f; o.min_lr = 0.1f; o.warmup_steps = 4; o.total_steps = 14;
    CHECK(fabsf(rg_optim_lr(&o, 0) - 0.25f) < 1e-7f && fabsf(rg_optim_lr(&o, 3) - 1.0f) < 1e-7f, "linear warm-up");
    CHECK(fabsf(rg_optim_lr(&o, 4) - 1.0f) < 1e-6f, "cosine starts at lr");
    CHECK(fabsf(rg_optim_lr(&o, 9) - 0.55f) < 1e-6f, "cosine midpoint (lr + min_lr) / 2: %g", rg_optim_lr(&o, 9));
    CHECK(fabsf(rg_optim_lr(&o, 14) - 0.1f) < 1e-6f && fabsf(rg_optim_lr(&o, 100) - 0.1f) < 1e-6f, "ends at min_lr");
    TRY_OK(rg_optim_config_default(RG_OPTIM_SGD, &o));
    CHECK(o.lr == 1e-3f && o.momentum == 0 && o.weight_decay == 0 && o.clip_norm <= 0, "SGD defaults are torch's");
}

/* One update against a host reference (double) of torch's SGD / AdamW, with
 * the schedule, clipping and decay_matrices_only. */
static void test_optimizer_reference(rg_backend *be, rg_rng *rng, rg_optim_kind kind) {
    rg_model_config c = tm_gpt2_like(1, 2, 1, 23, 12);
    c.tied_embeddings = false;
    rg_model *m = tm_model(be, &c, 5);
    tm_randomize(m, rng, 0.3);
    int32_t lens[3] = {5, 12, 1};
    int32_t **seqs = tm_random_seqs(rng, 3, lens, c.vocab_size);
    rg_batch b = tm_batch(RG_LAYOUT_PACKED, 3, seqs, lens, c.vocab_size, c.max_seq_len);
    rg_optim_config o;
    TRY_OK(rg_optim_config_default(kind, &o));
    o.lr = 0.05f; o.min_lr = 0.01f; o.warmup_steps = 1; o.total_steps = 4;
    o.weight_decay = 0.1f; o.decay_matrices_only = true;
    if (kind == RG_OPTIM_SGD) o.momentum = 0.9f;
    else { o.beta1 = 0.8f; o.beta2 = 0.95f; o.eps = 1e-6f; }
    TRY_OK(rg_model_set_optim(m, &o));
    int64_t n = rg_model_n_params(m);
    double *mm = calloc((size_t)n, sizeof *mm), *vv = calloc((size_t)n, sizeof *vv);
    char *is_matrix = calloc((size_t)n, 1);
    int64_t off = 0;
    for (int32_t i = 0; i < rg_model_n_tensors(m); i++) {
        rg_model_tensor_info ti;
        TRY_OK(rg_model_tensor_info_get(m, i, &ti));
        memset(is_matrix + off, ti.ndim == 2, (size_t)ti.numel);
        off += ti.numel;
    }
    bool lr_ok = true, loss_same = true;
    for (int step = 0; step < 3; step++) {
        float *p = tm_get_all(m, RG_MODEL_PARAMS);
        rg_step_result gr, tr;
        TRY_OK(rg_model_grads(m, &b, 1, &gr));
        float *g = tm_get_all(m, RG_MODEL_GRADS);
        /* step 1 clips (half the norm), the others do not */
        o.clip_norm = step == 1 ? (float)(0.5 * gr.grad_norm) : (float)(10 * gr.grad_norm);
        TRY_OK(rg_model_set_optim(m, &o));
        TRY_OK(rg_model_train_step(m, &b, 1, &tr));
        loss_same &= tr.loss_sum == gr.loss_sum && tr.grad_norm == gr.grad_norm;
        double lr = rg_optim_lr(&o, step);
        lr_ok &= tr.lr == (float)lr;
        double scale = step == 1 ? o.clip_norm / (gr.grad_norm + 1e-6) : 1.0;
        float *ref = malloc((size_t)n * sizeof *ref);
        for (int64_t k = 0; k < n; k++) {
            double gk = g[k] * scale, pk = p[k], wd = is_matrix[k] ? o.weight_decay : 0;
            if (kind == RG_OPTIM_SGD) {
                gk += wd * pk;
                mm[k] = step == 0 ? gk : o.momentum * mm[k] + gk;
                pk -= lr * mm[k];
            } else {
                pk *= 1 - lr * wd;
                mm[k] = o.beta1 * mm[k] + (1 - o.beta1) * gk;
                vv[k] = o.beta2 * vv[k] + (1 - o.beta2) * gk * gk;
                double mh = mm[k] / (1 - pow(o.beta1, step + 1)), vh = vv[k] / (1 - pow(o.beta2, step + 1));
                pk -= lr * mh / (sqrt(vh) + o.eps);
            }
            ref[k] = (float)pk;
        }
        float *got = tm_get_all(m, RG_MODEL_PARAMS);
        char what[64];
        snprintf(what, sizeof what, "%s step %d params", kind == RG_OPTIM_SGD ? "SGD" : "AdamW", step);
        tm_check_tensors(m, what, got, ref, 1e-5);
        free(p); free(g); free(ref); free(got);
    }
    CHECK(lr_ok, "train_step reports the scheduled lr");
    CHECK(loss_same, "train_step's loss and norm are rg_model_grads' (deterministic)");
    CHECK(rg_model_optim_step(m) == 3, "three updates counted");
    float *gm = tm_get_all(m, RG_MODEL_OPT_M), *ref = malloc((size_t)n * sizeof *ref);
    for (int64_t k = 0; k < n; k++) ref[k] = (float)mm[k];
    tm_check_tensors(m, kind == RG_OPTIM_SGD ? "SGD momentum" : "AdamW m", gm, ref, 1e-5);
    free(gm);
    if (kind == RG_OPTIM_ADAMW) {
        float *gv = tm_get_all(m, RG_MODEL_OPT_V);
        for (int64_t k = 0; k < n; k++) ref[k] = (float)vv[k];
        tm_check_tensors(m, "AdamW v", gv, ref, 1e-5);
        free(gv);
    }
    free(ref); free(mm); free(vv); free(is_matrix);
    rg_batch_free(&b);
    tm_free_seqs(seqs, 3);
    rg_model_free(m);
}

static void test_flops(rg_backend *be) {
    rg_model_config c = tm_seed_like(2, 2, 1, 30, 16);
    rg_model *m = tm_model(be, &c, 1);
    int32_t lens[2] = {3, 5};
    int32_t s0[3] = {1, 2, 3}, s1[5] = {4, 5, 6, 7, 8};
    int32_t *seqs[2] = {s0, s1};
    double C = 16, hd = 8, h = 2, Q = (2 + 2) * 8, H = 64, V = 30, L = 2;
    double mm = 2 * (L * (C * Q + C * C + 2 * C * H) + C * V), at = 4 * h * hd * L;
    struct { rg_batch_layout layout; double slots, exec_sq; } cases[3] = {
        {RG_LAYOUT_PACKED, 8, 9 + 25}, {RG_LAYOUT_PAD_LONGEST, 10, 2 * 25}, {RG_LAYOUT_PAD_MAX, 32, 2 * 256}};
    for (int k = 0; k < 3; k++) {
        rg_batch b = tm_batch(cases[k].layout, 2, seqs, lens, 30, 16);
        double u, e;
        TRY_OK(rg_model_flops(m, &b, false, &u, &e));
        double uref = mm * 8 + at * 0.5 * 34, eref = mm * cases[k].slots + at * 0.5 * cases[k].exec_sq;
        CHECK(fabs(u - uref) <= 1e-9 * uref && fabs(e - eref) <= 1e-9 * eref,
              "eval flops layout %d: useful %.6g (ref %.6g), executed %.6g (ref %.6g)", k, u, uref, e, eref);
        TRY_OK(rg_model_flops(m, &b, true, &u, &e));
        uref = 3 * mm * 8 + 3.5 * at * 0.5 * 34;
        eref = 3 * mm * cases[k].slots + 3.5 * at * 0.5 * cases[k].exec_sq;
        CHECK(fabs(u - uref) <= 1e-9 * uref && fabs(e - eref) <= 1e-9 * eref, "train flops layout %d", k);
        /* bidirectional eval: full blocks over real keys; padded rows run every slot's query */
        TRY_OK(rg_model_set_eval_causal(m, false));
        TRY_OK(rg_model_flops(m, &b, false, &u, &e));
        double ex = k == 0 ? 34 : cases[k].slots / 2 * 8;
        CHECK(fabs(u - (mm * 8 + at * 34)) <= 1e-9 * u && fabs(e - (mm * cases[k].slots + at * ex)) <= 1e-9 * e,
              "bidirectional eval flops layout %d", k);
        TRY_OK(rg_model_set_eval_causal(m, true));
        rg_batch_free(&b);
    }
    rg_model_free(m);
}

/* A batch that does not fit the model is refused before any work. */
static void test_batch_checks(rg_backend *be) {
    rg_model_config c = tm_seed_like(1, 2, 2, 20, 8);
    rg_model *m = tm_model(be, &c, 1);
    int32_t s0[4] = {1, 2, 3, 4}, lens[1] = {4};
    int32_t *seqs[1] = {s0};
    rg_batch b = tm_batch(RG_LAYOUT_PACKED, 1, seqs, lens, 30, 30);
    rg_step_result r;
    TRY_OK(rg_model_eval_step(m, &b, &r));
    CHECK(r.n_targets == 3, "3 targets in a sequence of 4");
    b.tokens[2] = 25;
    CHECK(err_has(rg_model_eval_step(m, &b, &r), RG_ERR_INVALID_ARG, "token 25 at slot 2"), "token beyond V: %s",
          rg_last_error());
    b.tokens[2] = 3;
    b.targets[1] = -5;
    CHECK(err_has(rg_model_grads(m, &b, 1, &r), RG_ERR_INVALID_ARG, "target -5"), "bad target");
    b.targets[1] = 3;
    b.position_ids[3] = 8;
    CHECK(err_has(rg_model_train_step(m, &b, 1, &r), RG_ERR_INVALID_ARG, "position 8"), "position beyond max_seq_len");
    b.position_ids[3] = 3;
    b.cu_seqlens[1] = 3;
    CHECK(err_has(rg_model_eval_step(m, &b, &r), RG_ERR_INVALID_ARG, "cu_seqlens"), "inconsistent cu_seqlens");
    rg_batch_free(&b);
    CHECK(rg_model_eval_step(m, NULL, &r) == RG_ERR_INVALID_ARG, "NULL batch");
    CHECK(rg_model_train_step(m, NULL, 0, &r) == RG_ERR_INVALID_ARG, "no micro-batches");
    int32_t s1[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, l9[1] = {9};
    int32_t *seqs9[1] = {s1};
    b = tm_batch(RG_LAYOUT_PACKED, 1, seqs9, l9, 20, 16);
    CHECK(err_has(rg_model_eval_step(m, &b, &r), RG_ERR_INVALID_ARG, "max_seq_len"), "sequence longer than the model");
    rg_batch_free(&b);
    b = tm_batch(RG_LAYOUT_PAD_MAX, 1, seqs, lens, 20, 16);
    CHECK(err_has(rg_model_eval_step(m, &b, &r), RG_ERR_INVALID_ARG, "row length 16"), "pad-max row beyond the model");
    rg_batch_free(&b);
    rg_model_free(m);
}

/* After reserve, steps of that size allocate nothing (the arena stays put). */
static void test_arena(rg_backend *be, rg_rng *rng) {
    rg_model_config c = tm_seed_like(2, 2, 2, 20, 16);
    rg_model *m = tm_model(be, &c, 1);
    rg_model_memory mem0, mem1, mem2;
    TRY_OK(rg_model_memory_get(m, &mem0));
    CHECK(mem0.acts == 0 && mem0.optim == 0 && mem0.params >= (size_t)rg_model_n_params(m) * 4 &&
          mem0.grads == mem0.params, "memory before any step");
    TRY_OK(rg_model_reserve(m, 64, 8, true));
    TRY_OK(rg_model_memory_get(m, &mem1));
    int32_t lens[4] = {16, 1, 9, 16};
    int32_t **seqs = tm_random_seqs(rng, 4, lens, 20);
    rg_batch b = tm_batch(RG_LAYOUT_PAD_MAX, 4, seqs, lens, 20, 16);
    rg_step_result r;
    TRY_OK(rg_model_train_step(m, &b, 1, &r));
    TRY_OK(rg_model_eval_step(m, &b, &r));
    TRY_OK(rg_model_memory_get(m, &mem2));
    CHECK(mem1.acts > 0 && mem2.acts == mem1.acts, "steps within the reservation allocate nothing (%zu, %zu)",
          mem1.acts, mem2.acts);
    rg_batch_free(&b);
    /* eval-only reservation is smaller; a train step grows it */
    rg_model *e = tm_model(be, &c, 1);
    TRY_OK(rg_model_reserve(e, 64, 8, false));
    TRY_OK(rg_model_memory_get(e, &mem2));
    CHECK(mem2.acts < mem1.acts, "eval arena (%zu) smaller than train arena (%zu)", mem2.acts, mem1.acts);
    b = tm_batch(RG_LAYOUT_PACKED, 4, seqs, lens, 20, 16);
    rg_step_result r1, r2;
    TRY_OK(rg_model_eval_step(e, &b, &r1));
    TRY_OK(rg_model_train_step(e, &b, 1, &r2));
    CHECK(r1.loss_sum == r2.loss_sum, "eval arena and train arena give the same loss (%.17g vs %.17g)",
          r1.loss_sum, r2.loss_sum);
    CHECK(r2.lr == 1e-3f && r2.grad_norm > 0, "a default SGD step: lr %g, norm %g", r2.lr, r2.grad_norm);
    rg_batch_free(&b);
    tm_free_seqs(seqs, 4);
    rg_model_free(e);
    rg_model_free(m);
}

/* The attention algorithm is the model's choice to pass on: the reference
 * kernel and the fast one give the same loss and gradients. */
static void test_attn_algo(rg_backend *be, rg_rng *rng) {
    rg_model_config c = tm_gpt2_like(2, 4, 2, 21, 20);
    rg_model *m = tm_model(be, &c, rg_rng_u64(rng));
    tm_randomize(m, rng, 0.3);
    int32_t lens[3] = {20, 1, 1 + (int32_t)rg_rng_below(rng, 20)};
    int32_t **seqs = tm_random_seqs(rng, 3, lens, 21);
    rg_batch b = tm_batch(RG_LAYOUT_PAD_LONGEST, 3, seqs, lens, 21, 20);
    rg_step_result ra, rr;
    TRY_OK(rg_model_grads(m, &b, 1, &ra));
    float *ga = tm_get_all(m, RG_MODEL_GRADS);
    TRY_OK(rg_model_set_attn_algo(m, RG_ATTN_REFERENCE));
    TRY_OK(rg_model_grads(m, &b, 1, &rr));
    float *gr = tm_get_all(m, RG_MODEL_GRADS);
    CHECK(fabs(ra.loss_sum - rr.loss_sum) <= 1e-5 * fabs(rr.loss_sum), "reference attention loss %.9g vs auto %.9g",
          rr.loss_sum, ra.loss_sum);
    tm_check_tensors(m, "auto vs reference attention grad", ga, gr, 1e-5);
    CHECK(rg_model_set_attn_algo(m, (rg_attn_algo)9) == RG_ERR_INVALID_ARG, "unknown algo refused");
    free(ga);
    free(gr);
    rg_batch_free(&b);
    tm_free_seqs(seqs, 3);
    rg_model_free(m);
}

int main(void) {
    rg_rng rng;
    rg_test_init("test_model", &rng);
    rg_backend *be;
    TRY_OK(rg_backend_init(RG_BACKEND_CPU, 0, &be));
    test_presets();
    test_validation();
    test_table(be);
    test_init(be);
    test_get_set(be, &rng);
    test_schedule();
    test_optimizer_reference(be, &rng, RG_OPTIM_SGD);
    test_optimizer_reference(be, &rng, RG_OPTIM_ADAMW);
    test_flops(be);
    test_batch_checks(be);
    test_arena(be, &rng);
    test_attn_algo(be, &rng);
    rg_backend_free(be);
    return rg_test_finish();
}
