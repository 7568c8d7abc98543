/* test_shards.c — llm.c token shards: random documents written across several
 * shards and read back document by document, the raw header and byte layout,
 * shard limits (a document longer than a shard), bad ids, and corrupted
 * headers (magic, version, count beyond or short of the file) rejected. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "ragged.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];

static char *shard_path(const char *prefix, int i) {
    static char p[256];
    snprintf(p, sizeof p, "%s_%06d.bin", prefix, i);
    return p;
}

static bool exists(const char *p) { return access(p, F_OK) == 0; }

static void test_round_trip(rg_rng *r, int n_docs, int64_t limit, int max_len) {
    int32_t eot = (int32_t)rg_rng_below(r, 65536);
    int32_t **docs = malloc(sizeof(int32_t *) * (size_t)n_docs);
    int32_t *lens = malloc(sizeof(int32_t) * (size_t)n_docs);
    int64_t total = 0;
    for (int d = 0; d < n_docs; d++) {
        int shape = (int)rg_rng_below(r, 8);
        lens[d] = shape == 0 ? 0 : shape == 1 ? (int32_t)limit + 3 : (int32_t)rg_rng_below(r, (uint64_t)max_len + 1);
        docs[d] = malloc(sizeof(int32_t) * ((size_t)lens[d] + 1));
        for (int32_t i = 0; i < lens[d]; i++) {
            int32_t v = rg_rng_below(r, 50) == 0 ? 65535 : (int32_t)rg_rng_below(r, 65536);
            docs[d][i] = v == eot ? v ^ 1 : v; /* EOT only as the separator */
        }
        total += lens[d] + 1;
    }
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s/rt", dir);
    rg_shard_writer *w = NULL;
    CHECK(rg_shard_writer_open(prefix, limit, eot, &w) == RG_OK, "open: %s", rg_last_error());
    if (!w) return;
    bool ok = true, tmp_only = true;
    for (int d = 0; d < n_docs; d++) {
        ok = ok && rg_shard_writer_add(w, docs[d], (size_t)lens[d]) == RG_OK;
        /* the shard being written exists only under its temporary name */
        int shards_so_far = 0;
        while (exists(shard_path(prefix, shards_so_far))) shards_so_far++;
        char tmp[300];
        snprintf(tmp, sizeof tmp, "%s.tmp", shard_path(prefix, shards_so_far));
        tmp_only = tmp_only && exists(tmp);
    }
    CHECK(ok, "add: %s", rg_last_error());
    CHECK(tmp_only, "the shard being written is not (only) a .tmp file");
    int32_t n_shards = -1;
    int64_t n_tokens = -1;
    CHECK(rg_shard_writer_close(w, &n_shards, &n_tokens) == RG_OK, "close: %s", rg_last_error());
    CHECK(n_tokens == total, "wrote %lld tokens, expected %lld", (long long)n_tokens, (long long)total);

    /* read back: shards in order, documents in order, each shard within its limit */
    int d = 0, bad_docs = 0, over = 0, early = 0;
    int64_t seen = 0, prev_tokens = -1;
    for (int s = 0; s < n_shards; s++) {
        const char *p = shard_path(prefix, s);
        rg_shard sh;
        if (!CHECK(rg_shard_read(p, eot, &sh) == RG_OK, "read %s: %s", p, rg_last_error())) break;
        if (sh.n_tokens > limit && sh.n_docs != 1) over++;
        /* a shard is cut only when the next document would not fit in it */
        if (prev_tokens >= 0 && sh.n_docs > 0 && prev_tokens + (sh.doc_offsets[1] - sh.doc_offsets[0]) <= limit)
            early++;
        prev_tokens = sh.n_tokens;
        seen += sh.n_tokens;
        for (int64_t k = 0; k < sh.n_docs; k++, d++) {
            int64_t a = sh.doc_offsets[k], b = sh.doc_offsets[k + 1];
            bool same = d < n_docs && sh.tokens[a] == eot && b - a == lens[d] + 1;
            for (int64_t i = 0; same && i < lens[d]; i++) same = sh.tokens[a + 1 + i] == (uint16_t)docs[d][i];
            if (!same) bad_docs++;
        }
        if (s == 0) { /* the raw layout llm.c expects */
            FILE *f = fopen(p, "rb");
            unsigned char h[12], t0[2];
            bool raw = fread(h, 1, 12, f) == 12 && fseek(f, 1024, SEEK_SET) == 0 && fread(t0, 1, 2, f) == 2;
            fclose(f);
            int32_t magic = h[0] | h[1] << 8 | h[2] << 16 | h[3] << 24;
            int32_t ver = h[4] | h[5] << 8, cnt = h[8] | h[9] << 8 | h[10] << 16 | h[11] << 24;
            CHECK(raw && magic == 20240520 && ver == 1 && cnt == sh.n_tokens && (t0[0] | t0[1] << 8) == eot,
                  "raw header %d %d %d, first token %d", magic, ver, cnt, t0[0] | t0[1] << 8);
        }
        rg_shard_free(&sh);
        remove(p);
    }
    CHECK(d == n_docs && bad_docs == 0, "read back %d documents (expected %d), %d differ", d, n_docs, bad_docs);
    CHECK(seen == total, "shards hold %lld tokens, expected %lld", (long long)seen, (long long)total);
    CHECK(early == 0, "%d shards were cut although the next document fitted", early);
    CHECK(over == 0, "%d shards exceed the limit with more than one document", over);
    CHECK(!exists(shard_path(prefix, n_shards)), "a shard beyond the count exists");
    for (int i = 0; i < n_docs; i++) free(docs[i]);
    free(docs);
    free(lens);
}

static void write_raw(const char *p, const int32_t *header, const uint16_t *toks, size_t n, size_t extra) {
    FILE *f = fopen(p, "wb");
    unsigned char h[1024] = {0};
    for (int i = 0; i < 3; i++)
        for (int b = 0; b < 4; b++) h[4 * i + b] = (unsigned char)((uint32_t)header[i] >> (8 * b));
    fwrite(h, 1, 1024, f);
    for (size_t i = 0; i < n; i++) {
        unsigned char t[2] = {(unsigned char)toks[i], (unsigned char)(toks[i] >> 8)};
        fwrite(t, 1, 2, f);
    }
    for (size_t i = 0; i < extra; i++) fputc(0, f);
    fclose(f);
}

static void expect_bad(const char *p, const char *needle) {
    rg_shard s;
    s.n_tokens = 7;
    rg_status st = rg_shard_read(p, 50256, &s);
    CHECK(st == RG_ERR_FORMAT && strstr(rg_last_error(), p) && strstr(rg_last_error(), needle) && s.tokens == NULL &&
              s.n_tokens == 0,
          "corrupt shard: %s '%s' (expected to name '%s')", rg_status_str(st), rg_last_error(), needle);
}

static void test_corrupt(void) {
    char p[128];
    snprintf(p, sizeof p, "%s/bad.bin", dir);
    uint16_t toks[5] = {50256, 1, 2, 50256, 3};
    int32_t good[3] = {20240520, 1, 5};
    write_raw(p, good, toks, 5, 0);
    rg_shard s;
    CHECK(rg_shard_read(p, 50256, &s) == RG_OK && s.n_tokens == 5 && s.n_docs == 2 && s.doc_offsets[1] == 3,
          "valid hand-written shard: %s", rg_last_error());
    rg_shard_free(&s);
    /* tokens before the first EOT form a document of their own */
    uint16_t cut[4] = {7, 8, 50256, 9};
    int32_t h4[3] = {20240520, 1, 4};
    write_raw(p, h4, cut, 4, 0);
    CHECK(rg_shard_read(p, 50256, &s) == RG_OK && s.n_docs == 2 && s.doc_offsets[1] == 2 && s.doc_offsets[2] == 4,
          "shard starting inside a document: %s", rg_last_error());
    rg_shard_free(&s);

    int32_t h[3] = {20240521, 1, 5};
    write_raw(p, h, toks, 5, 0);
    expect_bad(p, "magic");
    h[0] = 20240520, h[1] = 2;
    write_raw(p, h, toks, 5, 0);
    expect_bad(p, "version");
    h[1] = 1, h[2] = 6;
    write_raw(p, h, toks, 5, 0);
    expect_bad(p, "token count");
    h[2] = 4;
    write_raw(p, h, toks, 5, 0);
    expect_bad(p, "token count");
    h[2] = -1;
    write_raw(p, h, toks, 5, 0);
    expect_bad(p, "token count");
    h[2] = 5;
    write_raw(p, h, toks, 5, 1);
    expect_bad(p, "odd byte");
    FILE *f = fopen(p, "wb");
    fputs("short", f);
    fclose(f);
    expect_bad(p, "header");
    remove(p);
    CHECK(rg_shard_read("/nonexistent/x.bin", 1, &s) == RG_ERR_IO && strstr(rg_last_error(), "/nonexistent/x.bin"),
          "missing shard: %s", rg_last_error());
    CHECK(rg_shard_read(p, 70000, &s) == RG_ERR_INVALID_ARG, "eot beyond uint16 accepted");
}

static void test_writer_errors(void) {
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s/err", dir);
    rg_shard_writer *w = (rg_shard_writer *)1;
    CHECK(rg_shard_writer_open(prefix, 0, 1, &w) == RG_ERR_INVALID_ARG && w == NULL, "shard_tokens 0 accepted");
    CHECK(rg_shard_writer_open(prefix, (int64_t)INT32_MAX + 1, 1, &w) == RG_ERR_INVALID_ARG, "huge shard accepted");
    CHECK(rg_shard_writer_open(prefix, 10, 65536, &w) == RG_ERR_INVALID_ARG, "eot 65536 accepted");
    CHECK(rg_shard_writer_open(prefix, 10, 0, &w) == RG_OK, "open: %s", rg_last_error());
    int32_t good[2] = {5, 6}, bad[3] = {1, 65536, 2}, neg[1] = {-1};
    CHECK(rg_shard_writer_add(w, good, 2) == RG_OK, "add: %s", rg_last_error());
    CHECK(rg_shard_writer_add(w, bad, 3) == RG_ERR_INVALID_ARG && strstr(rg_last_error(), "ids[1]"),
          "id 65536: %s", rg_last_error());
    CHECK(rg_shard_writer_add(w, neg, 1) == RG_ERR_INVALID_ARG, "negative id accepted");
    CHECK(rg_shard_writer_add(w, good, 2) == RG_OK, "add after a rejected document: %s", rg_last_error());
    int32_t ns;
    int64_t nt;
    CHECK(rg_shard_writer_close(w, &ns, &nt) == RG_OK && ns == 1 && nt == 6, "close: %d shards %lld tokens", ns,
          (long long)nt);
    rg_shard s;
    CHECK(rg_shard_read(shard_path(prefix, 0), 0, &s) == RG_OK && s.n_docs == 2 && s.n_tokens == 6,
          "rejected document left a trace: %lld tokens", (long long)s.n_tokens);
    rg_shard_free(&s);
    remove(shard_path(prefix, 0));
    /* a directory that does not exist: the first add fails, close reports it */
    CHECK(rg_shard_writer_open("/nonexistent/dir/x", 10, 0, &w) == RG_OK, "open (lazy)");
    CHECK(rg_shard_writer_add(w, good, 2) == RG_ERR_IO && strstr(rg_last_error(), "/nonexistent/dir/x"),
          "unwritable: %s", rg_last_error());
    CHECK(rg_shard_writer_add(w, good, 2) == RG_ERR_IO, "a broken writer accepted a document");
    CHECK(rg_shard_writer_close(w, NULL, NULL) == RG_ERR_IO, "a broken writer closed cleanly");
    /* an empty writer writes nothing */
    CHECK(rg_shard_writer_open(prefix, 10, 0, &w) == RG_OK, "open");
    CHECK(rg_shard_writer_close(w, &ns, &nt) == RG_OK && ns == 0 && nt == 0 && !exists(shard_path(prefix, 0)),
          "empty writer wrote %d shards", ns);
}

int main(void) {
    rg_rng r;
    rg_test_init("test_shards", &r);
    bool quick = rg_test_quick();
    snprintf(dir, sizeof dir, "/tmp/rg_shards_XXXXXX");
    if (!mkdtemp(dir)) {
        printf("cannot create a temporary directory\n");
        return 1;
    }
    test_round_trip(&r, 1, 1, 1);
    test_round_trip(&r, 50, 64, 40);
    test_round_trip(&r, quick ? 200 : 2000, 1000, 300);
    test_round_trip(&r, quick ? 50 : 300, 1 << 16, 5000);
    test_corrupt();
    test_writer_errors();
    rmdir(dir);
    return rg_test_finish();
}
