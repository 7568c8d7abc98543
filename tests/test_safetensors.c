/* test_safetensors.c — safetensors files: hand-written byte sequences as the
 * format defines them, the writer's exact layout, random round trips of every
 * written dtype, every kind of corrupt header (status + message, never a
 * crash), random header mutations checked against an independent validation,
 * sharded checkpoints, and atomic saves that leave the previous file intact. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "core/status.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "ragged.h"
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static const char *at(const char *name) {
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static void put_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        fprintf(stderr, "test: cannot write %s\n", path);
        exit(2);
    }
}

static unsigned char *get_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

/* A file made of an 8-byte little-endian length, header, then data. */
static void put_st(const char *path, const char *header, const void *data, size_t ndata) {
    size_t hl = strlen(header);
    unsigned char *b = malloc(8 + hl + ndata + 1);
    for (int k = 0; k < 8; k++) b[k] = (unsigned char)((uint64_t)hl >> (8 * k));
    memcpy(b + 8, header, hl);
    if (ndata) memcpy(b + 8 + hl, data, ndata);
    put_file(path, b, 8 + hl + ndata);
    free(b);
}

/* Number of temporary files ("*.tmp.*") left in the test directory. */
static int temp_files(void) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    if (d) closedir(d);
    return n;
}

static bool same_file(const char *path, const unsigned char *want, size_t n) {
    size_t got_n = 0;
    unsigned char *got = get_file(path, &got_n);
    bool ok = got && got_n == n && memcmp(got, want, n) == 0;
    free(got);
    return ok;
}

static float ref_f16(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return (float)((h >> 15) ? -v : v);
}

static float ref_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static bool same_float(float a, float b) {
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, 4) == 0;
}

/* ---- files written by hand ---- */

static void test_hand_written(void) {
    /* One F32 tensor: a 64-byte header, no padding needed. */
    static const unsigned char f32_file[] =
        "\x40\0\0\0\0\0\0\0"
        "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}"
        "\0\0\0\0" "\0\0\x80\x3f" "\0\0\0\x40" "\0\0\x40\x40" "\0\0\x80\x40" "\0\0\xa0\x40";
    put_file(at("f32.safetensors"), f32_file, sizeof f32_file - 1);
    rg_safetensors *st = NULL;
    CHECK(rg_safetensors_open(at("f32.safetensors"), &st) == RG_OK, "open hand-written F32: %s", rg_last_error());
    rg_tensor_info ti;
    if (st) {
        CHECK(rg_safetensors_count(st) == 1 && rg_safetensors_info(st, 0, &ti) == RG_OK, "one tensor");
        CHECK(strcmp(ti.name, "attn.0") == 0 && strcmp(ti.dtype_name, "F32") == 0 && ti.known_dtype &&
                  ti.dtype == RG_DTYPE_F32 && ti.convertible && ti.ndim == 3 && ti.shape[0] == 1 && ti.shape[1] == 2 &&
                  ti.shape[2] == 3 && ti.numel == 6 && ti.nbytes == 24,
              "F32 tensor description");
        float *x = rg_guarded_alloc(6);
        CHECK(rg_safetensors_read_f32(st, "attn.0", x, 6) == RG_OK, "read F32");
        for (int i = 0; i < 6; i++) CHECK(x[i] == (float)i, "F32 value %d is %g", i, x[i]);
        rg_guarded_ok(x, 6, "read_f32");
        CHECK(rg_safetensors_read_f32(st, "attn.0", x, 5) == RG_ERR_INVALID_ARG &&
                  strstr(rg_last_error(), "has 6 elements (shape [1, 2, 3]), n is 5"),
              "n must equal numel: %s", rg_last_error());
        CHECK(rg_safetensors_read_f32(st, "nope", x, 6) == RG_ERR_FORMAT && strstr(rg_last_error(), "no tensor named 'nope'"),
              "missing tensor: %s", rg_last_error());
        CHECK(rg_safetensors_find(st, "attn.0", &ti) == RG_OK && rg_safetensors_has(st, "attn.0") &&
                  !rg_safetensors_has(st, "attn"), "find / has");
        CHECK(rg_safetensors_info(st, 1, &ti) == RG_ERR_INVALID_ARG, "info index out of range");
        CHECK(rg_safetensors_metadata_count(st) == 0 && rg_safetensors_metadata(st, "format") == NULL, "no metadata");
        rg_guarded_free(x);
        rg_safetensors_close(st);
    }
    /* The writer produces exactly these bytes. */
    const float vals[6] = {0, 1, 2, 3, 4, 5};
    const int64_t shape[3] = {1, 2, 3};
    rg_tensor_view tv = {"attn.0", RG_DTYPE_F32, 3, shape, vals};
    CHECK(rg_safetensors_write(at("f32w.safetensors"), &tv, 1, NULL, 0) == RG_OK, "write: %s", rg_last_error());
    CHECK(same_file(at("f32w.safetensors"), f32_file, sizeof f32_file - 1), "writer output is byte-exact");

    /* Empty file, and metadata alone (header padded with spaces to 8 bytes). */
    static const unsigned char empty_file[] = "\x08\0\0\0\0\0\0\0{}      ";
    static const unsigned char meta_file[] = "\x28\0\0\0\0\0\0\0{\"__metadata__\":{\"framework\":\"pt\"}}     ";
    CHECK(rg_safetensors_write(at("empty.safetensors"), NULL, 0, NULL, 0) == RG_OK &&
              same_file(at("empty.safetensors"), empty_file, sizeof empty_file - 1), "empty file is byte-exact");
    const char *kv[] = {"framework", "pt"};
    CHECK(rg_safetensors_write(at("meta.safetensors"), NULL, 0, kv, 1) == RG_OK &&
              same_file(at("meta.safetensors"), meta_file, sizeof meta_file - 1), "metadata-only file is byte-exact");
    st = NULL;
    CHECK(rg_safetensors_open(at("meta.safetensors"), &st) == RG_OK && rg_safetensors_count(st) == 0 &&
              rg_safetensors_metadata_count(st) == 1 && strcmp(rg_safetensors_metadata(st, "framework"), "pt") == 0,
          "metadata-only file reads back");
    rg_safetensors_close(st);

    /* BF16 and F16 with known bit patterns, metadata, padding. */
    static const unsigned char half[] = "\x80\x3f" "\x00\xc0" "\x00\x3f"                  /* bf16 1, -2, 0.5 */
                                        "\x00\x3c" "\x00\xc0" "\xff\x7b" "\x01\x00";      /* f16 1, -2, 65504, 2^-24 */
    put_st(at("half.safetensors"),
           "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"a\\\"b\\u00e9\"},"
           "\"h\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[6,14]},"
           "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,6]}}  ",
           half, sizeof half - 1);
    st = NULL;
    CHECK(rg_safetensors_open(at("half.safetensors"), &st) == RG_OK, "open BF16/F16: %s", rg_last_error());
    if (st) {
        float b[3], h[4];
        CHECK(rg_safetensors_read_f32(st, "b", b, 3) == RG_OK && b[0] == 1 && b[1] == -2 && b[2] == 0.5f, "BF16 values");
        CHECK(rg_safetensors_read_f32(st, "h", h, 4) == RG_OK && h[0] == 1 && h[1] == -2 && h[2] == 65504 &&
                  h[3] == 0x1p-24f, "F16 values");
        CHECK(rg_safetensors_info(st, 0, &ti) == RG_OK && strcmp(ti.name, "b") == 0 && ti.dtype == RG_DTYPE_BF16,
              "listed in name order");
        const char *k, *v;
        CHECK(rg_safetensors_metadata_count(st) == 2 && rg_safetensors_metadata_at(st, 1, &k, &v) == RG_OK &&
                  strcmp(k, "note") == 0 && strcmp(v, "a\"b\xc3\xa9") == 0, "metadata with escapes");
        rg_safetensors_close(st);
    }

    /* Dtypes that are recognised but not converted; a scalar; an empty tensor;
     * F32 data at an odd offset (header not padded); a gap between tensors. */
    static const unsigned char mixed[] = "\0\0\0\0\0\0\xf0\x3f"  /* f64 1.0 */
                                         "\x05\0\0\0\0\0\0\0"    /* i64 5 */
                                         "\x07\0\0\0"            /* i32 7 */
                                         "\x09"                  /* u8 9 */
                                         "\xAA\xBB\xCC"          /* gap */
                                         "\0\0\x20\x41";         /* f32 10 (scalar) */
    put_st(at("mixed.safetensors"),
           "{\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]},"
           "\"l\":{\"dtype\":\"I64\",\"shape\":[1,1],\"data_offsets\":[8,16]},"
           "\"i\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[16,20]},"
           "\"u\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[20,21]},"
           "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[24,28]},"
           "\"z\":{\"dtype\":\"BF16\",\"shape\":[0,3],\"data_offsets\":[21,21]},"
           "\"z2\":{\"dtype\":\"F32\",\"shape\":[4,0],\"data_offsets\":[2,2]}}",
           mixed, sizeof mixed - 1);
    st = NULL;
    CHECK(rg_safetensors_open(at("mixed.safetensors"), &st) == RG_OK, "open mixed dtypes: %s", rg_last_error());
    if (st) {
        float s, none[1];
        CHECK(rg_safetensors_find(st, "d", &ti) == RG_OK && !ti.known_dtype && !ti.convertible &&
                  strcmp(ti.dtype_name, "F64") == 0 && ti.nbytes == 8 && memcmp(ti.data, mixed, 8) == 0,
              "F64 recognised, raw bytes available");
        CHECK(rg_safetensors_read_f32(st, "d", &s, 1) == RG_ERR_UNSUPPORTED && strstr(rg_last_error(), "'d' is F64"),
              "F64 does not convert: %s", rg_last_error());
        CHECK(rg_safetensors_find(st, "i", &ti) == RG_OK && ti.known_dtype && ti.dtype == RG_DTYPE_I32 &&
                  !ti.convertible && *(const unsigned char *)ti.data == 7, "I32 is known, not convertible");
        CHECK(rg_safetensors_read_f32(st, "l", &s, 1) == RG_ERR_UNSUPPORTED, "I64 does not convert");
        CHECK(rg_safetensors_find(st, "s", &ti) == RG_OK && ti.ndim == 0 && ti.numel == 1 &&
                  rg_safetensors_read_f32(st, "s", &s, 1) == RG_OK && s == 10.0f, "scalar shape [] at an odd offset");
        CHECK(rg_safetensors_find(st, "z", &ti) == RG_OK && ti.numel == 0 && ti.nbytes == 0 &&
                  rg_safetensors_read_f32(st, "z", none, 0) == RG_OK && rg_safetensors_read_f32(st, "z", NULL, 0) == RG_OK,
              "zero-size tensor");
        CHECK(rg_safetensors_find(st, "u", &ti) == RG_OK && !ti.known_dtype && strcmp(ti.dtype_name, "U8") == 0, "U8");
        rg_safetensors_close(st);
    }
}

/* ---- writer layout ---- */

static void test_writer_layout(void) {
    const float f[2] = {1, 2};
    const uint16_t h = 0x3c00, bf = 0x3f80;
    const int32_t i = -7;
    const int64_t one = 1;
    rg_tensor_view t[] = {
        {"b", RG_DTYPE_F16, 1, &one, &h},  {"a", RG_DTYPE_F32, 1, &one, &f[0]}, {"c", RG_DTYPE_BF16, 1, &one, &bf},
        {"a2", RG_DTYPE_F32, 1, &one, &f[1]}, {"i", RG_DTYPE_I32, 1, &one, &i},
    };
    const char *kv[] = {"z", "1", "a", "x\ny"};
    CHECK(rg_safetensors_write(at("order.safetensors"), t, 5, kv, 2) == RG_OK, "write: %s", rg_last_error());
    const char *want = "{\"__metadata__\":{\"a\":\"x\\ny\",\"z\":\"1\"},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                       "\"a2\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                       "\"i\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[8,12]},"
                       "\"c\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[12,14]},"
                       "\"b\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[14,16]}}";
    size_t n = 0, wl = strlen(want), padded = (wl + 7) / 8 * 8;
    unsigned char *b = get_file(at("order.safetensors"), &n);
    bool ok = b && n == 8 + padded + 16;
    for (int k = 0; ok && k < 8; k++) ok = b[k] == (unsigned char)((uint64_t)padded >> (8 * k));
    ok = ok && memcmp(b + 8, want, wl) == 0;
    for (size_t k = wl; ok && k < padded; k++) ok = b[8 + k] == ' ';
    unsigned char data[16];
    memcpy(data, &f[0], 4); memcpy(data + 4, &f[1], 4); memcpy(data + 8, &i, 4);
    memcpy(data + 12, &bf, 2); memcpy(data + 14, &h, 2);
    ok = ok && memcmp(b + 8 + padded, data, 16) == 0;
    CHECK(ok, "header ordered by dtype then name, metadata sorted, padded with spaces, data in header order");
    free(b);
}

/* ---- random round trips ---- */

static const rg_dtype written[] = {RG_DTYPE_F32, RG_DTYPE_BF16, RG_DTYPE_F16, RG_DTYPE_I32};

static void random_name(rg_rng *rng, char *buf, int idx) {
    static const char *parts[] = {"h", "attn", "c_attn", "weight", "bias", "ln_1", "wte", "\xc3\xa9t\xc3\xa9",
                                  "q\"uote", "back\\slash", "new\nline", "\xf0\x9f\x98\x80", "tab\t", "x"};
    int np = 1 + (int)rg_rng_below(rng, 4), k = 0;
    for (int p = 0; p < np; p++)
        k += snprintf(buf + k, 32, "%s%s", p ? "." : "", parts[rg_rng_below(rng, sizeof parts / sizeof parts[0])]);
    snprintf(buf + k, 16, ".%d", idx); /* unique */
}

static void test_round_trip(rg_rng *rng) {
    int rounds = rg_test_quick() ? 6 : 25;
    for (int r = 0; r < rounds; r++) {
        int n = 1 + (int)rg_rng_below(rng, 12);
        rg_tensor_view *t = calloc((size_t)n, sizeof *t);
        char (*names)[128] = calloc((size_t)n, 128);
        int64_t (*shapes)[4] = calloc((size_t)n, sizeof *shapes);
        void **data = calloc((size_t)n, sizeof *data);
        for (int k = 0; k < n; k++) {
            random_name(rng, names[k], k);
            int kind = (int)rg_rng_below(rng, 8);
            int ndim = kind == 0 ? 0 : 1 + (int)rg_rng_below(rng, 4);
            for (int d = 0; d < ndim; d++) shapes[k][d] = 1 + (int64_t)rg_rng_below(rng, d == 0 ? 40 : 7);
            if (kind == 1) shapes[k][rg_rng_below(rng, (uint64_t)ndim)] = 0;     /* zero-size */
            if (kind == 2 && r == 0) { ndim = 1; shapes[k][0] = 300000; }           /* one big tensor */
            t[k] = (rg_tensor_view){names[k], written[rg_rng_below(rng, 4)], ndim, shapes[k], NULL};
            size_t numel = 1;
            for (int d = 0; d < ndim; d++) numel *= (size_t)shapes[k][d];
            size_t nb = numel * rg_dtype_size(t[k].dtype);
            unsigned char *p = malloc(nb ? nb : 1);
            for (size_t b = 0; b < nb; b++) p[b] = (unsigned char)rg_rng_u64(rng);
            if (t[k].dtype == RG_DTYPE_F32) /* mostly ordinary values, some random bit patterns */
                for (size_t e = 0; e < numel; e++)
                    if (rg_rng_below(rng, 4)) ((float *)p)[e] = (float)rg_rng_normal(rng);
            data[k] = p;
            t[k].data = nb ? p : NULL;
        }
        int nm = (int)rg_rng_below(rng, 4);
        char mk[4][32], mv[4][32];
        const char *kv[8];
        for (int m = 0; m < nm; m++) {
            snprintf(mk[m], sizeof mk[m], "key%d\"%c", m, "ab\n\\"[m]);
            snprintf(mv[m], sizeof mv[m], "v\xc3\xa9%" PRIu64, rg_rng_below(rng, 1000));
            kv[2 * m] = mk[m];
            kv[2 * m + 1] = mv[m];
        }
        const char *path = at("rt.safetensors");
        if (!CHECK(rg_safetensors_write(path, t, (size_t)n, kv, (size_t)nm) == RG_OK, "round %d write: %s", r,
                   rg_last_error()))
            continue;
        rg_safetensors *st = NULL;
        CHECK(rg_safetensors_open(path, &st) == RG_OK, "round %d open: %s", r, rg_last_error());
        if (st) {
            CHECK(rg_safetensors_count(st) == (size_t)n, "round %d: %d tensors", r, n);
            const char *prev = NULL;
            for (size_t i = 0; i < rg_safetensors_count(st); i++) {
                rg_tensor_info ti;
                rg_safetensors_info(st, i, &ti);
                CHECK(!prev || strcmp(prev, ti.name) < 0, "listed in strictly increasing name order");
                prev = ti.name;
            }
            for (int k = 0; k < n; k++) {
                rg_tensor_info ti;
                if (!CHECK(rg_safetensors_find(st, names[k], &ti) == RG_OK, "find '%s'", names[k])) continue;
                bool ok = ti.known_dtype && ti.dtype == t[k].dtype && ti.ndim == t[k].ndim;
                size_t numel = 1;
                for (int d = 0; d < t[k].ndim; d++) {
                    ok = ok && ti.shape[d] == shapes[k][d];
                    numel *= (size_t)shapes[k][d];
                }
                size_t nb = numel * rg_dtype_size(t[k].dtype);
                ok = ok && ti.numel == (int64_t)numel && ti.nbytes == nb && (nb == 0 || memcmp(ti.data, data[k], nb) == 0);
                CHECK(ok, "round %d tensor '%s' (%s, %d dims) comes back bit-exact", r, names[k],
                      rg_dtype_name(t[k].dtype), t[k].ndim);
                if (t[k].dtype == RG_DTYPE_I32) continue;
                float *x = rg_guarded_alloc(numel);
                CHECK(rg_safetensors_read_f32(st, names[k], x, numel) == RG_OK, "read_f32 '%s'", names[k]);
                size_t bad = 0;
                for (size_t e = 0; e < numel; e++) {
                    uint16_t u16;
                    float ref;
                    if (t[k].dtype == RG_DTYPE_F32) memcpy(&ref, (char *)data[k] + 4 * e, 4);
                    else {
                        memcpy(&u16, (char *)data[k] + 2 * e, 2);
                        ref = t[k].dtype == RG_DTYPE_BF16 ? ref_bf16(u16) : ref_f16(u16);
                    }
                    bad += !same_float(x[e], ref);
                }
                CHECK(bad == 0, "'%s' (%s): %zu of %zu converted values differ from the reference", names[k],
                      rg_dtype_name(t[k].dtype), bad, numel);
                rg_guarded_ok(x, numel, "read_f32 output");
                rg_guarded_free(x);
            }
            CHECK(rg_safetensors_metadata_count(st) == (size_t)nm, "metadata count");
            for (int m = 0; m < nm; m++) {
                const char *v = rg_safetensors_metadata(st, mk[m]);
                CHECK(v && strcmp(v, mv[m]) == 0, "metadata '%s'", mk[m]);
            }
            rg_safetensors_close(st);
        }
        /* The layout the Python library insists on: padded header, offsets
         * contiguous from 0 and covering the data region exactly. */
        size_t fn = 0;
        unsigned char *fb = get_file(path, &fn);
        uint64_t hl = 0;
        for (int k = 7; k >= 0; k--) hl = hl << 8 | fb[k];
        rg_json_doc *doc = NULL;
        bool ok = hl % 8 == 0 && rg_json_parse((char *)fb + 8, (size_t)hl, 0, "hdr", &doc) == RG_OK;
        uint64_t expect_begin = 0;
        int last_rank = 1 << 30;
        const rg_json *root = rg_json_root(doc);
        for (size_t k = 0; ok && k < root->len; k++) {
            if (strcmp(root->keys[k].s, "__metadata__") == 0) { ok = k == 0; continue; }
            const rg_json *off = rg_json_get(&root->items[k], "data_offsets");
            const char *dt = rg_json_get(&root->items[k], "dtype")->str;
            int rank = strcmp(dt, "F32") == 0 ? 3 : strcmp(dt, "I32") == 0 ? 2 : strcmp(dt, "BF16") == 0 ? 1 : 0;
            ok = off->items[0].i == (int64_t)expect_begin && rank <= last_rank &&
                 (rank < last_rank || k == 0 || strcmp(root->keys[k - 1].s, root->keys[k].s) < 0 ||
                  strcmp(root->keys[k - 1].s, "__metadata__") == 0);
            last_rank = rank;
            expect_begin = (uint64_t)off->items[1].i;
        }
        CHECK(ok && 8 + hl + expect_begin == fn, "round %d: Python-compatible layout", r);
        rg_json_free(doc);
        free(fb);
        for (int k = 0; k < n; k++) free(data[k]);
        free(data);
        free(shapes);
        free(names);
        free(t);
    }
    CHECK(temp_files() == 0, "no temporary files left");
}

/* ---- corrupt files ---- */

typedef struct bad_case {
    const char *what;
    const char *header;          /* NULL: raw bytes below */
    size_t ndata;
    const char *want;            /* substring of the message */
    rg_status status;
} bad_case;

static void check_bad(const char *label, const char *path, rg_status want_s, const char *want) {
    rg_safetensors *st = (rg_safetensors *)1;
    rg_status s = rg_safetensors_open(path, &st);
    CHECK(s == want_s && st == NULL, "%s: status %s, expected %s", label, rg_status_str(s), rg_status_str(want_s));
    CHECK(strstr(rg_last_error(), want) != NULL, "%s: message '%s' should contain '%s'", label, rg_last_error(), want);
    CHECK(strstr(rg_last_error(), path) != NULL, "%s: message names the file", label);
    if (s == RG_OK) rg_safetensors_close(st);
}

static void test_corrupt(void) {
    static const bad_case cases[] = {
        {"header not JSON", "{\"a\":", 0, "header: line 1 column 6: expected a value, got end of input", RG_ERR_FORMAT},
        {"header not JSON 2", "{\"a\" {}}", 0, "line 1 column 6: expected ':' after object key, got '{'", RG_ERR_FORMAT},
        {"not an object", "[1,2]", 0, "header is an array, expected an object", RG_ERR_FORMAT},
        {"string header", "\"x\"", 0, "header is a string, expected an object", RG_ERR_FORMAT},
        {"leading space", " {}", 0, "header must begin with '{', got byte 0x20", RG_ERR_FORMAT},
        {"trailing garbage", "{}x", 0, "line 1 column 3: expected end of input", RG_ERR_FORMAT},
        {"NUL padding", "{}\x01", 0, "got byte 0x01", RG_ERR_FORMAT},
        {"invalid UTF-8", "{\"w\xff\":{}}", 0, "invalid UTF-8", RG_ERR_FORMAT},
        {"entry not object", "{\"w\":[1]}", 0, "tensor 'w': entry is an array, expected an object", RG_ERR_FORMAT},
        {"missing dtype", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w': missing \"dtype\"", RG_ERR_FORMAT},
        {"missing shape", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'w': missing \"shape\"", RG_ERR_FORMAT},
        {"missing offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'w': missing \"data_offsets\"", RG_ERR_FORMAT},
        {"bad dtype", "{\"w\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w': unknown dtype \"F33\"", RG_ERR_FORMAT},
        {"lowercase dtype", "{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype \"f32\"", RG_ERR_FORMAT},
        {"dtype not string", "{\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w': dtype is a number, expected a string", RG_ERR_FORMAT},
        {"extra key", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, "tensor 'w': unexpected key \"x\"", RG_ERR_FORMAT},
        {"shape not array", "{\"w\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4, "tensor 'w': shape is a number", RG_ERR_FORMAT},
        {"negative shape", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,4]}}", 4, "tensor 'w': shape[1] is -1, expected a non-negative integer", RG_ERR_FORMAT},
        {"fractional shape", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,4]}}", 4, "shape[0] is 2.5, expected", RG_ERR_FORMAT},
        {"exponent shape", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}", 4, "shape[0] is 1 (not an integer literal), expected a non-negative integer", RG_ERR_FORMAT},
        {"string shape", "{\"w\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, "shape[0] is a string", RG_ERR_FORMAT},
        {"huge shape", "{\"w\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 4, "shape[0] is 1e+20", RG_ERR_FORMAT},
        {"overflowing shape", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "tensor 'w': shape [4294967296, 4294967296] has more elements than fit in 64 bits", RG_ERR_FORMAT},
        {"overflowing bytes", "{\"w\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,4]}}", 4, "tensor 'w': shape [4611686018427387904] of F64 is too many bytes", RG_ERR_FORMAT},
        {"partial bytes", "{\"w\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, "3 elements of F4 do not fill whole bytes", RG_ERR_FORMAT},
        {"offsets not array", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":0}}", 4, "data_offsets is a number, expected [begin, end]", RG_ERR_FORMAT},
        {"offsets length", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "data_offsets has 1 elements, expected 2", RG_ERR_FORMAT},
        {"negative offset", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, "data_offsets[0] is -4, expected a non-negative integer", RG_ERR_FORMAT},
        {"reversed offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4, "data_offsets [4, 0] end before they begin", RG_ERR_FORMAT},
        {"offsets out of range", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "tensor 'w': data_offsets [0, 8] run past the data region (4 bytes)", RG_ERR_FORMAT},
        {"size mismatch", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24, "tensor 'w': data_offsets [0, 20] span 20 bytes, expected 24 (shape [2, 3] of F32)", RG_ERR_FORMAT},
        {"overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "tensors 'a' [0, 8] and 'b' [4, 12] overlap", RG_ERR_FORMAT},
        {"overlap inside", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},\"c\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[16,17]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 17, "tensors 'a' [0, 16] and 'b' [8, 12] overlap", RG_ERR_FORMAT},
        {"same offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "overlap", RG_ERR_FORMAT},
        {"duplicate tensor", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "duplicate key \"a\"", RG_ERR_FORMAT},
        {"NUL in name", "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "name contains a NUL character", RG_ERR_FORMAT},
        {"metadata not object", "{\"__metadata__\":[\"a\"]}", 0, "\"__metadata__\" is an array, expected an object of strings", RG_ERR_FORMAT},
        {"metadata not string", "{\"__metadata__\":{\"step\":10}}", 0, "__metadata__[\"step\"] is a number, expected a string", RG_ERR_FORMAT},
        {"metadata NUL", "{\"__metadata__\":{\"k\":\"a\\u0000\"}}", 0, "contains a NUL character", RG_ERR_FORMAT},
    };
    unsigned char zeros[64] = {0};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *path = at("bad.safetensors");
        put_st(path, cases[c].header, zeros, cases[c].ndata);
        check_bad(cases[c].what, path, cases[c].status, cases[c].want);
    }
    const char *path = at("bad.safetensors");
    /* Generated: a shape with 65 dimensions, nesting deeper than the JSON limit. */
    char big[2048];
    int k = snprintf(big, sizeof big, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1");
    for (int d = 1; d < 65; d++) k += snprintf(big + k, sizeof big - (size_t)k, ",1");
    snprintf(big + k, sizeof big - (size_t)k, "],\"data_offsets\":[0,4]}}");
    put_st(path, big, zeros, 4);
    check_bad("too many dims", path, RG_ERR_FORMAT, "tensor 'w': shape has 65 dimensions, at most 64");
    k = snprintf(big, sizeof big, "{\"w\":");
    for (int d = 0; d < 200; d++) big[k++] = '[';
    for (int d = 0; d < 200; d++) big[k++] = ']';
    snprintf(big + k, sizeof big - (size_t)k, "}");
    put_st(path, big, zeros, 0);
    check_bad("deep nesting", path, RG_ERR_FORMAT, "header: line 1 column 133: nesting deeper than 128 levels");
    /* Length-field problems, written byte by byte. */
    put_file(path, "\x02\0\0\0\0", 5);
    check_bad("truncated (5 bytes)", path, RG_ERR_FORMAT, "file is 5 bytes, shorter than the 8-byte header length");
    put_file(path, "", 0);
    check_bad("empty file", path, RG_ERR_FORMAT, "file is 0 bytes");
    put_file(path, "\x01\xe1\xf5\x05\0\0\0\0{}", 10); /* 100000001 */
    check_bad("header size too large", path, RG_ERR_FORMAT, "header length 100000001 is above the format's limit");
    put_file(path, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
    check_bad("header size 2^64-1", path, RG_ERR_FORMAT, "header length 18446744073709551615 is above");
    put_file(path, "\x10\0\0\0\0\0\0\0{}      ", 16);
    check_bad("header past the end", path, RG_ERR_FORMAT, "header length 16 runs past the end of the file (8 bytes");
    put_file(path, "\0\0\0\0\0\0\0\0{}", 10);
    check_bad("header length 0", path, RG_ERR_FORMAT, "header is empty");
    /* A truncated copy of a valid file: the data no longer fits. */
    put_st(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", zeros, 10);
    check_bad("truncated data", path, RG_ERR_FORMAT, "data_offsets [0, 16] run past the data region (10 bytes)");
    check_bad("missing file", at("does-not-exist.safetensors"), RG_ERR_IO, "cannot open");
    check_bad("a directory", dir, RG_ERR_IO, "not a regular file");
    rg_safetensors *st = NULL;
    CHECK(rg_safetensors_open(NULL, &st) == RG_ERR_INVALID_ARG && rg_safetensors_open(path, NULL) == RG_ERR_INVALID_ARG,
          "NULL arguments");
}

/* ---- random mutations of a valid header ---- */

/* Independent check of an opened file against its bytes: every tensor's data
 * pointer holds the bytes its data_offsets name, inside the data region, and
 * no two non-empty tensors overlap. */
static bool consistent(rg_safetensors *st, const unsigned char *file, size_t fsize) {
    uint64_t hl = 0;
    for (int k = 7; k >= 0; k--) hl = hl << 8 | file[k];
    rg_json_doc *doc = NULL;
    if (rg_json_parse((const char *)file + 8, (size_t)hl, 0, "ref", &doc) != RG_OK) return false;
    const rg_json *root = rg_json_root(doc);
    size_t n = rg_safetensors_count(st), data_len = fsize - 8 - (size_t)hl;
    bool ok = root->len == n + (rg_json_get(root, "__metadata__") != NULL);
    uint64_t *b = calloc(n + 1, 8), *e = calloc(n + 1, 8);
    const char *prev = NULL;
    for (size_t i = 0; ok && i < n; i++) {
        rg_tensor_info ti;
        ok = rg_safetensors_info(st, i, &ti) == RG_OK && (!prev || strcmp(prev, ti.name) < 0);
        prev = ti.name;
        const rg_json *en = ok ? rg_json_get(root, ti.name) : NULL;
        const rg_json *off = en ? rg_json_get(en, "data_offsets") : NULL;
        ok = off && off->len == 2;
        if (!ok) break;
        b[i] = (uint64_t)off->items[0].i;
        e[i] = (uint64_t)off->items[1].i;
        ok = b[i] <= e[i] && e[i] <= data_len && e[i] - b[i] == ti.nbytes &&
             (ti.nbytes == 0 || memcmp(ti.data, file + 8 + hl + b[i], ti.nbytes) == 0);
        int64_t numel = 1;
        for (int d = 0; ok && d < ti.ndim; d++) {
            ok = ti.shape[d] >= 0;
            numel *= ti.shape[d];
        }
        ok = ok && numel == ti.numel;
        if (ok && ti.convertible && ti.numel < 100000) {
            float *x = malloc((size_t)ti.numel * 4 + 4);
            ok = rg_safetensors_read_f32(st, ti.name, x, (size_t)ti.numel) == RG_OK;
            free(x);
        }
    }
    for (size_t i = 0; ok && i < n; i++)
        for (size_t j = i + 1; ok && j < n; j++)
            if (b[i] < e[i] && b[j] < e[j]) ok = e[i] <= b[j] || e[j] <= b[i];
    free(b);
    free(e);
    rg_json_free(doc);
    return ok;
}

static void test_mutations(rg_rng *rng) {
    const float f[6] = {1, 2, 3, 4, 5, 6};
    const uint16_t h[4] = {0x3c00, 0x4000, 0xc000, 0x0001};
    const int32_t iv[3] = {1, -2, 3};
    const int64_t s23[2] = {2, 3}, s4[1] = {4}, s3[1] = {3}, s0[2] = {0, 5};
    rg_tensor_view t[] = {
        {"w", RG_DTYPE_F32, 2, s23, f}, {"b16", RG_DTYPE_BF16, 1, s4, h}, {"f16", RG_DTYPE_F16, 1, s4, h},
        {"i", RG_DTYPE_I32, 1, s3, iv}, {"scalar", RG_DTYPE_F32, 0, NULL, f}, {"empty", RG_DTYPE_F16, 2, s0, NULL},
    };
    const char *kv[] = {"format", "pt", "step", "10"};
    const char *path = at("valid.safetensors");
    CHECK(rg_safetensors_write(path, t, 6, kv, 2) == RG_OK, "write the valid file: %s", rg_last_error());
    size_t n = 0;
    unsigned char *orig = get_file(path, &n);
    uint64_t hl = 0;
    for (int k = 7; k >= 0; k--) hl = hl << 8 | orig[k];
    static const char interesting[] = "{}[]\":,\\0123456789-eE \x00\xff";
    unsigned char *buf = malloc(n);
    int iters = rg_test_quick() ? 600 : 4000, opened = 0, bad = 0;
    const char *mpath = at("mutated.safetensors");
    for (int it = 0; it < iters; it++) {
        memcpy(buf, orig, n);
        int edits = 1 + (int)rg_rng_below(rng, 3);
        for (int k = 0; k < edits; k++) {
            size_t pos = rg_rng_below(rng, 10) == 0 ? rg_rng_below(rng, 8) : 8 + rg_rng_below(rng, hl);
            buf[pos] = rg_rng_below(rng, 2) ? (unsigned char)interesting[rg_rng_below(rng, sizeof interesting - 1)]
                                            : (unsigned char)rg_rng_u64(rng);
        }
        put_file(mpath, buf, n);
        rg_safetensors *st = NULL;
        rg_status s = rg_safetensors_open(mpath, &st);
        if (s == RG_OK) {
            opened++;
            if (!consistent(st, buf, n) && bad++ < 3) CHECK(false, "iteration %d: opened but inconsistent", it);
            rg_safetensors_close(st);
        } else if (st != NULL || (s != RG_ERR_FORMAT && s != RG_ERR_OVERFLOW) || !strstr(rg_last_error(), mpath)) {
            if (bad++ < 3) CHECK(false, "iteration %d: failed badly: %s: %s", it, rg_status_str(s), rg_last_error());
        }
    }
    printf("mutations: %d of %d mutated files opened (and were consistent), the rest failed cleanly\n", opened, iters);
    CHECK(bad == 0, "%d of %d mutated files misbehaved (%d opened)", bad, iters, opened);
    CHECK(opened > 0 && opened < iters, "mutations both kept and broke files (%d of %d opened)", opened, iters);
    free(buf);
    free(orig);
}

/* ---- sharded checkpoints ---- */

static void test_sharded(void) {
    char sub[300];
    snprintf(sub, sizeof sub, "%s/sharded", dir);
    mkdir(sub, 0777);
    const float a[2] = {1, 2}, b[3] = {3, 4, 5}, c[1] = {6};
    const int64_t s2[1] = {2}, s3[1] = {3}, s1[1] = {1};
    rg_tensor_view t1[] = {{"a", RG_DTYPE_F32, 1, s2, a}, {"b", RG_DTYPE_F32, 1, s3, b}};
    rg_tensor_view t2[] = {{"c", RG_DTYPE_F32, 1, s1, c}};
    const char *m1[] = {"format", "pt"}, *m2[] = {"format", "other", "extra", "1"};
    CHECK(rg_safetensors_write(at("sharded/model-00001-of-00002.safetensors"), t1, 2, m1, 1) == RG_OK &&
              rg_safetensors_write(at("sharded/model-00002-of-00002.safetensors"), t2, 1, m2, 2) == RG_OK,
          "write shards: %s", rg_last_error());
    const char *index = "{\"metadata\":{\"total_size\":24},\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
                        "\"c\":\"model-00002-of-00002.safetensors\",\"b\":\"model-00001-of-00002.safetensors\"}}";
    put_file(at("sharded/model.safetensors.index.json"), index, strlen(index));
    for (int via = 0; via < 2; via++) {
        rg_safetensors *st = NULL;
        const char *p = via ? at("sharded/model.safetensors.index.json") : sub;
        CHECK(rg_checkpoint_open(p, &st) == RG_OK, "open sharded via %s: %s", p, rg_last_error());
        if (!st) continue;
        rg_tensor_info ti;
        float x[3];
        CHECK(rg_safetensors_count(st) == 3 && rg_safetensors_info(st, 2, &ti) == RG_OK && strcmp(ti.name, "c") == 0 &&
                  strstr(ti.file, "model-00002-of-00002.safetensors"),
              "three tensors over two shards, in name order");
        CHECK(rg_safetensors_read_f32(st, "b", x, 3) == RG_OK && x[0] == 3 && x[2] == 5 &&
                  rg_safetensors_read_f32(st, "c", x, 1) == RG_OK && x[0] == 6, "values from both shards");
        CHECK(strcmp(rg_safetensors_metadata(st, "format"), "pt") == 0 &&
                  strcmp(rg_safetensors_metadata(st, "extra"), "1") == 0 && rg_safetensors_metadata_count(st) == 2,
              "metadata union, first shard wins");
        CHECK(rg_safetensors_read_f32(st, "zz", x, 1) == RG_ERR_FORMAT && strstr(rg_last_error(), p),
              "missing tensor names the checkpoint: %s", rg_last_error());
        rg_safetensors_close(st);
    }
    /* A plain file through rg_checkpoint_open, and a directory with model.safetensors. */
    rg_safetensors *st = NULL;
    CHECK(rg_checkpoint_open(at("sharded/model-00002-of-00002.safetensors"), &st) == RG_OK &&
              rg_safetensors_count(st) == 1, "checkpoint_open of one file");
    rg_safetensors_close(st);
    char single[300];
    snprintf(single, sizeof single, "%s/single", dir);
    mkdir(single, 0777);
    CHECK(rg_safetensors_write(at("single/model.safetensors"), t1, 2, NULL, 0) == RG_OK, "write single");
    st = NULL;
    CHECK(rg_checkpoint_open(single, &st) == RG_OK && rg_safetensors_count(st) == 2, "directory with model.safetensors");
    rg_safetensors_close(st);
    char none[300];
    snprintf(none, sizeof none, "%s/none", dir);
    mkdir(none, 0777);
    st = (rg_safetensors *)1;
    CHECK(rg_checkpoint_open(none, &st) == RG_ERR_IO && !st && strstr(rg_last_error(), "neither model.safetensors"),
          "empty directory: %s", rg_last_error());

    /* Broken indexes. */
    struct { const char *index; rg_status s; const char *want; } bad[] = {
        {"{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00001-of-00002.safetensors\","
         "\"c\":\"model-00003.safetensors\"}}", RG_ERR_IO, "model-00003.safetensors: cannot open"},
        {"{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00001-of-00002.safetensors\","
         "\"c\":\"model-00001-of-00002.safetensors\"}}", RG_ERR_FORMAT, "maps tensor 'c' to"},
        {"{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\",\"c\":\"model-00002-of-00002.safetensors\"}}",
         RG_ERR_FORMAT, "holds tensor 'b', which the index"},
        {"{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00001-of-00002.safetensors\","
         "\"c\":\"model-00002-of-00002.safetensors\",\"d\":\"model-00002-of-00002.safetensors\"}}",
         RG_ERR_FORMAT, "maps tensor 'd' to"},
        {"{\"metadata\":{}}", RG_ERR_FORMAT, "missing \"weight_map\""},
        {"{\"weight_map\":[]}", RG_ERR_FORMAT, "\"weight_map\" is an array, expected an object"},
        {"{\"weight_map\":{\"a\":1}}", RG_ERR_FORMAT, "weight_map[\"a\"] is a number, expected a shard file name"},
        {"{\"weight_map\":{\"a\":\"../x.safetensors\"}}", RG_ERR_FORMAT, "is not a relative file name"},
        {"{\"weight_map\":{\"a\":\"/etc/x\"}}", RG_ERR_FORMAT, "is not a relative file name"},
        {"{\"weight_map\":{\"a\":\"\"}}", RG_ERR_FORMAT, "is not a relative file name"},
        {"{\"weight_map\":{\"a\":\"x\"},}", RG_ERR_FORMAT, "expected a string key in object"},
        {"[]", RG_ERR_FORMAT, "index is an array, expected an object"},
    };
    const char *ipath = at("sharded/model.safetensors.index.json");
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        put_file(ipath, bad[k].index, strlen(bad[k].index));
        st = (rg_safetensors *)1;
        rg_status s = rg_checkpoint_open(sub, &st);
        CHECK(s == bad[k].s && st == NULL && strstr(rg_last_error(), bad[k].want),
              "bad index %zu: %s, '%s' should contain '%s'", k, rg_status_str(s), rg_last_error(), bad[k].want);
        if (s == RG_OK) rg_safetensors_close(st);
    }
    put_file(ipath, bad[0].index, strlen(bad[0].index));
    CHECK(rg_checkpoint_open(ipath, &st) == RG_ERR_IO && strstr(rg_last_error(), "a shard listed in") &&
              strstr(rg_last_error(), ipath), "missing shard names the index: %s", rg_last_error());
    /* A corrupt shard is reported with its own name. */
    put_file(ipath, index, strlen(index));
    put_file(at("sharded/model-00002-of-00002.safetensors"), "\x02\0\0\0\0\0\0\0[]", 10);
    CHECK(rg_checkpoint_open(sub, &st) == RG_ERR_FORMAT && strstr(rg_last_error(), "model-00002-of-00002.safetensors: header is an array"),
          "corrupt shard: %s", rg_last_error());
    CHECK(rg_checkpoint_open(at("nowhere"), &st) == RG_ERR_IO, "missing checkpoint path");
}

/* ---- writer validation and atomic saves ---- */

static void test_write_errors(void) {
    const char *path = at("keep.safetensors");
    const float v[4] = {1, 2, 3, 4};
    const int64_t s4[1] = {4}, sneg[2] = {2, -1}, sbig[2] = {INT64_MAX / 2, 4};
    rg_tensor_view good = {"keep", RG_DTYPE_F32, 1, s4, v};
    CHECK(rg_safetensors_write(path, &good, 1, NULL, 0) == RG_OK, "write the file to keep");
    size_t kn = 0;
    unsigned char *kept = get_file(path, &kn);

    struct { rg_tensor_view t[2]; size_t n; const char *const *kv; size_t nm; rg_status s; const char *want; } cases[] = {
        {{{NULL, RG_DTYPE_F32, 1, s4, v}}, 1, NULL, 0, RG_ERR_INVALID_ARG, "tensors[0].name is NULL"},
        {{{"", RG_DTYPE_F32, 1, s4, v}}, 1, NULL, 0, RG_ERR_INVALID_ARG, "tensors[0].name is empty"},
        {{{"__metadata__", RG_DTYPE_F32, 1, s4, v}}, 1, NULL, 0, RG_ERR_INVALID_ARG, "\"__metadata__\" is reserved"},
        {{{"a\xff", RG_DTYPE_F32, 1, s4, v}}, 1, NULL, 0, RG_ERR_INVALID_ARG, "tensors[0].name is not valid UTF-8"},
        {{{"a", RG_DTYPE_F32, 1, s4, v}, {"a", RG_DTYPE_BF16, 1, s4, v}}, 2, NULL, 0, RG_ERR_INVALID_ARG,
         "tensor name 'a' appears twice"},
        {{{"a", (rg_dtype)99, 1, s4, v}}, 1, NULL, 0, RG_ERR_INVALID_ARG, "tensor 'a': dtype 99 is not F32, BF16, F16 or I32"},
        {{{"a", RG_DTYPE_F32, -1, s4, v}}, 1, NULL, 0, RG_ERR_INVALID_ARG, "ndim -1 outside [0, 64]"},
        {{{"a", RG_DTYPE_F32, 65, s4, v}}, 1, NULL, 0, RG_ERR_INVALID_ARG, "ndim 65 outside"},
        {{{"a", RG_DTYPE_F32, 1, NULL, v}}, 1, NULL, 0, RG_ERR_INVALID_ARG, "tensor 'a': shape is NULL"},
        {{{"a", RG_DTYPE_F32, 2, sneg, v}}, 1, NULL, 0, RG_ERR_INVALID_ARG, "tensor 'a': shape[1] is -1, expected >= 0"},
        {{{"a", RG_DTYPE_F32, 2, sbig, v}}, 1, NULL, 0, RG_ERR_OVERFLOW, "tensor 'a': element count overflows"},
        {{{"a", RG_DTYPE_F32, 1, s4, NULL}}, 1, NULL, 0, RG_ERR_INVALID_ARG, "tensor 'a': data is NULL for 16 bytes"},
        {{{"a", RG_DTYPE_F32, 1, s4, v}}, 1, (const char *const[]){"k", "1", "k", "2"}, 2, RG_ERR_INVALID_ARG,
         "metadata key 'k' appears twice"},
        {{{"a", RG_DTYPE_F32, 1, s4, v}}, 1, (const char *const[]){"k", NULL}, 1, RG_ERR_INVALID_ARG,
         "metadata pair 0 has a NULL key or value"},
        {{{"a", RG_DTYPE_F32, 1, s4, v}}, 1, (const char *const[]){"k", "\xc3"}, 1, RG_ERR_INVALID_ARG,
         "metadata pair 0 ('k') is not valid UTF-8"},
        {{{"a", RG_DTYPE_F32, 1, s4, v}}, 1, NULL, 1, RG_ERR_INVALID_ARG, "metadata_kv is NULL"},
        {{{0}}, 2, NULL, 0, RG_ERR_INVALID_ARG, "tensors[0].name is NULL"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        rg_status s = rg_safetensors_write(path, cases[c].t, cases[c].n, cases[c].kv, cases[c].nm);
        CHECK(s == cases[c].s && strstr(rg_last_error(), cases[c].want), "write case %zu: %s '%s' should contain '%s'",
              c, rg_status_str(s), rg_last_error(), cases[c].want);
        CHECK(same_file(path, kept, kn) && temp_files() == 0, "write case %zu: previous file intact, no temp file", c);
    }
    CHECK(rg_safetensors_write(NULL, &good, 1, NULL, 0) == RG_ERR_INVALID_ARG, "NULL path");
    CHECK(rg_safetensors_write(path, NULL, 1, NULL, 0) == RG_ERR_INVALID_ARG, "NULL tensors");

    /* A directory that does not exist. */
    rg_status s = rg_safetensors_write(at("no/such/dir/x.safetensors"), &good, 1, NULL, 0);
    CHECK(s == RG_ERR_IO && strstr(rg_last_error(), "no/such/dir/x.safetensors.tmp.") &&
              strstr(rg_last_error(), "No such file"), "missing directory: %s", rg_last_error());
    /* The target is a directory: the rename fails after the temp file was written. */
    char target[300];
    snprintf(target, sizeof target, "%s/adir", dir);
    mkdir(target, 0777);
    s = rg_safetensors_write(target, &good, 1, NULL, 0);
    struct stat sb;
    CHECK(s == RG_ERR_IO && strstr(rg_last_error(), "cannot rename") && temp_files() == 0 && stat(target, &sb) == 0 &&
              S_ISDIR(sb.st_mode), "rename over a directory fails cleanly: %s", rg_last_error());

    /* Every file operation failing in turn (open, writes, fsync, close, rename):
     * the previous file survives and no temporary file is left. A tensor above
     * the 1 MiB write buffer makes the data go out in several writes. */
    size_t big_n = 600000;
    uint16_t *big = malloc(big_n * 2);
    for (size_t i = 0; i < big_n; i++) big[i] = (uint16_t)i;
    const int64_t sbig_shape[1] = {(int64_t)big_n};
    rg_tensor_view nt[2] = {{"new", RG_DTYPE_F32, 1, s4, v}, {"big", RG_DTYPE_BF16, 1, sbig_shape, big}};
    int failures = 0, k;
    for (k = 1; k < 100; k++) {
        rg_safetensors_fault_at_ = k;
        s = rg_safetensors_write(path, nt, 2, NULL, 0);
        if (s == RG_OK) break;
        failures++;
        CHECK(s == RG_ERR_IO && strstr(rg_last_error(), "keep.safetensors"), "fault %d: i/o error naming the file: %s",
              k, rg_last_error());
        CHECK(same_file(path, kept, kn) && temp_files() == 0, "fault %d: previous file intact, no temp file", k);
    }
    rg_safetensors_fault_at_ = 0;
    CHECK(s == RG_OK && failures >= 6, "save succeeds once faults stop (%d failing stages exercised)", failures);
    rg_safetensors *st = NULL;
    CHECK(rg_safetensors_open(path, &st) == RG_OK && rg_safetensors_has(st, "big") && !rg_safetensors_has(st, "keep"),
          "the new file replaced the old one");
    rg_safetensors_close(st);

    /* A real failure from the kernel: a file size limit (EFBIG) mid-write. */
    free(kept);
    kept = get_file(path, &kn);
    struct rlimit old;
    if (getrlimit(RLIMIT_FSIZE, &old) == 0) {
        struct rlimit lim = old;
        lim.rlim_cur = 65536;
        void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
            s = rg_safetensors_write(path, nt, 2, NULL, 0);
            setrlimit(RLIMIT_FSIZE, &old);
            CHECK(s == RG_ERR_IO && strstr(rg_last_error(), "writing"), "file size limit: %s", rg_last_error());
            CHECK(same_file(path, kept, kn) && temp_files() == 0, "file size limit: previous file intact, no temp");
        }
        signal(SIGXFSZ, prev);
    }
    free(kept);
    free(big);
}

static void remove_tree(const char *p) {
    DIR *d = opendir(p);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[1024];
        snprintf(sub, sizeof sub, "%s/%s", p, e->d_name);
        struct stat sb;
        if (lstat(sub, &sb) == 0 && S_ISDIR(sb.st_mode)) remove_tree(sub);
        else unlink(sub);
    }
    if (d) closedir(d);
    rmdir(p);
}

int main(void) {
    rg_rng rng;
    rg_test_init("test_safetensors", &rng);
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/rg_st_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "cannot create a temporary directory\n");
        return 2;
    }
    test_hand_written();
    test_writer_layout();
    test_round_trip(&rng);
    test_corrupt();
    test_mutations(&rng);
    test_sharded();
    test_write_errors();
    CHECK(temp_files() == 0, "no temporary files left at the end");
    remove_tree(dir);
    return rg_test_finish();
}
