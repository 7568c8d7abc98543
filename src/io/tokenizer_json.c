/* tokenizer_json.c — HuggingFace tokenizers' tokenizer.json for GPT-2-style
 * byte-level BPE (ragged.h section 8), and rg_tokenizer_load_dir. Only the
 * settings that give GPT-2's behaviour are accepted; any other (another model
 * type, a normalizer, a pre-tokenizer that is not ByteLevel, templates that add
 * tokens, ...) is refused naming the field, rather than encoding differently. */
#define _POSIX_C_SOURCE 200809L
#include "core/alloc.h"
#include "core/file.h"
#include "core/status.h"
#include "io/json.h"
#include "io/tokenizer_load.h"
#include "ragged.h"
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define FN "rg_tokenizer_load_json"
#define EOT_TEXT "<|endoftext|>"

/* "FN: PATH:LINE: FIELD: problem" with status s. */
static rg_status jfail(rg_status s, const char *path, const rg_json *at, const char *field, const char *problem) {
    return rg_fail(s, FN ": %s:%u: %s: %s", path, at ? (unsigned)at->line : 0u, field, problem);
}

static bool is_null(const rg_json *v) { return !v || v->type == RG_JSON_NULL; }

/* v's "type" string, or NULL. */
static const char *type_of(const rg_json *v) {
    const rg_json *t = rg_json_get(v, "type");
    return t && t->type == RG_JSON_STRING ? t->str : NULL;
}

/* A component that must be null (or absent). */
static rg_status want_null(const char *path, const rg_json *root, const char *field) {
    const rg_json *v = rg_json_get(root, field);
    if (is_null(v)) return RG_OK;
    char msg[160];
    const char *t = type_of(v);
    snprintf(msg, sizeof msg, "only null is supported (GPT-2 byte-level BPE), got %s%s%s%s",
             rg_json_type_name(v->type), t ? " of type \"" : "", t ? t : "", t ? "\"" : "");
    return jfail(RG_ERR_UNSUPPORTED, path, v, field, msg);
}

/* A component that must be null or {"type": "ByteLevel", ...}; when bools is
 * given, those boolean members must hold the given values if present. */
typedef struct bool_rule { const char *key; bool want; } bool_rule;
static rg_status want_byte_level(const char *path, const rg_json *root, const char *field, bool allow_null,
                                 const bool_rule *rules, int n_rules) {
    const rg_json *v = rg_json_get(root, field);
    char f[96], msg[160];
    if (is_null(v)) {
        if (allow_null) return RG_OK;
        return jfail(RG_ERR_UNSUPPORTED, path, v ? v : root, field,
                     "GPT-2 byte-level BPE needs the ByteLevel pre-tokenizer, got null");
    }
    const char *t = type_of(v);
    if (v->type != RG_JSON_OBJECT || !t || strcmp(t, "ByteLevel")) {
        snprintf(f, sizeof f, "%s.type", field);
        snprintf(msg, sizeof msg, "only \"ByteLevel\" is supported, got %s%s%s", t ? "\"" : "",
                 t ? t : rg_json_type_name(v->type), t ? "\"" : "");
        return jfail(RG_ERR_UNSUPPORTED, path, v, f, msg);
    }
    for (int i = 0; i < n_rules; i++) {
        const rg_json *b = rg_json_get(v, rules[i].key);
        if (is_null(b)) continue;
        snprintf(f, sizeof f, "%s.%s", field, rules[i].key);
        if (b->type != RG_JSON_BOOL) return jfail(RG_ERR_FORMAT, path, b, f, "expected true or false");
        if (b->b != rules[i].want) {
            snprintf(msg, sizeof msg, "only %s is supported (GPT-2's behaviour)", rules[i].want ? "true" : "false");
            return jfail(RG_ERR_UNSUPPORTED, path, b, f, msg);
        }
    }
    return RG_OK;
}

/* model: {"type": "BPE", "vocab": {...}, "merges": [...], options at GPT-2's values}. */
static rg_status check_model(const char *path, const rg_json *model) {
    if (!model || model->type != RG_JSON_OBJECT) return jfail(RG_ERR_FORMAT, path, model, "model", "expected an object");
    const char *t = type_of(model);
    if (rg_json_get(model, "type") && (!t || strcmp(t, "BPE"))) {
        char msg[128];
        snprintf(msg, sizeof msg, "only \"BPE\" is supported, got \"%s\"", t ? t : "(not a string)");
        return jfail(RG_ERR_UNSUPPORTED, path, rg_json_get(model, "type"), "model.type", msg);
    }
    static const char *must_be_null[] = {"dropout", "unk_token"};
    for (int i = 0; i < 2; i++) {
        const rg_json *v = rg_json_get(model, must_be_null[i]);
        char f[64];
        snprintf(f, sizeof f, "model.%s", must_be_null[i]);
        if (!is_null(v)) return jfail(RG_ERR_UNSUPPORTED, path, v, f, "only null is supported (GPT-2 byte-level BPE)");
    }
    static const char *empty_or_null[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const rg_json *v = rg_json_get(model, empty_or_null[i]);
        char f[64];
        snprintf(f, sizeof f, "model.%s", empty_or_null[i]);
        if (!is_null(v) && !(v->type == RG_JSON_STRING && v->len == 0))
            return jfail(RG_ERR_UNSUPPORTED, path, v, f, "only null or \"\" is supported (GPT-2 byte-level BPE)");
    }
    static const char *must_be_false[] = {"fuse_unk", "byte_fallback", "ignore_merges"};
    for (int i = 0; i < 3; i++) {
        const rg_json *v = rg_json_get(model, must_be_false[i]);
        char f[64];
        snprintf(f, sizeof f, "model.%s", must_be_false[i]);
        if (!is_null(v) && !(v->type == RG_JSON_BOOL && !v->b))
            return jfail(RG_ERR_UNSUPPORTED, path, v, f, "only false is supported (GPT-2 byte-level BPE)");
    }
    const rg_json *vocab = rg_json_get(model, "vocab"), *merges = rg_json_get(model, "merges");
    if (!vocab || vocab->type != RG_JSON_OBJECT)
        return jfail(RG_ERR_FORMAT, path, vocab ? vocab : model, "model.vocab", "expected an object of token -> id");
    if (!merges || merges->type != RG_JSON_ARRAY)
        return jfail(RG_ERR_FORMAT, path, merges ? merges : model, "model.merges", "expected an array");
    return RG_OK;
}

/* added_tokens: only <|endoftext|>; *eot_id = its id or -1. */
static rg_status check_added(const char *path, const rg_json *root, int32_t *eot_id) {
    *eot_id = -1;
    const rg_json *a = rg_json_get(root, "added_tokens");
    if (is_null(a)) return RG_OK;
    if (a->type != RG_JSON_ARRAY) return jfail(RG_ERR_FORMAT, path, a, "added_tokens", "expected an array");
    for (size_t i = 0; i < a->len; i++) {
        const rg_json *e = &a->items[i], *id = rg_json_get(e, "id"), *c = rg_json_get(e, "content");
        char f[64], msg[192];
        snprintf(f, sizeof f, "added_tokens[%zu]", i);
        if (e->type != RG_JSON_OBJECT || !id || id->type != RG_JSON_NUMBER || !id->is_int || id->i < 0 ||
            id->i >= INT32_MAX || !c || c->type != RG_JSON_STRING)
            return jfail(RG_ERR_FORMAT, path, e, f, "expected {\"id\": integer in [0, INT32_MAX), \"content\": string, ...}");
        if (strcmp(c->str, EOT_TEXT) || strlen(c->str) != c->len) {
            snprintf(msg, sizeof msg, "only \"" EOT_TEXT "\" is supported as an added token, got \"%.80s\"", c->str);
            return jfail(RG_ERR_UNSUPPORTED, path, c, f, msg);
        }
        if (*eot_id >= 0) return jfail(RG_ERR_FORMAT, path, e, f, "\"" EOT_TEXT "\" is added twice");
        *eot_id = (int32_t)id->i;
    }
    return RG_OK;
}

/* One merge: "a b" or ["a", "b"]. */
static rg_status add_merge(rg_tokenizer *t, rg_tok_loader *L, const rg_json *m, int32_t rank) {
    const uint8_t *a, *b;
    size_t na, nb;
    if (m->type == RG_JSON_STRING) {
        const char *sp = memchr(m->str, ' ', m->len);
        if (!sp || sp == m->str || (size_t)(sp - m->str) + 1 >= m->len || memchr(sp + 1, ' ', m->len - (size_t)(sp - m->str) - 1)) {
            char f[64];
            snprintf(f, sizeof f, "model.merges[%d]", (int)rank);
            return jfail(RG_ERR_FORMAT, L->path, m, f, "expected two tokens separated by one space");
        }
        a = (const uint8_t *)m->str;
        na = (size_t)(sp - m->str);
        b = (const uint8_t *)sp + 1;
        nb = m->len - na - 1;
    } else if (m->type == RG_JSON_ARRAY && m->len == 2 && m->items[0].type == RG_JSON_STRING &&
               m->items[1].type == RG_JSON_STRING && m->items[0].len && m->items[1].len) {
        a = (const uint8_t *)m->items[0].str;
        na = m->items[0].len;
        b = (const uint8_t *)m->items[1].str;
        nb = m->items[1].len;
    } else {
        char f[64];
        snprintf(f, sizeof f, "model.merges[%d]", (int)rank);
        return jfail(RG_ERR_FORMAT, L->path, m, f, "expected \"a b\" or [\"a\", \"b\"] (two non-empty tokens)");
    }
    return rg_tok_merge(t, L, a, na, b, nb, rank, (int)m->line);
}

static rg_status load_json(const char *path, rg_tokenizer *t, rg_tok_loader *L, const rg_json *root) {
    if (root->type != RG_JSON_OBJECT) return jfail(RG_ERR_FORMAT, path, root, "(root)", "expected an object");
    static const bool_rule pre_rules[] = {{"add_prefix_space", false}, {"use_regex", true}};
    const rg_json *model = rg_json_get(root, "model");
    int32_t eot;
    RG_TRY(want_null(path, root, "normalizer"));
    RG_TRY(want_null(path, root, "truncation"));
    RG_TRY(want_null(path, root, "padding"));
    RG_TRY(want_byte_level(path, root, "pre_tokenizer", false, pre_rules, 2));
    RG_TRY(want_byte_level(path, root, "post_processor", true, NULL, 0));
    RG_TRY(want_byte_level(path, root, "decoder", true, NULL, 0));
    RG_TRY(check_model(path, model));
    RG_TRY(check_added(path, root, &eot));
    const rg_json *merges = rg_json_get(model, "merges");
    if (merges->len >= INT32_MAX) return jfail(RG_ERR_FORMAT, path, merges, "model.merges", "too many merges");
    RG_TRY(rg_tok_vocab(t, L, rg_json_get(model, "vocab"), eot >= 0 ? EOT_TEXT : NULL, eot));
    RG_TRY(rg_tok_merges_init(t, merges->len));
    for (size_t i = 0; i < merges->len; i++) RG_TRY(add_merge(t, L, &merges->items[i], (int32_t)i));
    return rg_tok_finish(t, FN ": cache");
}

rg_status rg_tokenizer_load_json(const char *tokenizer_json, rg_tokenizer **out) {
    if (!out) return rg_fail(RG_ERR_INVALID_ARG, FN ": out is NULL");
    *out = NULL;
    if (!tokenizer_json) return rg_fail(RG_ERR_INVALID_ARG, FN ": tokenizer_json is NULL");
    char *buf = NULL;
    size_t len;
    RG_TRY(rg_read_file(FN, tokenizer_json, &buf, &len));
    rg_json_doc *doc = NULL;
    rg_tokenizer *t = NULL;
    rg_tok_loader L;
    rg_status st = rg_json_parse(buf, len, 0, tokenizer_json, &doc);
    rg_free(buf);
    if (st != RG_OK) return st;
    if ((st = rg_tok_begin(FN, &L, &t)) == RG_OK) {
        L.path = tokenizer_json;
        st = load_json(tokenizer_json, t, &L, rg_json_root(doc));
    }
    rg_tok_loader_free(&L);
    rg_json_free(doc);
    if (st != RG_OK) {
        rg_tokenizer_free(t);
        return st;
    }
    *out = t;
    rg_clear_error();
    return RG_OK;
}

rg_status rg_tokenizer_load_dir(const char *dir, rg_tokenizer **out) {
    if (!out) return rg_fail(RG_ERR_INVALID_ARG, "rg_tokenizer_load_dir: out is NULL");
    *out = NULL;
    if (!dir || !*dir) return rg_fail(RG_ERR_INVALID_ARG, "rg_tokenizer_load_dir: dir is NULL or empty");
    size_t n = strlen(dir) + 32;
    char *a = NULL, *b = NULL;
    rg_status st;
    if ((st = rg_alloc((void **)&a, n, 1, "rg_tokenizer_load_dir: path")) ||
        (st = rg_alloc((void **)&b, n, 1, "rg_tokenizer_load_dir: path"))) {
        rg_free(a);
        return st;
    }
    struct stat sb;
    snprintf(a, n, "%s/tokenizer.json", dir);
    if (stat(a, &sb) == 0) {
        st = rg_tokenizer_load_json(a, out);
    } else {
        snprintf(a, n, "%s/vocab.json", dir);
        snprintf(b, n, "%s/merges.txt", dir);
        struct stat sv, sm;
        if (stat(a, &sv) != 0 || stat(b, &sm) != 0)
            st = rg_fail(RG_ERR_IO, "rg_tokenizer_load_dir: '%s' holds neither tokenizer.json nor vocab.json + merges.txt",
                         dir);
        else
            st = rg_tokenizer_load(a, b, out);
    }
    rg_free(a);
    rg_free(b);
    return st;
}
