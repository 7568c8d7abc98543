/* test_model_torch.c — the model against PyTorch: fixtures written by
 * scripts/torch_model_fixture.py (tests/data/model_torch_*.bin: config, one
 * packed batch, weights, logits, mean loss and every gradient, computed in
 * float64) must match ragged's logits, loss and gradients to 1e-4 relative,
 * from the packed batch and from the same sequences padded. Skips (77) when
 * the fixtures are absent. */
#include "test_model_util.h"

typedef struct record {
    char name[96];
    uint32_t dtype;           /* 0 float32, 1 int32 */
    int64_t numel;
    void *data;
} record;

typedef struct fixture {
    int n;
    record *r;
} fixture;

static void fixture_free(fixture *f) {
    for (int i = 0; i < f->n; i++) free(f->r[i].data);
    free(f->r);
}

/* Reads the RGFX format (see the script); false with a message on anything odd. */
static bool fixture_read(const char *path, fixture *f) {
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (!fp) return false;
    char magic[8];
    uint32_t count;
    bool ok = fread(magic, 1, 8, fp) == 8 && !memcmp(magic, "RGFX0001", 8) && fread(&count, 4, 1, fp) == 1 &&
              count < 10000;
    if (ok) f->r = calloc(count, sizeof *f->r);
    for (uint32_t i = 0; ok && i < count; i++) {
        record *r = &f->r[f->n];
        uint32_t len, ndim;
        ok = fread(&len, 4, 1, fp) == 1 && len < sizeof r->name && fread(r->name, 1, len, fp) == len &&
             fread(&r->dtype, 4, 1, fp) == 1 && r->dtype <= 1 && fread(&ndim, 4, 1, fp) == 1 && ndim <= 4;
        r->numel = 1;
        for (uint32_t d = 0; ok && d < ndim; d++) {
            int64_t dim;
            ok = fread(&dim, 8, 1, fp) == 1 && dim >= 0 && dim < (1 << 24);
            r->numel *= dim;
        }
        if (ok) {
            r->data = malloc((size_t)r->numel * 4 + 1);
            ok = r->data && fread(r->data, 4, (size_t)r->numel, fp) == (size_t)r->numel;
            f->n++;
        }
    }
    fclose(fp);
    if (!ok) {
        printf("  %s: malformed fixture\n", path);
        fixture_free(f);
    }
    return ok;
}

static const record *find(const fixture *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->r[i].name, name)) return &f->r[i];
    return NULL;
}

/* A record that must exist with the given dtype and size (numel < 0: any). */
static const record *need(const fixture *f, const char *name, uint32_t dtype, int64_t numel) {
    const record *r = find(f, name);
    if (!CHECK(r && r->dtype == dtype && (numel < 0 || r->numel == numel), "fixture record %s (dtype %u, %lld "
               "elements)", name, dtype, (long long)numel)) {
        exit(rg_test_finish());
    }
    return r;
}

static void check_fixture(rg_backend *be, const char *path, const char *label) {
    fixture f;
    if (!CHECK(fixture_read(path, &f), "%s: read %s", label, path)) return;
    const int32_t *ci = need(&f, "config", 1, 13)->data;
    rg_model_config cfg = {
        .n_layers = ci[0], .d_model = ci[1], .n_heads = ci[2], .n_kv_heads = ci[3], .vocab_size = ci[4],
        .max_seq_len = ci[5], .mlp_ratio = ci[6], .ln_bias = ci[7], .linear_bias = ci[8], .final_ln = ci[9],
        .tied_embeddings = ci[10], .lm_head_bias = ci[11], .gelu = (rg_gelu_kind)ci[12],
        .ln_eps = *(const float *)need(&f, "ln_eps", 0, 1)->data, .init = RG_INIT_GPT2,
    };
    rg_model *m = tm_model(be, &cfg, 1);
    const record *sl = need(&f, "seqlens", 1, -1);
    int n = (int)sl->numel;
    const int32_t *lens = sl->data;
    const record *tk = need(&f, "tokens", 1, -1);
    int32_t **seqs = calloc((size_t)n, sizeof *seqs);
    int64_t off = 0;
    for (int s = 0; s < n; s++) {
        seqs[s] = (int32_t *)tk->data + off;
        off += lens[s];
    }
    CHECK(off == tk->numel, "%s: tokens match seqlens", label);

    /* Weights by name: every model tensor must be in the fixture, and no more. */
    int params_in_file = 0;
    for (int i = 0; i < f.n; i++) params_in_file += !strncmp(f.r[i].name, "param.", 6);
    CHECK(params_in_file == rg_model_n_tensors(m), "%s: %d tensors in the fixture, %d in the model", label,
          params_in_file, rg_model_n_tensors(m));
    for (int32_t i = 0; i < rg_model_n_tensors(m); i++) {
        rg_model_tensor_info ti;
        TRY_OK(rg_model_tensor_info_get(m, i, &ti));
        char key[128];
        snprintf(key, sizeof key, "param.%s", ti.name);
        TRY_OK(rg_model_tensor_set(m, RG_MODEL_PARAMS, i, need(&f, key, 0, ti.numel)->data));
    }

    rg_batch_layout layouts[3] = {RG_LAYOUT_PACKED, RG_LAYOUT_PAD_LONGEST, RG_LAYOUT_PAD_MAX};
    const char *lname[3] = {"packed", "pad-to-longest", "pad-to-max"};
    int V = cfg.vocab_size;
    const record *lg = need(&f, "logits", 0, off * V);
    float loss_ref = *(const float *)need(&f, "loss", 0, 1)->data;
    for (int k = 0; k < 3; k++) {
        rg_batch b = tm_batch(layouts[k], n, seqs, lens, V, cfg.max_seq_len);
        char what[160];
        /* logits of real tokens, in packed order */
        float *all = malloc((size_t)b.n_tokens * V * sizeof *all), *got = malloc((size_t)off * V * sizeof *got);
        TRY_OK(rg_model_logits(m, &b, all));
        int64_t t = 0;
        for (int s = 0; s < n; s++)
            for (int i = 0; i < lens[s]; i++, t++)
                memcpy(got + t * V, all + ((size_t)b.cu_seqlens[s] + i) * V, (size_t)V * sizeof *got);
        snprintf(what, sizeof what, "%s %s logits", label, lname[k]);
        CHECK_CLOSE(what, got, lg->data, (size_t)off * V, 1e-4);
        rg_step_result r;
        TRY_OK(rg_model_grads(m, &b, 1, &r));
        double loss = r.loss_sum / (double)r.n_targets;
        CHECK(fabs(loss - loss_ref) <= 1e-4 * fabs(loss_ref), "%s %s: loss %.7f vs torch %.7f", label, lname[k], loss,
              loss_ref);
        for (int32_t i = 0; i < rg_model_n_tensors(m); i++) {
            rg_model_tensor_info ti;
            TRY_OK(rg_model_tensor_info_get(m, i, &ti));
            char key[128];
            snprintf(key, sizeof key, "grad.%s", ti.name);
            float *g = malloc((size_t)ti.numel * sizeof *g);
            TRY_OK(rg_model_tensor_get(m, RG_MODEL_GRADS, i, g));
            snprintf(what, sizeof what, "%s %s d%s", label, lname[k], ti.name);
            CHECK_CLOSE(what, g, need(&f, key, 0, ti.numel)->data, (size_t)ti.numel, 1e-4);
            free(g);
        }
        free(all);
        free(got);
        rg_batch_free(&b);
    }
    free(seqs);
    rg_model_free(m);
    fixture_free(&f);
}

int main(void) {
    rg_test_init("test_model_torch", NULL);
    const char *src = getenv("RG_SOURCE_DIR");
    const char *names[2] = {"seed", "gpt2"};
    char paths[2][1024];
    int present = 0;
    for (int i = 0; i < 2; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/tests/data/model_torch_%s.bin", src ? src : ".", names[i]);
        FILE *fp = fopen(paths[i], "rb");
        if (fp) { present++; fclose(fp); }
    }
    if (present == 0) {
        printf("test_model_torch: skipped: no fixtures at %s (run: python3 scripts/torch_model_fixture.py "
               "tests/data on a machine with PyTorch)\n", paths[0]);
        return 77;
    }
    rg_backend *be;
    TRY_OK(rg_backend_init(RG_BACKEND_CPU, 0, &be));
    for (int i = 0; i < 2; i++) check_fixture(be, paths[i], names[i]);
    rg_backend_free(be);
    return rg_test_finish();
}
