/* hf_util.h — shared by tests/hf_parity.c and tests/test_hf_parity.c: path joining and
 * the batch.txt reader (one sequence per non-blank line, whitespace-separated token ids). */
#ifndef RG_TEST_HF_UTIL_H
#define RG_TEST_HF_UTIL_H
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HF_MAX_SEQS 4096

/* dir/name in fresh malloc'ed memory (NULL when out of memory); free it. */
static inline char *hf_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Reads batch.txt into seqs[i] (malloc'ed, free each) and lens[i], at most HF_MAX_SEQS.
 * Returns 0, or prints to stderr and returns 1 (sequences read so far stay in seqs). */
static inline int hf_read_batch(const char *path, int32_t **seqs, int32_t *lens, int32_t *n_seqs) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "read_batch: cannot open %s: %s\n", path, strerror(errno));
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    *n_seqs = 0;
    for (long lineno = 1; getline(&line, &cap, f) >= 0; lineno++) {
        int32_t n = 0, alloc = 16;
        int32_t *toks = malloc((size_t)alloc * sizeof *toks);
        if (!toks) { fprintf(stderr, "read_batch: out of memory\n"); rc = 1; break; }
        char *p = line;
        for (;;) {
            while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
            if (!*p) break;
            char *end;
            errno = 0;
            long v = strtol(p, &end, 10);
            if (end == p || errno || v < 0 || v > INT32_MAX) {
                fprintf(stderr, "read_batch: %s line %ld: bad token id near \"%.20s\"\n", path, lineno, p);
                rc = 1;
                break;
            }
            if (n == alloc) {
                alloc *= 2;
                int32_t *t = realloc(toks, (size_t)alloc * sizeof *toks);
                if (!t) { fprintf(stderr, "read_batch: out of memory\n"); rc = 1; break; }
                toks = t;
            }
            toks[n++] = (int32_t)v;
            p = end;
        }
        if (rc || n == 0) {
            free(toks);
            if (rc) break;
            continue;
        }
        if (*n_seqs == HF_MAX_SEQS) {
            fprintf(stderr, "read_batch: %s: more than %d sequences\n", path, HF_MAX_SEQS);
            free(toks);
            rc = 1;
            break;
        }
        seqs[*n_seqs] = toks;
        lens[(*n_seqs)++] = n;
    }
    free(line);
    fclose(f);
    if (!rc && *n_seqs == 0) {
        fprintf(stderr, "read_batch: %s holds no sequence\n", path);
        rc = 1;
    }
    return rc;
}

#endif
