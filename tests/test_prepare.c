/* test_prepare.c — `ragged prepare` round trip: text files -> shards -> the
 * documents read back are, token for token, the tokenizer's encoding of each
 * expected document (the library's rg_tokenizer_encode on the text the test
 * cut itself), EOT-first, in input order; one document per file (empty file
 * skipped, no trailing newline, non-UTF-8 bytes), --delimiter edge cases
 * (delimiter at the start, at the end, doubled, escapes), several shards,
 * the --val-docs split, stdin; errors name the file or the pattern, and a
 * failed run leaves no shard behind. Runs the built ./ragged (ctest's cwd). */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "cli_util.h"
#include "ragged.h"
#include <glob.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64], tokdir[96];
static rg_tokenizer *tok;

/* A small GPT-2-style tokenizer: 256 byte tokens, a few merges, EOT. */
static void write_tokenizer(void) {
    snprintf(tokdir, sizeof tokdir, "%s/tok", dir);
    mkdir(tokdir, 0700);
    char p[160];
    snprintf(p, sizeof p, "%s/vocab.json", tokdir);
    FILE *f = fopen(p, "wb");
    fprintf(f, "{");
    unsigned extra = 256;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        unsigned cp = printable ? (unsigned)b : extra++;
        fprintf(f, "%s\"", b ? ", " : "");
        if (cp == '"' || cp == '\\') fprintf(f, "\\%c", (char)cp);
        else if (cp < 0x80) fputc((int)cp, f);
        else fprintf(f, "%c%c", 0xC0 | (cp >> 6), 0x80 | (cp & 0x3F));
        fprintf(f, "\": %d", b);
    }
    /* U+0120 (Ġ) stands for the space */
    fprintf(f, ", \"th\": 256, \"the\": 257, \"\xc4\xa0t\": 258, \"\xc4\xa0the\": 259, \"in\": 260, \"<|endoftext|>\": 261}\n");
    fclose(f);
    snprintf(p, sizeof p, "%s/merges.txt", tokdir);
    cli_write_file(p, "#version: 0.2\nt h\nth e\n\xc4\xa0 t\n\xc4\xa0 the\ni n\n");
    char vp[160];
    snprintf(vp, sizeof vp, "%s/vocab.json", tokdir);
    CHECK(rg_tokenizer_load(vp, p, &tok) == RG_OK, "test tokenizer: %s", rg_last_error());
}

static void write_bytes(const char *path, const void *s, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(s, 1, n, f);
    fclose(f);
}

/* Expected documents: (pointer, length) pairs. */
typedef struct docs { int n; const char *s[256]; size_t len[256]; } docs;
static void doc_add(docs *d, const char *s, size_t n) { d->s[d->n] = s; d->len[d->n++] = n; }

/* Reads all shards of a glob in order and checks they hold exactly the
 * encodings of want->s[first..first+count), EOT-first. */
static void check_shards(const char *pattern, const docs *want, int first, int count, const char *what) {
    glob_t g;
    int eot = rg_tokenizer_eot_id(tok);
    rg_token_buf ref = {0};
    for (int i = first; i < first + count; i++) {
        int32_t e = eot;
        rg_token_buf one = {0};
        rg_tokenizer_encode(tok, want->s[i], want->len[i], 0, &one);
        /* append EOT then the document */
        size_t need = ref.n + one.n + 1;
        if (need > ref.cap) {
            ref.ids = realloc(ref.ids, need * 2 * sizeof *ref.ids);
            ref.cap = need * 2;
        }
        ref.ids[ref.n++] = e;
        memcpy(ref.ids + ref.n, one.ids, one.n * sizeof *one.ids);
        ref.n += one.n;
        rg_token_buf_free(&one);
    }
    size_t at = 0;
    int64_t n_docs = 0;
    bool same = true;
    if (glob(pattern, 0, NULL, &g) != 0) {
        CHECK(count == 0, "%s: no shard matches %s", what, pattern);
        free(ref.ids);
        return;
    }
    for (size_t k = 0; k < g.gl_pathc; k++) {
        rg_shard s;
        if (rg_shard_read(g.gl_pathv[k], eot, &s) != RG_OK) {
            CHECK(false, "%s: %s", what, rg_last_error());
            continue;
        }
        n_docs += s.n_docs;
        for (int64_t t = 0; t < s.n_tokens; t++, at++) same = same && at < ref.n && s.tokens[t] == ref.ids[at];
        rg_shard_free(&s);
    }
    CHECK(same && at == ref.n && n_docs == count, "%s: shards hold %zu tokens in %lld documents, expected %zu in %d "
          "(identical: %d)", what, at, (long long)n_docs, ref.n, count, (int)same);
    globfree(&g);
    free(ref.ids);
}

static int run(const char *args, const char **out, const char **err) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "prepare --tokenizer %s %s", tokdir, args);
    return cli_run(dir, cmd, out, err);
}

static void rm_glob(const char *pattern) {
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0) return;
    for (size_t k = 0; k < g.gl_pathc; k++) remove(g.gl_pathv[k]);
    globfree(&g);
}

static void test_files(void) {
    char in[128], p[192], args[1024], pat[192];
    snprintf(in, sizeof in, "%s/in", dir);
    mkdir(in, 0700);
    static const char a[] = "the theme in the thin inn\nsecond line\n", b[] = "no trailing newline: the end";
    static const char c[] = "bytes \xff\xfe\xc3( and \xe4\xb8\xad \x00 nul";
    snprintf(p, sizeof p, "%s/a.txt", in);
    write_bytes(p, a, sizeof a - 1);
    snprintf(p, sizeof p, "%s/b.txt", in);
    write_bytes(p, b, sizeof b - 1);
    snprintf(p, sizeof p, "%s/c.txt", in);
    write_bytes(p, c, sizeof c - 1);
    snprintf(p, sizeof p, "%s/d_empty.txt", in);
    write_bytes(p, "", 0);
    snprintf(p, sizeof p, "%s/.hidden", in);
    write_bytes(p, "hidden", 6);
    docs want = {0};
    doc_add(&want, a, sizeof a - 1);
    doc_add(&want, b, sizeof b - 1);
    doc_add(&want, c, sizeof c - 1);
    const char *out, *err;
    snprintf(args, sizeof args, "--out %s/files %s", dir, in);
    int rc = run(args, &out, &err);
    CHECK(rc == 0 && strstr(out, "prepared 3 documents (1 empty skipped)"), "directory input: rc %d\n%s%s", rc, out, err);
    snprintf(pat, sizeof pat, "%s/files_train_*.bin", dir);
    check_shards(pat, &want, 0, 3, "one document per file");
    rm_glob(pat);
    /* the same through a quoted glob, and c.txt through stdin */
    snprintf(args, sizeof args, "--out %s/files '%s/[ab].txt' - < %s/c.txt", dir, in, in);
    rc = run(args, &out, &err);
    CHECK(rc == 0 && strstr(out, "prepared 3 documents"), "glob + stdin: rc %d\n%s%s", rc, out, err);
    check_shards(pat, &want, 0, 3, "glob + stdin");
    rm_glob(pat);
}

static void test_delimiter(rg_rng *rp) {
    char p[192], args[1024], pat[192];
    const char *out, *err;
    /* delimiter at the start, doubled, at the end: three real documents */
    static const char t1[] = "\n\nthe first\n\nsecond one\n\n\n\nthird, no newline at its end\n\n";
    snprintf(p, sizeof p, "%s/t1.txt", dir);
    write_bytes(p, t1, sizeof t1 - 1);
    docs want = {0};
    doc_add(&want, "the first", 9);
    doc_add(&want, "second one", 10);
    doc_add(&want, "third, no newline at its end", 28);
    snprintf(args, sizeof args, "--out %s/d1 --delimiter '\\n\\n' %s", dir, p);
    int rc = run(args, &out, &err);
    CHECK(rc == 0 && strstr(out, "prepared 3 documents (3 empty skipped)"), "delimiter edges: rc %d\n%s%s", rc, out, err);
    snprintf(pat, sizeof pat, "%s/d1_train_*.bin", dir);
    check_shards(pat, &want, 0, 3, "delimiter edges");
    rm_glob(pat);

    /* random documents of any bytes but 0x01, joined by "\x01<doc>", small
     * shards, the first 5 documents to val */
    rg_rng r = *rp;
    static char text[1 << 16];
    static char bufs[200][200];
    docs rd = {0};
    size_t n = 0;
    int n_docs = 120;
    for (int d = 0; d < n_docs; d++) {
        size_t len = 1 + rg_rng_below(&r, 150);
        for (size_t i = 0; i < len; i++) {
            int c = rg_rng_below(&r, 3) ? "the in t h e\n "[rg_rng_below(&r, 13)] : (int)rg_rng_below(&r, 256);
            bufs[d][i] = (char)(c == 1 ? 2 : c);
        }
        doc_add(&rd, bufs[d], len);
        if (d) { memcpy(text + n, "\x01<doc>", 6); n += 6; }
        memcpy(text + n, bufs[d], len);
        n += len;
    }
    snprintf(p, sizeof p, "%s/t2.txt", dir);
    write_bytes(p, text, n);
    snprintf(args, sizeof args, "--out %s/d2 --delimiter '\\x01<doc>' --shard-tokens 500 --val-docs 5 %s", dir, p);
    rc = run(args, &out, &err);
    CHECK(rc == 0 && strstr(out, "val: 5 documents"), "random documents: rc %d\n%s%s", rc, out, err);
    snprintf(pat, sizeof pat, "%s/d2_val_*.bin", dir);
    check_shards(pat, &rd, 0, 5, "val split");
    rm_glob(pat);
    snprintf(pat, sizeof pat, "%s/d2_train_*.bin", dir);
    glob_t g;
    CHECK(glob(pat, 0, NULL, &g) == 0 && g.gl_pathc > 3, "several train shards of at most 500 tokens");
    globfree(&g);
    check_shards(pat, &rd, 5, n_docs - 5, "train split, several shards");
    rm_glob(pat);
}

static void test_errors(void) {
    char args[1024], p[192];
    const char *out, *err;
    int rc = run("", &out, &err);
    CHECK(rc == 2 && strstr(err, "--out"), "no --out: rc %d, %s", rc, err);
    snprintf(args, sizeof args, "--out %s/e", dir);
    rc = run(args, &out, &err);
    CHECK(rc == 2 && strstr(err, "INPUT"), "no input: rc %d, %s", rc, err);
    snprintf(args, sizeof args, "--out %s/e %s/missing.txt", dir, dir);
    rc = run(args, &out, &err);
    CHECK(rc == 1 && strstr(err, "missing.txt"), "missing file named: rc %d, %s", rc, err);
    snprintf(args, sizeof args, "--out %s/e '%s/nothing*.txt'", dir, dir);
    rc = run(args, &out, &err);
    CHECK(rc == 1 && strstr(err, "nothing*.txt") && strstr(err, "matches no file"), "empty glob: rc %d, %s", rc, err);
    snprintf(args, sizeof args, "--out %s/no_such_dir/x %s/t1.txt", dir, dir);
    rc = run(args, &out, &err);
    CHECK(rc == 1 && strstr(err, "no_such_dir") && strstr(err, "no shards were left"), "unwritable output: rc %d, %s", rc, err);
    /* a run that fails after writing shards removes them: the second input is missing */
    snprintf(args, sizeof args, "--out %s/half --shard-tokens 5 %s/t1.txt %s/in %s/t2.txt", dir, dir, dir, dir);
    snprintf(p, sizeof p, "%s/t2.txt", dir);
    remove(p);
    rc = run(args, &out, &err);
    snprintf(p, sizeof p, "%s/half_train_*.bin", dir);
    glob_t g;
    int left = glob(p, 0, NULL, &g) == 0 ? (int)g.gl_pathc : 0;
    if (left) globfree(&g);
    CHECK(rc == 1 && left == 0 && strstr(err, "t2.txt"), "a failed run leaves no shard: rc %d, %d left, %s", rc, left, err);
    snprintf(args, sizeof args, "--out %s/e --delimiter '\\q' %s/t1.txt", dir, dir);
    rc = run(args, &out, &err);
    CHECK(rc == 2 && strstr(err, "--delimiter"), "bad escape: rc %d, %s", rc, err);
    /* a vocabulary beyond uint16 */
    char big[96];
    snprintf(big, sizeof big, "%s/bigtok", dir);
    mkdir(big, 0700);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "sed 's/\"in\": 260/\"in\": 70000/' %s/vocab.json > %s/vocab.json && cp %s/merges.txt %s/",
             tokdir, big, tokdir, big);
    CHECK(system(cmd) == 0, "writing the large vocabulary");
    snprintf(args, sizeof args, "prepare --tokenizer %s --out %s/e %s/t1.txt", big, dir, dir);
    rc = cli_run(dir, args, &out, &err);
    CHECK(rc == 1 && strstr(err, "70001") && strstr(err, "uint16"), "vocabulary too large: rc %d, %s", rc, err);
    rc = cli_run(dir, "prepare --help", &out, &err);
    CHECK(rc == 0 && strstr(out, "--delimiter") && strstr(out, "--val-docs") && strstr(out, "--shard-tokens") &&
              strstr(out, "standard input"),
          "help: %s", out);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

int main(void) {
    rg_rng r;
    rg_test_init("test_prepare", &r);
    if (access("./ragged", X_OK) != 0) {
        printf("./ragged not found (run from the build directory)\n");
        return 77;
    }
    snprintf(dir, sizeof dir, "/tmp/rg_prep_XXXXXX");
    if (!mkdtemp(dir)) return 1;
    write_tokenizer();
    if (!tok) return rg_test_finish();
    test_files();
    test_delimiter(&r);
    test_errors();
    rg_tokenizer_free(tok);
    return rg_test_finish();
}
