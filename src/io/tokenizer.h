/* tokenizer.h — the tokenizer's private pieces, exposed for tests: GPT-2's
 * pre-tokenisation over UTF-8 and the character classes it relies on. */
#ifndef RG_IO_TOKENIZER_H
#define RG_IO_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>

typedef enum rg_char_class {
    RG_CHAR_LETTER = 0,  /* \p{L} (the ranges listed in ragged.h section 8) */
    RG_CHAR_NUMBER,      /* \p{N} */
    RG_CHAR_SPACE,       /* \s: Unicode White_Space */
    RG_CHAR_OTHER,       /* everything else, invalid UTF-8 bytes included */
} rg_char_class;

/* Class of code point cp. */
rg_char_class rg_char_class_of(uint32_t cp);

/* Decodes one well-formed UTF-8 character at s[0..len), len >= 1: returns
 * its byte length and sets *cp, or returns 0 if s does not start with one. */
size_t rg_utf8_decode(const uint8_t *s, size_t len, uint32_t *cp);

/* Decodes the character at s[0..len), len >= 1: returns its class and sets
 * *n to its byte length. A byte that does not start a well-formed UTF-8
 * sequence (overlong, surrogate, beyond U+10FFFF, truncated) is one OTHER
 * character of length 1. */
rg_char_class rg_utf8_class(const uint8_t *s, size_t len, size_t *n);

/* End of the pre-token starting at s[pos] (pos < len): the match of GPT-2's
 * regex at pos. Pieces from pos = 0 to len tile the text. */
size_t rg_pretok_next(const uint8_t *s, size_t len, size_t pos);

#endif
