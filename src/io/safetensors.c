/* safetensors.c — safetensors files: a validating memory-mapped reader, sharded
 * checkpoints (model.safetensors.index.json) as one flat view, and an atomic
 * writer laid out like the Python library's (see ragged.h section 7). */
#define _POSIX_C_SOURCE 200809L
#include "io/safetensors.h"
#include "core/alloc.h"
#include "core/dtype.h"
#include "core/status.h"
#include "io/json.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

_Thread_local int rg_safetensors_fault_at_;

/* Every dtype of the format, in the order of the library's Dtype enum: the
 * writer sorts tensors by descending position here (so wider types come first
 * and stay aligned), then by name. */
static const struct {
    const char *name;
    int bits;
} dtypes[] = {
    {"BOOL", 8},  {"F4", 4},   {"F6_E2M3", 6}, {"F6_E3M2", 6}, {"U8", 8},   {"I8", 8},   {"F8_E5M2", 8},
    {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"I16", 16}, {"U16", 16}, {"F16", 16}, {"BF16", 16}, {"I32", 32},
    {"U32", 32}, {"F32", 32}, {"C64", 64}, {"F64", 64}, {"I64", 64}, {"U64", 64},
};
enum { N_DTYPES = sizeof dtypes / sizeof dtypes[0], DT_F16 = 11, DT_BF16 = 12, DT_I32 = 13, DT_F32 = 15 };

static int dt_of_rg(rg_dtype t) {
    switch (t) {
    case RG_DTYPE_F32: return DT_F32;
    case RG_DTYPE_BF16: return DT_BF16;
    case RG_DTYPE_F16: return DT_F16;
    case RG_DTYPE_I32: return DT_I32;
    }
    return -1;
}

typedef struct st_file st_file;

typedef struct st_entry {
    const char *name;            /* in the header document */
    int dt;                      /* index into dtypes */
    int32_t ndim;
    const int64_t *shape;
    int64_t numel;
    size_t nbytes;
    uint64_t begin, end;         /* within the data region */
    const unsigned char *data;
    const st_file *file;
} st_entry;

struct st_file {
    char *path;
    void *map;
    size_t size;
    rg_json_doc *header;
    int64_t *dims;               /* every entry's shape, back to back */
    st_entry *entries;           /* (n) sorted by name */
    size_t n;
    const rg_json *meta;         /* __metadata__ object, or NULL */
};

struct rg_safetensors {
    char *origin;                /* the path it was opened from, for messages */
    st_file *files;              /* (n_files); shards in file-name order */
    size_t n_files;
    const st_entry **tensors;    /* (n) sorted by name, over all files */
    size_t n;
    const char **meta_keys, **meta_vals; /* (n_meta) sorted by key */
    size_t n_meta;
};

static const char *errstr(int e, char *buf, size_t cap) {
    if (strerror_r(e, buf, cap) != 0) snprintf(buf, cap, "error %d", e);
    return buf;
}

static bool host_le(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--) v = v << 8 | p[k];
    return v;
}

/* "[2, 3]" (truncated with "..." if long). */
static const char *fmt_shape(char *buf, size_t cap, const int64_t *shape, int32_t ndim) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int32_t d = 0; d < ndim && k < cap; d++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%" PRId64, d ? ", " : "", shape[d]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    else if (cap > 4) strcpy(buf + cap - 5, "...]");
    return buf;
}

/* A JSON value for a message: the number itself, else its kind. */
static const char *jdesc(const rg_json *v, char *buf, size_t cap) {
    if (v->type != RG_JSON_NUMBER) return rg_json_type_name(v->type);
    if (v->is_int) snprintf(buf, cap, "%" PRId64, v->i);
    else {
        int k = snprintf(buf, cap, "%.17g", v->num);
        if (k > 0 && (size_t)k < cap && strspn(buf, "-0123456789") == (size_t)k) /* 1e0, 2.0: say why it is refused */
            snprintf(buf + k, cap - (size_t)k, " (not an integer literal)");
    }
    return buf;
}

static char *dup_str(const char *s) {
    char *d;
    if (rg_alloc((void **)&d, strlen(s) + 1, 1, "path") != RG_OK) return NULL;
    memcpy(d, s, strlen(s) + 1);
    return d;
}

static int entry_name_cmp(const void *a, const void *b) {
    return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

static int entry_ptr_name_cmp(const void *a, const void *b) {
    return strcmp((*(const st_entry *const *)a)->name, (*(const st_entry *const *)b)->name);
}

static int entry_ptr_offset_cmp(const void *a, const void *b) {
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

static void file_free(st_file *f) {
    if (f->map) munmap(f->map, f->size);
    rg_json_free(f->header);
    rg_free(f->dims);
    rg_free(f->entries);
    rg_free(f->path);
    memset(f, 0, sizeof *f);
}

/* ---- one file's header ---- */

static rg_status check_metadata(const st_file *f, const rg_json *m) {
    if (m->type != RG_JSON_OBJECT)
        return rg_fail(RG_ERR_FORMAT, "%s: \"__metadata__\" is %s, expected an object of strings", f->path,
                       rg_json_type_name(m->type));
    for (size_t k = 0; k < m->len; k++) {
        const rg_json_key *key = &m->keys[k];
        const rg_json *v = &m->items[k];
        if (v->type != RG_JSON_STRING)
            return rg_fail(RG_ERR_FORMAT, "%s: __metadata__[\"%s\"] is %s, expected a string", f->path, key->s,
                           rg_json_type_name(v->type));
        if (strlen(key->s) != key->len || strlen(v->str) != v->len)
            return rg_fail(RG_ERR_FORMAT, "%s: __metadata__[\"%s\"] contains a NUL character", f->path, key->s);
    }
    return RG_OK;
}

/* Validates one header entry into e (its shape goes to dims). */
static rg_status parse_entry(const st_file *f, const rg_json_key *key, const rg_json *v, uint64_t data_len,
                             int64_t *dims, st_entry *e) {
    const char *path = f->path, *name = key->s;
    char b1[160], b2[64];
    if (strlen(name) != key->len)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': name contains a NUL character", path, name);
    if (v->type != RG_JSON_OBJECT)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': entry is %s, expected an object with dtype, shape, data_offsets",
                       path, name, rg_json_type_name(v->type));
    for (size_t k = 0; k < v->len; k++) {
        const char *kk = v->keys[k].s;
        if (strcmp(kk, "dtype") && strcmp(kk, "shape") && strcmp(kk, "data_offsets"))
            return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': unexpected key \"%s\" (expected dtype, shape, data_offsets)",
                           path, name, kk);
    }
    const rg_json *dt = rg_json_get(v, "dtype"), *shape = rg_json_get(v, "shape");
    const rg_json *off = rg_json_get(v, "data_offsets");
    if (!dt) return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': missing \"dtype\"", path, name);
    if (!shape) return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': missing \"shape\"", path, name);
    if (!off) return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': missing \"data_offsets\"", path, name);

    if (dt->type != RG_JSON_STRING)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': dtype is %s, expected a string", path, name,
                       rg_json_type_name(dt->type));
    e->dt = -1;
    for (int k = 0; k < N_DTYPES; k++)
        if (strcmp(dt->str, dtypes[k].name) == 0 && strlen(dt->str) == dt->len) e->dt = k;
    if (e->dt < 0)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': unknown dtype \"%s\" (expected F32, BF16, F16, F64, I64, I32, "
                       "I16, I8, U8, BOOL, ...)", path, name, dt->str);

    if (shape->type != RG_JSON_ARRAY)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': shape is %s, expected an array of non-negative integers", path,
                       name, rg_json_type_name(shape->type));
    if (shape->len > RG_SAFETENSORS_MAX_NDIM)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': shape has %zu dimensions, at most %d supported", path, name,
                       shape->len, RG_SAFETENSORS_MAX_NDIM);
    int64_t numel = 1;
    for (size_t d = 0; d < shape->len; d++) {
        const rg_json *x = &shape->items[d];
        if (x->type != RG_JSON_NUMBER || !x->is_int || x->i < 0)
            return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': shape[%zu] is %s, expected a non-negative integer", path,
                           name, d, jdesc(x, b2, sizeof b2));
        dims[d] = x->i;
        if (x->i != 0 && numel > INT64_MAX / x->i)
            return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': shape %s has more elements than fit in 64 bits", path, name,
                           fmt_shape(b1, sizeof b1, dims, (int32_t)d + 1));
        numel *= x->i;
    }
    e->name = name;
    e->ndim = (int32_t)shape->len;
    e->shape = dims;
    e->numel = numel;
    fmt_shape(b1, sizeof b1, dims, e->ndim);
    uint64_t ebits = (uint64_t)dtypes[e->dt].bits, bits = (uint64_t)numel * ebits;
    if ((uint64_t)numel > UINT64_MAX / ebits || bits / 8 > SIZE_MAX)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': shape %s of %s is too many bytes", path, name, b1,
                       dtypes[e->dt].name);
    if (bits % 8)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': %" PRId64 " elements of %s do not fill whole bytes", path, name,
                       numel, dtypes[e->dt].name);
    e->nbytes = (size_t)(bits / 8);

    if (off->type != RG_JSON_ARRAY)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': data_offsets is %s, expected [begin, end]", path, name,
                       rg_json_type_name(off->type));
    if (off->len != 2)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': data_offsets has %zu elements, expected 2 ([begin, end])",
                       path, name, off->len);
    for (int k = 0; k < 2; k++) {
        const rg_json *x = &off->items[k];
        if (x->type != RG_JSON_NUMBER || !x->is_int || x->i < 0)
            return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': data_offsets[%d] is %s, expected a non-negative integer",
                           path, name, k, jdesc(x, b2, sizeof b2));
    }
    e->begin = (uint64_t)off->items[0].i;
    e->end = (uint64_t)off->items[1].i;
    if (e->begin > e->end)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end before they begin",
                       path, name, e->begin, e->end);
    if (e->end > data_len)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] run past the data region "
                       "(%" PRIu64 " bytes)", path, name, e->begin, e->end, data_len);
    if (e->end - e->begin != e->nbytes)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] span %" PRIu64
                       " bytes, expected %zu (shape %s of %s)", path, name, e->begin, e->end, e->end - e->begin,
                       e->nbytes, b1, dtypes[e->dt].name);
    return RG_OK;
}

/* Validates the mapped file f->map[0..size) and builds f's entries. */
static rg_status parse_file(st_file *f) {
    const unsigned char *m = f->map;
    if (f->size < 8)
        return rg_fail(RG_ERR_FORMAT, "%s: file is %zu bytes, shorter than the 8-byte header length", f->path, f->size);
    uint64_t hlen = le64(m);
    if (hlen > RG_SAFETENSORS_MAX_HEADER)
        return rg_fail(RG_ERR_FORMAT, "%s: header length %" PRIu64 " is above the format's limit of %u bytes", f->path,
                       hlen, RG_SAFETENSORS_MAX_HEADER);
    if (hlen > f->size - 8)
        return rg_fail(RG_ERR_FORMAT, "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes after "
                       "the length)", f->path, hlen, f->size - 8);
    if (hlen == 0) return rg_fail(RG_ERR_FORMAT, "%s: header is empty, expected a JSON object", f->path);
    const char *text = (const char *)m + 8;
    char what[600];
    snprintf(what, sizeof what, "%s: header", f->path);
    RG_TRY(rg_json_parse(text, (size_t)hlen, 0, what, &f->header));
    const rg_json *root = rg_json_root(f->header);
    if (root->type != RG_JSON_OBJECT)
        return rg_fail(RG_ERR_FORMAT, "%s: header is %s, expected an object", f->path, rg_json_type_name(root->type));
    if (text[0] != '{')
        return rg_fail(RG_ERR_FORMAT, "%s: header must begin with '{', got byte 0x%02x", f->path,
                       (unsigned char)text[0]);
    uint64_t data_len = f->size - 8 - hlen;

    size_t n = 0, ndims = 0;
    for (size_t k = 0; k < root->len; k++) {
        if (strcmp(root->keys[k].s, "__metadata__") == 0 && root->keys[k].len == 12) continue;
        n++;
        const rg_json *sh = rg_json_get(&root->items[k], "shape");
        if (sh && sh->type == RG_JSON_ARRAY && sh->len <= RG_SAFETENSORS_MAX_NDIM) ndims += sh->len;
    }
    RG_TRY(rg_alloc((void **)&f->entries, n ? n : 1, sizeof(st_entry), "safetensors entries"));
    RG_TRY(rg_alloc((void **)&f->dims, ndims ? ndims : 1, sizeof(int64_t), "safetensors shapes"));
    size_t e = 0, d = 0;
    for (size_t k = 0; k < root->len; k++) {
        if (strcmp(root->keys[k].s, "__metadata__") == 0 && root->keys[k].len == 12) {
            RG_TRY(check_metadata(f, &root->items[k]));
            f->meta = &root->items[k];
            continue;
        }
        st_entry *en = &f->entries[e++];
        memset(en, 0, sizeof *en);
        RG_TRY(parse_entry(f, &root->keys[k], &root->items[k], data_len, f->dims + d, en));
        d += (size_t)en->ndim;
        en->data = m + 8 + hlen + en->begin;
        en->file = f;
    }
    f->n = n;

    /* Overlap: by offset, each non-empty tensor must start at or after the end
     * of every earlier one (empty tensors occupy no bytes). */
    const st_entry **by_off;
    RG_TRY(rg_alloc((void **)&by_off, n ? n : 1, sizeof *by_off, "safetensors offsets"));
    for (size_t k = 0; k < n; k++) by_off[k] = &f->entries[k];
    qsort(by_off, n, sizeof *by_off, entry_ptr_offset_cmp);
    const st_entry *last = NULL;
    rg_status st = RG_OK;
    for (size_t k = 0; k < n && st == RG_OK; k++) {
        const st_entry *x = by_off[k];
        if (x->nbytes == 0) continue;
        if (last && x->begin < last->end)
            st = rg_fail(RG_ERR_FORMAT, "%s: tensors '%s' [%" PRIu64 ", %" PRIu64 "] and '%s' [%" PRIu64 ", %" PRIu64
                         "] overlap", f->path, last->name, last->begin, last->end, x->name, x->begin, x->end);
        if (!last || x->end > last->end) last = x;
    }
    rg_free(by_off);
    if (st != RG_OK) return st;
    qsort(f->entries, n, sizeof *f->entries, entry_name_cmp);
    return RG_OK;
}

static rg_status file_open(const char *path, st_file *f) {
    char eb[128];
    memset(f, 0, sizeof *f);
    if (!(f->path = dup_str(path))) return RG_ERR_OUT_OF_MEMORY;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return rg_fail(RG_ERR_IO, "%s: cannot open: %s", path, errstr(errno, eb, sizeof eb));
    struct stat sb;
    rg_status st = RG_OK;
    if (fstat(fd, &sb) != 0) st = rg_fail(RG_ERR_IO, "%s: cannot stat: %s", path, errstr(errno, eb, sizeof eb));
    else if (!S_ISREG(sb.st_mode)) st = rg_fail(RG_ERR_IO, "%s: not a regular file", path);
    else if ((uintmax_t)sb.st_size > SIZE_MAX) st = rg_fail(RG_ERR_OVERFLOW, "%s: file too large to map", path);
    else if (sb.st_size < 8)
        st = rg_fail(RG_ERR_FORMAT, "%s: file is %jd bytes, shorter than the 8-byte header length", path,
                     (intmax_t)sb.st_size);
    if (st == RG_OK) {
        void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) st = rg_fail(RG_ERR_IO, "%s: cannot map: %s", path, errstr(errno, eb, sizeof eb));
        else {
            f->map = m;
            f->size = (size_t)sb.st_size;
        }
    }
    close(fd);
    if (st == RG_OK) st = parse_file(f);
    return st;
}

/* ---- the flat view over files ---- */

typedef struct meta_item {
    const char *key, *val;
    size_t order;
} meta_item;

static int meta_cmp(const void *a, const void *b) {
    const meta_item *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c) return c;
    return (x->order > y->order) - (x->order < y->order);
}

static rg_status build_view(rg_safetensors *st) {
    size_t n = 0, nm = 0;
    for (size_t i = 0; i < st->n_files; i++) {
        n += st->files[i].n;
        if (st->files[i].meta) nm += st->files[i].meta->len;
    }
    RG_TRY(rg_alloc((void **)&st->tensors, n ? n : 1, sizeof *st->tensors, "safetensors view"));
    size_t k = 0;
    for (size_t i = 0; i < st->n_files; i++)
        for (size_t j = 0; j < st->files[i].n; j++) st->tensors[k++] = &st->files[i].entries[j];
    qsort(st->tensors, n, sizeof *st->tensors, entry_ptr_name_cmp);
    for (size_t j = 1; j < n; j++)
        if (strcmp(st->tensors[j - 1]->name, st->tensors[j]->name) == 0)
            return rg_fail(RG_ERR_FORMAT, "tensor '%s' is in both %s and %s", st->tensors[j]->name,
                           st->tensors[j - 1]->file->path, st->tensors[j]->file->path);
    st->n = n;

    meta_item *items;
    RG_TRY(rg_alloc((void **)&items, nm ? nm : 1, sizeof *items, "safetensors metadata"));
    k = 0;
    for (size_t i = 0; i < st->n_files; i++) {
        const rg_json *m = st->files[i].meta;
        for (size_t j = 0; m && j < m->len; j++, k++) items[k] = (meta_item){m->keys[j].s, m->items[j].str, k};
    }
    qsort(items, nm, sizeof *items, meta_cmp);
    rg_status s = rg_alloc((void **)&st->meta_keys, nm ? nm : 1, sizeof(char *), "safetensors metadata");
    if (s == RG_OK) s = rg_alloc((void **)&st->meta_vals, nm ? nm : 1, sizeof(char *), "safetensors metadata");
    if (s == RG_OK) {
        for (size_t j = 0; j < nm; j++) {
            if (j && strcmp(items[j].key, items[j - 1].key) == 0) continue; /* first file wins */
            st->meta_keys[st->n_meta] = items[j].key;
            st->meta_vals[st->n_meta++] = items[j].val;
        }
    }
    rg_free(items);
    return s;
}

void rg_safetensors_close(rg_safetensors *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n_files; i++) file_free(&st->files[i]);
    rg_free(st->files);
    rg_free(st->origin);
    rg_free(st->tensors);
    rg_free(st->meta_keys);
    rg_free(st->meta_vals);
    rg_free(st);
}

static rg_status new_view(const char *origin, size_t n_files, rg_safetensors **out) {
    RG_TRY(rg_calloc((void **)out, 1, sizeof **out, "safetensors"));
    rg_status s = rg_calloc((void **)&(*out)->files, n_files ? n_files : 1, sizeof(st_file), "safetensors files");
    if (s == RG_OK && !((*out)->origin = dup_str(origin))) s = RG_ERR_OUT_OF_MEMORY;
    if (s != RG_OK) {
        rg_safetensors_close(*out);
        *out = NULL;
    }
    return s;
}

rg_status rg_safetensors_open(const char *path, rg_safetensors **out) {
    if (!out) return rg_fail(RG_ERR_INVALID_ARG, "rg_safetensors_open: out is NULL");
    *out = NULL;
    if (!path || !*path) return rg_fail(RG_ERR_INVALID_ARG, "rg_safetensors_open: path is NULL or empty");
    rg_safetensors *st;
    RG_TRY(new_view(path, 1, &st));
    st->n_files = 1;
    rg_status s = file_open(path, &st->files[0]);
    if (s == RG_OK) s = build_view(st);
    if (s != RG_OK) {
        rg_safetensors_close(st);
        return s;
    }
    rg_clear_error();
    *out = st;
    return RG_OK;
}

/* ---- sharded checkpoints ---- */

static rg_status read_small_file(const char *path, size_t max, char **out, size_t *len) {
    char eb[128];
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return rg_fail(RG_ERR_IO, "%s: cannot open: %s", path, errstr(errno, eb, sizeof eb));
    struct stat sb;
    rg_status s = RG_OK;
    if (fstat(fd, &sb) != 0) s = rg_fail(RG_ERR_IO, "%s: cannot stat: %s", path, errstr(errno, eb, sizeof eb));
    else if (!S_ISREG(sb.st_mode)) s = rg_fail(RG_ERR_IO, "%s: not a regular file", path);
    else if ((uintmax_t)sb.st_size > max)
        s = rg_fail(RG_ERR_FORMAT, "%s: %jd bytes, more than the %zu allowed", path, (intmax_t)sb.st_size, max);
    else s = rg_alloc((void **)out, (size_t)sb.st_size + 1, 1, path);
    size_t got = 0;
    while (s == RG_OK && got < (size_t)sb.st_size) {
        ssize_t r = read(fd, *out + got, (size_t)sb.st_size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) s = rg_fail(RG_ERR_IO, "%s: cannot read: %s", path, errstr(errno, eb, sizeof eb));
        else if (r == 0) s = rg_fail(RG_ERR_IO, "%s: file shrank while reading", path);
        else got += (size_t)r;
    }
    close(fd);
    if (s != RG_OK) {
        rg_free(*out);
        *out = NULL;
        return s;
    }
    (*out)[got] = '\0';
    *len = got;
    return RG_OK;
}

/* A shard file name must stay inside the index's directory. */
static bool shard_name_ok(const char *s, size_t len) {
    if (len == 0 || strlen(s) != len || s[0] == '/') return false;
    for (const char *p = s; *p;) {
        const char *slash = strchr(p, '/');
        size_t seg = slash ? (size_t)(slash - p) : strlen(p);
        if (seg == 2 && p[0] == '.' && p[1] == '.') return false;
        p += seg + (slash != NULL);
    }
    return true;
}

static int str_ptr_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static const st_entry *file_find(const st_file *f, const char *name) {
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->entries[mid].name, name);
        if (c == 0) return &f->entries[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static rg_status open_index_parsed(const char *index_path, const rg_json *root, rg_safetensors **out) {
    if (root->type != RG_JSON_OBJECT)
        return rg_fail(RG_ERR_FORMAT, "%s: index is %s, expected an object", index_path, rg_json_type_name(root->type));
    const rg_json *wm = rg_json_get(root, "weight_map");
    if (!wm) return rg_fail(RG_ERR_FORMAT, "%s: missing \"weight_map\"", index_path);
    if (wm->type != RG_JSON_OBJECT)
        return rg_fail(RG_ERR_FORMAT, "%s: \"weight_map\" is %s, expected an object", index_path,
                       rg_json_type_name(wm->type));
    for (size_t k = 0; k < wm->len; k++) {
        const rg_json *v = &wm->items[k];
        if (v->type != RG_JSON_STRING)
            return rg_fail(RG_ERR_FORMAT, "%s: weight_map[\"%s\"] is %s, expected a shard file name", index_path,
                           wm->keys[k].s, rg_json_type_name(v->type));
        if (!shard_name_ok(v->str, v->len))
            return rg_fail(RG_ERR_FORMAT, "%s: weight_map[\"%s\"] = \"%s\" is not a relative file name inside the "
                           "index's directory", index_path, wm->keys[k].s, v->str);
    }
    /* Distinct shard names, sorted. */
    const char **names;
    RG_TRY(rg_alloc((void **)&names, wm->len ? wm->len : 1, sizeof *names, "shard names"));
    for (size_t k = 0; k < wm->len; k++) names[k] = wm->items[k].str;
    qsort(names, wm->len, sizeof *names, str_ptr_cmp);
    size_t ns = 0;
    for (size_t k = 0; k < wm->len; k++)
        if (!ns || strcmp(names[ns - 1], names[k]) != 0) names[ns++] = names[k];

    const char *slash = strrchr(index_path, '/');
    size_t dirlen = slash ? (size_t)(slash - index_path) + 1 : 0;
    rg_safetensors *st;
    rg_status s = new_view(index_path, ns, &st);
    char *shard_path = NULL;
    for (size_t i = 0; s == RG_OK && i < ns; i++) {
        size_t nl = strlen(names[i]);
        s = rg_alloc((void **)&shard_path, dirlen + nl + 1, 1, "shard path");
        if (s != RG_OK) break;
        memcpy(shard_path, index_path, dirlen);
        memcpy(shard_path + dirlen, names[i], nl + 1);
        st->n_files = i + 1;
        s = file_open(shard_path, &st->files[i]);
        if (s != RG_OK) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", rg_last_error());
            rg_fail(s, "%s (a shard listed in %s)", msg, index_path);
        }
        rg_free(shard_path);
        shard_path = NULL;
    }
    rg_free(names);
    /* Every mapping must be held by its shard, and every shard tensor mapped to it. */
    for (size_t k = 0; s == RG_OK && k < wm->len; k++) {
        const char *tname = wm->keys[k].s, *shard = wm->items[k].str;
        const st_file *f = NULL;
        for (size_t i = 0; i < st->n_files && !f; i++)
            if (strcmp(st->files[i].path + dirlen, shard) == 0) f = &st->files[i];
        if (!f || strlen(tname) != wm->keys[k].len || !file_find(f, tname))
            s = rg_fail(RG_ERR_FORMAT, "%s: maps tensor '%s' to %s, which does not hold it", index_path, tname,
                        f ? f->path : shard);
    }
    for (size_t i = 0; s == RG_OK && i < st->n_files; i++) {
        const st_file *f = &st->files[i];
        for (size_t j = 0; s == RG_OK && j < f->n; j++) {
            const rg_json *v = rg_json_get(wm, f->entries[j].name);
            if (!v)
                s = rg_fail(RG_ERR_FORMAT, "%s: holds tensor '%s', which the index %s does not list", f->path,
                            f->entries[j].name, index_path);
            else if (strcmp(v->str, f->path + dirlen) != 0)
                s = rg_fail(RG_ERR_FORMAT, "%s: holds tensor '%s', which the index %s maps to %s", f->path,
                            f->entries[j].name, index_path, v->str);
        }
    }
    if (s == RG_OK) s = build_view(st);
    if (s != RG_OK) {
        rg_safetensors_close(st);
        return s;
    }
    *out = st;
    return RG_OK;
}

static rg_status open_index(const char *index_path, rg_safetensors **out) {
    char *text;
    size_t len;
    RG_TRY(read_small_file(index_path, RG_SAFETENSORS_MAX_HEADER, &text, &len));
    rg_json_doc *doc;
    rg_status s = rg_json_parse(text, len, 0, index_path, &doc);
    rg_free(text);
    if (s != RG_OK) return s;
    s = open_index_parsed(index_path, rg_json_root(doc), out);
    rg_json_free(doc);
    return s;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static bool is_regular(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

rg_status rg_checkpoint_open(const char *path, rg_safetensors **out) {
    char eb[128];
    if (!out) return rg_fail(RG_ERR_INVALID_ARG, "rg_checkpoint_open: out is NULL");
    *out = NULL;
    if (!path || !*path) return rg_fail(RG_ERR_INVALID_ARG, "rg_checkpoint_open: path is NULL or empty");
    struct stat sb;
    if (stat(path, &sb) != 0) return rg_fail(RG_ERR_IO, "%s: cannot access: %s", path, errstr(errno, eb, sizeof eb));
    rg_status s;
    if (S_ISDIR(sb.st_mode)) {
        size_t n = strlen(path);
        char *p;
        RG_TRY(rg_alloc((void **)&p, n + 40, 1, "checkpoint path"));
        const char *sep = path[n - 1] == '/' ? "" : "/";
        snprintf(p, n + 40, "%s%smodel.safetensors", path, sep);
        if (is_regular(p)) s = rg_safetensors_open(p, out);
        else {
            snprintf(p, n + 40, "%s%smodel.safetensors.index.json", path, sep);
            if (is_regular(p)) s = open_index(p, out);
            else s = rg_fail(RG_ERR_IO, "%s: directory holds neither model.safetensors nor "
                             "model.safetensors.index.json", path);
        }
        rg_free(p);
    } else if (ends_with(path, ".json")) {
        s = open_index(path, out);
    } else {
        s = rg_safetensors_open(path, out);
    }
    if (s == RG_OK) rg_clear_error();
    return s;
}

/* ---- queries ---- */

static void fill_info(const st_entry *e, rg_tensor_info *out) {
    memset(out, 0, sizeof *out);
    out->name = e->name;
    out->dtype_name = dtypes[e->dt].name;
    out->known_dtype = true;
    switch (e->dt) {
    case DT_F32: out->dtype = RG_DTYPE_F32; break;
    case DT_BF16: out->dtype = RG_DTYPE_BF16; break;
    case DT_F16: out->dtype = RG_DTYPE_F16; break;
    case DT_I32: out->dtype = RG_DTYPE_I32; break;
    default: out->known_dtype = false;
    }
    out->convertible = e->dt == DT_F32 || e->dt == DT_BF16 || e->dt == DT_F16;
    out->ndim = e->ndim;
    out->shape = e->shape;
    out->numel = e->numel;
    out->nbytes = e->nbytes;
    out->data = e->data;
    out->file = e->file->path;
}

static const st_entry *view_find(const rg_safetensors *st, const char *name) {
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->tensors[mid]->name, name);
        if (c == 0) return st->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static const char *view_name(const rg_safetensors *st) { return st->origin; }

size_t rg_safetensors_count(const rg_safetensors *st) { return st ? st->n : 0; }

rg_status rg_safetensors_info(const rg_safetensors *st, size_t i, rg_tensor_info *out) {
    if (!st || !out) return rg_fail(RG_ERR_INVALID_ARG, "rg_safetensors_info: st or out is NULL");
    if (i >= st->n)
        return rg_fail(RG_ERR_INVALID_ARG, "rg_safetensors_info: index %zu out of range (%zu tensors)", i, st->n);
    fill_info(st->tensors[i], out);
    return RG_OK;
}

bool rg_safetensors_has(const rg_safetensors *st, const char *name) {
    return st && name && view_find(st, name) != NULL;
}

rg_status rg_safetensors_find(const rg_safetensors *st, const char *name, rg_tensor_info *out) {
    if (!st || !name || !out) return rg_fail(RG_ERR_INVALID_ARG, "rg_safetensors_find: st, name or out is NULL");
    const st_entry *e = view_find(st, name);
    if (!e) return rg_fail(RG_ERR_FORMAT, "%s: no tensor named '%s'", view_name(st), name);
    fill_info(e, out);
    return RG_OK;
}

rg_status rg_safetensors_read_f32(const rg_safetensors *st, const char *name, float *dst, size_t n) {
    char b1[160];
    if (!st || !name) return rg_fail(RG_ERR_INVALID_ARG, "rg_safetensors_read_f32: st or name is NULL");
    const st_entry *e = view_find(st, name);
    if (!e) return rg_fail(RG_ERR_FORMAT, "%s: no tensor named '%s'", view_name(st), name);
    if ((uint64_t)e->numel != (uint64_t)n)
        return rg_fail(RG_ERR_INVALID_ARG, "rg_safetensors_read_f32: '%s' has %" PRId64 " elements (shape %s), "
                       "n is %zu", name, e->numel, fmt_shape(b1, sizeof b1, e->shape, e->ndim), n);
    if (n && !dst) return rg_fail(RG_ERR_INVALID_ARG, "rg_safetensors_read_f32: dst is NULL");
    const unsigned char *p = e->data;
    switch (e->dt) {
    case DT_F32:
        if (host_le()) {
            if (n) memcpy(dst, p, n * 4);
        } else {
            for (size_t i = 0; i < n; i++) {
                uint32_t u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
                             (uint32_t)p[4 * i + 3] << 24;
                memcpy(&dst[i], &u, 4);
            }
        }
        break;
    case DT_BF16:
        /* bf16 is the top half of a float32: inlined (rather than rg_bf16_to_f32)
         * so the loop vectorises, ~10x faster on big checkpoints. */
        for (size_t i = 0; i < n; i++) {
            uint32_t u = ((uint32_t)p[2 * i] | (uint32_t)p[2 * i + 1] << 8) << 16;
            memcpy(&dst[i], &u, 4);
        }
        break;
    case DT_F16:
        for (size_t i = 0; i < n; i++) dst[i] = rg_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    default:
        return rg_fail(RG_ERR_UNSUPPORTED, "rg_safetensors_read_f32: '%s' is %s; only F32, BF16 and F16 convert "
                       "to float32", name, dtypes[e->dt].name);
    }
    return RG_OK;
}

size_t rg_safetensors_metadata_count(const rg_safetensors *st) { return st ? st->n_meta : 0; }

rg_status rg_safetensors_metadata_at(const rg_safetensors *st, size_t i, const char **key, const char **value) {
    if (!st || !key || !value)
        return rg_fail(RG_ERR_INVALID_ARG, "rg_safetensors_metadata_at: st, key or value is NULL");
    if (i >= st->n_meta)
        return rg_fail(RG_ERR_INVALID_ARG, "rg_safetensors_metadata_at: index %zu out of range (%zu entries)", i,
                       st->n_meta);
    *key = st->meta_keys[i];
    *value = st->meta_vals[i];
    return RG_OK;
}

const char *rg_safetensors_metadata(const rg_safetensors *st, const char *key) {
    if (!st || !key) return NULL;
    size_t lo = 0, hi = st->n_meta;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->meta_keys[mid], key);
        if (c == 0) return st->meta_vals[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ---- writer ---- */

/* Counts file operations for rg_safetensors_fault_at_; true = pretend it failed. */
static bool inject_fault(void) {
    if (rg_safetensors_fault_at_ > 0 && --rg_safetensors_fault_at_ == 0) {
        errno = EIO;
        return true;
    }
    return false;
}

typedef struct wfile {
    int fd;
    const char *tmp;
    char *buf;                   /* coalesces small writes */
    size_t len, cap;
} wfile;

static rg_status write_all(wfile *w, const void *p, size_t n) {
    char eb[128];
    const char *c = p;
    while (n) {
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t r = inject_fault() ? -1 : write(w->fd, c, chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return rg_fail(RG_ERR_IO, "rg_safetensors_write: writing %s: %s", w->tmp,
                           r < 0 ? errstr(errno, eb, sizeof eb) : "no progress");
        c += r;
        n -= (size_t)r;
    }
    return RG_OK;
}

static rg_status w_flush(wfile *w) {
    rg_status s = write_all(w, w->buf, w->len);
    w->len = 0;
    return s;
}

static rg_status w_put(wfile *w, const void *p, size_t n) {
    if (n == 0) return RG_OK; /* p may be NULL for an empty tensor */
    if (n > w->cap - w->len) {
        RG_TRY(w_flush(w));
        if (n >= w->cap) return write_all(w, p, n);
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
    return RG_OK;
}

/* nbytes of esize-byte elements, stored little-endian whatever the host. */
static rg_status w_put_le(wfile *w, const void *p, size_t nbytes, size_t esize) {
    if (host_le() || esize == 1) return w_put(w, p, nbytes);
    const unsigned char *s = p;
    while (nbytes) {
        size_t room = (w->cap - w->len) / esize * esize;
        if (!room) {
            RG_TRY(w_flush(w));
            continue;
        }
        size_t take = nbytes < room ? nbytes : room;
        for (size_t i = 0; i < take; i += esize)
            for (size_t b = 0; b < esize; b++) w->buf[w->len + i + b] = (char)s[i + esize - 1 - b];
        w->len += take;
        s += take;
        nbytes -= take;
    }
    return RG_OK;
}

typedef struct wtensor {
    const rg_tensor_view *t;
    int dt;
    size_t nbytes;
} wtensor;

static int wt_order_cmp(const void *a, const void *b) {
    const wtensor *x = a, *y = b;
    if (x->dt != y->dt) return x->dt > y->dt ? -1 : 1;
    return strcmp(x->t->name, y->t->name);
}

static int wt_name_cmp(const void *a, const void *b) {
    return strcmp((*(const wtensor *const *)a)->t->name, (*(const wtensor *const *)b)->t->name);
}

static rg_status validate_tensor(const rg_tensor_view *t, size_t i, wtensor *w) {
    const char *fn = "rg_safetensors_write";
    if (!t->name) return rg_fail(RG_ERR_INVALID_ARG, "%s: tensors[%zu].name is NULL", fn, i);
    if (!*t->name) return rg_fail(RG_ERR_INVALID_ARG, "%s: tensors[%zu].name is empty", fn, i);
    if (!rg_utf8_valid(t->name, strlen(t->name)))
        return rg_fail(RG_ERR_INVALID_ARG, "%s: tensors[%zu].name is not valid UTF-8", fn, i);
    if (strcmp(t->name, "__metadata__") == 0)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: tensors[%zu].name \"__metadata__\" is reserved by the format", fn, i);
    w->t = t;
    w->dt = dt_of_rg(t->dtype);
    if (w->dt < 0)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: tensor '%s': dtype %d is not F32, BF16, F16 or I32", fn, t->name,
                       (int)t->dtype);
    if (t->ndim < 0 || t->ndim > RG_SAFETENSORS_MAX_NDIM)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: tensor '%s': ndim %d outside [0, %d]", fn, t->name, (int)t->ndim,
                       RG_SAFETENSORS_MAX_NDIM);
    if (t->ndim > 0 && !t->shape) return rg_fail(RG_ERR_INVALID_ARG, "%s: tensor '%s': shape is NULL", fn, t->name);
    int64_t numel = 1;
    for (int32_t d = 0; d < t->ndim; d++) {
        int64_t x = t->shape[d];
        if (x < 0)
            return rg_fail(RG_ERR_INVALID_ARG, "%s: tensor '%s': shape[%d] is %" PRId64 ", expected >= 0", fn, t->name,
                           (int)d, x);
        if (x != 0 && numel > INT64_MAX / x)
            return rg_fail(RG_ERR_OVERFLOW, "%s: tensor '%s': element count overflows 64 bits", fn, t->name);
        numel *= x;
    }
    if ((uint64_t)numel > SIZE_MAX || !rg_mul_ok((size_t)numel, rg_dtype_size(t->dtype), &w->nbytes))
        return rg_fail(RG_ERR_OVERFLOW, "%s: tensor '%s': %" PRId64 " elements are too many bytes", fn, t->name, numel);
    if (w->nbytes && !t->data)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: tensor '%s': data is NULL for %zu bytes", fn, t->name, w->nbytes);
    return RG_OK;
}

/* Header JSON (unpadded) for tensors in writing order and sorted metadata. */
static void build_header(rg_strbuf *h, const wtensor *order, size_t n, const meta_item *meta, size_t n_meta) {
    rg_strbuf_append(h, "{", 1);
    if (n_meta) {
        rg_strbuf_puts(h, "\"__metadata__\":{");
        for (size_t k = 0; k < n_meta; k++) {
            if (k) rg_strbuf_append(h, ",", 1);
            rg_json_write_string(h, meta[k].key, strlen(meta[k].key));
            rg_strbuf_append(h, ":", 1);
            rg_json_write_string(h, meta[k].val, strlen(meta[k].val));
        }
        rg_strbuf_append(h, "}", 1);
    }
    uint64_t off = 0;
    for (size_t k = 0; k < n; k++) {
        const rg_tensor_view *t = order[k].t;
        if (k || n_meta) rg_strbuf_append(h, ",", 1);
        rg_json_write_string(h, t->name, strlen(t->name));
        rg_strbuf_printf(h, ":{\"dtype\":\"%s\",\"shape\":[", dtypes[order[k].dt].name);
        for (int32_t d = 0; d < t->ndim; d++) rg_strbuf_printf(h, "%s%" PRId64, d ? "," : "", t->shape[d]);
        rg_strbuf_printf(h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + order[k].nbytes);
        off += order[k].nbytes;
    }
    rg_strbuf_append(h, "}", 1);
    while (h->status == RG_OK && h->len % 8) rg_strbuf_append(h, " ", 1);
}

static rg_status write_file(const char *path, const char *tmp, const rg_strbuf *h, const wtensor *order, size_t n) {
    char eb[128];
    wfile w = {.fd = -1, .tmp = tmp, .cap = (size_t)1 << 20};
    RG_TRY(rg_alloc((void **)&w.buf, w.cap, 1, "safetensors write buffer"));
    rg_status s = RG_OK;
    w.fd = inject_fault() ? -1 : open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (w.fd < 0) {
        s = rg_fail(RG_ERR_IO, "rg_safetensors_write: cannot create %s: %s", tmp, errstr(errno, eb, sizeof eb));
        rg_free(w.buf);
        return s; /* nothing was created */
    }
    unsigned char len8[8];
    for (int k = 0; k < 8; k++) len8[k] = (unsigned char)((uint64_t)h->len >> (8 * k));
    s = w_put(&w, len8, 8);
    if (s == RG_OK) s = w_put(&w, h->data, h->len);
    for (size_t k = 0; k < n && s == RG_OK; k++)
        s = w_put_le(&w, order[k].t->data, order[k].nbytes, rg_dtype_size(order[k].t->dtype));
    if (s == RG_OK) s = w_flush(&w);
    if (s == RG_OK && (inject_fault() || fsync(w.fd) != 0))
        s = rg_fail(RG_ERR_IO, "rg_safetensors_write: fsync %s: %s", tmp, errstr(errno, eb, sizeof eb));
    bool fault = inject_fault();
    int cr = close(w.fd); /* always close, even when pretending it failed */
    if (s == RG_OK && (fault || cr != 0))
        s = rg_fail(RG_ERR_IO, "rg_safetensors_write: close %s: %s", tmp, errstr(fault ? EIO : errno, eb, sizeof eb));
    if (s == RG_OK && (inject_fault() || rename(tmp, path) != 0))
        s = rg_fail(RG_ERR_IO, "rg_safetensors_write: cannot rename %s to %s: %s", tmp, path,
                    errstr(errno, eb, sizeof eb));
    rg_free(w.buf);
    if (s != RG_OK) {
        unlink(tmp);
        return s;
    }
    /* Make the rename itself durable. Best effort: the new file is already in
     * place, and some file systems refuse to fsync a directory. */
    const char *slash = strrchr(path, '/');
    char *dir = NULL;
    size_t dl = slash ? (size_t)(slash - path) : 0;
    if (rg_alloc((void **)&dir, dl + 2, 1, "directory path") == RG_OK) {
        if (slash) {
            memcpy(dir, path, dl ? dl : 1); /* "/x" lives in "/" */
            dir[dl ? dl : 1] = '\0';
        } else {
            strcpy(dir, ".");
        }
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
        rg_free(dir);
    }
    return RG_OK;
}

rg_status rg_safetensors_write(const char *path, const rg_tensor_view *tensors, size_t n,
                               const char *const *metadata_kv, size_t n_meta) {
    const char *fn = "rg_safetensors_write";
    if (!path || !*path) return rg_fail(RG_ERR_INVALID_ARG, "%s: path is NULL or empty", fn);
    if (n && !tensors) return rg_fail(RG_ERR_INVALID_ARG, "%s: tensors is NULL for n = %zu", fn, n);
    if (n_meta && !metadata_kv)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: metadata_kv is NULL for n_meta = %zu", fn, n_meta);
    if (n_meta > SIZE_MAX / 2) return rg_fail(RG_ERR_INVALID_ARG, "%s: n_meta %zu is too large", fn, n_meta);

    wtensor *order = NULL;
    const wtensor **by_name = NULL;
    meta_item *meta = NULL;
    char *tmp = NULL;
    rg_strbuf h;
    rg_strbuf_init(&h);
    rg_status s = rg_alloc((void **)&order, n ? n : 1, sizeof *order, "safetensors write order");
    if (s == RG_OK) s = rg_alloc((void **)&by_name, n ? n : 1, sizeof *by_name, "safetensors write order");
    if (s == RG_OK) s = rg_alloc((void **)&meta, n_meta ? n_meta : 1, sizeof *meta, "safetensors metadata");
    uint64_t total = 0;
    for (size_t i = 0; i < n && s == RG_OK; i++) {
        s = validate_tensor(&tensors[i], i, &order[i]);
        if (s == RG_OK && order[i].nbytes > UINT64_MAX - total)
            s = rg_fail(RG_ERR_OVERFLOW, "%s: total data size overflows 64 bits", fn);
        if (s == RG_OK) total += order[i].nbytes;
    }
    if (s == RG_OK) {
        for (size_t i = 0; i < n; i++) by_name[i] = &order[i];
        qsort(by_name, n, sizeof *by_name, wt_name_cmp);
        for (size_t i = 1; i < n && s == RG_OK; i++)
            if (strcmp(by_name[i - 1]->t->name, by_name[i]->t->name) == 0)
                s = rg_fail(RG_ERR_INVALID_ARG, "%s: tensor name '%s' appears twice", fn, by_name[i]->t->name);
    }
    for (size_t k = 0; k < n_meta && s == RG_OK; k++) {
        const char *key = metadata_kv[2 * k], *val = metadata_kv[2 * k + 1];
        if (!key || !val) s = rg_fail(RG_ERR_INVALID_ARG, "%s: metadata pair %zu has a NULL key or value", fn, k);
        else if (!rg_utf8_valid(key, strlen(key)) || !rg_utf8_valid(val, strlen(val)))
            s = rg_fail(RG_ERR_INVALID_ARG, "%s: metadata pair %zu ('%s') is not valid UTF-8", fn, k, key);
        else meta[k] = (meta_item){key, val, k};
    }
    if (s == RG_OK) {
        qsort(meta, n_meta, sizeof *meta, meta_cmp);
        for (size_t k = 1; k < n_meta && s == RG_OK; k++)
            if (strcmp(meta[k - 1].key, meta[k].key) == 0)
                s = rg_fail(RG_ERR_INVALID_ARG, "%s: metadata key '%s' appears twice", fn, meta[k].key);
    }
    if (s == RG_OK) {
        qsort(order, n, sizeof *order, wt_order_cmp);
        build_header(&h, order, n, meta, n_meta);
        s = h.status;
        if (s == RG_OK && h.len > RG_SAFETENSORS_MAX_HEADER)
            s = rg_fail(RG_ERR_INVALID_ARG, "%s: header would be %zu bytes, above the format's limit of %u", fn, h.len,
                        RG_SAFETENSORS_MAX_HEADER);
    }
    if (s == RG_OK) {
        size_t pl = strlen(path) + 32;
        s = rg_alloc((void **)&tmp, pl, 1, "temporary path");
        if (s == RG_OK) snprintf(tmp, pl, "%s.tmp.%ld", path, (long)getpid());
    }
    if (s == RG_OK) s = write_file(path, tmp, &h, order, n);
    rg_strbuf_free(&h);
    rg_free(tmp);
    rg_free(meta);
    rg_free(by_name);
    rg_free(order);
    if (s == RG_OK) rg_clear_error();
    return s;
}
