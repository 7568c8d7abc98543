/* tok_util.h — writing GPT-2 byte-level vocabularies from tests: the byte
 * alphabet (byte -> code point) and one token's bytes spelled in it, as
 * vocab.json, merges.txt and tokenizer.json store them. Header-only. */
#ifndef RG_TESTS_TOK_UTIL_H
#define RG_TESTS_TOK_UTIL_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* GPT-2's alphabet: printable Latin-1 bytes stand for themselves, the other
 * 68 take code points 256, 257, ... in byte order. */
static inline bool tt_byte_printable(int c) {
    return (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
}
static inline unsigned tt_byte_cp(int b) {
    if (tt_byte_printable(b)) return (unsigned)b;
    unsigned n = 256;
    for (int c = 0; c < b; c++)
        if (!tt_byte_printable(c)) n++;
    return n;
}

/* Writes n token bytes as alphabet characters in UTF-8; json: quote and
 * backslash escaped, and with escape every non-ASCII character as \uXXXX. */
static inline void tt_put_token(FILE *f, const void *bytes, int n, bool json, bool escape) {
    const uint8_t *s = bytes;
    for (int i = 0; i < n; i++) {
        unsigned cp = tt_byte_cp(s[i]);
        if (json && (cp == '"' || cp == '\\')) fprintf(f, "\\%c", (char)cp);
        else if (json && escape && cp >= 0x80) fprintf(f, "\\u%04X", cp);
        else if (cp < 0x80) fputc((int)cp, f);
        else fprintf(f, "%c%c", 0xC0 | (cp >> 6), 0x80 | (cp & 0x3F));
    }
}
/* Token i of a test's own vocabulary: its bytes, *len of them. */
typedef const void *(*tt_token_fn)(const void *vocab, int i, int *len);

/* Writes a vocabulary as vocab.json ({"token": id, ...}, ids 0..n) and
 * merges.txt ("#version: 0.2", then "a b" for merges (ma[m], mb[m]) by rank);
 * with escape_odd, odd ids spell their non-ASCII characters as \uXXXX. */
static inline void tt_write_vocab_merges(const char *vocab_json, const char *merges_txt, const void *v, int n,
                                         tt_token_fn tok, int n_merges, const int *ma, const int *mb,
                                         bool escape_odd) {
    int len;
    FILE *f = fopen(vocab_json, "wb");
    if (!f) return;   /* the load that follows reports the missing file */
    fprintf(f, "{");
    for (int i = 0; i < n; i++) {
        fprintf(f, "%s\n  \"", i ? "," : "");
        const void *b = tok(v, i, &len);
        tt_put_token(f, b, len, true, escape_odd && i % 2);
        fprintf(f, "\": %d", i);
    }
    fprintf(f, "\n}\n");
    fclose(f);
    if (!(f = fopen(merges_txt, "wb"))) return;
    fprintf(f, "#version: 0.2\n");
    for (int m = 0; m < n_merges; m++) {
        const void *a = tok(v, ma[m], &len);
        tt_put_token(f, a, len, false, false);
        fputc(' ', f);
        const void *b = tok(v, mb[m], &len);
        tt_put_token(f, b, len, false, false);
        fputc('\n', f);
    }
    fclose(f);
}
#endif
