/* test_tokenizer.c — GPT-2 BPE: pre-tokenisation against expected splits and a
 * regex-by-regex re-derivation, BPE against a naive lowest-rank merge loop on
 * a vocabulary the test learns itself, decode(encode(s)) == s for random
 * bytes, the special token, the cache's reset, and every malformed file. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "tok_util.h"
#include "io/tokenizer.h"
#include "ragged.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];
static char vocab_path[128], merges_path[128];

/* ---- a byte-string vocabulary learned by the test ---- */

typedef struct vocab {
    int n;                 /* tokens */
    char **bytes;          /* (n) */
    int *len;              /* (n) */
    int n_merges;
    int *ma, *mb, *mo;     /* merge r: (ma[r], mb[r]) -> mo[r] */
    int *rank;             /* (n, n) lowest rank of pair (a, b), -1 if none */
    int eot;
} vocab;

static int find_tok(const vocab *v, const char *s, int n) {
    for (int i = 0; i < v->n; i++)
        if (v->len[i] == n && memcmp(v->bytes[i], s, (size_t)n) == 0) return i;
    return -1;
}

static int add_tok(vocab *v, const char *s, int n) {
    v->bytes[v->n] = malloc((size_t)n + 1);
    memcpy(v->bytes[v->n], s, (size_t)n);
    v->len[v->n] = n;
    return v->n++;
}

/* English-like text: words from a small syllable set, punctuation, numbers,
 * contractions, newlines. */
static size_t gen_text(rg_rng *r, char *out, size_t cap) {
    static const char *syl[] = {"th", "e", "an", "in", "er", "on", "re", "at", "st", "en", "or", "ing",
                                "ed", "al", "it", "ou", "is", "ar", "le", "s", "ment", "tion", "w", "b"};
    static const char *punct[] = {",", ".", "!", "?", ";", "'s", "'t", "'re", " 42", " 1999", "\n", "\n\n", "  "};
    size_t n = 0;
    while (n + 64 < cap) {
        if (n) out[n++] = ' ';
        int k = 1 + (int)rg_rng_below(r, 4);
        if (rg_rng_below(r, 10) == 0) out[n++] = (char)('A' + rg_rng_below(r, 26));
        for (int i = 0; i < k; i++) {
            const char *s = syl[rg_rng_below(r, sizeof syl / sizeof *syl)];
            memcpy(out + n, s, strlen(s));
            n += strlen(s);
        }
        if (rg_rng_below(r, 5) == 0) {
            const char *p = punct[rg_rng_below(r, sizeof punct / sizeof *punct)];
            memcpy(out + n, p, strlen(p));
            n += strlen(p);
        }
    }
    return n;
}

/* Learns n_merges merges on text (most frequent pair, ties to the smallest
 * ids), starting from 256 byte tokens in a shuffled id order. */
static vocab learn(rg_rng *r, const char *text, size_t tn, int n_merges) {
    vocab v = {0};
    int cap = 256 + n_merges + 1;
    v.bytes = calloc((size_t)cap, sizeof *v.bytes);
    v.len = calloc((size_t)cap, sizeof *v.len);
    v.ma = malloc(sizeof(int) * (size_t)n_merges);
    v.mb = malloc(sizeof(int) * (size_t)n_merges);
    v.mo = malloc(sizeof(int) * (size_t)n_merges);
    int perm[256];
    for (int i = 0; i < 256; i++) perm[i] = i;
    for (int i = 255; i > 0; i--) {
        int j = (int)rg_rng_below(r, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int i = 0; i < 256; i++) {
        char c = (char)perm[i];
        add_tok(&v, &c, 1);
    }
    /* the corpus as pieces of symbols */
    int *sym = malloc(sizeof(int) * tn), *start = malloc(sizeof(int) * (tn + 1)), np = 0;
    int byte_id[256];
    for (int i = 0; i < 256; i++) byte_id[perm[i]] = i;
    for (size_t p = 0; p < tn;) {
        size_t e = rg_pretok_next((const uint8_t *)text, tn, p);
        start[np++] = (int)p;
        p = e;
    }
    start[np] = (int)tn;
    for (size_t i = 0; i < tn; i++) sym[i] = byte_id[(uint8_t)text[i]];
    int *cnt = calloc((size_t)cap * (size_t)cap, sizeof(int));
    for (int m = 0; m < n_merges; m++) {
        memset(cnt, 0, sizeof(int) * (size_t)cap * (size_t)cap);
        for (int w = 0; w < np; w++) {
            int prev = -1;
            for (int i = start[w]; i < start[w + 1]; i++) {
                if (sym[i] < 0) continue;
                if (prev >= 0) cnt[sym[prev] * cap + sym[i]]++;
                prev = i;
            }
        }
        int best = -1;
        for (int k = 0; k < cap * cap; k++)
            if (cnt[k] > 0 && (best < 0 || cnt[k] > cnt[best])) best = k;
        if (best < 0) break;
        int a = best / cap, b = best % cap;
        char buf[512];
        memcpy(buf, v.bytes[a], (size_t)v.len[a]);
        memcpy(buf + v.len[a], v.bytes[b], (size_t)v.len[b]);
        int o = find_tok(&v, buf, v.len[a] + v.len[b]);
        if (o < 0) o = add_tok(&v, buf, v.len[a] + v.len[b]);
        v.ma[m] = a;
        v.mb[m] = b;
        v.mo[m] = o;
        v.n_merges = m + 1;
        for (int w = 0; w < np; w++) { /* merge left to right */
            int prev = -1;
            for (int i = start[w]; i < start[w + 1]; i++) {
                if (sym[i] < 0) continue;
                if (prev >= 0 && sym[prev] == a && sym[i] == b) {
                    sym[prev] = o;
                    sym[i] = -1;
                    prev = -1; /* the merged symbol cannot pair again in this pass */
                    continue;
                }
                prev = i;
            }
        }
    }
    v.eot = add_tok(&v, "<|endoftext|>", 13);
    v.rank = malloc(sizeof(int) * (size_t)v.n * (size_t)v.n);
    for (int k = 0; k < v.n * v.n; k++) v.rank[k] = -1;
    for (int m = 0; m < v.n_merges; m++)
        if (v.rank[v.ma[m] * v.n + v.mb[m]] < 0) v.rank[v.ma[m] * v.n + v.mb[m]] = m;
    free(sym);
    free(start);
    free(cnt);
    return v;
}

static void free_vocab(vocab *v) {
    for (int i = 0; i < v->n; i++) free(v->bytes[i]);
    free(v->bytes);
    free(v->len);
    free(v->ma);
    free(v->mb);
    free(v->mo);
    free(v->rank);
}

static const void *token_of(const void *vp, int i, int *len) {
    const vocab *v = vp;
    *len = v->len[i];
    return v->bytes[i];
}

static void write_files(const vocab *v) {
    tt_write_vocab_merges(vocab_path, merges_path, v, v->n, token_of, v->n_merges, v->ma, v->mb, true);
}

/* ---- references ---- */

/* GPT-2's bpe(): merge every occurrence of the lowest-ranked pair, left to right, repeat. */
static int ref_bpe(const vocab *v, const uint8_t *s, int n, int *out) {
    int k = n;
    for (int i = 0; i < n; i++) out[i] = find_tok(v, (const char *)s + i, 1);
    for (;;) {
        int best = -1;
        for (int i = 0; i + 1 < k; i++) {
            int r = v->rank[out[i] * v->n + out[i + 1]];
            if (r >= 0 && (best < 0 || r < best)) best = r;
        }
        if (best < 0) return k;
        int a = v->ma[best], b = v->mb[best], j = 0;
        for (int i = 0; i < k; i++) {
            if (i + 1 < k && out[i] == a && out[i + 1] == b) {
                out[j++] = v->mo[best];
                i++;
            } else {
                out[j++] = out[i];
            }
        }
        k = j;
    }
}

/* The regex, alternative by alternative, over decoded characters. */
static int ref_pretok(const uint8_t *s, int n, int *ends) {
    int *off = malloc(sizeof(int) * ((size_t)n + 1)), *cls = malloc(sizeof(int) * ((size_t)n + 1)), nc = 0;
    uint32_t *cp = malloc(sizeof(uint32_t) * ((size_t)n + 1));
    for (int p = 0; p < n;) {
        size_t k = rg_utf8_decode(s + p, (size_t)(n - p), &cp[nc]);
        if (!k) { cp[nc] = 0xFFFFFFFF; cls[nc] = RG_CHAR_OTHER; k = 1; }
        else cls[nc] = (int)rg_char_class_of(cp[nc]);
        off[nc++] = p;
        p += (int)k;
    }
    off[nc] = n;
    int ne = 0;
    for (int i = 0; i < nc;) {
        int m = -1;
        if (cp[i] == '\'') {
            static const char *c[] = {"s", "t", "re", "ve", "m", "ll", "d"};
            for (int a = 0; a < 7 && m < 0; a++) {
                int L = (int)strlen(c[a]);
                bool ok = i + L < nc;
                for (int q = 0; q < L && ok; q++) ok = cp[i + 1 + q] == (uint32_t)c[a][q];
                if (ok) m = i + 1 + L;
            }
        }
        for (int k = RG_CHAR_LETTER; k <= RG_CHAR_OTHER && m < 0; k++) {
            if (k == RG_CHAR_SPACE) continue;
            int j = i;
            if (cp[j] == ' ') j++;
            if (j < nc && cls[j] == k) {
                while (j < nc && cls[j] == k) j++;
                m = j;
            }
        }
        if (m < 0 && cls[i] == RG_CHAR_SPACE) {
            int j = i;
            while (j < nc && cls[j] == RG_CHAR_SPACE) j++;
            for (int k = j; k > i && m < 0; k--)
                if (k == nc || cls[k] == RG_CHAR_SPACE) m = k; /* \s+(?!\S) */
            if (m < 0) m = j;                                 /* \s+ */
        }
        ends[ne++] = off[m];
        i = m;
    }
    free(off);
    free(cls);
    free(cp);
    return ne;
}

/* ---- tests ---- */

static void test_splits(void) {
    /* each case: pieces separated by '|' ('|' itself never occurs in them) */
    static const char *cases[] = {
        "Hello| world|!",
        "I|'m| here|,| you|'re| not|'s|ure",
        "IT|'|S| BIG| DON|'|T",
        "a|   \n\n\t| b",
        " | x",
        "x| \n  ",
        "abc|123|def| 456|x",
        "\n|\n|x",
        " caf\xc3\xa9| \xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82| \xe4\xb8\xad\xe6\x96\x87",
        "\xf0\x9f\x98\x80\xf0\x9f\x98\x81| hi| \xf0\x9f\x98\x80",
        "a|\xff\x80| b|\x80",
        "x|\0\0|y",
        " '|s| ''|ll",
        "3\xc2\xbd|x| \xce\xb1\xce\xb2|\xc2\xb2",
    };
    static const size_t lens[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const char *spec = cases[c];
        size_t sl = lens[c] ? lens[c] : strlen(spec);
        uint8_t text[128];
        size_t ends[32], n = 0, ne = 0;
        for (size_t i = 0; i < sl; i++) {
            if (spec[i] == '|') ends[ne++] = n;
            else text[n++] = (uint8_t)spec[i];
        }
        ends[ne++] = n;
        size_t got = 0, pos = 0;
        bool ok = true;
        while (pos < n) {
            size_t e = rg_pretok_next(text, n, pos);
            ok = ok && got < ne && e == ends[got];
            got++;
            pos = e;
        }
        CHECK(ok && got == ne, "pre-tokenisation of case %zu ('%s'): %zu pieces, expected %zu", c, spec, got, ne);
    }
}

/* Random text from fragments chosen to hit every branch. */
static size_t gen_tricky(rg_rng *r, uint8_t *out, size_t cap) {
    static const char *frag[] = {"a", "Z", "the", " ", "  ", "\n", "\t", "\r\n", "'", "'s", "'S", "'ll", "'ve", "'x",
                                 "7", "42", ".", "!!", "\xc3\xa9", "\xd0\xb6", "\xe4\xb8\xad", "\xf0\x9f\x98\x80",
                                 "\xff", "\x80", "\xc3", "\xe2\x82", "\0", "<|endoftext|>", "<|", "\xc2\xa0",
                                 "\xe3\x80\x80", "\xd9\xa3", "\xcc\x81"};
    size_t n = 0, want = rg_rng_below(r, cap);
    while (n < want) {
        const char *f = frag[rg_rng_below(r, sizeof frag / sizeof *frag)];
        size_t l = f[0] ? strlen(f) : 1;
        if (n + l > cap) break;
        memcpy(out + n, f, l);
        n += l;
    }
    return n;
}

static void test_pretok_reference(rg_rng *r, int iters) {
    uint8_t buf[400];
    int ends[400];
    int bad = 0;
    for (int it = 0; it < iters; it++) {
        size_t n = it % 3 ? gen_tricky(r, buf, sizeof buf) : rg_rng_below(r, sizeof buf);
        if (it % 3 == 0)
            for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)rg_rng_below(r, 256);
        int ne = ref_pretok(buf, (int)n, ends), k = 0;
        bool ok = true;
        for (size_t pos = 0; pos < n; k++) {
            size_t e = rg_pretok_next(buf, n, pos);
            ok = ok && k < ne && (int)e == ends[k];
            pos = e;
        }
        if (!ok || k != ne) bad++;
    }
    CHECK(bad == 0, "pre-tokenisation differs from the regex re-derivation on %d of %d strings", bad, iters);
}

/* Encodes with the library and with pretok + ref_bpe; both must agree. */
static bool same_as_reference(rg_tokenizer *t, const vocab *v, const uint8_t *s, size_t n, unsigned flags) {
    rg_token_buf got = {0};
    if (rg_tokenizer_encode(t, s, n, flags, &got) != RG_OK) return false;
    int *ref = malloc(sizeof(int) * (n + 1));
    size_t k = 0;
    int *tmp = malloc(sizeof(int) * (n + 1));
    for (size_t seg = 0; seg <= n;) {
        size_t at = n;
        if (flags & RG_TOKENIZE_ALLOW_SPECIAL)
            for (size_t i = seg; i + 13 <= n; i++)
                if (memcmp(s + i, "<|endoftext|>", 13) == 0) { at = i; break; }
        for (size_t p = seg; p < at;) {
            size_t e = rg_pretok_next(s, at, p);
            int m = ref_bpe(v, s + p, (int)(e - p), tmp);
            memcpy(ref + k, tmp, sizeof(int) * (size_t)m);
            k += (size_t)m;
            p = e;
        }
        if (at == n) break;
        ref[k++] = v->eot;
        seg = at + 13;
    }
    bool ok = got.n == k && (k == 0 || memcmp(got.ids, ref, k * sizeof(int)) == 0);
    free(ref);
    free(tmp);
    rg_token_buf_free(&got);
    return ok;
}

static void test_bpe(rg_tokenizer *t, const vocab *v, rg_rng *r, int iters, const char *train, size_t tn) {
    int bad = 0, bad_rt = 0;
    uint8_t buf[600];
    for (int it = 0; it < iters; it++) {
        size_t n;
        if (it % 3 == 0) { /* a slice of English-like text */
            n = rg_rng_below(r, sizeof buf);
            size_t at = rg_rng_below(r, tn - n);
            memcpy(buf, train + at, n);
        } else if (it % 3 == 1) {
            n = gen_tricky(r, buf, sizeof buf);
        } else {
            n = rg_rng_below(r, sizeof buf);
            for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)rg_rng_below(r, 256);
        }
        unsigned flags = it % 2 ? RG_TOKENIZE_ALLOW_SPECIAL : 0;
        if (!same_as_reference(t, v, buf, n, flags)) bad++;
        rg_token_buf ids = {0};
        rg_byte_buf back = {0};
        bool ok = rg_tokenizer_encode(t, buf, n, flags, &ids) == RG_OK &&
                  rg_tokenizer_decode(t, ids.ids, ids.n, &back) == RG_OK && back.n == n &&
                  (n == 0 || memcmp(back.data, buf, n) == 0);
        if (!ok) bad_rt++;
        rg_token_buf_free(&ids);
        rg_byte_buf_free(&back);
    }
    CHECK(bad == 0, "BPE differs from the naive reference on %d of %d strings", bad, iters);
    CHECK(bad_rt == 0, "decode(encode(s)) != s on %d of %d strings", bad_rt, iters);

    /* one long word (the heap path on thousands of symbols), and long whitespace */
    size_t big = 3000;
    uint8_t *w = malloc(big);
    for (size_t i = 0; i < big; i++) w[i] = (uint8_t)"thesingonerat"[rg_rng_below(r, 13)];
    CHECK(same_as_reference(t, v, w, big, 0), "BPE of a %zu-letter word differs from the reference", big);
    memset(w, ' ', big);
    w[big - 1] = 'x';
    CHECK(same_as_reference(t, v, w, big, 0), "BPE of %zu spaces and a letter differs from the reference", big - 1);
    free(w);
}

static void test_special(rg_tokenizer *t, const vocab *v) {
    const char *s = "a<|endoftext|>b <|endoftext|><|endoftext|>";
    int32_t eot = rg_tokenizer_eot_id(t);
    CHECK(eot == v->eot, "eot id %d, expected %d", (int)eot, v->eot);
    rg_token_buf on = {0}, off = {0};
    CHECK(rg_tokenizer_encode(t, s, strlen(s), RG_TOKENIZE_ALLOW_SPECIAL, &on) == RG_OK, "encode: %s", rg_last_error());
    CHECK(rg_tokenizer_encode(t, s, strlen(s), 0, &off) == RG_OK, "encode: %s", rg_last_error());
    size_t n_on = 0, n_off = 0;
    for (size_t i = 0; i < on.n; i++) n_on += on.ids[i] == eot;
    for (size_t i = 0; i < off.n; i++) n_off += off.ids[i] == eot;
    CHECK(n_on == 3 && n_off == 0, "special token: %zu EOTs when allowed (expected 3), %zu when not (expected 0)",
          n_on, n_off);
    CHECK(rg_tokenizer_encode(t, s, 3, 0x80, &on) == RG_ERR_INVALID_ARG, "unknown flags accepted");
    rg_token_buf_free(&on);
    rg_token_buf_free(&off);
}

static void test_cache_reset(rg_tokenizer *t, const vocab *v) {
    /* more distinct pieces than the cache holds (2^17), each checked twice */
    size_t n_words = 150000, cap = n_words * 8;
    uint8_t *text = malloc(cap);
    size_t n = 0;
    for (size_t i = 0; i < n_words; i++) {
        text[n++] = ' ';
        for (size_t x = i + 1; x; x /= 26) text[n++] = (uint8_t)('a' + x % 26);
    }
    bool ok = same_as_reference(t, v, text, n, 0) && same_as_reference(t, v, text, n, 0);
    CHECK(ok, "encoding %zu distinct words (cache resets) differs from the reference", n_words);
    free(text);
}

static void write_text(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    fputs(s, f);
    fclose(f);
}

static void expect_load_error(const char *vocab_text, const char *merges_text, rg_status want, const char *needle) {
    char vp[160], mp[160];
    snprintf(vp, sizeof vp, "%s/bad_vocab.json", dir);
    snprintf(mp, sizeof mp, "%s/bad_merges.txt", dir);
    write_text(vp, vocab_text ? vocab_text : "");
    write_text(mp, merges_text ? merges_text : "");
    rg_tokenizer *t = (rg_tokenizer *)1;
    rg_status st = rg_tokenizer_load(vocab_text ? vp : vocab_path, merges_text ? mp : merges_path, &t);
    CHECK(st == want && t == NULL && strstr(rg_last_error(), needle),
          "bad file: status %s (expected %s), message '%s' (expected to contain '%s')", rg_status_str(st),
          rg_status_str(want), rg_last_error(), needle);
    remove(vp);
    remove(mp);
}

static void test_errors(rg_tokenizer *t) {
    rg_tokenizer *x = NULL;
    CHECK(rg_tokenizer_load("/nonexistent/vocab.json", merges_path, &x) == RG_ERR_IO &&
              strstr(rg_last_error(), "/nonexistent/vocab.json"),
          "missing file: %s", rg_last_error());
    expect_load_error("{\"a\": 1,\n\"b\" 2}", NULL, RG_ERR_FORMAT, "bad_vocab.json: line 2");
    expect_load_error("{\"a\": 1, \"b\": -2}", NULL, RG_ERR_FORMAT, "bad_vocab.json:1");
    expect_load_error("{\"a\": 1, \"b\": 1}", NULL, RG_ERR_FORMAT, "given twice");
    expect_load_error("{\"a\": 0}", NULL, RG_ERR_FORMAT, "single byte");
    expect_load_error("{\"\\u4e2d\": 0}", NULL, RG_ERR_FORMAT, "U+4E2D");
    expect_load_error(NULL, "#version: 0.2\nt h\nzz q q\n", RG_ERR_FORMAT, "bad_merges.txt:3");
    expect_load_error(NULL, "t h\n\xc4\xa0 \xe4\xb8\xad\n", RG_ERR_FORMAT, "bad_merges.txt:2");
    expect_load_error(NULL, "t h\nq z\n", RG_ERR_FORMAT, "merged token not in the vocabulary");

    int32_t ids[3] = {1, rg_tokenizer_vocab_size(t), 2};
    rg_byte_buf out = {0};
    CHECK(rg_tokenizer_decode(t, ids, 3, &out) == RG_ERR_INVALID_ARG && out.n == 0 &&
              strstr(rg_last_error(), "ids[1]"),
          "decode of an unknown id: %s", rg_last_error());
    ids[1] = -5;
    CHECK(rg_tokenizer_decode(t, ids, 3, &out) == RG_ERR_INVALID_ARG && strstr(rg_last_error(), "-5"),
          "decode of a negative id: %s", rg_last_error());
    rg_byte_buf_free(&out);
    rg_token_buf tb = {0};
    CHECK(rg_tokenizer_encode(NULL, "a", 1, 0, &tb) == RG_ERR_INVALID_ARG, "encode with NULL tokenizer");
    CHECK(rg_tokenizer_encode(t, NULL, 1, 0, &tb) == RG_ERR_INVALID_ARG, "encode with NULL text");
    CHECK(rg_tokenizer_encode(t, NULL, 0, 0, &tb) == RG_OK && tb.n == 0, "encode of nothing");
    rg_token_buf_free(&tb);
}

int main(void) {
    rg_rng r;
    rg_test_init("test_tokenizer", &r);
    bool quick = rg_test_quick();
    snprintf(dir, sizeof dir, "/tmp/rg_tok_XXXXXX");
    if (!mkdtemp(dir)) {
        printf("cannot create a temporary directory\n");
        return 1;
    }
    snprintf(vocab_path, sizeof vocab_path, "%s/vocab.json", dir);
    snprintf(merges_path, sizeof merges_path, "%s/merges.txt", dir);

    test_splits();
    test_pretok_reference(&r, quick ? 2000 : 20000);

    size_t tn = 200000;
    char *train = malloc(tn);
    tn = gen_text(&r, train, tn);
    vocab v = learn(&r, train, quick ? 60000 : tn, quick ? 120 : 300);
    write_files(&v);
    rg_tokenizer *t = NULL;
    rg_status st = rg_tokenizer_load(vocab_path, merges_path, &t);
    CHECK(st == RG_OK, "load: %s", rg_last_error());
    if (st == RG_OK) {
        CHECK(rg_tokenizer_vocab_size(t) == v.n, "vocab size %d, expected %d", (int)rg_tokenizer_vocab_size(t), v.n);
        test_bpe(t, &v, &r, quick ? 300 : 3000, train, tn);
        test_special(t, &v);
        if (!quick) test_cache_reset(t, &v);
        test_errors(t);
        /* the text it learned from compresses (the merges are used at all) */
        rg_token_buf ids = {0};
        rg_tokenizer_encode(t, train, 20000, 0, &ids);
        CHECK(ids.n < 20000 / 2, "%zu tokens for 20000 bytes of training text", ids.n);
        rg_token_buf_free(&ids);
    }
    rg_tokenizer_free(t);
    free_vocab(&v);
    free(train);
    remove(vocab_path);
    remove(merges_path);
    rmdir(dir);
    return rg_test_finish();
}
