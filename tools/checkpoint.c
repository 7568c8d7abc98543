/* checkpoint.c — model and training state <-> safetensors (see checkpoint.h). */
#define _POSIX_C_SOURCE 200809L
#include "checkpoint.h"
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- metadata as a growing list of owned strings ---- */
typedef struct kvlist { char **kv; size_t n, cap; bool oom; } kvlist;

static void kv_add(kvlist *l, const char *key, const char *fmt, ...) {
    if (l->oom) return;
    if (l->n + 2 > l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 64;
        char **p = realloc(l->kv, nc * sizeof *p);
        if (!p) { l->oom = true; return; }
        l->kv = p;
        l->cap = nc;
    }
    char val[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(val, sizeof val, fmt, ap);
    va_end(ap);
    char *k = strdup(key), *v = strdup(val);
    if (!k || !v) { free(k); free(v); l->oom = true; return; }
    l->kv[l->n++] = k;
    l->kv[l->n++] = v;
}

static void kv_free(kvlist *l) {
    for (size_t i = 0; i < l->n; i++) free(l->kv[i]);
    free(l->kv);
}

/* ---- the configuration in the metadata: one table serves writing and reading ---- */
typedef enum { F_I32, F_I64, F_F32, F_BOOL, F_ENUM } field_kind;
typedef struct meta_field {
    const char *key;
    field_kind kind;
    bool optim;               /* a field of rg_optim_config, else of rg_model_config */
    size_t off;               /* offsetof in that struct */
    const char *word[2];      /* F_ENUM: the names of value[0] and value[1] */
    int value[2];
} meta_field;

#define MODEL(key, kind, field) {key, kind, false, offsetof(rg_model_config, field), {NULL, NULL}, {0, 0}}
#define OPTIM(key, kind, field) {key, kind, true, offsetof(rg_optim_config, field), {NULL, NULL}, {0, 0}}
_Static_assert(sizeof(rg_gelu_kind) == sizeof(int) && sizeof(rg_init_kind) == sizeof(int) &&
               sizeof(rg_optim_kind) == sizeof(int), "F_ENUM fields are read and written as int");
static const meta_field fields[] = {
    MODEL("model.n_layers", F_I32, n_layers),
    MODEL("model.d_model", F_I32, d_model),
    MODEL("model.n_heads", F_I32, n_heads),
    MODEL("model.n_kv_heads", F_I32, n_kv_heads),
    MODEL("model.vocab_size", F_I32, vocab_size),
    MODEL("model.max_seq_len", F_I32, max_seq_len),
    MODEL("model.mlp_ratio", F_I32, mlp_ratio),
    MODEL("model.ln_bias", F_BOOL, ln_bias),
    MODEL("model.linear_bias", F_BOOL, linear_bias),
    MODEL("model.final_ln", F_BOOL, final_ln),
    MODEL("model.tied_embeddings", F_BOOL, tied_embeddings),
    MODEL("model.lm_head_bias", F_BOOL, lm_head_bias),
    {"model.gelu", F_ENUM, false, offsetof(rg_model_config, gelu), {"erf", "tanh"},
     {RG_GELU_KIND_ERF, RG_GELU_KIND_TANH}},
    MODEL("model.ln_eps", F_F32, ln_eps),
    {"model.init", F_ENUM, false, offsetof(rg_model_config, init), {"gpt2", "torch"}, {RG_INIT_GPT2, RG_INIT_TORCH}},
    {"optim.kind", F_ENUM, true, offsetof(rg_optim_config, kind), {"sgd", "adamw"}, {RG_OPTIM_SGD, RG_OPTIM_ADAMW}},
    OPTIM("optim.lr", F_F32, lr),
    OPTIM("optim.min_lr", F_F32, min_lr),
    OPTIM("optim.warmup_steps", F_I64, warmup_steps),
    OPTIM("optim.total_steps", F_I64, total_steps),
    OPTIM("optim.momentum", F_F32, momentum),
    OPTIM("optim.beta1", F_F32, beta1),
    OPTIM("optim.beta2", F_F32, beta2),
    OPTIM("optim.eps", F_F32, eps),
    OPTIM("optim.weight_decay", F_F32, weight_decay),
    OPTIM("optim.decay_matrices_only", F_BOOL, decay_matrices_only),
    OPTIM("optim.clip_norm", F_F32, clip_norm),
};
#undef MODEL
#undef OPTIM
#define N_FIELDS (sizeof fields / sizeof fields[0])

static void *field_at(const meta_field *f, const rg_model_config *c, const rg_optim_config *o) {
    return (char *)(f->optim ? (const void *)o : (const void *)c) + f->off;
}

static void describe_config(kvlist *l, const rg_model_config *c, const rg_optim_config *o) {
    for (size_t i = 0; i < N_FIELDS; i++) {
        const meta_field *f = &fields[i];
        const void *p = field_at(f, c, o);
        switch (f->kind) {
        case F_I32: kv_add(l, f->key, "%d", *(const int32_t *)p); break;
        case F_I64: kv_add(l, f->key, "%" PRId64, *(const int64_t *)p); break;
        case F_F32: kv_add(l, f->key, "%.9g", *(const float *)p); break;
        case F_BOOL: kv_add(l, f->key, "%s", *(const bool *)p ? "true" : "false"); break;
        case F_ENUM: kv_add(l, f->key, "%s", f->word[*(const int *)p == f->value[1]]); break;
        }
    }
}

/* Optimizer states the model keeps: 0 none, 1 m, 2 m and v. */
static int n_states(const rg_optim_config *o) {
    return o->kind == RG_OPTIM_ADAMW ? 2 : o->momentum > 0 ? 1 : 0;
}

int ckpt_save(const char *path, rg_model *m, const char *const *extra_kv, size_t n_extra, size_t *bytes,
              char *err, size_t err_size) {
    rg_optim_config opt;
    if (rg_model_get_optim(m, &opt) != RG_OK) {
        snprintf(err, err_size, "%s", rg_last_error());
        return -1;
    }
    int32_t nt = rg_model_n_tensors(m);
    int ns = n_states(&opt);
    size_t nv = (size_t)nt * (1 + ns);
    rg_tensor_view *views = calloc(nv, sizeof *views);
    rg_model_tensor_info *info = calloc((size_t)nt, sizeof *info);
    float **data = calloc(nv, sizeof *data);
    char **names = calloc(nv, sizeof *names);
    kvlist meta = {0};
    int rc = -1;
    size_t total = 0;
    if (!views || !info || !data || !names) { snprintf(err, err_size, "out of memory"); goto done; }
    static const char *const prefix[3] = {"", "optim.m.", "optim.v."};
    static const rg_model_state which[3] = {RG_MODEL_PARAMS, RG_MODEL_OPT_M, RG_MODEL_OPT_V};
    for (int32_t i = 0; i < nt; i++) {
        if (rg_model_tensor_info_get(m, i, &info[i]) != RG_OK) { snprintf(err, err_size, "%s", rg_last_error()); goto done; }
        for (int s = 0; s <= ns; s++) {
            size_t k = (size_t)s * nt + i;
            size_t len = strlen(prefix[s]) + strlen(info[i].name) + 1;
            names[k] = malloc(len);
            data[k] = malloc((size_t)(info[i].numel ? info[i].numel : 1) * sizeof(float));
            if (!names[k] || !data[k]) { snprintf(err, err_size, "out of memory"); goto done; }
            snprintf(names[k], len, "%s%s", prefix[s], info[i].name);
            if (rg_model_tensor_get(m, which[s], i, data[k]) != RG_OK) {
                snprintf(err, err_size, "reading %s: %s", names[k], rg_last_error());
                goto done;
            }
            views[k] = (rg_tensor_view){.name = names[k], .dtype = RG_DTYPE_F32, .ndim = info[i].ndim,
                                        .shape = info[i].shape, .data = data[k]};
            total += (size_t)info[i].numel * sizeof(float);
        }
    }
    kv_add(&meta, "format", "%s", CKPT_FORMAT);
    kv_add(&meta, "ragged_version", "%s", rg_version());
    kv_add(&meta, "step", "%" PRId64, rg_model_optim_step(m));
    describe_config(&meta, rg_model_get_config(m), &opt);
    for (size_t i = 0; i < n_extra; i++) kv_add(&meta, extra_kv[2 * i], "%s", extra_kv[2 * i + 1]);
    if (meta.oom) { snprintf(err, err_size, "out of memory"); goto done; }
    if (rg_safetensors_write(path, views, nv, (const char *const *)meta.kv, meta.n / 2) != RG_OK) {
        snprintf(err, err_size, "%s", rg_last_error());
        goto done;
    }
    if (bytes) *bytes = total;
    rc = 0;
done:
    for (size_t k = 0; data && names && k < nv; k++) { free(data[k]); free(names[k]); }
    free(data);
    free(names);
    free(views);
    free(info);
    kv_free(&meta);
    return rc;
}

/* ---- reading ---- */

/* The metadata value of key, or NULL with a message in err. */
static const char *need(const rg_safetensors *st, const char *path, const char *key, char *err, size_t n) {
    const char *v = rg_safetensors_metadata(st, key);
    if (!v) snprintf(err, n, "%s: metadata has no '%s' (not a checkpoint written by ragged train?)", path, key);
    return v;
}

static bool get_i64(const rg_safetensors *st, const char *path, const char *key, int64_t lo, int64_t hi,
                    int64_t *out, char *err, size_t n) {
    const char *v = need(st, path, key, err, n);
    if (!v) return false;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi) {
        snprintf(err, n, "%s: metadata '%s' = '%s', expected an integer in [%lld, %lld]", path, key, v, (long long)lo,
                 (long long)hi);
        return false;
    }
    *out = x;
    return true;
}

static bool get_i32(const rg_safetensors *st, const char *path, const char *key, int32_t *out, char *err, size_t n) {
    int64_t x;
    if (!get_i64(st, path, key, INT32_MIN, INT32_MAX, &x, err, n)) return false;
    *out = (int32_t)x;
    return true;
}

static bool get_f32(const rg_safetensors *st, const char *path, const char *key, float *out, char *err, size_t n) {
    const char *v = need(st, path, key, err, n);
    if (!v) return false;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno || !isfinite(x)) {
        snprintf(err, n, "%s: metadata '%s' = '%s', expected a finite number", path, key, v);
        return false;
    }
    *out = (float)x;
    return true;
}

/* One of two words: *out = 0 for a, 1 for b. */
static bool get_word(const rg_safetensors *st, const char *path, const char *key, const char *a, const char *b,
                     int *out, char *err, size_t n) {
    const char *v = need(st, path, key, err, n);
    if (!v) return false;
    if (strcmp(v, a) && strcmp(v, b)) {
        snprintf(err, n, "%s: metadata '%s' = '%s', expected %s or %s", path, key, v, a, b);
        return false;
    }
    *out = strcmp(v, a) != 0;
    return true;
}

static bool get_bool(const rg_safetensors *st, const char *path, const char *key, bool *out, char *err, size_t n) {
    int w;
    if (!get_word(st, path, key, "false", "true", &w, err, n)) return false;
    *out = w == 1;
    return true;
}

int ckpt_open(const char *path, rg_safetensors **out, rg_model_config *c, rg_optim_config *o, int64_t *step,
              char *err, size_t n) {
    rg_safetensors *st;
    *out = NULL;
    if (rg_checkpoint_open(path, &st) != RG_OK) {
        snprintf(err, n, "%s", rg_last_error());
        return -1;
    }
    const char *fmt = need(st, path, "format", err, n);
    bool ok = fmt != NULL;
    if (ok && strcmp(fmt, CKPT_FORMAT)) {
        snprintf(err, n, "%s: metadata 'format' = '%s', expected '%s'", path, fmt, CKPT_FORMAT);
        ok = false;
    }
    memset(c, 0, sizeof *c);
    memset(o, 0, sizeof *o);
    ok = ok && get_i64(st, path, "step", 0, INT64_MAX, step, err, n);
    for (size_t i = 0; ok && i < N_FIELDS; i++) {
        const meta_field *f = &fields[i];
        void *p = field_at(f, c, o);
        int w;
        switch (f->kind) {
        case F_I32: ok = get_i32(st, path, f->key, p, err, n); break;
        case F_I64: ok = get_i64(st, path, f->key, 0, INT64_MAX, p, err, n); break;
        case F_F32: ok = get_f32(st, path, f->key, p, err, n); break;
        case F_BOOL: ok = get_bool(st, path, f->key, p, err, n); break;
        case F_ENUM:
            ok = get_word(st, path, f->key, f->word[0], f->word[1], &w, err, n);
            if (ok) *(int *)p = f->value[w];
            break;
        }
    }
    if (ok) {
        if (rg_model_config_validate(c) != RG_OK || rg_optim_config_validate(o) != RG_OK) {
            snprintf(err, n, "%s: metadata: %s", path, rg_last_error());
            ok = false;
        }
    }
    if (!ok) {
        rg_safetensors_close(st);
        return -1;
    }
    *out = st;
    return 0;
}

int ckpt_restore(const rg_safetensors *st, const char *path, rg_model *m, int64_t step, char *err, size_t n) {
    rg_optim_config opt;
    if (rg_model_get_optim(m, &opt) != RG_OK) { snprintf(err, n, "%s", rg_last_error()); return -1; }
    int ns = n_states(&opt);
    static const char *const prefix[3] = {"", "optim.m.", "optim.v."};
    static const rg_model_state which[3] = {RG_MODEL_PARAMS, RG_MODEL_OPT_M, RG_MODEL_OPT_V};
    int32_t nt = rg_model_n_tensors(m);
    /* Shapes first, so that a mismatch changes nothing. */
    int64_t most = 1;
    for (int pass = 0; pass < 2; pass++) {
        float *buf = pass ? malloc((size_t)most * sizeof *buf) : NULL;
        if (pass && !buf) { snprintf(err, n, "out of memory"); return -1; }
        for (int32_t i = 0; i < nt; i++) {
            rg_model_tensor_info mi;
            rg_model_tensor_info_get(m, i, &mi);
            if (mi.numel > most) most = mi.numel;
            for (int s = 0; s <= ns; s++) {
                char name[256];
                snprintf(name, sizeof name, "%s%s", prefix[s], mi.name);
                rg_tensor_info ti;
                if (!pass) {
                    if (rg_safetensors_find(st, name, &ti) != RG_OK) {
                        snprintf(err, n, "%s: no tensor '%s'%s", path, name,
                                 s ? " (the checkpoint has no optimizer state for its optimizer)" : "");
                        return -1;
                    }
                    bool same = ti.ndim == mi.ndim && ti.shape[0] == mi.shape[0] && (mi.ndim < 2 || ti.shape[1] == mi.shape[1]);
                    if (!same || !ti.convertible) {
                        snprintf(err, n, "%s: tensor '%s' is %s of %d dims [%lld, %lld], expected F32 [%lld, %lld]", path,
                                 name, ti.dtype_name, ti.ndim, ti.ndim > 0 ? (long long)ti.shape[0] : 0LL,
                                 ti.ndim > 1 ? (long long)ti.shape[1] : 1LL, (long long)mi.shape[0], (long long)mi.shape[1]);
                        return -1;
                    }
                    continue;
                }
                rg_status rs = rg_safetensors_read_f32(st, name, buf, (size_t)mi.numel);
                if (rs == RG_OK) rs = rg_model_tensor_set(m, which[s], i, buf);
                if (rs != RG_OK) {
                    snprintf(err, n, "%s: tensor '%s': %s", path, name, rg_last_error());
                    free(buf);
                    return -1;
                }
            }
        }
        free(buf);
    }
    if (rg_model_set_optim_step(m, step) != RG_OK) { snprintf(err, n, "%s", rg_last_error()); return -1; }
    return 0;
}

int ckpt_load_model(const char *path, rg_backend *be, rg_model **out, bool *hf, char *err, size_t n) {
    *out = NULL;
    struct stat sb;
    bool dir = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
    *hf = dir;
    rg_model_config cfg;
    rg_model *m = NULL;
    if (dir) { /* a HuggingFace GPT-2 directory: config.json + model.safetensors (or an index) */
        if (rg_hf_gpt2_config_read(path, &cfg) != RG_OK || rg_model_init(be, &cfg, 0, &m) != RG_OK ||
            rg_hf_gpt2_load(m, path) != RG_OK) {
            snprintf(err, n, "%s", rg_last_error());
            rg_model_free(m);
            return -1;
        }
        *out = m;
        return 0;
    }
    rg_safetensors *st = NULL;
    rg_optim_config opt;
    int64_t step;
    if (ckpt_open(path, &st, &cfg, &opt, &step, err, n)) return -1;
    int rc = 0;
    if (rg_model_init(be, &cfg, 0, &m) != RG_OK || rg_model_set_optim(m, &opt) != RG_OK) {
        snprintf(err, n, "%s", rg_last_error());
        rc = -1;
    }
    if (!rc) rc = ckpt_restore(st, path, m, step, err, n);
    rg_safetensors_close(st);
    if (rc) {
        rg_model_free(m);
        return -1;
    }
    *out = m;
    return 0;
}
