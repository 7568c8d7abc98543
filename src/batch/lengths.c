/* lengths.c — sequence lengths for benchmarks (ragged.h section 5): read from a
 * text file (one batch per line) or drawn uniformly from a seed. */
#include "core/alloc.h"
#include "core/file.h"
#include "core/rng.h"
#include "core/status.h"
#include "ragged.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>

#define FN "rg_lengths_read"

static bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

/* Checks every line of buf; with dst, also stores the lengths there. */
static rg_status parse(const char *path, const char *buf, size_t len, int32_t *dst, int32_t *n_batches,
                       int32_t *batch_size, int32_t *longest) {
    int64_t nb = 0, count = 0;
    int32_t bs = -1, first_line = 0, line = 0, max = 0;
    for (size_t p = 0; p < len;) {
        size_t end = p;
        while (end < len && buf[end] != '\n') end++;
        line++;
        size_t q = p;
        while (q < end && is_blank(buf[q])) q++;
        if (q == end || buf[q] == '#') {
            p = end + 1;
            continue;
        }
        int32_t field = 0;
        while (q < end) {
            size_t t = q;
            while (q < end && !is_blank(buf[q])) q++;
            field++;
            int w = (int)(q - t > 24 ? 24 : q - t); /* how much of the field a message quotes */
            int64_t v = 0;
            for (size_t k = t; k < q; k++) {
                if (buf[k] < '0' || buf[k] > '9')
                    return rg_fail(RG_ERR_FORMAT, FN ": %s:%d: field %d is '%.*s', expected a positive integer",
                                   path, line, field, w, buf + t);
                v = v * 10 + (buf[k] - '0');
                if (v > INT32_MAX)
                    return rg_fail(RG_ERR_FORMAT, FN ": %s:%d: field %d ('%.*s') is above INT32_MAX", path, line,
                                   field, w, buf + t);
            }
            if (v == 0)
                return rg_fail(RG_ERR_FORMAT, FN ": %s:%d: field %d is 0, expected a positive integer", path, line,
                               field);
            if (dst) dst[count] = (int32_t)v;
            count++;
            if (v > max) max = (int32_t)v;
            while (q < end && is_blank(buf[q])) q++;
        }
        if (bs < 0) {
            bs = field;
            first_line = line;
        } else if (field != bs) {
            return rg_fail(RG_ERR_FORMAT, FN ": %s:%d: %d lengths, expected %d like line %d", path, line, field, bs,
                           first_line);
        }
        if (++nb > INT32_MAX || count > INT32_MAX)
            return rg_fail(RG_ERR_OVERFLOW, FN ": %s:%d: more than INT32_MAX lengths", path, line);
        p = end + 1;
    }
    if (nb == 0) return rg_fail(RG_ERR_FORMAT, FN ": %s: no batch of lengths (only comments or blank lines)", path);
    *n_batches = (int32_t)nb;
    *batch_size = bs;
    *longest = max;
    return RG_OK;
}

rg_status rg_lengths_read(const char *path, rg_lengths *out) {
    if (!out) return rg_fail(RG_ERR_INVALID_ARG, FN ": out is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return rg_fail(RG_ERR_INVALID_ARG, FN ": path is NULL");
    char *buf;
    size_t len;
    RG_TRY(rg_read_file(FN, path, &buf, &len));
    rg_lengths l = {0};
    rg_status st = parse(path, buf, len, NULL, &l.n_batches, &l.batch_size, &l.longest);
    if (st == RG_OK)
        st = rg_alloc((void **)&l.lens, (size_t)l.n_batches * (size_t)l.batch_size, sizeof(int32_t), FN ": lens");
    if (st == RG_OK) st = parse(path, buf, len, l.lens, &l.n_batches, &l.batch_size, &l.longest);
    rg_free(buf);
    if (st != RG_OK) {
        rg_free(l.lens);
        return st;
    }
    *out = l;
    rg_clear_error();
    return RG_OK;
}

rg_status rg_lengths_uniform(uint64_t seed, int32_t n_batches, int32_t batch_size, int32_t lo, int32_t hi,
                             rg_lengths *out) {
    const char *fn = "rg_lengths_uniform";
    if (!out) return rg_fail(RG_ERR_INVALID_ARG, "%s: out is NULL", fn);
    memset(out, 0, sizeof *out);
    if (n_batches < 1 || batch_size < 1)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: n_batches = %d and batch_size = %d, expected both >= 1", fn,
                       n_batches, batch_size);
    if (lo < 1 || hi < lo)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: lengths in [%d, %d], expected 1 <= lo <= hi", fn, lo, hi);
    int64_t n = (int64_t)n_batches * batch_size;
    if (n > INT32_MAX)
        return rg_fail(RG_ERR_OVERFLOW, "%s: %d x %d = %lld lengths, expected <= INT32_MAX", fn, n_batches,
                       batch_size, (long long)n);
    rg_lengths l = {.n_batches = n_batches, .batch_size = batch_size};
    RG_TRY(rg_alloc((void **)&l.lens, (size_t)n, sizeof(int32_t), "rg_lengths_uniform: lens"));
    rg_rng rng;
    rg_rng_seed(&rng, seed);
    for (int64_t i = 0; i < n; i++) {
        l.lens[i] = lo + (int32_t)rg_rng_below(&rng, (uint64_t)hi - (uint64_t)lo + 1);
        if (l.lens[i] > l.longest) l.longest = l.lens[i];
    }
    *out = l;
    rg_clear_error();
    return RG_OK;
}

void rg_lengths_free(rg_lengths *l) {
    if (!l) return;
    rg_free(l->lens);
    memset(l, 0, sizeof *l);
}
