/* lengths.c — batches of sequence lengths from a file or a seed (see lengths.h). */
#include "lengths.h"
#include "rand.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lengths_free(lengths_set *s) {
    free(s->start);
    free(s->lens);
    memset(s, 0, sizeof *s);
}

/* Appends x to *arr (length *n, capacity *cap); -1 when out of memory. */
static int push(int32_t **arr, int *n, int *cap, int32_t x) {
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 256;
        int32_t *p = realloc(*arr, (size_t)nc * sizeof *p);
        if (!p) return -1;
        *arr = p;
        *cap = nc;
    }
    (*arr)[(*n)++] = x;
    return 0;
}

int lengths_read(const char *path, lengths_set *out, char *err, size_t err_size) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) { snprintf(err, err_size, "%s: cannot open: %s", path, strerror(errno)); return -1; }
    lengths_set s = {0};
    int n_lens = 0, cap_lens = 0, n_start = 0, cap_start = 0, line_no = 0;
    char line[1 << 16];
    int rc = push(&s.start, &n_start, &cap_start, 0);
    while (rc == 0 && fgets(line, sizeof line, f)) {
        line_no++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n' && !feof(f)) {
            snprintf(err, err_size, "%s:%d: line longer than %zu characters", path, line_no, sizeof line - 2);
            rc = -2;
            break;
        }
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        int64_t total = 0;
        int in_line = 0;
        for (char *tok = strtok(line, " \t\r\n,"); tok; tok = strtok(NULL, " \t\r\n,")) {
            char *end;
            errno = 0;
            long x = strtol(tok, &end, 10);
            if (*end || errno || x < 1 || x > INT32_MAX) {
                snprintf(err, err_size, "%s:%d: expected a positive sequence length, got '%s'", path, line_no, tok);
                rc = -2;
                break;
            }
            total += x;
            if (total > INT32_MAX) {
                snprintf(err, err_size, "%s:%d: the batch has more than %d tokens", path, line_no, INT32_MAX);
                rc = -2;
                break;
            }
            if (push(&s.lens, &n_lens, &cap_lens, (int32_t)x)) { rc = -1; break; }
            if (x > s.max_len) s.max_len = (int32_t)x;
            in_line++;
        }
        if (rc == 0 && in_line) {
            if (push(&s.start, &n_start, &cap_start, n_lens)) rc = -1;
            else s.n_batches++;
        }
    }
    if (rc == 0 && ferror(f)) { snprintf(err, err_size, "%s: read error", path); rc = -2; }
    fclose(f);
    if (rc == -1) snprintf(err, err_size, "%s: out of memory", path);
    if (rc == 0 && s.n_batches == 0) { snprintf(err, err_size, "%s: no batches (every line is empty or a comment)", path); rc = -2; }
    if (rc) { lengths_free(&s); return -1; }
    *out = s;
    return 0;
}

int lengths_uniform(int n_batches, int batch_size, int32_t max_len, uint64_t seed, lengths_set *out,
                    char *err, size_t err_size) {
    memset(out, 0, sizeof *out);
    if (n_batches < 1 || batch_size < 1 || max_len < 2 || (int64_t)batch_size * (max_len - 1) > INT32_MAX ||
        (int64_t)n_batches * batch_size > INT32_MAX) {
        snprintf(err, err_size, "cannot generate %d batches of %d lengths below %d", n_batches, batch_size, max_len);
        return -1;
    }
    lengths_set s = {0};
    s.start = malloc(((size_t)n_batches + 1) * sizeof *s.start);
    s.lens = malloc((size_t)n_batches * (size_t)batch_size * sizeof *s.lens);
    if (!s.start || !s.lens) {
        lengths_free(&s);
        snprintf(err, err_size, "out of memory generating lengths");
        return -1;
    }
    uint64_t st = seed;
    for (int b = 0; b <= n_batches; b++) s.start[b] = b * batch_size;
    for (int i = 0; i < n_batches * batch_size; i++) {
        s.lens[i] = 1 + (int32_t)tool_rand_below(&st, (uint64_t)(max_len - 1));
        if (s.lens[i] > s.max_len) s.max_len = s.lens[i];
    }
    s.n_batches = n_batches;
    *out = s;
    return 0;
}
