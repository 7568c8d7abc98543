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
#endif
