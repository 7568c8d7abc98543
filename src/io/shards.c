/* shards.c — token shards in llm.c's format (ragged.h section 8): a writer
 * that appends EOT-prefixed documents and rolls over to a new shard at a token
 * limit, each shard written atomically; a reader that validates the header
 * against the file and splits the tokens into documents at EOT. */
#define _POSIX_C_SOURCE 200809L
#include "core/alloc.h"
#include "core/status.h"
#include "ragged.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER_INTS 256
#define CHUNK 8192 /* tokens converted per fwrite */

struct rg_shard_writer {
    char *prefix;
    int64_t shard_tokens;    /* limit per shard */
    int32_t eot;
    FILE *f;                 /* current shard's temporary file, NULL between shards */
    char *path, *tmp_path;   /* current shard's final and temporary names */
    size_t path_cap;
    int64_t cur;             /* tokens in the current shard */
    int32_t n_shards;        /* shards finished */
    int64_t total;           /* tokens in finished shards */
    bool broken;             /* an I/O error happened: refuse further work */
    uint8_t buf[2 * CHUNK];
};

static void put_le32(uint8_t *p, int32_t v) {
    uint32_t u = (uint32_t)v;
    p[0] = (uint8_t)u;
    p[1] = (uint8_t)(u >> 8);
    p[2] = (uint8_t)(u >> 16);
    p[3] = (uint8_t)(u >> 24);
}

static int32_t get_le32(const uint8_t *p) {
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

rg_status rg_shard_writer_open(const char *prefix, int64_t shard_tokens, int32_t eot_id,
                               rg_shard_writer **out) {
    if (!out) return rg_fail(RG_ERR_INVALID_ARG, "rg_shard_writer_open: out is NULL");
    *out = NULL;
    if (!prefix || !*prefix) return rg_fail(RG_ERR_INVALID_ARG, "rg_shard_writer_open: prefix is NULL or empty");
    if (shard_tokens < 1 || shard_tokens > INT32_MAX)
        return rg_fail(RG_ERR_INVALID_ARG, "rg_shard_writer_open: shard_tokens = %lld, expected 1..%d",
                       (long long)shard_tokens, INT32_MAX);
    if (eot_id < 0 || eot_id > 65535)
        return rg_fail(RG_ERR_INVALID_ARG, "rg_shard_writer_open: eot_id = %d, expected 0..65535", (int)eot_id);
    rg_shard_writer *w;
    RG_TRY(rg_calloc((void **)&w, 1, sizeof *w, "rg_shard_writer_open: writer"));
    size_t n = strlen(prefix);
    w->path_cap = n + 32;
    rg_status st;
    if ((st = rg_alloc((void **)&w->prefix, n + 1, 1, "rg_shard_writer_open: prefix")) ||
        (st = rg_alloc((void **)&w->path, w->path_cap, 1, "rg_shard_writer_open: path")) ||
        (st = rg_alloc((void **)&w->tmp_path, w->path_cap + 4, 1, "rg_shard_writer_open: path"))) {
        rg_free(w->prefix);
        rg_free(w->path);
        rg_free(w);
        return st;
    }
    memcpy(w->prefix, prefix, n + 1);
    w->shard_tokens = shard_tokens;
    w->eot = eot_id;
    *out = w;
    rg_clear_error();
    return RG_OK;
}

static rg_status io_fail(rg_shard_writer *w, const char *what, const char *path) {
    w->broken = true;
    return rg_fail(RG_ERR_IO, "rg_shard_writer: cannot %s '%s': %s", what, path, strerror(errno));
}

static rg_status start_shard(rg_shard_writer *w) {
    snprintf(w->path, w->path_cap, "%s_%06d.bin", w->prefix, (int)w->n_shards);
    snprintf(w->tmp_path, w->path_cap + 4, "%s.tmp", w->path);
    w->f = fopen(w->tmp_path, "wb");
    if (!w->f) return io_fail(w, "create", w->tmp_path);
    uint8_t header[4 * HEADER_INTS] = {0}; /* the real header is written when the shard is finished */
    if (fwrite(header, 1, sizeof header, w->f) != sizeof header) return io_fail(w, "write", w->tmp_path);
    w->cur = 0;
    return RG_OK;
}

static rg_status finish_shard(rg_shard_writer *w) {
    uint8_t header[4 * HEADER_INTS] = {0};
    put_le32(header, RG_SHARD_MAGIC);
    put_le32(header + 4, RG_SHARD_VERSION);
    put_le32(header + 8, (int32_t)w->cur);
    if (fseek(w->f, 0, SEEK_SET) != 0 || fwrite(header, 1, sizeof header, w->f) != sizeof header)
        return io_fail(w, "write", w->tmp_path);
    if (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0) return io_fail(w, "flush", w->tmp_path);
    FILE *f = w->f;
    w->f = NULL;
    if (fclose(f) != 0) return io_fail(w, "close", w->tmp_path);
    if (rename(w->tmp_path, w->path) != 0) return io_fail(w, "rename to its final name", w->tmp_path);
    w->n_shards++;
    w->total += w->cur;
    w->cur = 0;
    return RG_OK;
}

static rg_status write_tokens(rg_shard_writer *w, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t k = n - i < CHUNK ? n - i : CHUNK;
        for (size_t j = 0; j < k; j++) {
            w->buf[2 * j] = (uint8_t)ids[i + j];
            w->buf[2 * j + 1] = (uint8_t)(ids[i + j] >> 8);
        }
        if (fwrite(w->buf, 2, k, w->f) != k) return io_fail(w, "write", w->tmp_path);
        i += k;
    }
    return RG_OK;
}

rg_status rg_shard_writer_add(rg_shard_writer *w, const int32_t *ids, size_t n) {
    if (!w || (!ids && n))
        return rg_fail(RG_ERR_INVALID_ARG, "rg_shard_writer_add: %s is NULL", !w ? "w" : "ids");
    if (w->broken) return rg_fail(RG_ERR_IO, "rg_shard_writer_add: the writer failed earlier; close it");
    if (n > (size_t)INT32_MAX - 1)
        return rg_fail(RG_ERR_OVERFLOW, "rg_shard_writer_add: a document of %zu tokens exceeds a shard's int32 count", n);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] > 65535)
            return rg_fail(RG_ERR_INVALID_ARG, "rg_shard_writer_add: ids[%zu] = %d does not fit uint16", i, (int)ids[i]);
    int64_t need = (int64_t)n + 1;
    if (w->f && w->cur > 0 && (w->cur + need > w->shard_tokens || w->cur + need > INT32_MAX))
        RG_TRY(finish_shard(w));
    if (!w->f) RG_TRY(start_shard(w));
    RG_TRY(write_tokens(w, &w->eot, 1));
    RG_TRY(write_tokens(w, ids, n));
    w->cur += need;
    rg_clear_error();
    return RG_OK;
}

rg_status rg_shard_writer_close(rg_shard_writer *w, int32_t *n_shards, int64_t *n_tokens) {
    if (!w) return rg_fail(RG_ERR_INVALID_ARG, "rg_shard_writer_close: w is NULL");
    rg_status st = RG_OK;
    if (w->f && !w->broken) st = finish_shard(w);
    if (w->f) { /* failed: leave no half-written shard behind */
        fclose(w->f);
        remove(w->tmp_path);
    }
    if (st == RG_OK && w->broken)
        st = rg_fail(RG_ERR_IO, "rg_shard_writer_close: the writer failed earlier; the last shard was not written");
    if (n_shards) *n_shards = w->n_shards;
    if (n_tokens) *n_tokens = w->total;
    rg_free(w->prefix);
    rg_free(w->path);
    rg_free(w->tmp_path);
    rg_free(w);
    if (st == RG_OK) rg_clear_error();
    return st;
}

/* ---- reading ---- */

#define RFN "rg_shard_read"

rg_status rg_shard_read(const char *path, int32_t eot_id, rg_shard *out) {
    if (!out) return rg_fail(RG_ERR_INVALID_ARG, RFN ": out is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return rg_fail(RG_ERR_INVALID_ARG, RFN ": path is NULL");
    if (eot_id < 0 || eot_id > 65535)
        return rg_fail(RG_ERR_INVALID_ARG, RFN ": eot_id = %d, expected 0..65535", (int)eot_id);
    FILE *f = fopen(path, "rb");
    if (!f) return rg_fail(RG_ERR_IO, RFN ": cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    uint8_t header[4 * HEADER_INTS];
    uint16_t *tokens = NULL;
    int64_t *offs = NULL;
    rg_status st = RG_OK;
    if (fstat(fileno(f), &sb) != 0) {
        st = rg_fail(RG_ERR_IO, RFN ": cannot stat '%s': %s", path, strerror(errno));
        goto done;
    }
    int64_t size = (int64_t)sb.st_size;
    if (size < (int64_t)sizeof header) {
        st = rg_fail(RG_ERR_FORMAT, RFN ": '%s': %lld bytes, shorter than the %d-byte header", path,
                     (long long)size, RG_SHARD_HEADER_BYTES);
        goto done;
    }
    if (fread(header, 1, sizeof header, f) != sizeof header) {
        st = rg_fail(RG_ERR_IO, RFN ": cannot read the header of '%s'", path);
        goto done;
    }
    int32_t magic = get_le32(header), version = get_le32(header + 4), count = get_le32(header + 8);
    if (magic != RG_SHARD_MAGIC) {
        st = rg_fail(RG_ERR_FORMAT, RFN ": '%s': header[0] (magic) is %d, expected %d", path, (int)magic,
                     RG_SHARD_MAGIC);
        goto done;
    }
    if (version != RG_SHARD_VERSION) {
        st = rg_fail(RG_ERR_FORMAT, RFN ": '%s': header[1] (version) is %d, expected %d", path, (int)version,
                     RG_SHARD_VERSION);
        goto done;
    }
    int64_t held = (size - (int64_t)sizeof header) / 2;
    if (count < 0 || count != held || (size - (int64_t)sizeof header) % 2) {
        st = rg_fail(RG_ERR_FORMAT,
                     RFN ": '%s': header[2] (token count) is %d but the file's %lld bytes after the header "
                         "hold %lld tokens%s",
                     path, (int)count, (long long)(size - (int64_t)sizeof header), (long long)held,
                     (size - (int64_t)sizeof header) % 2 ? " and an odd byte" : "");
        goto done;
    }
    if ((st = rg_alloc((void **)&tokens, (size_t)count, sizeof(uint16_t), RFN ": tokens")) != RG_OK) goto done;
    uint8_t *raw = (uint8_t *)tokens;
    if (fread(raw, 2, (size_t)count, f) != (size_t)count) {
        st = rg_fail(RG_ERR_IO, RFN ": cannot read the tokens of '%s'", path);
        goto done;
    }
    for (int64_t i = 0; i < count; i++) tokens[i] = (uint16_t)(raw[2 * i] | raw[2 * i + 1] << 8);
    int64_t n_docs = 0;
    for (int64_t i = 0; i < count; i++) n_docs += tokens[i] == eot_id || i == 0;
    if ((st = rg_alloc((void **)&offs, (size_t)n_docs + 1, sizeof(int64_t), RFN ": documents")) != RG_OK) goto done;
    int64_t d = 0;
    for (int64_t i = 0; i < count; i++)
        if (tokens[i] == eot_id || i == 0) offs[d++] = i;
    offs[d] = count;
    out->n_tokens = count;
    out->tokens = tokens;
    out->n_docs = n_docs;
    out->doc_offsets = offs;
    tokens = NULL;
    offs = NULL;
done:
    fclose(f);
    rg_free(tokens);
    rg_free(offs);
    if (st == RG_OK) rg_clear_error();
    return st;
}

void rg_shard_free(rg_shard *s) {
    if (!s) return;
    rg_free(s->tokens);
    rg_free(s->doc_offsets);
    memset(s, 0, sizeof *s);
}
