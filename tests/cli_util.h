/* cli_util.h — for the tests that run the built ./ragged (from the build
 * directory, where ctest starts them): read and write small files, run the
 * CLI with its stdout and stderr captured. */
#ifndef RG_TESTS_CLI_UTIL_H
#define RG_TESTS_CLI_UTIL_H
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

/* Reads a whole file into buf (size bytes, truncated, NUL-terminated); ""
 * when missing. *len (may be NULL) gets the bytes read: the text may hold NUL
 * bytes of its own (a generated token can decode to byte 0). */
static inline const char *cli_slurp_n(const char *path, char *buf, size_t size, size_t *len) {
    buf[0] = 0;
    if (len) *len = 0;
    FILE *f = fopen(path, "r");
    if (!f) return buf;
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = 0;
    if (len) *len = n;
    fclose(f);
    return buf;
}

static inline const char *cli_slurp(const char *path, char *buf, size_t size) {
    return cli_slurp_n(path, buf, size, NULL);
}

/* Bytes of stdout of the last cli_run (stdout may hold NUL bytes). */
static size_t cli_out_len_;
static inline size_t cli_last_out_len(void) { return cli_out_len_; }

static inline void cli_write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) { fputs(text, f); fclose(f); }
}

/* Runs `./ragged ARGS` with its output in files under dir; returns the exit
 * status (-1 when it did not exit), *out and *err its stdout and stderr (held
 * until the next call). */
static inline int cli_run(const char *dir, const char *args, const char **out, const char **err) {
    static char ob[1 << 17], eb[1 << 16];
    char cmd[2048], po[96], pe[96];
    snprintf(po, sizeof po, "%s/out", dir);
    snprintf(pe, sizeof pe, "%s/err", dir);
    snprintf(cmd, sizeof cmd, "./ragged %s >%s 2>%s", args, po, pe);
    int st = system(cmd);
    *out = cli_slurp_n(po, ob, sizeof ob, &cli_out_len_);
    *err = cli_slurp(pe, eb, sizeof eb);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
