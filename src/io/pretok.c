/* pretok.c — GPT-2's pre-tokenisation regex, written by hand over UTF-8:
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * plus the Unicode classes it needs (a documented subset, see ragged.h §8). */
#include "io/tokenizer.h"
#include <stdbool.h>

typedef struct range { uint32_t lo, hi; } range;

/* Letters beyond ASCII, sorted and disjoint. Approximations of \p{L} per
 * block: the block's letters, leaving out its marks, digits and punctuation. */
static const range letters[] = {
    {0xAA, 0xAA},       {0xB5, 0xB5},       {0xBA, 0xBA},       {0xC0, 0xD6},
    {0xD8, 0xF6},       {0xF8, 0x2C1},      {0x2C6, 0x2D1},     {0x2E0, 0x2E4},
    {0x2EC, 0x2EC},     {0x2EE, 0x2EE},     {0x370, 0x374},     {0x376, 0x377},
    {0x37A, 0x37D},     {0x37F, 0x37F},     {0x386, 0x386},     {0x388, 0x38A},
    {0x38C, 0x38C},     {0x38E, 0x3A1},     {0x3A3, 0x3F5},     {0x3F7, 0x481},
    {0x48A, 0x52F},     {0x531, 0x556},     {0x559, 0x559},     {0x560, 0x588},
    {0x5D0, 0x5EA},     {0x5EF, 0x5F2},     {0x620, 0x64A},     {0x66E, 0x66F},
    {0x671, 0x6D3},     {0x6D5, 0x6D5},     {0x904, 0x939},     {0x93D, 0x93D},
    {0x950, 0x950},     {0x958, 0x961},     {0x971, 0x980},     {0xE01, 0xE30},
    {0xE32, 0xE33},     {0xE40, 0xE46},     {0x10A0, 0x10C5},   {0x10D0, 0x10FA},
    {0x1100, 0x1248},   {0x1E00, 0x1F15},   {0x1F18, 0x1F1D},   {0x1F20, 0x1F45},
    {0x1F48, 0x1F4D},   {0x1F50, 0x1F57},   {0x1F59, 0x1F7D},   {0x1F80, 0x1FB4},
    {0x1FB6, 0x1FBC},   {0x1FC2, 0x1FC4},   {0x1FC6, 0x1FCC},   {0x1FD0, 0x1FD3},
    {0x1FD6, 0x1FDB},   {0x1FE0, 0x1FEC},   {0x1FF2, 0x1FF4},   {0x1FF6, 0x1FFC},
    {0x3041, 0x3096},   {0x309D, 0x309F},   {0x30A1, 0x30FA},   {0x30FC, 0x30FF},
    {0x3105, 0x312F},   {0x3131, 0x318E},   {0x3400, 0x4DBF},   {0x4E00, 0x9FFF},
    {0xAC00, 0xD7A3},   {0xF900, 0xFA6D},   {0xFF21, 0xFF3A},   {0xFF41, 0xFF5A},
    {0xFF66, 0xFFBE},   {0x20000, 0x2A6DF},
};

/* Numbers beyond ASCII (Nd, Nl, No in common use). */
static const range numbers[] = {
    {0xB2, 0xB3},     {0xB9, 0xB9},     {0xBC, 0xBE},     {0x660, 0x669},
    {0x6F0, 0x6F9},   {0x966, 0x96F},   {0xE50, 0xE59},   {0x2070, 0x2070},
    {0x2074, 0x2079}, {0x2080, 0x2089}, {0x2150, 0x2182}, {0x2460, 0x249B},
    {0x24EA, 0x24FF}, {0x2776, 0x2793}, {0x3007, 0x3007}, {0x3021, 0x3029},
    {0xFF10, 0xFF19},
};

static bool in_ranges(const range *r, size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid].lo) hi = mid;
        else if (cp > r[mid].hi) lo = mid + 1;
        else return true;
    }
    return false;
}

rg_char_class rg_char_class_of(uint32_t cp) {
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return RG_CHAR_LETTER;
        if (cp >= '0' && cp <= '9') return RG_CHAR_NUMBER;
        if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return RG_CHAR_SPACE;
        return RG_CHAR_OTHER;
    }
    if (cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
        cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000)
        return RG_CHAR_SPACE;
    if (in_ranges(letters, sizeof letters / sizeof *letters, cp)) return RG_CHAR_LETTER;
    if (in_ranges(numbers, sizeof numbers / sizeof *numbers, cp)) return RG_CHAR_NUMBER;
    return RG_CHAR_OTHER;
}

size_t rg_utf8_decode(const uint8_t *s, size_t len, uint32_t *cp) {
    uint8_t c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    size_t need;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) { need = 1; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { need = 2; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { need = 3; v = c & 0x07; min = 0x10000; }
    else return 0; /* continuation byte, C0/C1, F5..FF */
    if (len < need + 1) return 0;
    for (size_t i = 1; i <= need; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return need + 1;
}

rg_char_class rg_utf8_class(const uint8_t *s, size_t len, size_t *n) {
    uint32_t cp;
    size_t k = rg_utf8_decode(s, len, &cp);
    *n = k ? k : 1;
    return k ? rg_char_class_of(cp) : RG_CHAR_OTHER;
}

/* End of the run of characters of class k starting at pos. */
static size_t run_end(const uint8_t *s, size_t len, size_t pos, rg_char_class k) {
    while (pos < len) {
        if (s[pos] < 0x80) { /* ASCII fast path */
            if (rg_char_class_of(s[pos]) != k) break;
            pos++;
            continue;
        }
        size_t n;
        if (rg_utf8_class(s + pos, len - pos, &n) != k) break;
        pos += n;
    }
    return pos;
}

size_t rg_pretok_next(const uint8_t *s, size_t len, size_t pos) {
    /* 's|'t|'re|'ve|'m|'ll|'d (case-sensitive, as in GPT-2) */
    if (s[pos] == '\'' && pos + 1 < len) {
        uint8_t a = s[pos + 1];
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return pos + 2;
        if (pos + 2 < len) {
            uint8_t b = s[pos + 2];
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return pos + 3;
        }
    }
    size_t n;
    /*  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+ : an optional space, then a run of one class */
    size_t p = pos;
    if (s[p] == ' ' && p + 1 < len) p++;
    rg_char_class k = rg_utf8_class(s + p, len - p, &n);
    if (k != RG_CHAR_SPACE) return run_end(s, len, p + n, k);
    /* \s+(?!\S) | \s+ : a whitespace run; if a non-space follows, leave its
     * last character to the next piece, unless the run is a single character. */
    size_t last = pos, q = pos;
    while (q < len) {
        if (rg_utf8_class(s + q, len - q, &n) != RG_CHAR_SPACE) break;
        last = q;
        q += n;
    }
    if (q == len || last == pos) return q;
    return last;
}
