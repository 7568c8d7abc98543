/* json.c — strict JSON parser into an arena-allocated tree, and the string
 * builder / escaper used to emit JSON (see json.h). */
#include "io/json.h"
#include "core/alloc.h"
#include "core/status.h"
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena: every node, string and array of a document lives in its chunks ---- */

#define ARENA_CHUNK (64 * 1024)
#define ARENA_HEAD 64 /* chunk header, rounded so data stays 64-byte aligned */

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
} chunk;

struct rg_json_doc {
    chunk *chunks;
    rg_json root;
};

static rg_status arena_alloc(rg_json_doc *d, size_t size, void **out) {
    *out = NULL;
    if (size == 0) return RG_OK;
    if (size > SIZE_MAX - ARENA_HEAD - 8) return rg_fail(RG_ERR_OVERFLOW, "json: %zu-byte allocation overflows", size);
    size = (size + 7) & ~(size_t)7;
    chunk *c = d->chunks;
    if (!c || c->cap - c->used < size) {
        size_t cap = size > ARENA_CHUNK ? size : ARENA_CHUNK;
        void *p;
        RG_TRY(rg_alloc(&p, ARENA_HEAD + cap, 1, "json document"));
        chunk *n = p;
        n->used = 0;
        n->cap = cap;
        /* A big block gets its own chunk behind the current one, so the current
         * chunk's free space is not abandoned. */
        if (c && cap == size && c->cap - c->used > 0) {
            n->next = c->next;
            c->next = n;
        } else {
            n->next = c;
            d->chunks = n;
        }
        n->used = size;
        *out = (char *)n + ARENA_HEAD;
        return RG_OK;
    }
    *out = (char *)c + ARENA_HEAD + c->used;
    c->used += size;
    return RG_OK;
}

void rg_json_free(rg_json_doc *doc) {
    if (!doc) return;
    chunk *c = doc->chunks;
    while (c) {
        chunk *next = c->next;
        rg_free(c);
        c = next;
    }
    rg_free(doc);
}

const rg_json *rg_json_root(const rg_json_doc *doc) { return doc ? &doc->root : NULL; }

/* ---- UTF-8 ---- */

/* Length of the well-formed UTF-8 sequence at s (n bytes available), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;      /* no overlongs */
        if (c == 0xed) hi = 0x9f;      /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;      /* <= U+10FFFF */
    } else return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t k = 2; k < len; k++)
        if ((s[k] & 0xc0) != 0x80) return 0;
    return len;
}

bool rg_utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(u + i, n - i);
        if (!k) return false;
        i += k;
    }
    return true;
}

static size_t utf8_put(char *dst, uint32_t cp) {
    if (cp < 0x80) { dst[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        dst[0] = (char)(0xc0 | (cp >> 6));
        dst[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xe0 | (cp >> 12));
        dst[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        dst[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    dst[0] = (char)(0xf0 | (cp >> 18));
    dst[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    dst[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    dst[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* ---- parser ---- */

typedef struct parser {
    const char *s;
    size_t n, pos;
    size_t line, line_start;     /* current line (1-based) and the offset where it starts */
    int depth, max_depth;
    const char *what;
    rg_json_doc *doc;
    rg_json *vals;               /* stack of finished values of open containers */
    size_t n_vals, cap_vals;
    rg_json_key *keys;           /* stack of keys of open objects */
    size_t n_keys, cap_keys;
    size_t *scratch;             /* sort buffer */
    size_t cap_scratch;
} parser;

static uint32_t sat32(size_t x) { return x > UINT32_MAX ? UINT32_MAX : (uint32_t)x; }

/* "'x'", "end of input" or "byte 0xNN": what the parser found at pos. */
static const char *describe(const parser *p, size_t pos, char buf[16]) {
    if (pos >= p->n) return "end of input";
    unsigned char c = (unsigned char)p->s[pos];
    if (c >= 0x20 && c < 0x7f) snprintf(buf, 16, "'%c'", c);
    else snprintf(buf, 16, "byte 0x%02x", c);
    return buf;
}

static rg_status fail_at(const parser *p, size_t pos, const char *fmt, ...) RG_PRINTF(3, 4);
static rg_status fail_at(const parser *p, size_t pos, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rg_fail(RG_ERR_FORMAT, "%s: line %zu column %zu: %s", p->what, p->line, pos - p->line_start + 1, msg);
}

static void skip_ws(parser *p) {
    while (p->pos < p->n) {
        char c = p->s[p->pos];
        if (c == '\n') {
            p->line++;
            p->line_start = p->pos + 1;
        } else if (c != ' ' && c != '\t' && c != '\r') {
            return;
        }
        p->pos++;
    }
}

static rg_status grow(void **buf, size_t *cap, size_t need, size_t elem, const char *what) {
    if (need <= *cap) return RG_OK;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > SIZE_MAX / 2) return rg_fail(RG_ERR_OVERFLOW, "%s: too many elements", what);
        nc *= 2;
    }
    void *nb;
    RG_TRY(rg_alloc(&nb, nc, elem, what));
    if (*cap) memcpy(nb, *buf, *cap * elem);
    rg_free(*buf);
    *buf = nb;
    *cap = nc;
    return RG_OK;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Four hex digits at s[i..i+4) (all before `end`), or -1. */
static long hex4(const char *s, size_t i, size_t end) {
    if (end - i < 4) return -1;
    long v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval(s[i + k]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* A string literal at p->pos (which is '"'): decoded into the arena. */
static rg_status parse_string(parser *p, const char **out, size_t *out_len) {
    size_t start = p->pos, end = start + 1;
    while (end < p->n && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->n) return fail_at(p, start, "unterminated string");
    char *dst;
    RG_TRY(arena_alloc(p->doc, end - start, (void **)&dst)); /* decoded is never longer than raw */
    size_t k = 0, i = start + 1;
    const unsigned char *u = (const unsigned char *)p->s;
    while (i < end) {
        unsigned char c = u[i];
        if (c < 0x20) return fail_at(p, i, "control character 0x%02x must be escaped in a string", c);
        if (c >= 0x80) {
            size_t len = utf8_seq(u + i, end - i);
            if (!len) return fail_at(p, i, "invalid UTF-8 (byte 0x%02x) in string", c);
            memcpy(dst + k, p->s + i, len);
            k += len;
            i += len;
            continue;
        }
        if (c != '\\') {
            dst[k++] = (char)c;
            i++;
            continue;
        }
        char e = p->s[i + 1];
        switch (e) {
        case '"': case '\\': case '/': dst[k++] = e; break;
        case 'b': dst[k++] = '\b'; break;
        case 'f': dst[k++] = '\f'; break;
        case 'n': dst[k++] = '\n'; break;
        case 'r': dst[k++] = '\r'; break;
        case 't': dst[k++] = '\t'; break;
        case 'u': {
            long cp = hex4(p->s, i + 2, end);
            if (cp < 0) return fail_at(p, i, "expected 4 hex digits after \\u");
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return fail_at(p, i, "unpaired low surrogate \\u%04lX", cp);
            if (cp >= 0xd800 && cp <= 0xdbff) {
                long lo = (end - i >= 12 && p->s[i + 6] == '\\' && p->s[i + 7] == 'u') ? hex4(p->s, i + 8, end) : -1;
                if (lo < 0xdc00 || lo > 0xdfff)
                    return fail_at(p, i, "high surrogate \\u%04lX not followed by a low surrogate \\uDC00-\\uDFFF", cp);
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                i += 6;
            }
            k += utf8_put(dst + k, (uint32_t)cp);
            i += 6;
            continue;
        }
        default: {
            char buf[16];
            return fail_at(p, i, "invalid escape: backslash followed by %s", describe(p, i + 1, buf));
        }
        }
        i += 2;
    }
    dst[k] = '\0';
    *out = dst;
    *out_len = k;
    p->pos = end + 1;
    return RG_OK;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static rg_status parse_number(parser *p, rg_json *v) {
    const char *s = p->s;
    size_t start = p->pos, i = start;
    bool neg = false, integral = true;
    char buf[16];
    if (s[i] == '-') { neg = true; i++; }
    if (i < p->n && s[i] == '0') {
        i++;
        if (i < p->n && is_digit(s[i])) return fail_at(p, start, "leading zeros are not allowed in numbers");
    } else if (i < p->n && is_digit(s[i])) {
        while (i < p->n && is_digit(s[i])) i++;
    } else {
        return fail_at(p, i, "expected a digit after '-', got %s", describe(p, i, buf));
    }
    size_t int_end = i;
    if (i < p->n && s[i] == '.') {
        integral = false;
        i++;
        if (i >= p->n || !is_digit(s[i]))
            return fail_at(p, i, "expected a digit after '.', got %s", describe(p, i, buf));
        while (i < p->n && is_digit(s[i])) i++;
    }
    if (i < p->n && (s[i] == 'e' || s[i] == 'E')) {
        integral = false;
        i++;
        if (i < p->n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= p->n || !is_digit(s[i]))
            return fail_at(p, i, "expected a digit in the exponent, got %s", describe(p, i, buf));
        while (i < p->n && is_digit(s[i])) i++;
    }
    v->type = RG_JSON_NUMBER;
    if (integral) { /* exact 64-bit value when it fits */
        uint64_t mag = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        bool fits = true;
        for (size_t k = start + neg; k < int_end && fits; k++) {
            uint64_t d = (uint64_t)(s[k] - '0');
            if (mag > (limit - d) / 10) fits = false;
            else mag = mag * 10 + d;
        }
        if (fits) {
            v->is_int = true;
            v->i = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
        }
    }
    /* strtod wants a NUL-terminated copy and the locale's decimal point. */
    size_t len = i - start;
    char small[64], *copy = small;
    if (len >= sizeof small) RG_TRY(arena_alloc(p->doc, len + 1, (void **)&copy));
    memcpy(copy, s + start, len);
    copy[len] = '\0';
    const char *dp = localeconv()->decimal_point;
    if (dp && dp[0] && dp[0] != '.' && !dp[1]) {
        char *dot = strchr(copy, '.');
        if (dot) *dot = dp[0];
    }
    v->num = strtod(copy, NULL); /* out of range gives +-HUGE_VAL (inf) or 0: both fine */
    p->pos = i;
    return RG_OK;
}

static rg_status parse_value(parser *p, rg_json *v);

/* Ordering of two keys: bytewise, shorter first on a common prefix. */
static int key_cmp(const char *a, size_t al, const char *b, size_t bl) {
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c) return c;
    return al < bl ? -1 : al > bl;
}

/* Sorts idx[0..n) by keys (merge sort: qsort has no context pointer). */
static void sort_keys(size_t *idx, size_t *tmp, size_t n, const rg_json_key *keys) {
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t a = lo, b = mid, o = lo;
            while (a < mid && b < hi)
                tmp[o++] = key_cmp(keys[idx[b]].s, keys[idx[b]].len, keys[idx[a]].s, keys[idx[a]].len) < 0
                               ? idx[b++] : idx[a++];
            while (a < mid) tmp[o++] = idx[a++];
            while (b < hi) tmp[o++] = idx[b++];
        }
        memcpy(idx, tmp, n * sizeof *idx);
    }
}

static rg_status push_value(parser *p, const rg_json *v) {
    RG_TRY(grow((void **)&p->vals, &p->cap_vals, p->n_vals + 1, sizeof *p->vals, "json value stack"));
    p->vals[p->n_vals++] = *v;
    return RG_OK;
}

/* Moves the top n values of the stack into the arena as v->items. */
static rg_status pop_items(parser *p, size_t base, rg_json *v) {
    size_t n = p->n_vals - base;
    v->len = n;
    RG_TRY(arena_alloc(p->doc, n * sizeof(rg_json), (void **)&v->items));
    if (n) memcpy(v->items, p->vals + base, n * sizeof(rg_json));
    p->n_vals = base;
    return RG_OK;
}

static rg_status enter(parser *p) {
    if (++p->depth > p->max_depth)
        return fail_at(p, p->pos, "nesting deeper than %d levels", p->max_depth);
    return RG_OK;
}

static rg_status parse_array(parser *p, rg_json *v) {
    char buf[16];
    RG_TRY(enter(p));
    v->type = RG_JSON_ARRAY;
    size_t base = p->n_vals;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == ']') {
        p->pos++;
    } else {
        for (;;) {
            rg_json item;
            RG_TRY(parse_value(p, &item));
            RG_TRY(push_value(p, &item));
            skip_ws(p);
            if (p->pos < p->n && p->s[p->pos] == ',') { p->pos++; continue; }
            if (p->pos < p->n && p->s[p->pos] == ']') { p->pos++; break; }
            return fail_at(p, p->pos, "expected ',' or ']' in array, got %s", describe(p, p->pos, buf));
        }
    }
    p->depth--;
    return pop_items(p, base, v);
}

static rg_status parse_object(parser *p, rg_json *v) {
    char buf[16];
    RG_TRY(enter(p));
    v->type = RG_JSON_OBJECT;
    size_t base = p->n_vals, kbase = p->n_keys;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == '}') {
        p->pos++;
    } else {
        for (;;) {
            skip_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != '"')
                return fail_at(p, p->pos, "expected a string key in object, got %s", describe(p, p->pos, buf));
            rg_json_key key = {.line = sat32(p->line), .col = sat32(p->pos - p->line_start + 1)};
            RG_TRY(parse_string(p, &key.s, &key.len));
            skip_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != ':')
                return fail_at(p, p->pos, "expected ':' after object key, got %s", describe(p, p->pos, buf));
            p->pos++;
            rg_json item;
            RG_TRY(parse_value(p, &item));
            RG_TRY(grow((void **)&p->keys, &p->cap_keys, p->n_keys + 1, sizeof *p->keys, "json key stack"));
            p->keys[p->n_keys++] = key;
            RG_TRY(push_value(p, &item));
            skip_ws(p);
            if (p->pos < p->n && p->s[p->pos] == ',') { p->pos++; continue; }
            if (p->pos < p->n && p->s[p->pos] == '}') { p->pos++; break; }
            return fail_at(p, p->pos, "expected ',' or '}' in object, got %s", describe(p, p->pos, buf));
        }
    }
    p->depth--;
    size_t n = p->n_keys - kbase;
    RG_TRY(arena_alloc(p->doc, n * sizeof(rg_json_key), (void **)&v->keys));
    RG_TRY(arena_alloc(p->doc, n * sizeof(size_t), (void **)&v->sorted));
    if (n) memcpy(v->keys, p->keys + kbase, n * sizeof(rg_json_key));
    p->n_keys = kbase;
    RG_TRY(grow((void **)&p->scratch, &p->cap_scratch, n, sizeof(size_t), "json sort buffer"));
    for (size_t k = 0; k < n; k++) v->sorted[k] = k;
    sort_keys(v->sorted, p->scratch, n, v->keys);
    for (size_t k = 1; k < n; k++) {
        const rg_json_key *a = &v->keys[v->sorted[k - 1]], *b = &v->keys[v->sorted[k]];
        if (key_cmp(a->s, a->len, b->s, b->len) == 0) {
            const rg_json_key *later = v->sorted[k] > v->sorted[k - 1] ? b : a;
            return rg_fail(RG_ERR_FORMAT, "%s: line %u column %u: duplicate key \"%s\" in object", p->what,
                           later->line, later->col, later->s);
        }
    }
    return pop_items(p, base, v);
}

static rg_status parse_literal(parser *p, rg_json *v, const char *word, rg_json_type t, bool b) {
    size_t len = strlen(word);
    if (p->n - p->pos < len || memcmp(p->s + p->pos, word, len) != 0)
        return fail_at(p, p->pos, "invalid literal (expected '%s')", word);
    v->type = t;
    v->b = b;
    p->pos += len;
    return RG_OK;
}

static rg_status parse_value(parser *p, rg_json *v) {
    char buf[16];
    skip_ws(p);
    memset(v, 0, sizeof *v);
    v->line = sat32(p->line);
    v->col = sat32(p->pos - p->line_start + 1);
    if (p->pos >= p->n) return fail_at(p, p->pos, "expected a value, got end of input");
    char c = p->s[p->pos];
    switch (c) {
    case '{': return parse_object(p, v);
    case '[': return parse_array(p, v);
    case '"':
        v->type = RG_JSON_STRING;
        return parse_string(p, &v->str, &v->len);
    case 't': return parse_literal(p, v, "true", RG_JSON_BOOL, true);
    case 'f': return parse_literal(p, v, "false", RG_JSON_BOOL, false);
    case 'n': return parse_literal(p, v, "null", RG_JSON_NULL, false);
    default:
        if (c == '-' || is_digit(c)) return parse_number(p, v);
        return fail_at(p, p->pos, "expected a value, got %s", describe(p, p->pos, buf));
    }
}

rg_status rg_json_parse(const char *text, size_t len, int max_depth, const char *what, rg_json_doc **out) {
    if (!out) return rg_fail(RG_ERR_INVALID_ARG, "rg_json_parse: out is NULL");
    *out = NULL;
    if (!text && len) return rg_fail(RG_ERR_INVALID_ARG, "rg_json_parse: text is NULL");
    if (max_depth > RG_JSON_MAX_DEPTH)
        return rg_fail(RG_ERR_INVALID_ARG, "rg_json_parse: max_depth %d above %d (the parser recurses)", max_depth,
                       RG_JSON_MAX_DEPTH);
    rg_json_doc *doc;
    RG_TRY(rg_calloc((void **)&doc, 1, sizeof *doc, "json document"));
    parser p = {.s = text ? text : "", .n = len, .line = 1, .what = what ? what : "json", .doc = doc,
                .max_depth = max_depth > 0 ? max_depth : RG_JSON_DEFAULT_DEPTH};
    rg_status st = parse_value(&p, &doc->root);
    if (st == RG_OK) {
        skip_ws(&p);
        char buf[16];
        if (p.pos < p.n)
            st = fail_at(&p, p.pos, "expected end of input after the JSON value, got %s", describe(&p, p.pos, buf));
    }
    rg_free(p.vals);
    rg_free(p.keys);
    rg_free(p.scratch);
    if (st != RG_OK) {
        rg_json_free(doc);
        return st;
    }
    *out = doc;
    return RG_OK;
}

const rg_json *rg_json_get(const rg_json *obj, const char *key) {
    if (!obj || obj->type != RG_JSON_OBJECT || !key) return NULL;
    size_t kl = strlen(key), lo = 0, hi = obj->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const rg_json_key *k = &obj->keys[obj->sorted[mid]];
        int c = key_cmp(k->s, k->len, key, kl);
        if (c == 0) return &obj->items[obj->sorted[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const char *rg_json_type_name(rg_json_type t) {
    switch (t) {
    case RG_JSON_NULL: return "null";
    case RG_JSON_BOOL: return "a boolean";
    case RG_JSON_NUMBER: return "a number";
    case RG_JSON_STRING: return "a string";
    case RG_JSON_ARRAY: return "an array";
    case RG_JSON_OBJECT: return "an object";
    }
    return "an unknown value";
}

/* ---- string builder ---- */

void rg_strbuf_init(rg_strbuf *b) {
    b->data = NULL;
    b->len = b->cap = 0;
    b->status = RG_OK;
}

void rg_strbuf_free(rg_strbuf *b) {
    rg_free(b->data);
    rg_strbuf_init(b);
}

/* Room for n more bytes plus the terminating NUL. */
static bool strbuf_reserve(rg_strbuf *b, size_t n) {
    if (b->status != RG_OK) return false;
    if (n > SIZE_MAX - b->len - 1) {
        b->status = rg_fail(RG_ERR_OVERFLOW, "string builder: %zu + %zu bytes overflows", b->len, n);
        return false;
    }
    size_t need = b->len + n + 1;
    if (need <= b->cap) return true;
    size_t nc = b->cap ? b->cap : 256;
    while (nc < need) nc = nc > SIZE_MAX / 2 ? need : nc * 2;
    char *nd;
    rg_status st = rg_alloc((void **)&nd, nc, 1, "string builder");
    if (st != RG_OK) {
        b->status = st;
        return false;
    }
    if (b->len) memcpy(nd, b->data, b->len);
    rg_free(b->data);
    b->data = nd;
    b->cap = nc;
    return true;
}

void rg_strbuf_append(rg_strbuf *b, const char *s, size_t n) {
    if (!strbuf_reserve(b, n)) return;
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void rg_strbuf_puts(rg_strbuf *b, const char *s) { rg_strbuf_append(b, s, strlen(s)); }

void rg_strbuf_printf(rg_strbuf *b, const char *fmt, ...) {
    if (b->status != RG_OK) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->status = rg_fail(RG_ERR_INVALID_ARG, "string builder: bad format '%s'", fmt);
        return;
    }
    if (!strbuf_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void rg_json_write_string(rg_strbuf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    rg_strbuf_append(b, "\"", 1);
    size_t run = 0; /* start of the pending run of bytes that need no escape */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        rg_strbuf_append(b, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 0};
        size_t len = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            len = 6;
        }
        rg_strbuf_append(b, esc, len);
    }
    rg_strbuf_append(b, s + run, n - run);
    rg_strbuf_append(b, "\"", 1);
}
