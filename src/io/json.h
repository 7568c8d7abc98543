/* json.h — a small strict JSON (RFC 8259) parser into a read-only tree, and a
 * string builder with a JSON string escaper for emitting headers. Internal.
 *
 * Strict: one value, optional whitespace around it, nothing after; strings must
 * be valid UTF-8 with escapes decoded (\uXXXX surrogate pairs become one 4-byte
 * sequence, a lone surrogate is an error); objects may not repeat a key;
 * containers nest at most max_depth deep. Errors are RG_ERR_FORMAT with the
 * message "<what>: line L column C: <problem>" (1-based, columns in bytes). */
#ifndef RG_IO_JSON_H
#define RG_IO_JSON_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ragged.h"

#define RG_JSON_DEFAULT_DEPTH 128
#define RG_JSON_MAX_DEPTH 4096   /* largest max_depth accepted (parsing recurses once per level) */

typedef enum rg_json_type {
    RG_JSON_NULL = 0,
    RG_JSON_BOOL,
    RG_JSON_NUMBER,
    RG_JSON_STRING,
    RG_JSON_ARRAY,
    RG_JSON_OBJECT,
} rg_json_type;

typedef struct rg_json rg_json;

/* An object member's key (decoded, NUL-terminated; may itself hold NULs from \u0000). */
typedef struct rg_json_key {
    const char *s;
    size_t len;
    uint32_t line, col;     /* where the key starts */
} rg_json_key;

struct rg_json {
    rg_json_type type;
    uint32_t line, col;     /* where the value starts */
    bool b;                 /* BOOL */
    bool is_int;            /* NUMBER written as an integer (no '.', no exponent) that fits int64 */
    int64_t i;              /* NUMBER, when is_int */
    double num;             /* NUMBER (+-inf when beyond double's range) */
    const char *str;        /* STRING: decoded UTF-8, NUL-terminated */
    size_t len;             /* STRING: bytes; ARRAY/OBJECT: number of items/members */
    rg_json *items;         /* ARRAY: (len) values; OBJECT: (len) member values, document order */
    rg_json_key *keys;      /* OBJECT: (len) keys, document order */
    size_t *sorted;         /* OBJECT: (len) member indices ordered by key (bytewise) */
};

typedef struct rg_json_doc rg_json_doc;

/* Parses text[0..len) (need not be NUL-terminated). max_depth <= 0 means
 * RG_JSON_DEFAULT_DEPTH. `what` prefixes error messages (e.g. a file name). */
rg_status rg_json_parse(const char *text, size_t len, int max_depth, const char *what,
                        rg_json_doc **out);
void rg_json_free(rg_json_doc *doc);
const rg_json *rg_json_root(const rg_json_doc *doc);

/* Member of an object by key (binary search), or NULL if absent or obj is not an object. */
const rg_json *rg_json_get(const rg_json *obj, const char *key);
/* "null", "a boolean", "a number", "a string", "an array", "an object". */
const char *rg_json_type_name(rg_json_type t);

/* True when s[0..n) is well-formed UTF-8 (no overlongs, surrogates or code points > U+10FFFF). */
bool rg_utf8_valid(const char *s, size_t n);

/* A growing string. Errors are sticky: the first failure is recorded in status
 * (and the last error), later appends do nothing; check status once at the end.
 * data is NUL-terminated whenever it is non-NULL. */
typedef struct rg_strbuf {
    char *data;
    size_t len, cap;
    rg_status status;
} rg_strbuf;

void rg_strbuf_init(rg_strbuf *b);
void rg_strbuf_free(rg_strbuf *b);
void rg_strbuf_append(rg_strbuf *b, const char *s, size_t n);
void rg_strbuf_puts(rg_strbuf *b, const char *s);
void rg_strbuf_printf(rg_strbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Appends s[0..n) as a JSON string literal: quotes, \" \\ and control
 * characters escaped (\b \f \n \r \t, others \u00xx), other bytes verbatim
 * (like serde_json, so the safetensors library's headers match byte for byte). */
void rg_json_write_string(rg_strbuf *b, const char *s, size_t n);

#endif
