/* hf_gpt2.c — HuggingFace GPT2LMHeadModel checkpoints (config.json + safetensors) in and out. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/alloc.h"
#include "core/file.h"
#include "core/status.h"
#include "io/json.h"
#include "ragged.h"

/* ---- config.json ---- */

#define CFG "rg_hf_gpt2_config_read"

/* An integer field in [1, INT32_MAX], or def when absent. */
static rg_status get_int(const rg_json *root, const char *path, const char *key, int32_t def, int32_t *out) {
    const rg_json *v = rg_json_get(root, key);
    if (!v) { *out = def; return RG_OK; }
    if (v->type != RG_JSON_NUMBER || !v->is_int || v->i < 1 || v->i > INT32_MAX)
        return rg_fail(RG_ERR_FORMAT, CFG ": %s: \"%s\" at line %u must be a positive int32, got %s",
                       path, key, v->line, v->type == RG_JSON_NUMBER ? "another number" : rg_json_type_name(v->type));
    *out = (int32_t)v->i;
    return RG_OK;
}

/* A boolean option that must hold `want` (absent: transformers' default, which is `want`). */
static rg_status need_bool(const rg_json *root, const char *path, const char *key, bool want) {
    const rg_json *v = rg_json_get(root, key);
    if (!v) return RG_OK;
    if (v->type != RG_JSON_BOOL)
        return rg_fail(RG_ERR_FORMAT, CFG ": %s: \"%s\" must be a boolean, got %s", path, key, rg_json_type_name(v->type));
    if (v->b != want)
        return rg_fail(RG_ERR_UNSUPPORTED, CFG ": %s: \"%s\": %s is not supported (only %s)", path, key,
                       v->b ? "true" : "false", want ? "true" : "false");
    return RG_OK;
}

static rg_status parse_config(const rg_json *root, const char *path, rg_model_config *c) {
    if (root->type != RG_JSON_OBJECT)
        return rg_fail(RG_ERR_FORMAT, CFG ": %s: expected an object, got %s", path, rg_json_type_name(root->type));
    const rg_json *mt = rg_json_get(root, "model_type");
    if (mt && (mt->type != RG_JSON_STRING || strcmp(mt->str, "gpt2")))
        return rg_fail(RG_ERR_UNSUPPORTED, CFG ": %s: model_type %s%s%s, expected \"gpt2\"", path,
                       mt->type == RG_JSON_STRING ? "\"" : "", mt->type == RG_JSON_STRING ? mt->str : rg_json_type_name(mt->type),
                       mt->type == RG_JSON_STRING ? "\"" : "");
    rg_model_config_preset("gpt2", c);
    RG_TRY(get_int(root, path, "n_layer", 12, &c->n_layers));
    RG_TRY(get_int(root, path, "n_embd", 768, &c->d_model));
    RG_TRY(get_int(root, path, "n_head", 12, &c->n_heads));
    RG_TRY(get_int(root, path, "vocab_size", 50257, &c->vocab_size));
    RG_TRY(get_int(root, path, "n_positions", 1024, &c->max_seq_len));
    c->n_kv_heads = c->n_heads;
    const rg_json *ni = rg_json_get(root, "n_inner");
    if (ni && ni->type != RG_JSON_NULL) {
        int32_t inner = 0;
        RG_TRY(get_int(root, path, "n_inner", 0, &inner));
        if (inner % c->d_model != 0)
            return rg_fail(RG_ERR_UNSUPPORTED, CFG ": %s: n_inner = %d is not a multiple of n_embd = %d",
                           path, inner, c->d_model);
        c->mlp_ratio = inner / c->d_model;
    }
    const rg_json *eps = rg_json_get(root, "layer_norm_epsilon");
    if (eps) {
        if (eps->type != RG_JSON_NUMBER || !(eps->num > 0) || !isfinite((float)eps->num))
            return rg_fail(RG_ERR_FORMAT, CFG ": %s: layer_norm_epsilon must be a finite number > 0", path);
        c->ln_eps = (float)eps->num;
    }
    const rg_json *act = rg_json_get(root, "activation_function");
    if (act) {
        if (act->type != RG_JSON_STRING)
            return rg_fail(RG_ERR_FORMAT, CFG ": %s: activation_function must be a string, got %s", path,
                           rg_json_type_name(act->type));
        if (!strcmp(act->str, "gelu_new") || !strcmp(act->str, "gelu_pytorch_tanh")) c->gelu = RG_GELU_KIND_TANH;
        else if (!strcmp(act->str, "gelu")) c->gelu = RG_GELU_KIND_ERF;
        else
            return rg_fail(RG_ERR_UNSUPPORTED, CFG ": %s: activation_function \"%s\" is not supported "
                           "(expected gelu_new, gelu_pytorch_tanh or gelu)", path, act->str);
    }
    RG_TRY(need_bool(root, path, "scale_attn_weights", true));
    RG_TRY(need_bool(root, path, "scale_attn_by_inverse_layer_idx", false));
    RG_TRY(need_bool(root, path, "add_cross_attention", false));
    RG_TRY(need_bool(root, path, "tie_word_embeddings", true));
    if (rg_model_config_validate(c) != RG_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", rg_last_error());
        return rg_fail(RG_ERR_FORMAT, CFG ": %s: %s", path, msg);
    }
    return RG_OK;
}

rg_status rg_hf_gpt2_config_read(const char *dir_or_config_json, rg_model_config *out) {
    if (!dir_or_config_json || !out) return rg_fail(RG_ERR_INVALID_ARG, CFG ": %s is NULL", out ? "path" : "out");
    char *path = NULL;
    struct stat sb;
    bool is_dir = stat(dir_or_config_json, &sb) == 0 && S_ISDIR(sb.st_mode);
    size_t n = strlen(dir_or_config_json) + sizeof "/config.json";
    RG_TRY(rg_alloc((void **)&path, n, 1, CFG " path"));
    snprintf(path, n, is_dir ? "%s/config.json" : "%s", dir_or_config_json);
    char *text = NULL;
    size_t len = 0;
    rg_json_doc *doc = NULL;
    rg_status s = rg_read_file(CFG, path, &text, &len);
    if (s == RG_OK) s = rg_json_parse(text, len, 0, path, &doc);
    rg_model_config c;
    if (s == RG_OK) s = parse_config(rg_json_root(doc), path, &c);
    if (s == RG_OK) { *out = c; rg_clear_error(); }
    rg_json_free(doc);
    rg_free(text);
    rg_free(path);
    return s;
}

/* ---- the name and layout map ---- */

/* A GPT-2-shaped config, or RG_ERR_UNSUPPORTED naming what is not. */
static rg_status check_shape(const rg_model_config *c, const char *who) {
    const char *bad = !c->ln_bias ? "LayerNorms without bias (ln_bias false)"
                    : !c->linear_bias ? "linear layers without bias (linear_bias false)"
                    : !c->final_ln ? "no final LayerNorm (final_ln false)"
                    : !c->tied_embeddings ? "an untied output layer (tied_embeddings false)"
                    : c->lm_head_bias ? "an output bias (lm_head_bias true)"
                    : c->n_kv_heads != c->n_heads ? "grouped-query attention (n_kv_heads != n_heads)" : NULL;
    if (bad) return rg_fail(RG_ERR_UNSUPPORTED, "%s: the model is not GPT-2-shaped: it has %s", who, bad);
    return RG_OK;
}

/* HF's name of table tensor `name` (without prefix): wte/wpe get ".weight". */
static void hf_name(char *buf, size_t cap, const char *prefix, const char *name) {
    bool emb = !strcmp(name, "wte") || !strcmp(name, "wpe");
    snprintf(buf, cap, "%s%s%s", prefix, name, emb ? ".weight" : "");
}

/* HF stores these as Conv1D, weight (in, out). */
static bool is_conv1d(const char *name) {
    size_t n = strlen(name);
    if (n < 7 || strcmp(name + n - 7, ".weight")) return false;
    return strstr(name, ".attn.c_attn.") || strstr(name, ".attn.c_proj.") || strstr(name, ".mlp.c_fc.") ||
           strstr(name, ".mlp.c_proj.");
}

/* dst (cols, rows) = src (rows, cols) transposed. */
static void transpose(float *dst, const float *src, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < cols; k++) dst[k * rows + r] = src[r * cols + k];
}

/* h.N.attn.bias / h.N.attn.masked_bias: the causal-mask buffers, not parameters. */
static bool is_mask_buffer(const char *name) {
    int layer, end = -1;
    char rest[16];
    if (sscanf(name, "h.%d.attn.%15[a-z_]%n", &layer, rest, &end) != 2 || end < 0 || name[end]) return false;
    return !strcmp(rest, "bias") || !strcmp(rest, "masked_bias");
}

static const char *fmt_shape(char *buf, size_t cap, int32_t ndim, const int64_t *shape) {
    int k = snprintf(buf, cap, "(");
    for (int32_t d = 0; d < ndim && k > 0 && (size_t)k < cap; d++)
        k += snprintf(buf + k, cap - (size_t)k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (ndim == 1 && k > 0 && (size_t)k < cap) k += snprintf(buf + k, cap - (size_t)k, ",");
    if (k > 0 && (size_t)k < cap) snprintf(buf + k, cap - (size_t)k, ")");
    return buf;
}

/* ---- load ---- */

#define LOAD "rg_hf_gpt2_load"

/* Reads model tensor ti (HF name `name`) into dst in table layout; tmp holds numel floats. */
static rg_status read_one(const rg_safetensors *st, const char *path, const char *name,
                          const rg_model_tensor_info *ti, float *dst, float *tmp) {
    rg_tensor_info info;
    if (!rg_safetensors_has(st, name))
        return rg_fail(RG_ERR_FORMAT, LOAD ": %s: missing tensor '%s'", path, name);
    RG_TRY(rg_safetensors_find(st, name, &info));
    bool conv = is_conv1d(ti->name);
    int64_t want[2] = {conv ? ti->shape[1] : ti->shape[0], conv ? ti->shape[0] : ti->shape[1]};
    bool ok = info.ndim == ti->ndim && info.shape[0] == want[0] && (ti->ndim == 1 || info.shape[1] == want[1]);
    if (!ok) {
        char a[64], b[160];
        return rg_fail(RG_ERR_FORMAT, LOAD ": %s: tensor '%s' has shape %s, expected %s%s", path, name,
                       fmt_shape(b, sizeof b, info.ndim, info.shape), fmt_shape(a, sizeof a, ti->ndim, want),
                       conv ? " (Conv1D: (in, out))" : "");
    }
    if (!info.convertible)
        return rg_fail(RG_ERR_FORMAT, LOAD ": %s: tensor '%s' has dtype %s, expected F32, BF16 or F16", path, name,
                       info.dtype_name);
    if (!conv) return rg_safetensors_read_f32(st, name, dst, (size_t)ti->numel);
    RG_TRY(rg_safetensors_read_f32(st, name, tmp, (size_t)ti->numel));
    transpose(dst, tmp, want[0], want[1]);
    return RG_OK;
}

/* Every checkpoint tensor must be one we read, a mask buffer, or a tied lm_head.weight. */
static rg_status check_extras(rg_model *m, const rg_safetensors *st, const char *path, const char *prefix,
                              const float *wte, float *tmp) {
    size_t plen = strlen(prefix);
    for (size_t i = 0; i < rg_safetensors_count(st); i++) {
        rg_tensor_info info;
        RG_TRY(rg_safetensors_info(st, i, &info));
        if (!strcmp(info.name, "lm_head.weight")) {
            int32_t w;
            rg_model_tensor_info ti;
            RG_TRY(rg_model_tensor_find(m, "wte", &w));
            RG_TRY(rg_model_tensor_info_get(m, w, &ti));
            if (info.ndim != 2 || info.shape[0] != ti.shape[0] || info.shape[1] != ti.shape[1] || !info.convertible)
                return rg_fail(RG_ERR_FORMAT, LOAD ": %s: lm_head.weight is not a (%lld, %lld) float tensor like wte",
                               path, (long long)ti.shape[0], (long long)ti.shape[1]);
            RG_TRY(rg_safetensors_read_f32(st, info.name, tmp, (size_t)ti.numel));
            if (memcmp(tmp, wte, (size_t)ti.numel * sizeof *tmp))
                return rg_fail(RG_ERR_UNSUPPORTED, LOAD ": %s: lm_head.weight differs from wte.weight "
                               "(untied GPT-2 checkpoints are not supported)", path);
            continue;
        }
        const char *bare = strncmp(info.name, prefix, plen) ? NULL : info.name + plen;
        if (bare && is_mask_buffer(bare)) continue;
        int32_t k;
        char name[256];
        bool known = false;
        if (bare) {
            /* Our table name: strip ".weight" from wte/wpe. */
            snprintf(name, sizeof name, "%s", bare);
            if (!strcmp(name, "wte.weight") || !strcmp(name, "wpe.weight")) name[3] = '\0';
            else if (!strcmp(name, "wte") || !strcmp(name, "wpe")) name[0] = '\0';
            known = name[0] && rg_model_tensor_find(m, name, &k) == RG_OK;
        }
        if (!known)
            return rg_fail(RG_ERR_FORMAT, LOAD ": %s: unexpected tensor '%s' (not a parameter of this GPT-2 model%s%s)",
                           path, info.name, *prefix ? ", whose tensors are prefixed " : "", prefix);
    }
    return RG_OK;
}

rg_status rg_hf_gpt2_load(rg_model *m, const char *path) {
    if (!m || !path) return rg_fail(RG_ERR_INVALID_ARG, LOAD ": %s is NULL", m ? "path" : "m");
    RG_TRY(check_shape(rg_model_get_config(m), LOAD));
    rg_safetensors *st = NULL;
    RG_TRY(rg_checkpoint_open(path, &st));
    const char *prefix = rg_safetensors_has(st, "transformer.wte.weight") ? "transformer." : "";
    int32_t nt = rg_model_n_tensors(m);
    int64_t total = rg_model_n_params(m), largest = 1;
    for (int32_t i = 0; i < nt; i++) {
        rg_model_tensor_info ti;
        rg_status s = rg_model_tensor_info_get(m, i, &ti);
        if (s != RG_OK) { rg_safetensors_close(st); return s; }
        if (ti.numel > largest) largest = ti.numel;
    }
    float *all = NULL, *tmp = NULL;
    rg_status s = rg_alloc((void **)&all, (size_t)total, sizeof *all, LOAD " parameters");
    if (s == RG_OK) s = rg_alloc((void **)&tmp, (size_t)largest, sizeof *tmp, LOAD " staging");
    int64_t off = 0, wte_off = -1;
    for (int32_t i = 0; s == RG_OK && i < nt; i++) {
        rg_model_tensor_info ti;
        char name[256];
        s = rg_model_tensor_info_get(m, i, &ti);
        if (s != RG_OK) break;
        hf_name(name, sizeof name, prefix, ti.name);
        if (!strcmp(ti.name, "wte")) wte_off = off;
        s = read_one(st, path, name, &ti, all + off, tmp);
        off += ti.numel;
    }
    if (s == RG_OK && wte_off < 0) s = rg_fail(RG_ERR_INVALID_ARG, LOAD ": the model has no wte tensor");
    if (s == RG_OK) s = check_extras(m, st, path, prefix, all + wte_off, tmp);
    /* Everything is read and checked: only now does the model change. */
    off = 0;
    for (int32_t i = 0; s == RG_OK && i < nt; i++) {
        rg_model_tensor_info ti;
        s = rg_model_tensor_info_get(m, i, &ti);
        if (s == RG_OK) s = rg_model_tensor_set(m, RG_MODEL_PARAMS, i, all + off);
        off += ti.numel;
    }
    rg_free(all);
    rg_free(tmp);
    rg_safetensors_close(st);
    if (s == RG_OK) rg_clear_error();
    return s;
}

/* ---- save ---- */

#define SAVE "rg_hf_gpt2_save"

/* The shortest %g form of x that reads back as the same float (1e-05, not 9.99999975e-06). */
static void put_float(rg_strbuf *b, float x) {
    char buf[32];
    for (int p = 6; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)x);
        if (strtof(buf, NULL) == x) break;
    }
    rg_strbuf_puts(b, buf);
}

static void build_config_json(rg_strbuf *b, const rg_model_config *c) {
    rg_strbuf_puts(b, "{\n");
    rg_strbuf_printf(b, "  \"activation_function\": \"%s\",\n", c->gelu == RG_GELU_KIND_TANH ? "gelu_new" : "gelu");
    rg_strbuf_puts(b, "  \"architectures\": [\n    \"GPT2LMHeadModel\"\n  ],\n");
    rg_strbuf_puts(b, "  \"layer_norm_epsilon\": ");
    put_float(b, c->ln_eps);
    rg_strbuf_puts(b, ",\n  \"model_type\": \"gpt2\",\n");
    rg_strbuf_printf(b, "  \"n_ctx\": %d,\n  \"n_embd\": %d,\n  \"n_head\": %d,\n", c->max_seq_len, c->d_model, c->n_heads);
    if (c->mlp_ratio == 4) rg_strbuf_puts(b, "  \"n_inner\": null,\n");
    else rg_strbuf_printf(b, "  \"n_inner\": %lld,\n", (long long)c->mlp_ratio * c->d_model);
    rg_strbuf_printf(b, "  \"n_layer\": %d,\n  \"n_positions\": %d,\n", c->n_layers, c->max_seq_len);
    rg_strbuf_puts(b, "  \"tie_word_embeddings\": true,\n  \"torch_dtype\": \"float32\",\n");
    rg_strbuf_printf(b, "  \"vocab_size\": %d\n}\n", c->vocab_size);
}

/* Writes data to path atomically: path.tmp.<pid> in the same directory, fsync, rename, fsync the directory. */
static rg_status write_atomic(const char *dir, const char *path, const char *data, size_t len) {
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
        return rg_fail(RG_ERR_INVALID_ARG, SAVE ": path '%s' is too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) return rg_fail(RG_ERR_IO, SAVE ": cannot create %s: %s", tmp, strerror(errno));
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, data + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        done += (size_t)w;
    }
    int err = done < len ? (errno ? errno : EIO) : 0;
    if (!err && fsync(fd) != 0) err = errno;
    if (close(fd) != 0 && !err) err = errno;
    if (!err && rename(tmp, path) != 0) err = errno;
    if (err) {
        unlink(tmp);
        return rg_fail(RG_ERR_IO, SAVE ": writing %s: %s", path, strerror(err));
    }
    int dfd = open(dir, O_RDONLY | O_CLOEXEC);
    if (dfd >= 0) { fsync(dfd); close(dfd); }   /* best effort: the rename is already done */
    return RG_OK;
}

/* Fills views/names/data with every tensor in HF layout. */
static rg_status gather(rg_model *m, rg_tensor_view *views, char (*names)[256], int64_t (*shapes)[2], float *all,
                        float *tmp) {
    int64_t off = 0;
    for (int32_t i = 0; i < rg_model_n_tensors(m); i++) {
        rg_model_tensor_info ti;
        RG_TRY(rg_model_tensor_info_get(m, i, &ti));
        hf_name(names[i], sizeof names[i], "transformer.", ti.name);
        bool conv = is_conv1d(ti.name);
        if (conv) {
            RG_TRY(rg_model_tensor_get(m, RG_MODEL_PARAMS, i, tmp));
            transpose(all + off, tmp, ti.shape[0], ti.shape[1]);
        } else {
            RG_TRY(rg_model_tensor_get(m, RG_MODEL_PARAMS, i, all + off));
        }
        shapes[i][0] = conv ? ti.shape[1] : ti.shape[0];
        shapes[i][1] = conv ? ti.shape[0] : ti.shape[1];
        views[i] = (rg_tensor_view){.name = names[i], .dtype = RG_DTYPE_F32, .ndim = ti.ndim,
                                    .shape = shapes[i], .data = all + off};
        off += ti.numel;
    }
    return RG_OK;
}

rg_status rg_hf_gpt2_save(rg_model *m, const char *dir) {
    if (!m || !dir) return rg_fail(RG_ERR_INVALID_ARG, SAVE ": %s is NULL", m ? "dir" : "m");
    if (!*dir) return rg_fail(RG_ERR_INVALID_ARG, SAVE ": dir is empty");
    const rg_model_config *c = rg_model_get_config(m);
    RG_TRY(check_shape(c, SAVE));
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        if (errno != ENOENT || mkdir(dir, 0777) != 0)
            return rg_fail(RG_ERR_IO, SAVE ": cannot create directory %s: %s", dir, strerror(errno));
    } else if (!S_ISDIR(sb.st_mode)) {
        return rg_fail(RG_ERR_IO, SAVE ": %s exists and is not a directory", dir);
    }
    char wpath[4096], cpath[4096];
    if ((size_t)snprintf(wpath, sizeof wpath, "%s/model.safetensors", dir) >= sizeof wpath ||
        (size_t)snprintf(cpath, sizeof cpath, "%s/config.json", dir) >= sizeof cpath)
        return rg_fail(RG_ERR_INVALID_ARG, SAVE ": dir '%s' is too long", dir);
    int32_t nt = rg_model_n_tensors(m);
    int64_t largest = 1;
    for (int32_t i = 0; i < nt; i++) {
        rg_model_tensor_info ti;
        RG_TRY(rg_model_tensor_info_get(m, i, &ti));
        if (ti.numel > largest) largest = ti.numel;
    }
    rg_tensor_view *views = NULL;
    char (*names)[256] = NULL;
    int64_t (*shapes)[2] = NULL;
    float *all = NULL, *tmp = NULL;
    rg_strbuf cj;
    rg_strbuf_init(&cj);
    rg_status s = rg_calloc((void **)&views, (size_t)nt, sizeof *views, SAVE " views");
    if (s == RG_OK) s = rg_alloc((void **)&names, (size_t)nt, sizeof *names, SAVE " names");
    if (s == RG_OK) s = rg_alloc((void **)&shapes, (size_t)nt, sizeof *shapes, SAVE " shapes");
    if (s == RG_OK) s = rg_alloc((void **)&all, (size_t)rg_model_n_params(m), sizeof *all, SAVE " parameters");
    if (s == RG_OK) s = rg_alloc((void **)&tmp, (size_t)largest, sizeof *tmp, SAVE " staging");
    if (s == RG_OK) s = gather(m, views, names, shapes, all, tmp);
    if (s == RG_OK) {
        build_config_json(&cj, c);
        s = cj.status;
    }
    static const char *const meta[2] = {"format", "pt"};
    if (s == RG_OK) s = rg_safetensors_write(wpath, views, (size_t)nt, meta, 1);
    if (s == RG_OK) s = write_atomic(dir, cpath, cj.data, cj.len);
    rg_strbuf_free(&cj);
    rg_free(views);
    rg_free(names);
    rg_free(shapes);
    rg_free(all);
    rg_free(tmp);
    if (s == RG_OK) rg_clear_error();
    return s;
}
