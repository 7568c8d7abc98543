/* bench_tokenizer.c — tokenisation throughput (MB/s) of rg_tokenizer_encode on
 * generated English-like text (a Zipf-distributed lexicon of syllable words,
 * capitals, punctuation, numbers, newlines) with a synthetic vocabulary: the
 * 256 bytes plus, for the most frequent pre-tokens, the merges that build
 * them left to right (so frequent words end as one token, like GPT-2's).
 * Not a test. Build and run from the repository root after `make build`:
 *   cc -O2 -Iinclude bench/bench_tokenizer.c build/libragged.a -fopenmp -lopenblas -lm -o build/bench_tokenizer
 *   ./build/bench_tokenizer [MB of text (default 20)] [merges (default 8000)] */
#include "ragged.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rs = 88172645463325252ull;
static uint64_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return rs; }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

/* GPT-2's alphabet: the code point standing for byte b, as UTF-8 into f. */
static void put_byte(FILE *f, unsigned b) {
    unsigned cp = b, n = 256;
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    if (!printable) {
        for (unsigned c = 0; c < b; c++)
            if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) n++;
        cp = n;
    }
    if (cp == '"' || cp == '\\') fprintf(f, "\\%c", (char)cp);
    else if (cp < 0x80) fputc((int)cp, f);
    else fprintf(f, "%c%c", 0xC0 | (cp >> 6), 0x80 | (cp & 0x3F));
}

typedef struct word { char s[48]; int len; long count; } word;

static int by_count(const void *a, const void *b) {
    long x = ((const word *)a)->count, y = ((const word *)b)->count;
    return x < y ? 1 : x > y ? -1 : 0;
}

int main(int argc, char **argv) {
    size_t mb = argc > 1 ? (size_t)atol(argv[1]) : 20;
    int n_merges = argc > 2 ? atoi(argv[2]) : 8000;
    static const char *syl[] = {"th", "e", "an", "in", "er", "on", "re", "at", "st", "en", "or", "ing", "ed",
                                "al", "it", "ou", "is", "ar", "le", "s", "ment", "tion", "w", "b", "ch", "ly",
                                "pro", "con", "un", "de", "com", "ver", "ter", "ness", "ful", "ab", "o", "a",
                                "i", "u", "sh", "qu", "str", "pl", "gr", "ight", "ous", "ive", "ent", "ry"};
    int n_syl = sizeof syl / sizeof *syl, lex_n = 50000;
    word *lex = calloc((size_t)lex_n, sizeof *lex);
    for (int w = 0; w < lex_n; w++) {
        int k = 1 + (int)(rnd() % 4);
        for (int i = 0; i < k; i++) {
            const char *s = syl[rnd() % (uint64_t)n_syl];
            memcpy(lex[w].s + lex[w].len, s, strlen(s));
            lex[w].len += (int)strlen(s);
        }
    }
    double *cdf = malloc(sizeof(double) * (size_t)lex_n), z = 0;
    for (int w = 0; w < lex_n; w++) cdf[w] = (z += 1.0 / (w + 1));
    size_t cap = mb << 20;
    char *text = malloc(cap + 64);
    size_t n = 0;
    while (n < cap) {
        double u = (double)(rnd() >> 11) / 9007199254740992.0 * z;
        int lo = 0, hi = lex_n - 1;
        while (lo < hi) { int mid = (lo + hi) / 2; if (cdf[mid] < u) lo = mid + 1; else hi = mid; }
        text[n++] = ' ';
        memcpy(text + n, lex[lo].s, (size_t)lex[lo].len);
        if (rnd() % 12 == 0) text[n] = (char)(text[n] - 32);
        n += (size_t)lex[lo].len;
        uint64_t p = rnd() % 40;
        if (p < 4) text[n++] = ",.;:"[p];
        else if (p == 4) n += (size_t)sprintf(text + n, " %u", (unsigned)(rnd() % 100000));
        else if (p == 5) { memcpy(text + n, ".\n\n", 3); n += 3; }
        else if (p == 6) { memcpy(text + n, "'s", 2); n += 2; }
    }
    /* vocabulary: the most frequent pre-tokens of the lexicon, with and without the leading space */
    word *top = calloc((size_t)lex_n * 2, sizeof *top);
    for (int w = 0; w < lex_n; w++) {
        top[2 * w] = lex[w];
        top[2 * w].count = (long)(1e9 / (w + 1));
        top[2 * w + 1].s[0] = ' ';
        memcpy(top[2 * w + 1].s + 1, lex[w].s, (size_t)lex[w].len);
        top[2 * w + 1].len = lex[w].len + 1;
        top[2 * w + 1].count = (long)(1e10 / (w + 1));
    }
    qsort(top, (size_t)lex_n * 2, sizeof *top, by_count);
    char **tok = malloc(sizeof(char *) * (size_t)(256 + n_merges + 1));
    int *tlen = malloc(sizeof(int) * (size_t)(256 + n_merges + 1)), nt = 0, nm = 0;
    FILE *mf = fopen("/tmp/rg_bench_merges.txt", "wb");
    fprintf(mf, "#version: 0.2\n");
    for (int b = 0; b < 256; b++) { tok[nt] = malloc(1); tok[nt][0] = (char)b; tlen[nt++] = 1; }
    for (int w = 0; w < 2 * lex_n && nm < n_merges; w++)
        for (int l = 2; l <= top[w].len && nm < n_merges; l++) {
            int found = 0;
            for (int t = nt - 1; t >= 256 && !found; t--) found = tlen[t] == l && memcmp(tok[t], top[w].s, (size_t)l) == 0;
            if (found) continue;
            for (int i = 0; i < l - 1; i++) put_byte(mf, (uint8_t)top[w].s[i]);
            fputc(' ', mf);
            put_byte(mf, (uint8_t)top[w].s[l - 1]);
            fputc('\n', mf);
            tok[nt] = malloc((size_t)l);
            memcpy(tok[nt], top[w].s, (size_t)l);
            tlen[nt++] = l;
            nm++;
        }
    fclose(mf);
    FILE *vf = fopen("/tmp/rg_bench_vocab.json", "wb");
    fprintf(vf, "{");
    for (int t = 0; t < nt; t++) {
        fprintf(vf, "%s\"", t ? ",\n" : "\n");
        for (int i = 0; i < tlen[t]; i++) put_byte(vf, (uint8_t)tok[t][i]);
        fprintf(vf, "\": %d", t);
    }
    fprintf(vf, ",\n\"<|endoftext|>\": %d\n}\n", nt);
    fclose(vf);

    rg_tokenizer *tk;
    if (rg_tokenizer_load("/tmp/rg_bench_vocab.json", "/tmp/rg_bench_merges.txt", &tk) != RG_OK) {
        fprintf(stderr, "load: %s\n", rg_last_error());
        return 1;
    }
    rg_token_buf ids = {0};
    for (int rep = 0; rep < 3; rep++) {
        ids.n = 0;
        double t0 = now();
        if (rg_tokenizer_encode(tk, text, n, 0, &ids) != RG_OK) {
            fprintf(stderr, "encode: %s\n", rg_last_error());
            return 1;
        }
        double dt = now() - t0;
        printf("run %d: %.1f MB in %.3f s = %.1f MB/s, %zu tokens (%.2f bytes/token), %d merges, 1 thread\n", rep,
               n / 1048576.0, dt, n / 1048576.0 / dt, ids.n, (double)n / ids.n, nm);
    }
    rg_byte_buf back = {0};
    double t0 = now();
    rg_tokenizer_decode(tk, ids.ids, ids.n, &back);
    printf("decode: %.1f MB/s, round trip %s\n", n / 1048576.0 / (now() - t0),
           back.n == n && memcmp(back.data, text, n) == 0 ? "exact" : "DIFFERS");
    rg_token_buf_free(&ids);
    rg_byte_buf_free(&back);
    rg_tokenizer_free(tk);
    remove("/tmp/rg_bench_vocab.json");
    remove("/tmp/rg_bench_merges.txt");
    return 0;
}
