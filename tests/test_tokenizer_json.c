/* test_tokenizer_json.c — tokenizer.json (HuggingFace tokenizers) against
 * vocab.json + merges.txt: a random byte-level BPE vocabulary written by the
 * test in both formats (merges as "a b" strings and as ["a", "b"] pairs,
 * <|endoftext|> in the vocabulary or only in added_tokens, raw UTF-8 or \u
 * escapes) must give the same ids on a corpus of tricky strings;
 * rg_tokenizer_load_dir's choice of files; every refused setting named. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "tok_util.h"
#include "ragged.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

/* ---- a random vocabulary: 256 byte tokens (shuffled ids), merges of pairs of
 * tokens over a small alphabet so that they fire on the corpus, EOT last ---- */
enum { MAX_TOK = 1024, MAX_LEN = 12 };
typedef struct vocab {
    int n, n_merges, eot;
    unsigned char bytes[MAX_TOK][MAX_LEN];
    int len[MAX_TOK];
    int ma[MAX_TOK], mb[MAX_TOK];
} vocab;

static int find_tok(const vocab *v, const unsigned char *s, int n) {
    for (int i = 0; i < v->n; i++)
        if (v->len[i] == n && memcmp(v->bytes[i], s, (size_t)n) == 0) return i;
    return -1;
}

static void make_vocab(rg_rng *r, vocab *v, int n_merges) {
    memset(v, 0, sizeof *v);
    int perm[256];
    for (int i = 0; i < 256; i++) perm[i] = i;
    for (int i = 255; i > 0; i--) {
        int j = (int)rg_rng_below(r, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int i = 0; i < 256; i++) {
        v->bytes[perm[i]][0] = (unsigned char)i;
        v->len[perm[i]] = 1;
    }
    v->n = 256;
    static const unsigned char common[] = " etaoinshrd'\n0123\xc3\xa9";
    int tries = 0;
    while (v->n_merges < n_merges && tries++ < 100000) {
        /* a: a single common byte or an earlier merge; b likewise */
        int a = rg_rng_below(r, 2) && v->n > 256 ? 256 + (int)rg_rng_below(r, (uint64_t)(v->n - 256))
                                                 : find_tok(v, &common[rg_rng_below(r, sizeof common - 1)], 1);
        int b = rg_rng_below(r, 3) == 0 && v->n > 256 ? 256 + (int)rg_rng_below(r, (uint64_t)(v->n - 256))
                                                      : find_tok(v, &common[rg_rng_below(r, sizeof common - 1)], 1);
        if (v->len[a] + v->len[b] > MAX_LEN) continue;
        unsigned char cat[MAX_LEN];
        memcpy(cat, v->bytes[a], (size_t)v->len[a]);
        memcpy(cat + v->len[a], v->bytes[b], (size_t)v->len[b]);
        if (find_tok(v, cat, v->len[a] + v->len[b]) >= 0) continue;
        memcpy(v->bytes[v->n], cat, (size_t)(v->len[a] + v->len[b]));
        v->len[v->n] = v->len[a] + v->len[b];
        v->ma[v->n_merges] = a;
        v->mb[v->n_merges] = b;
        v->n_merges++;
        v->n++;
    }
    v->eot = v->n++;
    memcpy(v->bytes[v->eot], "<|endoftext|>", 13);
    v->len[v->eot] = 13;
}

static const void *token_of(const void *vp, int i, int *len) {
    const vocab *v = vp;
    *len = v->len[i];
    return v->bytes[i];
}

static void write_pair(const vocab *v, const char *vp, const char *mp) {
    tt_write_vocab_merges(vp, mp, v, v->n, token_of, v->n_merges, v->ma, v->mb, false);
}

/* Overrides of tokenizer.json's parts: NULL keeps GPT-2's value. */
typedef struct tj_opts {
    bool pairs, escape, eot_in_vocab;
    const char *normalizer, *pre_tokenizer, *post_processor, *decoder, *model_type, *model_extra, *added, *truncation;
    const char *bad_merge;  /* appended to the merges when set */
} tj_opts;

static void write_tj(const vocab *v, const char *path, const tj_opts *o) {
    FILE *f = fopen(path, "wb");
    fprintf(f, "{\n  \"version\": \"1.0\",\n  \"truncation\": %s,\n  \"padding\": null,\n", o->truncation ? o->truncation : "null");
    fprintf(f, "  \"added_tokens\": %s,\n", o->added ? o->added
            : "[{\"id\": %d, \"content\": \"<|endoftext|>\", \"single_word\": false, \"lstrip\": false, "
              "\"rstrip\": false, \"normalized\": true, \"special\": true}]");
    /* (the default's %d is filled below when used) */
    fprintf(f, "  \"normalizer\": %s,\n", o->normalizer ? o->normalizer : "null");
    fprintf(f, "  \"pre_tokenizer\": %s,\n", o->pre_tokenizer ? o->pre_tokenizer
            : "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}");
    fprintf(f, "  \"post_processor\": %s,\n", o->post_processor ? o->post_processor
            : "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": false, \"use_regex\": true}");
    fprintf(f, "  \"decoder\": %s,\n", o->decoder ? o->decoder
            : "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}");
    fprintf(f, "  \"model\": {\n    \"type\": \"%s\", \"dropout\": null, \"unk_token\": null, "
               "\"continuing_subword_prefix\": \"\", \"end_of_word_suffix\": \"\", \"fuse_unk\": false, "
               "\"byte_fallback\": false%s,\n    \"vocab\": {", o->model_type ? o->model_type : "BPE",
            o->model_extra ? o->model_extra : ", \"ignore_merges\": false");
    int k = 0;
    for (int i = 0; i < v->n; i++) {
        if (i == v->eot && !o->eot_in_vocab) continue;
        fprintf(f, "%s\"", k++ ? ", " : "");
        tt_put_token(f, v->bytes[i], v->len[i], true, o->escape);
        fprintf(f, "\": %d", i);
    }
    fprintf(f, "},\n    \"merges\": [");
    for (int m = 0; m < v->n_merges; m++) {
        fprintf(f, "%s\n      %s\"", m ? "," : "", o->pairs ? "[" : "");
        tt_put_token(f, v->bytes[v->ma[m]], v->len[v->ma[m]], true, o->escape);
        fprintf(f, o->pairs ? "\", \"" : " ");
        tt_put_token(f, v->bytes[v->mb[m]], v->len[v->mb[m]], true, o->escape);
        fprintf(f, "\"%s", o->pairs ? "]" : "");
    }
    if (o->bad_merge) fprintf(f, ",\n      %s", o->bad_merge);
    fprintf(f, "\n    ]\n  }\n}\n");
    fclose(f);
}

/* write_tj with the default added_tokens' id filled in. */
static void write_tj_eot(const vocab *v, const char *path, tj_opts o) {
    char added[256];
    if (!o.added) {
        snprintf(added, sizeof added,
                 "[{\"id\": %d, \"content\": \"<|endoftext|>\", \"single_word\": false, \"lstrip\": false, "
                 "\"rstrip\": false, \"normalized\": true, \"special\": true}]", v->eot);
        o.added = added;
    }
    write_tj(v, path, &o);
}

/* ---- tricky strings ---- */
static const char *const fixed_corpus[] = {
    "", "a", " ", "  ", "\n", "\n\n\n", " \n ", "hello world", "Hello  world", "it's", "they're we've I'm you'll he'd",
    "IT'S", "don't'", "'s", "caf\xc3\xa9 na\xc3\xafve", "\xe4\xb8\xad\xe6\x96\x87 text", "emoji \xf0\x9f\x98\x80!",
    "\xff\xfe invalid \xc3", "\xed\xa0\x80 surrogate", "tabs\tand\r\nCRLF", "numbers 12345 3.14", "   leading",
    "trailing   ", "<|endoftext|>", "a<|endoftext|>b", "<|endoftext|><|endoftext|>", "<|endoftext", "x\0y",
    "3rd 1st 2nd", "e e e e e", "the the the", "rehears\xc3\xa9 shore's dots...", "\xc2\xa0nbsp",
};

static size_t random_tricky(rg_rng *r, unsigned char *out, size_t cap) {
    static const char *bits[] = {" ", "  ", "\n", "'s", "'t", "'re", " e", "te", "ta", "th", "sh", "0", "12", "\xc3\xa9",
                                 "\xff", "\xe4\xb8\xad", "<|endoftext|>", "!", "?!", "\t", "rd", "on", "it", "ai"};
    size_t n = 0, k = 1 + rg_rng_below(r, 40);
    for (size_t i = 0; i < k; i++) {
        const char *b = bits[rg_rng_below(r, sizeof bits / sizeof *bits)];
        size_t bl = strlen(b);
        if (n + bl > cap) break;
        memcpy(out + n, b, bl);
        n += bl;
    }
    return n;
}

static bool same_ids(rg_tokenizer *a, rg_tokenizer *b, const void *s, size_t n, unsigned flags, const char *what) {
    rg_token_buf x = {0}, y = {0};
    rg_status sa = rg_tokenizer_encode(a, s, n, flags, &x), sb = rg_tokenizer_encode(b, s, n, flags, &y);
    bool ok = sa == RG_OK && sb == RG_OK && x.n == y.n && (x.n == 0 || !memcmp(x.ids, y.ids, x.n * sizeof *x.ids));
    rg_byte_buf d = {0};
    ok = ok && rg_tokenizer_decode(b, y.ids, y.n, &d) == RG_OK && d.n == n && (n == 0 || !memcmp(d.data, s, n));
    CHECK(ok, "%s: ids differ (or decode differs) on a %zu-byte string (flags %u): %zu vs %zu ids", what, n, flags,
          x.n, y.n);
    rg_token_buf_free(&x);
    rg_token_buf_free(&y);
    rg_byte_buf_free(&d);
    return ok;
}

static void compare_all(rg_rng *r, rg_tokenizer *ref, rg_tokenizer *t, const char *what, int n_random) {
    CHECK(rg_tokenizer_vocab_size(ref) == rg_tokenizer_vocab_size(t) && rg_tokenizer_eot_id(ref) == rg_tokenizer_eot_id(t),
          "%s: vocab %d eot %d, expected %d and %d", what, (int)rg_tokenizer_vocab_size(t), (int)rg_tokenizer_eot_id(t),
          (int)rg_tokenizer_vocab_size(ref), (int)rg_tokenizer_eot_id(ref));
    int bad = 0;
    for (size_t i = 0; i < sizeof fixed_corpus / sizeof *fixed_corpus; i++) {
        size_t n = strlen(fixed_corpus[i]);
        if (!strcmp(fixed_corpus[i], "x")) n = 3; /* "x\0y": its NUL is part of the string */
        for (unsigned fl = 0; fl < 2; fl++) bad += !same_ids(ref, t, fixed_corpus[i], n, fl, what);
    }
    unsigned char buf[512];
    for (int i = 0; i < n_random && bad < 5; i++) {
        size_t n = random_tricky(r, buf, sizeof buf);
        bad += !same_ids(ref, t, buf, n, (unsigned)(i & 1), what);
    }
}

static void path_in(char *out, size_t n, const char *sub, const char *name) {
    snprintf(out, n, "%s/%s%s%s", dir, sub, *sub ? "/" : "", name);
}

static void expect_json_error(const vocab *v, tj_opts o, rg_status want, const char *needle) {
    char p[160];
    path_in(p, sizeof p, "", "bad_tokenizer.json");
    write_tj_eot(v, p, o);
    rg_tokenizer *t = (rg_tokenizer *)1;
    rg_status st = rg_tokenizer_load_json(p, &t);
    CHECK(st == want && t == NULL && strstr(rg_last_error(), needle) && strstr(rg_last_error(), "bad_tokenizer.json"),
          "refused tokenizer.json: status %s (expected %s), message '%s' (expected to name '%s')", rg_status_str(st),
          rg_status_str(want), rg_last_error(), needle);
    remove(p);
}

static void test_errors(const vocab *v) {
    tj_opts o = {.eot_in_vocab = true};
    tj_opts e;
    e = o; e.model_type = "WordPiece";
    expect_json_error(v, e, RG_ERR_UNSUPPORTED, "model.type");
    e = o; e.normalizer = "{\"type\": \"NFC\"}";
    expect_json_error(v, e, RG_ERR_UNSUPPORTED, "normalizer");
    e = o; e.pre_tokenizer = "{\"type\": \"Whitespace\"}";
    expect_json_error(v, e, RG_ERR_UNSUPPORTED, "pre_tokenizer.type");
    e = o; e.pre_tokenizer = "null";
    expect_json_error(v, e, RG_ERR_UNSUPPORTED, "pre_tokenizer");
    e = o; e.pre_tokenizer = "{\"type\": \"ByteLevel\", \"add_prefix_space\": true}";
    expect_json_error(v, e, RG_ERR_UNSUPPORTED, "pre_tokenizer.add_prefix_space");
    e = o; e.post_processor = "{\"type\": \"TemplateProcessing\"}";
    expect_json_error(v, e, RG_ERR_UNSUPPORTED, "post_processor.type");
    e = o; e.decoder = "{\"type\": \"WordPiece\"}";
    expect_json_error(v, e, RG_ERR_UNSUPPORTED, "decoder.type");
    e = o; e.truncation = "{\"max_length\": 512}";
    expect_json_error(v, e, RG_ERR_UNSUPPORTED, "truncation");
    e = o; e.model_extra = ", \"ignore_merges\": true";
    expect_json_error(v, e, RG_ERR_UNSUPPORTED, "model.ignore_merges");
    e = o; e.added = "[{\"id\": 5, \"content\": \"<pad>\"}]";
    expect_json_error(v, e, RG_ERR_UNSUPPORTED, "added_tokens[0]");
    e = o; e.added = "[{\"id\": 3, \"content\": \"<|endoftext|>\"}]"; /* id 3 is a byte token */
    expect_json_error(v, e, RG_ERR_FORMAT, "<|endoftext|>");
    e = o; e.bad_merge = "[\"t\", 7]";
    char want[32];
    snprintf(want, sizeof want, "model.merges[%d]", v->n_merges);
    expect_json_error(v, e, RG_ERR_FORMAT, want);
    e = o; e.bad_merge = "\"zzq q\"";
    expect_json_error(v, e, RG_ERR_FORMAT, "not in the vocabulary");

    char p[160];
    path_in(p, sizeof p, "", "bad_tokenizer.json");
    FILE *f = fopen(p, "wb");
    fputs("{\"model\": {\"type\": \"BPE\", \"merges\": []}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", f);
    fclose(f);
    rg_tokenizer *t = NULL;
    CHECK(rg_tokenizer_load_json(p, &t) == RG_ERR_FORMAT && strstr(rg_last_error(), "model.vocab"),
          "missing model.vocab: %s", rg_last_error());
    f = fopen(p, "wb");
    fputs("{\"model\": ", f);
    fclose(f);
    CHECK(rg_tokenizer_load_json(p, &t) == RG_ERR_FORMAT && strstr(rg_last_error(), "bad_tokenizer.json"),
          "truncated JSON: %s", rg_last_error());
    remove(p);
    CHECK(rg_tokenizer_load_json("/nonexistent/tokenizer.json", &t) == RG_ERR_IO &&
              strstr(rg_last_error(), "/nonexistent/tokenizer.json"),
          "missing file: %s", rg_last_error());
    CHECK(rg_tokenizer_load_dir(dir, &t) == RG_ERR_IO && strstr(rg_last_error(), dir) && t == NULL,
          "empty directory: %s", rg_last_error());
    CHECK(rg_tokenizer_load_dir(NULL, &t) == RG_ERR_INVALID_ARG && rg_tokenizer_load_json(NULL, &t) == RG_ERR_INVALID_ARG,
          "NULL paths are refused");
}

int main(void) {
    rg_rng r;
    rg_test_init("test_tokenizer_json", &r);
    bool quick = rg_test_quick();
    snprintf(dir, sizeof dir, "/tmp/rg_tokj_XXXXXX");
    if (!mkdtemp(dir)) {
        printf("cannot create a temporary directory\n");
        return 1;
    }
    static vocab v;
    make_vocab(&r, &v, 300);
    CHECK(v.n_merges == 300, "the test's vocabulary has %d merges", v.n_merges);
    char sub_pair[96], sub_json[96], vp[160], mp[160], tj[160], p[160];
    snprintf(sub_pair, sizeof sub_pair, "%s/pair", dir);
    snprintf(sub_json, sizeof sub_json, "%s/json", dir);
    if (mkdir(sub_pair, 0700) || mkdir(sub_json, 0700)) {
        printf("cannot create the test's directories\n");
        return 1;
    }
    path_in(vp, sizeof vp, "pair", "vocab.json");
    path_in(mp, sizeof mp, "pair", "merges.txt");
    path_in(tj, sizeof tj, "json", "tokenizer.json");
    write_pair(&v, vp, mp);
    rg_tokenizer *ref = NULL;
    CHECK(rg_tokenizer_load(vp, mp, &ref) == RG_OK, "vocab.json + merges.txt: %s", rg_last_error());
    if (!ref) return rg_test_finish();
    CHECK(rg_tokenizer_eot_id(ref) == v.eot, "eot %d, expected %d", (int)rg_tokenizer_eot_id(ref), v.eot);
    int n_random = quick ? 300 : 3000;

    static const struct { bool pairs, escape, eot_in_vocab; const char *name; } variants[] = {
        {false, false, true, "tokenizer.json, \"a b\" merges"},
        {true, false, true, "tokenizer.json, [a, b] merges"},
        {true, true, false, "tokenizer.json, \\u escapes, EOT only in added_tokens"},
        {false, true, false, "tokenizer.json, \"a b\" merges, EOT only in added_tokens"},
    };
    for (size_t k = 0; k < sizeof variants / sizeof *variants; k++) {
        tj_opts o = {.pairs = variants[k].pairs, .escape = variants[k].escape, .eot_in_vocab = variants[k].eot_in_vocab};
        write_tj_eot(&v, tj, o);
        rg_tokenizer *t = NULL;
        CHECK(rg_tokenizer_load_json(tj, &t) == RG_OK, "%s: %s", variants[k].name, rg_last_error());
        if (t) compare_all(&r, ref, t, variants[k].name, n_random);
        rg_tokenizer_free(t);
    }
    /* no added_tokens at all, EOT in the vocabulary: still the EOT */
    tj_opts o = {.eot_in_vocab = true, .added = "[]"};
    write_tj(&v, tj, &o);
    rg_tokenizer *t = NULL;
    CHECK(rg_tokenizer_load_json(tj, &t) == RG_OK && rg_tokenizer_eot_id(t) == v.eot, "no added_tokens: %s",
          rg_last_error());
    rg_tokenizer_free(t);

    /* load_dir: the pair directory, then the json one (tokenizer.json wins over
     * a vocab.json + merges.txt beside it that would fail) */
    t = NULL;
    CHECK(rg_tokenizer_load_dir(sub_pair, &t) == RG_OK, "load_dir (vocab.json + merges.txt): %s", rg_last_error());
    if (t) compare_all(&r, ref, t, "load_dir pair", 50);
    rg_tokenizer_free(t);
    write_tj_eot(&v, tj, (tj_opts){.eot_in_vocab = true});
    path_in(p, sizeof p, "json", "vocab.json");
    FILE *f = fopen(p, "wb");
    fputs("not json", f);
    fclose(f);
    t = NULL;
    CHECK(rg_tokenizer_load_dir(sub_json, &t) == RG_OK, "load_dir prefers tokenizer.json: %s", rg_last_error());
    if (t) compare_all(&r, ref, t, "load_dir json", 50);
    rg_tokenizer_free(t);
    remove(p);
    remove(tj);
    remove(vp);
    remove(mp);
    rmdir(sub_pair);
    rmdir(sub_json);

    test_errors(&v);
    rg_tokenizer_free(ref);
    rmdir(dir);
    return rg_test_finish();
}
