/* test_json.c — the JSON parser and writer: a table of valid and invalid
 * documents with exact error positions, escapes and surrogates against an
 * encoder written here, numbers against strtod/printf, nesting limits, random
 * trees written and parsed back, and random mutations that must never crash. */
#include "check.h"
#include "core/status.h"
#include "io/json.h"
#include "ragged.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S(lit) lit, sizeof(lit) - 1

static rg_json_doc *parse_ok(const char *text, size_t len) {
    rg_json_doc *d = NULL;
    rg_status s = rg_json_parse(text, len, 0, "doc", &d);
    CHECK(s == RG_OK && d, "parse '%.*s': %s", (int)len, text, rg_last_error());
    return s == RG_OK ? d : NULL;
}

/* The document fails with RG_ERR_FORMAT and a message containing `want`. */
static void parse_bad(const char *text, size_t len, const char *want) {
    rg_json_doc *d = (rg_json_doc *)1;
    rg_status s = rg_json_parse(text, len, 0, "doc", &d);
    CHECK(s == RG_ERR_FORMAT && d == NULL, "'%.*s' must fail (status %d)", (int)len, text, (int)s);
    CHECK(strstr(rg_last_error(), want) != NULL, "'%.*s': message '%s' should contain '%s'", (int)len, text,
          rg_last_error(), want);
    CHECK(strncmp(rg_last_error(), "doc: ", 5) == 0, "message starts with the document's name: '%s'", rg_last_error());
    if (s == RG_OK) rg_json_free(d);
}

static void test_scalars(void) {
    struct { const char *t; size_t n; rg_json_type type; } kinds[] = {
        {S("null"), RG_JSON_NULL}, {S("true"), RG_JSON_BOOL}, {S(" false "), RG_JSON_BOOL},
        {S("0"), RG_JSON_NUMBER}, {S("\"\""), RG_JSON_STRING}, {S("[]"), RG_JSON_ARRAY}, {S("{}"), RG_JSON_OBJECT},
        {S("\t\r\n [ ]\n"), RG_JSON_ARRAY},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        rg_json_doc *d = parse_ok(kinds[i].t, kinds[i].n);
        if (!d) continue;
        CHECK(rg_json_root(d)->type == kinds[i].type, "'%s' is %s", kinds[i].t, rg_json_type_name(kinds[i].type));
        rg_json_free(d);
    }
    rg_json_doc *d = parse_ok(S("[true,false]"));
    if (d) {
        CHECK(rg_json_root(d)->items[0].b && !rg_json_root(d)->items[1].b, "boolean values");
        rg_json_free(d);
    }
}

static void test_numbers(rg_rng *rng) {
    struct { const char *t; size_t n; bool is_int; int64_t i; double v; } nums[] = {
        {S("0"), true, 0, 0}, {S("-0"), true, 0, -0.0}, {S("7"), true, 7, 7}, {S("-12"), true, -12, -12},
        {S("9223372036854775807"), true, INT64_MAX, 9223372036854775807.0},
        {S("-9223372036854775808"), true, INT64_MIN, -9223372036854775808.0},
        {S("9223372036854775808"), false, 0, 9223372036854775808.0},
        {S("-9223372036854775809"), false, 0, -9223372036854775809.0},
        {S("123456789012345678901234567890"), false, 0, 1.2345678901234568e29},
        {S("1.5"), false, 0, 1.5}, {S("-1.5e3"), false, 0, -1500}, {S("1E+2"), false, 0, 100},
        {S("1e-2"), false, 0, 0.01}, {S("2.0"), false, 0, 2}, {S("0.000001"), false, 0, 1e-6},
        {S("1e400"), false, 0, INFINITY}, {S("-1e400"), false, 0, -INFINITY}, {S("1e-400"), false, 0, 0},
        {S("4.9406564584124654e-324"), false, 0, 4.9406564584124654e-324},
    };
    for (size_t k = 0; k < sizeof nums / sizeof nums[0]; k++) {
        rg_json_doc *d = parse_ok(nums[k].t, nums[k].n);
        if (!d) continue;
        const rg_json *v = rg_json_root(d);
        CHECK(v->type == RG_JSON_NUMBER && v->is_int == nums[k].is_int, "%s: integer literal fits int64 = %d", nums[k].t,
              nums[k].is_int);
        if (nums[k].is_int) CHECK(v->i == nums[k].i, "%s: int value %" PRId64, nums[k].t, v->i);
        CHECK(v->num == nums[k].v, "%s: double value %.17g, expected %.17g", nums[k].t, v->num, nums[k].v);
        rg_json_free(d);
    }
    /* Random doubles printed with 17 digits and random int64 come back exactly. */
    int n = rg_test_quick() ? 2000 : 20000, bad_d = 0, bad_i = 0;
    for (int k = 0; k < n; k++) {
        uint64_t bits = rg_rng_u64(rng);
        double x;
        memcpy(&x, &bits, 8);
        if (!isfinite(x)) x = rg_rng_normal(rng) * 1e10;
        char buf[64];
        int len = snprintf(buf, sizeof buf, "%.17g", x);
        rg_json_doc *d = NULL;
        if (rg_json_parse(buf, (size_t)len, 0, "num", &d) != RG_OK || rg_json_root(d)->num != x) bad_d++;
        rg_json_free(d);
        int64_t iv = (int64_t)rg_rng_u64(rng) >> (rg_rng_below(rng, 64));
        len = snprintf(buf, sizeof buf, "%" PRId64, iv);
        d = NULL;
        if (rg_json_parse(buf, (size_t)len, 0, "num", &d) != RG_OK || !rg_json_root(d)->is_int ||
            rg_json_root(d)->i != iv)
            bad_i++;
        rg_json_free(d);
    }
    CHECK(bad_d == 0, "%d of %d random doubles did not round-trip", bad_d, n);
    CHECK(bad_i == 0, "%d of %d random int64 did not round-trip", bad_i, n);
}

static void check_string(const char *json, size_t n, const char *want, size_t want_len) {
    rg_json_doc *d = parse_ok(json, n);
    if (!d) return;
    const rg_json *v = rg_json_root(d);
    CHECK(v->type == RG_JSON_STRING && v->len == want_len && memcmp(v->str, want, want_len) == 0 &&
              v->str[want_len] == '\0',
          "string %.*s decodes to %zu expected bytes (got %zu)", (int)n, json, want_len, v->len);
    rg_json_free(d);
}

static void test_strings(void) {
    check_string(S("\"abc\""), S("abc"));
    check_string(S("\"a\\\"b\\\\c\\/d\""), S("a\"b\\c/d"));
    check_string(S("\"\\b\\f\\n\\r\\t\""), S("\b\f\n\r\t"));
    check_string(S("\"\\u0041\\u00e9\\u00E9\\u20ac\""), S("A\xc3\xa9\xc3\xa9\xe2\x82\xac"));
    check_string(S("\"\\ud83d\\ude00\""), S("\xf0\x9f\x98\x80"));          /* U+1F600 */
    check_string(S("\"\\uD834\\uDD1E\""), S("\xf0\x9d\x84\x9e"));          /* U+1D11E */
    check_string(S("\"\\udbff\\udfff\""), S("\xf4\x8f\xbf\xbf"));          /* U+10FFFF */
    check_string(S("\"\\u0000x\""), "\0x", 2);
    check_string(S("\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9d\x84\x9e\""), S("h\xc3\xa9llo \xe2\x82\xac \xf0\x9d\x84\x9e"));
    check_string(S("\"\x7f\""), S("\x7f"));

    /* Writer: escapes exactly like serde_json, and parses back. */
    rg_strbuf b;
    rg_strbuf_init(&b);
    const char raw[] = "a\"b\\c\n\x01\x1f\x7f\xc3\xa9/";
    rg_json_write_string(&b, raw, sizeof raw - 1);
    const char want[] = "\"a\\\"b\\\\c\\n\\u0001\\u001f\x7f\xc3\xa9/\"";
    CHECK(b.status == RG_OK && b.len == sizeof want - 1 && strcmp(b.data, want) == 0, "escaped: %s", b.data);
    check_string(b.data, b.len, raw, sizeof raw - 1);
    rg_strbuf_free(&b);
    rg_strbuf_init(&b);
    rg_strbuf_printf(&b, "%d-%s", 42, "x");
    rg_strbuf_puts(&b, "!");
    CHECK(b.status == RG_OK && strcmp(b.data, "42-x!") == 0 && b.len == 5, "strbuf printf/puts: %s", b.data);
    rg_strbuf_free(&b);
}

static void test_utf8(void) {
    struct { const char *s; size_t n; bool ok; } t[] = {
        {S(""), true}, {S("abc"), true}, {S("\xc3\xa9"), true}, {S("\xe2\x82\xac"), true}, {S("\xf0\x9f\x98\x80"), true},
        {S("\xf4\x8f\xbf\xbf"), true}, {S("\xed\x9f\xbf"), true}, {S("\xee\x80\x80"), true},
        {S("\xc3"), false}, {S("\xc0\x80"), false}, {S("\xc1\xbf"), false}, {S("\xe0\x80\x80"), false},
        {S("\xed\xa0\x80"), false}, {S("\xf4\x90\x80\x80"), false}, {S("\xf5\x80\x80\x80"), false},
        {S("\xff"), false}, {S("\x80"), false}, {S("\xe2\x82"), false}, {S("\xe2\x28\xac"), false},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        CHECK(rg_utf8_valid(t[i].s, t[i].n) == t[i].ok, "utf8 case %zu valid=%d", i, t[i].ok);
}

static void test_errors(void) {
    parse_bad(S(""), "line 1 column 1: expected a value, got end of input");
    parse_bad(S("   "), "line 1 column 4: expected a value, got end of input");
    parse_bad(S("[1,]"), "line 1 column 4: expected a value, got ']'");
    parse_bad(S("[1 2]"), "line 1 column 4: expected ',' or ']' in array, got '2'");
    parse_bad(S("{\"a\" 1}"), "line 1 column 6: expected ':' after object key, got '1'");
    parse_bad(S("{\"a\":1,}"), "line 1 column 8: expected a string key in object, got '}'");
    parse_bad(S("{a:1}"), "line 1 column 2: expected a string key in object, got 'a'");
    parse_bad(S("{\"a\":1 \"b\":2}"), "line 1 column 8: expected ',' or '}' in object, got '\"'");
    parse_bad(S("{\"a\":1,\"b\":2,\"a\":3}"), "line 1 column 14: duplicate key \"a\"");
    parse_bad(S("{\"x\":{\"k\":1,\n \"k\":2}}"), "line 2 column 2: duplicate key \"k\"");
    parse_bad(S("\"abc"), "line 1 column 1: unterminated string");
    parse_bad(S("\"abc\\\""), "line 1 column 1: unterminated string");
    parse_bad(S("\"a\\x\""), "line 1 column 3: invalid escape: backslash followed by 'x'");
    parse_bad(S("\"\\u12\""), "line 1 column 2: expected 4 hex digits after \\u");
    parse_bad(S("\"\\u12G4\""), "expected 4 hex digits after \\u");
    parse_bad(S("\"\\ud83d\""), "line 1 column 2: high surrogate \\uD83D not followed by a low surrogate");
    parse_bad(S("\"\\ud83d\\u0041\""), "high surrogate \\uD83D not followed");
    parse_bad(S("\"\\ud83dx\""), "high surrogate");
    parse_bad(S("\"\\ude00\""), "line 1 column 2: unpaired low surrogate \\uDE00");
    parse_bad(S("\"a\nb\""), "line 1 column 3: control character 0x0a must be escaped");
    parse_bad(S("\"a\tb\""), "control character 0x09");
    parse_bad(S("\"\xff\""), "line 1 column 2: invalid UTF-8 (byte 0xff)");
    parse_bad(S("\"\xc0\x80\""), "invalid UTF-8 (byte 0xc0)");
    parse_bad(S("\"\xed\xa0\x80\""), "invalid UTF-8 (byte 0xed)");
    parse_bad(S("\"\xe2\x82\""), "invalid UTF-8");
    parse_bad(S("01"), "line 1 column 1: leading zeros are not allowed");
    parse_bad(S("-01"), "leading zeros");
    parse_bad(S("-"), "line 1 column 2: expected a digit after '-', got end of input");
    parse_bad(S("-a"), "expected a digit after '-', got 'a'");
    parse_bad(S("+1"), "line 1 column 1: expected a value, got '+'");
    parse_bad(S(".5"), "expected a value, got '.'");
    parse_bad(S("1."), "line 1 column 3: expected a digit after '.'");
    parse_bad(S("1.e5"), "expected a digit after '.', got 'e'");
    parse_bad(S("1e"), "line 1 column 3: expected a digit in the exponent");
    parse_bad(S("1e+"), "line 1 column 4: expected a digit in the exponent");
    parse_bad(S("tru"), "line 1 column 1: invalid literal (expected 'true')");
    parse_bad(S("nul"), "invalid literal (expected 'null')");
    parse_bad(S("True"), "expected a value, got 'T'");
    parse_bad(S("NaN"), "expected a value, got 'N'");
    parse_bad(S("Infinity"), "expected a value, got 'I'");
    parse_bad(S("nulll"), "line 1 column 5: expected end of input after the JSON value, got 'l'");
    parse_bad(S("[1] x"), "line 1 column 5: expected end of input");
    parse_bad(S("{} {}"), "line 1 column 4: expected end of input");
    parse_bad(S("[1]\n\n  }"), "line 3 column 3: expected end of input after the JSON value, got '}'");
    parse_bad(S("{\"a\":\n  [1,\n   2,,]}"), "line 3 column 6: expected a value, got ','");
    parse_bad(S("\r\n\r\n  x"), "line 3 column 3: expected a value, got 'x'");
    parse_bad(S("\xef\xbb\xbf{}"), "line 1 column 1: expected a value, got byte 0xef");
    parse_bad(S("["), "line 1 column 2: expected a value, got end of input");
    parse_bad(S("{"), "line 1 column 2: expected a string key in object, got end of input");
    parse_bad(S("{\"a\""), "line 1 column 5: expected ':' after object key, got end of input");
    parse_bad(S("[\"a\"\x00]"), "line 1 column 5: expected ',' or ']' in array, got byte 0x00");
    parse_bad(S("\"a\"\x00"), "expected end of input after the JSON value, got byte 0x00");
    parse_bad(S("[1,2"), "expected ',' or ']' in array, got end of input");
    parse_bad(S("'a'"), "expected a value, got '''");

    rg_json_doc *d = (rg_json_doc *)1;
    CHECK(rg_json_parse("[]", 2, RG_JSON_MAX_DEPTH + 1, "x", &d) == RG_ERR_INVALID_ARG && d == NULL,
          "max_depth beyond the recursion cap is refused");
    CHECK(rg_json_parse(NULL, 3, 0, "x", &d) == RG_ERR_INVALID_ARG, "NULL text");
    CHECK(rg_json_parse("1", 1, 0, "x", NULL) == RG_ERR_INVALID_ARG, "NULL out");
}

/* "[[[...]]]" (or {"a":{"a":...}}) nested n deep. */
static char *nested(int n, bool objects, size_t *len) {
    char *s = malloc((size_t)n * 6 + 8);
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        if (objects) { memcpy(s + k, "{\"a\":", 5); k += 5; }
        else s[k++] = '[';
    }
    s[k++] = '1';
    for (int i = 0; i < n; i++) s[k++] = objects ? '}' : ']';
    s[k] = '\0';
    *len = k;
    return s;
}

static void test_depth(void) {
    for (int obj = 0; obj < 2; obj++) {
        size_t len;
        char *s = nested(RG_JSON_DEFAULT_DEPTH, obj, &len);
        rg_json_doc *d = NULL;
        CHECK(rg_json_parse(s, len, 0, "deep", &d) == RG_OK, "%d levels parse: %s", RG_JSON_DEFAULT_DEPTH, rg_last_error());
        const rg_json *v = rg_json_root(d);
        int depth = 0;
        while (v && (v->type == RG_JSON_ARRAY || v->type == RG_JSON_OBJECT)) {
            v = obj ? rg_json_get(v, "a") : &v->items[0];
            depth++;
        }
        CHECK(depth == RG_JSON_DEFAULT_DEPTH && v && v->is_int && v->i == 1, "walked %d levels down to the 1", depth);
        rg_json_free(d);
        free(s);
        s = nested(RG_JSON_DEFAULT_DEPTH + 1, obj, &len);
        d = NULL;
        CHECK(rg_json_parse(s, len, 0, "deep", &d) == RG_ERR_FORMAT && !d, "%d levels fail", RG_JSON_DEFAULT_DEPTH + 1);
        char want[64];
        snprintf(want, sizeof want, "column %d: nesting deeper than 128 levels",
                 obj ? 5 * RG_JSON_DEFAULT_DEPTH + 1 : RG_JSON_DEFAULT_DEPTH + 1);
        CHECK(strstr(rg_last_error(), want) != NULL, "depth message '%s' contains '%s'", rg_last_error(), want);
        free(s);
    }
    size_t len;
    char *s = nested(RG_JSON_MAX_DEPTH, false, &len);
    rg_json_doc *d = NULL;
    CHECK(rg_json_parse(s, len, RG_JSON_MAX_DEPTH, "deep", &d) == RG_OK, "%d levels with max_depth %d",
          RG_JSON_MAX_DEPTH, RG_JSON_MAX_DEPTH);
    rg_json_free(d);
    free(s);
    d = NULL;
    CHECK(rg_json_parse(S("[[[1]]]"), 2, "deep", &d) == RG_ERR_FORMAT && strstr(rg_last_error(), "deeper than 2"),
          "max_depth 2 refuses 3 levels: %s", rg_last_error());
}

static void test_objects(void) {
    rg_json_doc *d = parse_ok(S("{\"b\":1,\"a\":{\"x\":[1,\"s\",null]},\"ab\":true,\"\":2,\"a\\u0000\":3}"));
    if (!d) return;
    const rg_json *r = rg_json_root(d);
    CHECK(r->len == 5 && strcmp(r->keys[0].s, "b") == 0 && strcmp(r->keys[2].s, "ab") == 0, "document order kept");
    const rg_json *a = rg_json_get(r, "a"), *ab = rg_json_get(r, "ab"), *e = rg_json_get(r, "");
    CHECK(a && a->type == RG_JSON_OBJECT && ab && ab->type == RG_JSON_BOOL && e && e->i == 2, "lookup by key");
    const rg_json *x = rg_json_get(a, "x");
    CHECK(x && x->type == RG_JSON_ARRAY && x->len == 3 && x->items[1].type == RG_JSON_STRING &&
              strcmp(x->items[1].str, "s") == 0 && x->items[2].type == RG_JSON_NULL,
          "nested array");
    CHECK(rg_json_get(r, "c") == NULL && rg_json_get(r, "aa") == NULL && rg_json_get(x, "a") == NULL,
          "absent keys and non-objects give NULL");
    CHECK(r->keys[4].len == 2 && a->line == 1 && a->col == 12 && r->keys[1].col == 8, "key length with NUL, positions");
    rg_json_free(d);
}

/* ---- random documents: written here, parsed, written again from the tree ---- */

static void emit_random_string(rg_rng *rng, rg_strbuf *json, rg_strbuf *want) {
    rg_strbuf_append(json, "\"", 1);
    int n = (int)rg_rng_below(rng, 12);
    for (int i = 0; i < n; i++) {
        uint32_t cp;
        switch (rg_rng_below(rng, 6)) {
        case 0: cp = 0x20 + (uint32_t)rg_rng_below(rng, 0x5f); break;
        case 1: cp = (uint32_t)rg_rng_below(rng, 0x20); break;
        case 2: cp = rg_rng_below(rng, 2) ? '"' : '\\'; break;
        case 3: cp = 0x80 + (uint32_t)rg_rng_below(rng, 0x780); break;
        case 4: cp = 0x800 + (uint32_t)rg_rng_below(rng, 0xf800); if (cp >= 0xd800 && cp < 0xe000) cp = 0xe000; break;
        default: cp = 0x10000 + (uint32_t)rg_rng_below(rng, 0x100000); break;
        }
        char u[4];
        size_t ul;
        if (cp < 0x80) { u[0] = (char)cp; ul = 1; }
        else if (cp < 0x800) { u[0] = (char)(0xc0 | cp >> 6); u[1] = (char)(0x80 | (cp & 63)); ul = 2; }
        else if (cp < 0x10000) {
            u[0] = (char)(0xe0 | cp >> 12); u[1] = (char)(0x80 | (cp >> 6 & 63)); u[2] = (char)(0x80 | (cp & 63)); ul = 3;
        } else {
            u[0] = (char)(0xf0 | cp >> 18); u[1] = (char)(0x80 | (cp >> 12 & 63));
            u[2] = (char)(0x80 | (cp >> 6 & 63)); u[3] = (char)(0x80 | (cp & 63)); ul = 4;
        }
        rg_strbuf_append(want, u, ul);
        bool must_escape = cp < 0x20 || cp == '"' || cp == '\\';
        if (!must_escape && rg_rng_below(rng, 2)) {
            rg_strbuf_append(json, u, ul);
        } else if (cp < 0x10000) {
            rg_strbuf_printf(json, rg_rng_below(rng, 2) ? "\\u%04x" : "\\u%04X", (unsigned)cp);
        } else {
            uint32_t v = cp - 0x10000;
            rg_strbuf_printf(json, "\\u%04x\\u%04X", (unsigned)(0xd800 + (v >> 10)), (unsigned)(0xdc00 + (v & 0x3ff)));
        }
    }
    rg_strbuf_append(json, "\"", 1);
}

static void emit_ws(rg_rng *rng, rg_strbuf *b) {
    static const char ws[] = " \t\r\n";
    int n = rg_rng_below(rng, 4) == 0 ? (int)rg_rng_below(rng, 3) : 0;
    for (int i = 0; i < n; i++) rg_strbuf_append(b, &ws[rg_rng_below(rng, 4)], 1);
}

/* json: with random escapes and whitespace; canon: compact, written by rg_json_write_string. */
static void emit_random(rg_rng *rng, int depth, rg_strbuf *json, rg_strbuf *canon) {
    emit_ws(rng, json);
    int kind = (int)rg_rng_below(rng, depth > 4 ? 4 : 6);
    if (kind == 0) {
        const char *w = rg_rng_below(rng, 3) == 0 ? "null" : rg_rng_below(rng, 2) ? "true" : "false";
        rg_strbuf_puts(json, w);
        rg_strbuf_puts(canon, w);
    } else if (kind == 1) {
        int64_t v = (int64_t)rg_rng_u64(rng) >> rg_rng_below(rng, 64);
        rg_strbuf_printf(json, "%" PRId64, v);
        rg_strbuf_printf(canon, "%" PRId64, v);
    } else if (kind == 2) {
        double v = rg_rng_normal(rng) * pow(10, (double)rg_rng_below(rng, 40) - 20);
        rg_strbuf_printf(json, "%.17e", v);
        rg_strbuf_printf(canon, "%.17g", v);
    } else if (kind == 3) {
        rg_strbuf want;
        rg_strbuf_init(&want);
        emit_random_string(rng, json, &want);
        rg_json_write_string(canon, want.data ? want.data : "", want.len);
        rg_strbuf_free(&want);
    } else {
        bool obj = kind == 5;
        int n = (int)rg_rng_below(rng, 6);
        rg_strbuf_append(json, obj ? "{" : "[", 1);
        rg_strbuf_append(canon, obj ? "{" : "[", 1);
        for (int i = 0; i < n; i++) {
            if (i) { rg_strbuf_append(json, ",", 1); rg_strbuf_append(canon, ",", 1); }
            if (obj) {
                emit_ws(rng, json);
                rg_strbuf key;
                rg_strbuf_init(&key);
                rg_strbuf tmp;
                rg_strbuf_init(&tmp);
                emit_random_string(rng, &tmp, &key);
                rg_strbuf_printf(&key, "#%d", i); /* keys stay unique */
                rg_json_write_string(json, key.data, key.len);
                rg_json_write_string(canon, key.data, key.len);
                rg_strbuf_free(&key);
                rg_strbuf_free(&tmp);
                emit_ws(rng, json);
                rg_strbuf_append(json, ":", 1);
                rg_strbuf_append(canon, ":", 1);
            }
            emit_random(rng, depth + 1, json, canon);
        }
        emit_ws(rng, json);
        rg_strbuf_append(json, obj ? "}" : "]", 1);
        rg_strbuf_append(canon, obj ? "}" : "]", 1);
    }
    emit_ws(rng, json);
}

/* Writes the parsed tree compactly, the same way as emit_random's canon. */
static void write_tree(const rg_json *v, rg_strbuf *out) {
    switch (v->type) {
    case RG_JSON_NULL: rg_strbuf_puts(out, "null"); break;
    case RG_JSON_BOOL: rg_strbuf_puts(out, v->b ? "true" : "false"); break;
    case RG_JSON_NUMBER:
        if (v->is_int) rg_strbuf_printf(out, "%" PRId64, v->i);
        else if (isinf(v->num)) rg_strbuf_puts(out, v->num > 0 ? "1e999" : "-1e999"); /* parses back to inf */
        else rg_strbuf_printf(out, "%.17g", v->num);
        break;
    case RG_JSON_STRING: rg_json_write_string(out, v->str, v->len); break;
    case RG_JSON_ARRAY:
    case RG_JSON_OBJECT: {
        bool obj = v->type == RG_JSON_OBJECT;
        rg_strbuf_append(out, obj ? "{" : "[", 1);
        for (size_t i = 0; i < v->len; i++) {
            if (i) rg_strbuf_append(out, ",", 1);
            if (obj) {
                rg_json_write_string(out, v->keys[i].s, v->keys[i].len);
                rg_strbuf_append(out, ":", 1);
                /* lookup by key finds this member (keys with NUL are unreachable by C string) */
                if (strlen(v->keys[i].s) == v->keys[i].len && rg_json_get(v, v->keys[i].s) != &v->items[i])
                    rg_strbuf_puts(out, "LOOKUP-MISMATCH");
            }
            write_tree(&v->items[i], out);
        }
        rg_strbuf_append(out, obj ? "}" : "]", 1);
        break;
    }
    }
}

static void test_random_documents(rg_rng *rng) {
    int n = rg_test_quick() ? 300 : 3000, bad = 0;
    for (int k = 0; k < n; k++) {
        rg_strbuf json, canon, back;
        rg_strbuf_init(&json);
        rg_strbuf_init(&canon);
        rg_strbuf_init(&back);
        emit_random(rng, 0, &json, &canon);
        rg_json_doc *d = NULL;
        if (rg_json_parse(json.data, json.len, 0, "random", &d) != RG_OK) {
            if (bad++ < 3) CHECK(false, "random document failed: %s\n%s", rg_last_error(), json.data);
        } else {
            write_tree(rg_json_root(d), &back);
            if (back.len != canon.len || memcmp(back.data, canon.data, canon.len) != 0)
                if (bad++ < 3) CHECK(false, "random document changed:\n%s\n%s\n%s", json.data, canon.data, back.data);
        }
        rg_json_free(d);
        rg_strbuf_free(&json);
        rg_strbuf_free(&canon);
        rg_strbuf_free(&back);
    }
    CHECK(bad == 0, "%d of %d random documents did not survive parse + write", bad, n);
}

/* Random byte edits of valid documents: parse succeeds or fails cleanly. */
static void test_mutations(rg_rng *rng) {
    static const char *seeds[] = {
        "{\"a\":[1,2.5e3,-0,true,false,null],\"b\":{\"c\":\"\\u00e9\\ud83d\\ude00x\\n\"},\"d\":\"\xc3\xa9\"}",
        "[[[[{\"k\":\"v\"}]]],\"\\\\\",1e-5,{}]",
        "{\"__metadata__\":{\"format\":\"pt\"},\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}",
    };
    static const char interesting[] = "{}[]\":,\\u0123456789-+.eE \n\ttrfnl\x80\xc3\xed\xf0\xff";
    int n = rg_test_quick() ? 3000 : 30000, bad = 0;
    char buf[256];
    for (int k = 0; k < n; k++) {
        const char *seed = seeds[rg_rng_below(rng, 3)];
        size_t len = strlen(seed);
        memcpy(buf, seed, len);
        int edits = 1 + (int)rg_rng_below(rng, 3);
        for (int e = 0; e < edits; e++) {
            size_t at = rg_rng_below(rng, len);
            char c = rg_rng_below(rng, 2) ? interesting[rg_rng_below(rng, sizeof interesting - 1)]
                                          : (char)rg_rng_below(rng, 256);
            int op = (int)rg_rng_below(rng, 3);
            if (op == 0) buf[at] = c;
            else if (op == 1 && len > 1) { memmove(buf + at, buf + at + 1, len - at - 1); len--; }
            else if (len < sizeof buf - 1) { memmove(buf + at + 1, buf + at, len - at); buf[at] = c; len++; }
        }
        /* Exact-size heap copy so that ASan sees any read past the end. */
        char *exact = malloc(len ? len : 1);
        memcpy(exact, buf, len);
        rg_json_doc *d = NULL;
        rg_status s = rg_json_parse(exact, len, 0, "mut", &d);
        if (s == RG_OK) {
            rg_strbuf back;
            rg_strbuf_init(&back);
            write_tree(rg_json_root(d), &back);
            rg_json_doc *d2 = NULL;
            if (rg_json_parse(back.data, back.len, 0, "again", &d2) != RG_OK && bad++ < 3)
                CHECK(false, "mutated document parsed, but its rewrite did not: %s\n%.*s\n%s", rg_last_error(),
                      (int)len, exact, back.data);
            rg_json_free(d2);
            rg_strbuf_free(&back);
        } else if (s != RG_ERR_FORMAT || strncmp(rg_last_error(), "mut: line ", 10) != 0 || d) {
            if (bad++ < 3) CHECK(false, "mutation failed badly: status %d, '%s'", (int)s, rg_last_error());
        }
        rg_json_free(d);
        free(exact);
    }
    CHECK(bad == 0, "%d of %d mutated documents misbehaved", bad, n);
}

int main(void) {
    rg_rng rng;
    rg_test_init("test_json", &rng);
    test_scalars();
    test_numbers(&rng);
    test_strings();
    test_utf8();
    test_errors();
    test_depth();
    test_objects();
    test_random_documents(&rng);
    test_mutations(&rng);
    return rg_test_finish();
}
