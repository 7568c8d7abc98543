/* test_hf_gpt2.c — HuggingFace GPT-2 checkpoints: save/load round trip, hand-written
 * HF-layout checkpoints (prefixed, bare, sharded, BF16), Conv1D transposition,
 * config.json parsing, and every refusal leaving the model unchanged. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "core/dtype.h"
#include "ragged.h"
#include "test_model_util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/rg_test_hf_gpt2_XXXXXX";
static rg_model_config g_cfg;

/* GPT-2's shape at test size: 2 layers, C 64, 4 heads of 16, V 97, 32 positions. */
static rg_model_config small_cfg(void) {
    rg_model_config c;
    TRY_OK(rg_model_config_preset("gpt2", &c));
    c.n_layers = 2;
    c.d_model = 64;
    c.n_heads = c.n_kv_heads = 4;
    c.vocab_size = 97;
    c.max_seq_len = 32;
    return c;
}

static char *path_in(const char *name) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "open %s", path);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static bool has(const char *msg, const char *part) { return strstr(msg, part) != NULL; }

/* ---- an HF checkpoint built by hand, independently of the library's map ---- */
#define MAXT 64
typedef struct hf_ckpt {
    int n;
    char name[MAXT][160];
    int32_t ndim[MAXT];
    int64_t shape[MAXT][4];
    float *data[MAXT];
} hf_ckpt;

static void ck_add(hf_ckpt *c, const char *name, int32_t ndim, const int64_t *shape, const float *data) {
    int i = c->n++;
    snprintf(c->name[i], sizeof c->name[i], "%s", name);
    c->ndim[i] = ndim;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (c->shape[i][d] = shape[d]);
    c->data[i] = malloc((size_t)n * sizeof(float));
    memcpy(c->data[i], data, (size_t)n * sizeof(float));
}

static int ck_find(const hf_ckpt *c, const char *name) {
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->name[i], name)) return i;
    CHECK(false, "test checkpoint has %s", name);
    exit(rg_test_finish());
}

static void ck_remove(hf_ckpt *c, const char *name) {
    int i = ck_find(c, name);
    free(c->data[i]);
    for (int k = i; k + 1 < c->n; k++) {
        memcpy(c->name[k], c->name[k + 1], sizeof c->name[k]);
        c->ndim[k] = c->ndim[k + 1];
        memcpy(c->shape[k], c->shape[k + 1], sizeof c->shape[k]);
        c->data[k] = c->data[k + 1];
    }
    c->n--;
}

static void ck_free(hf_ckpt *c) {
    for (int i = 0; i < c->n; i++) free(c->data[i]);
    c->n = 0;
}

/* The model's parameters in HF layout: wte/wpe get ".weight", Conv1D weights are
 * transposed to (in, out), plus the attn.bias mask buffers HF used to save. */
static void ck_from_model(hf_ckpt *c, rg_model *m, const char *prefix) {
    c->n = 0;
    for (int32_t i = 0; i < rg_model_n_tensors(m); i++) {
        rg_model_tensor_info ti;
        TRY_OK(rg_model_tensor_info_get(m, i, &ti));
        float *x = malloc((size_t)ti.numel * sizeof *x), *t = malloc((size_t)ti.numel * sizeof *t);
        TRY_OK(rg_model_tensor_get(m, RG_MODEL_PARAMS, i, x));
        char name[160];
        bool emb = !strcmp(ti.name, "wte") || !strcmp(ti.name, "wpe");
        snprintf(name, sizeof name, "%s%s%s", prefix, ti.name, emb ? ".weight" : "");
        bool conv = (has(ti.name, "c_attn") || has(ti.name, "c_proj") || has(ti.name, "c_fc")) &&
                    has(ti.name, ".weight");
        if (conv) {
            int64_t rows = ti.shape[0], cols = ti.shape[1], sh[2] = {cols, rows};
            for (int64_t r = 0; r < rows; r++)
                for (int64_t k = 0; k < cols; k++) t[k * rows + r] = x[r * cols + k];
            ck_add(c, name, 2, sh, t);
        } else {
            ck_add(c, name, ti.ndim, ti.shape, x);
        }
        free(x);
        free(t);
    }
    int64_t T = g_cfg.max_seq_len, mask_shape[4] = {1, 1, T, T};
    float *mask = calloc((size_t)(T * T), sizeof *mask), neg = -1e4f;
    for (int l = 0; l < g_cfg.n_layers; l++) {
        char name[160];
        snprintf(name, sizeof name, "%sh.%d.attn.bias", prefix, l);
        ck_add(c, name, 4, mask_shape, mask);
        snprintf(name, sizeof name, "%sh.%d.attn.masked_bias", prefix, l);
        ck_add(c, name, 0, NULL, &neg);
    }
    free(mask);
}

/* Writes tensors [lo, hi) of c to path, in dt (F32 or BF16). */
static void ck_write_range(const hf_ckpt *c, int lo, int hi, const char *path, rg_dtype dt) {
    rg_tensor_view v[MAXT] = {{0}};
    uint16_t *half[MAXT] = {0};
    for (int i = lo; i < hi; i++) {
        int64_t n = 1;
        for (int d = 0; d < c->ndim[i]; d++) n *= c->shape[i][d];
        const void *data = c->data[i];
        if (dt == RG_DTYPE_BF16) {
            half[i] = malloc((size_t)n * sizeof(uint16_t));
            for (int64_t k = 0; k < n; k++) half[i][k] = rg_f32_to_bf16(c->data[i][k]);
            data = half[i];
        }
        v[i - lo] = (rg_tensor_view){.name = c->name[i], .dtype = dt, .ndim = c->ndim[i], .shape = c->shape[i], .data = data};
    }
    static const char *const meta[2] = {"format", "pt"};
    TRY_OK(rg_safetensors_write(path, v, (size_t)(hi - lo), meta, 1));
    for (int i = lo; i < hi; i++) free(half[i]);
}

/* A fresh directory holding model.safetensors.index.json + 2 shards. */
static const char *ck_write_sharded(const hf_ckpt *c, const char *dirname) {
    const char *dir = path_in(dirname);
    mkdir(dir, 0777);
    char p1[600], p2[600], idx[600];
    snprintf(p1, sizeof p1, "%s/model-00001-of-00002.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/model-00002-of-00002.safetensors", dir);
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    int half = c->n / 2;
    ck_write_range(c, 0, half, p1, RG_DTYPE_F32);
    ck_write_range(c, half, c->n, p2, RG_DTYPE_F32);
    FILE *f = fopen(idx, "wb");
    fprintf(f, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    for (int i = 0; i < c->n; i++)
        fprintf(f, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "", c->name[i], i < half ? 1 : 2);
    fprintf(f, "}}\n");
    fclose(f);
    return dir;
}

/* ---- tests ---- */

static rg_model *random_model(rg_backend *be, rg_rng *rng) {
    rg_model *m = tm_model(be, &g_cfg, rg_rng_u64(rng));
    tm_randomize(m, rng, 0.3);
    return m;
}

static bool same_params(rg_model *a, rg_model *b) {
    float *x = tm_get_all(a, RG_MODEL_PARAMS), *y = tm_get_all(b, RG_MODEL_PARAMS);
    bool ok = !memcmp(x, y, (size_t)rg_model_n_params(a) * sizeof *x);
    free(x);
    free(y);
    return ok;
}

static void test_roundtrip(rg_backend *be, rg_rng *rng) {
    rg_model *a = random_model(be, rng), *b = random_model(be, rng);
    const char *dir = path_in("saved");
    TRY_OK(rg_hf_gpt2_save(a, dir));
    CHECK(!same_params(a, b), "the two models start different");
    TRY_OK(rg_hf_gpt2_load(b, dir));
    CHECK(same_params(a, b), "save -> load gives every tensor bit for bit");

    /* The file: transformer.-prefixed HF names, Conv1D (in, out), no lm_head, format pt. */
    rg_safetensors *st;
    TRY_OK(rg_checkpoint_open(dir, &st));
    rg_tensor_info ti;
    CHECK(rg_safetensors_count(st) == (size_t)rg_model_n_tensors(a), "one tensor per parameter, no lm_head: %zu",
          rg_safetensors_count(st));
    CHECK(!rg_safetensors_has(st, "lm_head.weight") && rg_safetensors_has(st, "transformer.wte.weight") &&
          rg_safetensors_has(st, "transformer.ln_f.bias"), "HF names");
    TRY_OK(rg_safetensors_find(st, "transformer.h.1.mlp.c_fc.weight", &ti));
    CHECK(ti.ndim == 2 && ti.shape[0] == 64 && ti.shape[1] == 256 && ti.dtype == RG_DTYPE_F32,
          "c_fc.weight saved as Conv1D (in 64, out 256) F32: (%lld, %lld)", (long long)ti.shape[0], (long long)ti.shape[1]);
    const char *fmt = rg_safetensors_metadata(st, "format");
    CHECK(fmt && !strcmp(fmt, "pt"), "metadata format pt");
    rg_safetensors_close(st);

    /* config.json reads back as the model's config. */
    rg_model_config rc;
    TRY_OK(rg_hf_gpt2_config_read(dir, &rc));
    CHECK(rc.n_layers == 2 && rc.d_model == 64 && rc.n_heads == 4 && rc.n_kv_heads == 4 && rc.vocab_size == 97 &&
          rc.max_seq_len == 32 && rc.mlp_ratio == 4 && rc.gelu == RG_GELU_KIND_TANH && rc.ln_eps == 1e-5f &&
          rc.ln_bias && rc.linear_bias && rc.final_ln && rc.tied_embeddings && !rc.lm_head_bias,
          "config.json round trip");

    /* Logits on a packed batch are identical. */
    int32_t lens[3] = {1, 13, 32};
    int32_t **seqs = tm_random_seqs(rng, 3, lens, g_cfg.vocab_size);
    rg_batch batch = tm_batch(RG_LAYOUT_PACKED, 3, seqs, lens, g_cfg.vocab_size, g_cfg.max_seq_len);
    size_t nl = (size_t)batch.n_tokens * (size_t)g_cfg.vocab_size;
    float *la = malloc(nl * sizeof *la), *lb = malloc(nl * sizeof *lb);
    TRY_OK(rg_model_logits(a, &batch, la));
    TRY_OK(rg_model_logits(b, &batch, lb));
    CHECK(!memcmp(la, lb, nl * sizeof *la), "logits identical after the round trip");
    free(la);
    free(lb);
    rg_batch_free(&batch);
    tm_free_seqs(seqs, 3);

    /* Saving again over the checkpoint replaces it; no temporary file is left. */
    tm_randomize(a, rng, 0.3);
    TRY_OK(rg_hf_gpt2_save(a, dir));
    TRY_OK(rg_hf_gpt2_load(b, dir));
    CHECK(same_params(a, b), "a second save replaces the first");
    char listing[1024];
    snprintf(listing, sizeof listing, "ls %s | grep -c tmp > /dev/null", dir);
    CHECK(system(listing) != 0, "no temporary file left in %s", dir);
    rg_model_free(a);
    rg_model_free(b);
}

/* Hand-written checkpoints: prefixed (with buffers and a tied lm_head), bare, sharded, BF16. */
static void test_hand_written(rg_backend *be, rg_rng *rng) {
    rg_model *a = random_model(be, rng), *b = random_model(be, rng);
    hf_ckpt c;
    ck_from_model(&c, a, "transformer.");
    int w = ck_find(&c, "transformer.wte.weight");
    ck_add(&c, "lm_head.weight", 2, c.shape[w], c.data[w]);
    ck_write_range(&c, 0, c.n, path_in("prefixed.safetensors"), RG_DTYPE_F32);
    TRY_OK(rg_hf_gpt2_load(b, path_in("prefixed.safetensors")));
    CHECK(same_params(a, b), "prefixed checkpoint with mask buffers and a tied lm_head.weight loads");

    const char *sharded = ck_write_sharded(&c, "sharded");
    tm_randomize(b, rng, 0.3);
    TRY_OK(rg_hf_gpt2_load(b, sharded));
    CHECK(same_params(a, b), "sharded checkpoint (index + 2 shards) loads");
    ck_free(&c);

    ck_from_model(&c, a, "");
    ck_write_range(&c, 0, c.n, path_in("bare.safetensors"), RG_DTYPE_F32);
    tm_randomize(b, rng, 0.3);
    TRY_OK(rg_hf_gpt2_load(b, path_in("bare.safetensors")));
    CHECK(same_params(a, b), "checkpoint without the transformer. prefix loads");

    /* BF16: every parameter arrives rounded to bf16. */
    ck_write_range(&c, 0, c.n, path_in("bf16.safetensors"), RG_DTYPE_BF16);
    TRY_OK(rg_hf_gpt2_load(b, path_in("bf16.safetensors")));
    float *x = tm_get_all(a, RG_MODEL_PARAMS), *y = tm_get_all(b, RG_MODEL_PARAMS);
    int64_t bad = 0;
    for (int64_t k = 0; k < rg_model_n_params(a); k++) bad += y[k] != rg_bf16_to_f32(rg_f32_to_bf16(x[k]));
    CHECK(bad == 0, "BF16 checkpoint loads as the bf16-rounded parameters (%lld differ)", (long long)bad);
    free(x);
    free(y);
    ck_free(&c);

    /* Transposition, element by element: HF c_fc.weight[i][j] (in, out) is our [j][i] (out, in). */
    ck_from_model(&c, a, "transformer.");
    int k = ck_find(&c, "transformer.h.1.mlp.c_fc.weight");
    CHECK(c.shape[k][0] == 64 && c.shape[k][1] == 256, "test layout of c_fc is (in, out)");
    int64_t i0 = 3, j0 = 200;
    c.data[k][i0 * 256 + j0] = 42.0f;
    ck_write_range(&c, 0, c.n, path_in("placed.safetensors"), RG_DTYPE_F32);
    TRY_OK(rg_hf_gpt2_load(b, path_in("placed.safetensors")));
    int32_t idx;
    TRY_OK(rg_model_tensor_find(b, "h.1.mlp.c_fc.weight", &idx));
    float *fc = malloc(256 * 64 * sizeof *fc);
    TRY_OK(rg_model_tensor_get(b, RG_MODEL_PARAMS, idx, fc));
    CHECK(fc[j0 * 64 + i0] == 42.0f, "HF c_fc.weight[3][200] lands at our (out, in) [200][3]: %g", fc[j0 * 64 + i0]);
    bool rest_ok = true;
    for (int64_t r = 0; r < 256; r++)
        for (int64_t q = 0; q < 64; q++)
            if (!(r == j0 && q == i0)) rest_ok &= fc[r * 64 + q] == c.data[k][q * 256 + r];
    CHECK(rest_ok, "every other c_fc element is the transpose");
    free(fc);
    ck_free(&c);
    rg_model_free(a);
    rg_model_free(b);
}

/* One failing load: status, message parts, model unchanged. */
static void expect_load_fail(rg_model *m, const char *path, rg_status want, const char *part1, const char *part2,
                             const char *what) {
    float *before = tm_get_all(m, RG_MODEL_PARAMS);
    rg_status s = rg_hf_gpt2_load(m, path);
    const char *msg = rg_last_error();
    CHECK(s == want && has(msg, part1) && (!part2 || has(msg, part2)), "%s: got %s '%s'", what, rg_status_str(s), msg);
    float *after = tm_get_all(m, RG_MODEL_PARAMS);
    CHECK(!memcmp(before, after, (size_t)rg_model_n_params(m) * sizeof *before), "%s: model unchanged", what);
    free(before);
    free(after);
}

static void test_load_errors(rg_backend *be, rg_rng *rng) {
    rg_model *a = random_model(be, rng), *b = random_model(be, rng);
    hf_ckpt c;
    const char *p = path_in("bad.safetensors");

    ck_from_model(&c, a, "transformer.");
    ck_remove(&c, "transformer.h.1.ln_2.bias");
    ck_write_range(&c, 0, c.n, p, RG_DTYPE_F32);
    expect_load_fail(b, p, RG_ERR_FORMAT, "missing tensor 'transformer.h.1.ln_2.bias'", NULL, "missing tensor");
    ck_free(&c);

    /* c_attn in torch's (out, in) layout instead of Conv1D's (in, out). */
    ck_from_model(&c, a, "transformer.");
    int k = ck_find(&c, "transformer.h.0.attn.c_attn.weight");
    c.shape[k][0] = 192;
    c.shape[k][1] = 64;
    ck_write_range(&c, 0, c.n, p, RG_DTYPE_F32);
    expect_load_fail(b, p, RG_ERR_FORMAT, "'transformer.h.0.attn.c_attn.weight' has shape (192, 64)",
                     "expected (64, 192)", "wrong shape");
    ck_free(&c);

    ck_from_model(&c, a, "transformer.");
    float one = 1.0f;
    int64_t sh1[1] = {1};
    ck_add(&c, "transformer.h.0.attn.rotary", 1, sh1, &one);
    ck_write_range(&c, 0, c.n, p, RG_DTYPE_F32);
    expect_load_fail(b, p, RG_ERR_FORMAT, "unexpected tensor 'transformer.h.0.attn.rotary'", NULL, "extra tensor");
    ck_free(&c);

    /* A bare name in a prefixed checkpoint is not silently accepted. */
    ck_from_model(&c, a, "transformer.");
    int64_t shC[1] = {64};
    float *z = calloc(64, sizeof *z);
    ck_add(&c, "ln_f.bias", 1, shC, z);
    free(z);
    ck_write_range(&c, 0, c.n, p, RG_DTYPE_F32);
    expect_load_fail(b, p, RG_ERR_FORMAT, "unexpected tensor 'ln_f.bias'", NULL, "mixed prefixes");
    ck_free(&c);

    ck_from_model(&c, a, "transformer.");
    int w = ck_find(&c, "transformer.wte.weight");
    ck_add(&c, "lm_head.weight", 2, c.shape[w], c.data[w]);
    c.data[c.n - 1][5] += 1.0f;
    ck_write_range(&c, 0, c.n, p, RG_DTYPE_F32);
    expect_load_fail(b, p, RG_ERR_UNSUPPORTED, "lm_head.weight differs from wte.weight", NULL, "untied lm_head");
    ck_free(&c);

    expect_load_fail(b, path_in("nothing_here"), RG_ERR_IO, "nothing_here", NULL, "missing checkpoint");

    /* A model with another shape refuses the checkpoint by the first tensor that differs. */
    ck_from_model(&c, a, "transformer.");
    ck_write_range(&c, 0, c.n, p, RG_DTYPE_F32);
    ck_free(&c);
    rg_model_config big = g_cfg;
    big.vocab_size = 98;
    rg_model *m98 = tm_model(be, &big, 1);
    expect_load_fail(m98, p, RG_ERR_FORMAT, "'transformer.wte.weight' has shape (97, 64)", "expected (98, 64)",
                     "vocabulary mismatch");
    rg_model_free(m98);
    rg_model_free(a);
    rg_model_free(b);
}

static void expect_cfg(const char *json, rg_status want, const char *part, const char *what) {
    const char *p = path_in("config.json");
    write_text(p, json);
    rg_model_config c;
    memset(&c, 0x5a, sizeof c);
    rg_model_config before = c;
    rg_status s = rg_hf_gpt2_config_read(p, &c);
    CHECK(s == want && has(rg_last_error(), part) && !memcmp(&c, &before, sizeof c),
          "%s: got %s '%s'", what, rg_status_str(s), rg_last_error());
}

static void test_config(void) {
    rg_model_config c, g;
    TRY_OK(rg_model_config_preset("gpt2", &g));
    write_text(path_in("config.json"), "{}");
    TRY_OK(rg_hf_gpt2_config_read(path_in("config.json"), &c));
    CHECK(c.n_layers == 12 && c.d_model == 768 && c.n_heads == 12 && c.vocab_size == 50257 && c.max_seq_len == 1024 &&
          c.gelu == RG_GELU_KIND_TANH && c.ln_eps == 1e-5f && c.mlp_ratio == 4, "empty config: GPT2Config defaults");
    write_text(path_in("config.json"),
               "{\"model_type\": \"gpt2\", \"n_layer\": 3, \"n_embd\": 96, \"n_head\": 12, \"vocab_size\": 50,"
               " \"n_positions\": 7, \"layer_norm_epsilon\": 1e-6, \"activation_function\": \"gelu\","
               " \"n_inner\": 192, \"n_ctx\": 7, \"resid_pdrop\": 0.1, \"bos_token_id\": 1}");
    TRY_OK(rg_hf_gpt2_config_read(tmpdir, &c));   /* the directory form */
    CHECK(c.n_layers == 3 && c.d_model == 96 && c.n_heads == 12 && c.n_kv_heads == 12 && c.vocab_size == 50 &&
          c.max_seq_len == 7 && c.gelu == RG_GELU_KIND_ERF && c.ln_eps == 1e-6f && c.mlp_ratio == 2 &&
          c.final_ln && c.tied_embeddings && c.ln_bias && c.linear_bias && !c.lm_head_bias, "explicit config");
    write_text(path_in("config.json"), "{\"activation_function\": \"gelu_pytorch_tanh\"}");
    TRY_OK(rg_hf_gpt2_config_read(path_in("config.json"), &c));
    CHECK(c.gelu == RG_GELU_KIND_TANH, "gelu_pytorch_tanh is tanh");

    expect_cfg("{\"activation_function\": \"relu\"}", RG_ERR_UNSUPPORTED, "activation_function \"relu\"", "relu");
    expect_cfg("{\"n_layer\": 2,}", RG_ERR_FORMAT, "config.json: line 1", "bad JSON");
    expect_cfg("[1]", RG_ERR_FORMAT, "expected an object", "not an object");
    expect_cfg("{\"model_type\": \"llama\"}", RG_ERR_UNSUPPORTED, "model_type \"llama\"", "model_type");
    expect_cfg("{\"n_embd\": \"64\"}", RG_ERR_FORMAT, "\"n_embd\"", "string n_embd");
    expect_cfg("{\"n_head\": 0}", RG_ERR_FORMAT, "\"n_head\"", "n_head 0");
    expect_cfg("{\"n_embd\": 100, \"n_head\": 3}", RG_ERR_FORMAT, "d_model = 100", "n_embd not divisible");
    expect_cfg("{\"layer_norm_epsilon\": -1}", RG_ERR_FORMAT, "layer_norm_epsilon", "negative eps");
    expect_cfg("{\"n_inner\": 1000}", RG_ERR_UNSUPPORTED, "n_inner = 1000", "n_inner not a multiple");
    expect_cfg("{\"scale_attn_by_inverse_layer_idx\": true}", RG_ERR_UNSUPPORTED, "scale_attn_by_inverse_layer_idx",
               "layer-scaled attention");
    expect_cfg("{\"tie_word_embeddings\": false}", RG_ERR_UNSUPPORTED, "tie_word_embeddings", "untied");
    rg_model_config dummy;
    rg_status s = rg_hf_gpt2_config_read(path_in("no_such_dir"), &dummy);
    CHECK(s == RG_ERR_IO && has(rg_last_error(), "no_such_dir"), "missing config: %s", rg_last_error());
    (void)g;
}

static void test_save_errors(rg_backend *be) {
    rg_model_config t;
    TRY_OK(rg_model_config_preset("tiny", &t));
    rg_model *m = tm_model(be, &t, 7);
    const char *dir = path_in("not_gpt2");
    rg_status s = rg_hf_gpt2_save(m, dir);
    struct stat sb;
    CHECK(s == RG_ERR_UNSUPPORTED && has(rg_last_error(), "not GPT-2-shaped") && has(rg_last_error(), "ln_bias") &&
          stat(dir, &sb) != 0, "tiny preset refused, nothing created: %s '%s'", rg_status_str(s), rg_last_error());
    rg_model_free(m);
    rg_model_config u = g_cfg;
    u.tied_embeddings = false;
    m = tm_model(be, &u, 7);
    s = rg_hf_gpt2_save(m, dir);
    CHECK(s == RG_ERR_UNSUPPORTED && has(rg_last_error(), "tied_embeddings"), "untied refused: '%s'", rg_last_error());
    s = rg_hf_gpt2_load(m, path_in("saved"));
    CHECK(s == RG_ERR_UNSUPPORTED && has(rg_last_error(), "tied_embeddings"), "untied load refused: '%s'", rg_last_error());
    rg_model_free(m);
    write_text(path_in("a_file"), "x");
    rg_model *g = tm_model(be, &g_cfg, 7);
    s = rg_hf_gpt2_save(g, path_in("a_file"));
    CHECK(s == RG_ERR_IO && has(rg_last_error(), "not a directory"), "save into a file refused: '%s'", rg_last_error());
    CHECK(rg_hf_gpt2_save(NULL, dir) == RG_ERR_INVALID_ARG && rg_hf_gpt2_load(g, NULL) == RG_ERR_INVALID_ARG &&
          rg_hf_gpt2_config_read(NULL, &t) == RG_ERR_INVALID_ARG, "NULL arguments");
    rg_model_free(g);
}

int main(void) {
    rg_rng rng;
    rg_test_init("hf_gpt2", &rng);
    if (!mkdtemp(tmpdir)) { CHECK(false, "mkdtemp"); return rg_test_finish(); }
    g_cfg = small_cfg();
    rg_backend *be;
    TRY_OK(rg_backend_init(RG_BACKEND_CPU, 0, &be));
    test_roundtrip(be, &rng);
    test_hand_written(be, &rng);
    test_load_errors(be, &rng);
    test_config();
    test_save_errors(be);
    rg_backend_free(be);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return rg_test_finish();
}
