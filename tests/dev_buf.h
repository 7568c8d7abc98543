/* dev_buf.h — device buffers with sentinels for the GPU tests: n elements of
 * a dtype, misaligned by off elements, inside DBUF_GUARD bytes of 0xA5 on each
 * side (a byte pattern that is neither 0 nor a value an op would produce by
 * chance); dbuf_guard_ok says whether an op wrote outside. Set-up failures
 * are fatal (rg_test_must). */
#ifndef RG_TEST_DEV_BUF_H
#define RG_TEST_DEV_BUF_H
#include "backend.h"
#include "check.h"
#include "core/dtype.h"
#include <stdlib.h>
#include <string.h>

#define DBUF_GUARD 64

typedef struct dbuf {
    rg_backend *be;
    rg_dtype t;
    size_t n, off;  /* elements; off = misalignment in elements */
    uint8_t *base;  /* device allocation: GUARD + (off + n) * size + GUARD bytes */
    void *p;        /* first element */
} dbuf;

static inline size_t dbuf_bytes(const dbuf *b) { return 2 * DBUF_GUARD + (b->off + b->n) * rg_dtype_size(b->t); }

static inline dbuf dbuf_alloc(rg_backend *be, rg_dtype t, size_t n, size_t off) {
    dbuf b = {be, t, n, off, NULL, NULL};
    size_t bytes = dbuf_bytes(&b);
    void *p;
    rg_test_must(rg_buffer_alloc(be, bytes, &p), "device alloc");
    b.base = p;
    b.p = b.base + DBUF_GUARD + off * rg_dtype_size(t);
    uint8_t *fill = rg_test_xmalloc(bytes);
    memset(fill, 0xA5, bytes);
    rg_test_must(rg_buffer_upload(be, b.base, fill, bytes), "upload sentinel");
    free(fill);
    return b;
}

static inline void dbuf_free(dbuf *b) {
    if (b->base) rg_buffer_free(b->be, b->base);
    b->base = NULL;
}

/* x (n floats) converted to the buffer's dtype, and back. */
static inline void dbuf_put(dbuf *b, const float *x) {
    rg_test_must(rg_buffer_upload_f32(b->be, b->p, b->t, x, b->n), "upload");
}
static inline void dbuf_get(const dbuf *b, float *x) {
    rg_test_must(rg_buffer_download_f32(b->be, x, b->p, b->t, b->n), "download");
}

/* Sentinels intact on both sides? (the misalignment gap counts as guard too) */
static inline bool dbuf_guard_ok(const dbuf *b, const char *what) {
    size_t bytes = dbuf_bytes(b), lo = DBUF_GUARD + b->off * rg_dtype_size(b->t), hi = lo + b->n * rg_dtype_size(b->t);
    uint8_t *h = rg_test_xmalloc(bytes);
    rg_test_must(rg_buffer_download(b->be, h, b->base, bytes), "download guard");
    bool ok = true;
    for (size_t i = 0; i < lo && ok; i++) ok = h[i] == 0xA5;
    for (size_t i = hi; i < bytes && ok; i++) ok = h[i] == 0xA5;
    free(h);
    return CHECK(ok, "%s: write outside the buffer", what);
}

#endif
