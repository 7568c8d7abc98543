/* file.c — reading a whole file into memory (see file.h). */
#include "core/file.h"
#include "core/alloc.h"
#include "core/status.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>

rg_status rg_read_file(const char *who, const char *path, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return rg_fail(RG_ERR_IO, "%s: cannot open '%s': %s", who, path, strerror(errno));
    size_t cap = 0, n = 0;
    char *buf = NULL;
    rg_status st = RG_OK;
    for (;;) {
        if (n == cap) { /* grow by doubling: rg_alloc has no realloc */
            size_t ncap = cap ? cap * 2 : (size_t)1 << 16;
            char *nbuf;
            if (ncap < cap) { st = rg_fail(RG_ERR_OVERFLOW, "%s: '%s' is too large", who, path); break; }
            if ((st = rg_alloc((void **)&nbuf, ncap + 1, 1, "file buffer")) != RG_OK) break;
            if (n) memcpy(nbuf, buf, n);
            rg_free(buf);
            buf = nbuf;
            cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) st = rg_fail(RG_ERR_IO, "%s: cannot read '%s': %s", who, path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (st != RG_OK) {
        rg_free(buf);
        return st;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return RG_OK;
}
