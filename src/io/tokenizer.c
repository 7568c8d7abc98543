/* tokenizer.c — GPT-2 byte-level BPE (ragged.h section 8): vocab.json and
 * merges.txt loading, merges by rank over pre-tokens (pretok.c), a cache of
 * encoded pieces, decoding. */
#include "core/alloc.h"
#include "core/file.h"
#include "core/status.h"
#include "io/json.h"
#include "io/tokenizer.h"
#include "io/tokenizer_load.h"
#include "ragged.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>

#define FN "rg_tokenizer_load"
#define EOT_TEXT "<|endoftext|>"
#define EOT_LEN (sizeof EOT_TEXT - 1)

/* The cache: pieces up to CACHE_PIECE bytes, CACHE_ENTRIES of them; when full
 * it is emptied (cheap, and text's common words come back at once). */
#define CACHE_SLOTS (1u << 18)
#define CACHE_ENTRIES (1u << 17)
#define CACHE_PIECE 64
#define CACHE_BYTES ((size_t)CACHE_ENTRIES * 16)
#define CACHE_IDS ((size_t)CACHE_ENTRIES * 8)

typedef struct merge_slot {
    int32_t a, b;        /* the pair; a = -1 marks an empty slot */
    int32_t rank, merged;
} merge_slot;

typedef struct cache_entry {
    uint64_t hash;
    uint32_t len, n_ids, bytes_off, ids_off;
} cache_entry;

typedef struct heap_item { int32_t rank, pos; } heap_item;

struct rg_tokenizer {
    int32_t vocab_size;      /* 1 + largest id */
    int32_t eot;             /* id of <|endoftext|> or -1 */
    int32_t byte_id[256];    /* id of each single-byte token */
    uint8_t *tok_bytes;      /* all tokens' bytes, end to end */
    int64_t *tok_off;        /* (vocab_size) offset of each token's bytes */
    int32_t *tok_len;        /* (vocab_size) byte length, -1 for ids not in the vocabulary */
    int32_t *vocab_slots;    /* open addressing: token bytes -> id (-1 empty) */
    size_t vocab_mask;
    merge_slot *merges;      /* open addressing: (a, b) -> rank, merged id */
    size_t merge_mask;
    /* encode cache */
    uint32_t *cache_slots;   /* (CACHE_SLOTS) entry index + 1, 0 empty */
    cache_entry *cache;      /* (CACHE_ENTRIES) */
    uint8_t *cache_bytes;    /* (CACHE_BYTES) */
    int32_t *cache_ids;      /* (CACHE_IDS) */
    uint32_t cache_n, cache_bytes_n, cache_ids_n;
    /* BPE scratch, for pieces of up to scratch_cap bytes */
    size_t scratch_cap;
    int32_t *sym, *next, *prev, *changed;
    heap_item *heap;
};

static uint64_t hash_bytes(const uint8_t *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t hash_pair(int32_t a, int32_t b) {
    uint64_t h = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 31);
}

/* Grows *p (of *cap elements of size elem) to hold at least need elements. */
static rg_status grow(void **p, size_t *cap, size_t need, size_t elem, const char *what) {
    if (need <= *cap) return RG_OK;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) return rg_fail(RG_ERR_OVERFLOW, "%s: %zu elements overflow", what, need);
        ncap *= 2;
    }
    void *np;
    RG_TRY(rg_alloc(&np, ncap, elem, what));
    if (*cap) memcpy(np, *p, *cap * elem);
    rg_free(*p);
    *p = np;
    *cap = ncap;
    return RG_OK;
}

void rg_token_buf_free(rg_token_buf *b) {
    if (!b) return;
    rg_free(b->ids);
    memset(b, 0, sizeof *b);
}

void rg_byte_buf_free(rg_byte_buf *b) {
    if (!b) return;
    rg_free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- GPT-2's byte <-> unicode alphabet ---- */

/* Printable Latin-1 bytes stand for themselves; the 68 others are given the
 * code points 256, 257, ... in byte order. */
static void byte_alphabet(uint32_t byte_cp[256], int16_t cp_byte[512]) {
    uint32_t extra = 256;
    for (int i = 0; i < 512; i++) cp_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        byte_cp[b] = printable ? (uint32_t)b : extra++;
        cp_byte[byte_cp[b]] = (int16_t)b;
    }
}

/* ---- loading ---- */

typedef rg_tok_loader loader;

/* A format error at line of the file being read (0: no line known). */
static rg_status lfail_line(const loader *L, int line, const char *what) {
    if (line > 0) return rg_fail(RG_ERR_FORMAT, "%s: %s:%d: %s", L->fn, L->path, line, what);
    return rg_fail(RG_ERR_FORMAT, "%s: %s: %s", L->fn, L->path, what);
}

/* The whole file (NUL-terminated) through the shared reader, as bytes. */
static rg_status slurp(const char *path, uint8_t **out, size_t *len) {
    char *raw;
    rg_status st = rg_read_file(FN, path, &raw, len);
    *out = (uint8_t *)raw;
    return st;
}

/* Converts UTF-8 text s[0..n) of alphabet characters into the bytes they
 * stand for, in L->tmp. Errors name line. */
static rg_status chars_to_bytes(loader *L, const uint8_t *s, size_t n, int line) {
    L->tmp_n = 0;
    RG_TRY(grow((void **)&L->tmp, &L->tmp_cap, n, 1, FN ": token buffer"));
    for (size_t a = 0; a < n;) {
        uint32_t cp;
        size_t k = rg_utf8_decode(s + a, n - a, &cp);
        if (!k) return lfail_line(L, line, "invalid UTF-8");
        if (cp >= 512 || L->cp_byte[cp] < 0) {
            char msg[96];
            snprintf(msg, sizeof msg, "character U+%04X is not in GPT-2's byte alphabet", (unsigned)cp);
            return lfail_line(L, line, msg);
        }
        L->tmp[L->tmp_n++] = (uint8_t)L->cp_byte[cp];
        a += k;
    }
    return RG_OK;
}

/* Looks up token bytes s[0..n) in the vocabulary: its id or -1. */
static int32_t vocab_find(const rg_tokenizer *t, const uint8_t *s, size_t n) {
    for (size_t h = hash_bytes(s, n) & t->vocab_mask;; h = (h + 1) & t->vocab_mask) {
        int32_t id = t->vocab_slots[h];
        if (id < 0) return -1;
        if ((size_t)t->tok_len[id] == n && memcmp(t->tok_bytes + t->tok_off[id], s, n) == 0) return id;
    }
}

typedef struct vocab_entry { int64_t off; int32_t len, id; int line; } vocab_entry;

rg_status rg_tok_begin(const char *fn, rg_tok_loader *L, rg_tokenizer **t) {
    memset(L, 0, sizeof *L);
    L->fn = fn;
    uint32_t byte_cp[256];
    byte_alphabet(byte_cp, L->cp_byte);
    return rg_calloc((void **)t, 1, sizeof **t, "rg_tokenizer_load: tokenizer");
}

void rg_tok_loader_free(rg_tok_loader *L) {
    rg_free(L->tmp);
    L->tmp = NULL;
    L->tmp_n = L->tmp_cap = 0;
}

/* obj: { "token": id, ... } (plus the extra raw-byte token, if any). */
rg_status rg_tok_vocab(rg_tokenizer *t, loader *L, const rg_json *obj, const char *extra, int32_t extra_id) {
    vocab_entry *ents = NULL;
    uint8_t *bytes = NULL;
    size_t n_ents = 0, bytes_n = 0, extra_n = extra ? strlen(extra) : 0;
    int32_t max_id = extra ? extra_id : -1;
    rg_status st = RG_OK;
    if (obj->type != RG_JSON_OBJECT || obj->len == 0)
        return lfail_line(L, (int)obj->line, "expected a non-empty object of token -> id");
    n_ents = obj->len;
    size_t total = extra_n;
    for (size_t m = 0; m < n_ents; m++) total += obj->keys[m].len;
    if ((st = rg_alloc((void **)&ents, n_ents + 1, sizeof *ents, "rg_tokenizer_load: vocabulary")) ||
        (st = rg_alloc((void **)&bytes, total ? total : 1, 1, "rg_tokenizer_load: vocabulary")))
        goto done;
    for (size_t m = 0; m < n_ents; m++) {
        const rg_json_key *k = &obj->keys[m];
        const rg_json *v = &obj->items[m];
        if ((st = chars_to_bytes(L, (const uint8_t *)k->s, k->len, (int)k->line)) != RG_OK) goto done;
        if (L->tmp_n == 0) { st = lfail_line(L, (int)k->line, "empty token"); goto done; }
        if (v->type != RG_JSON_NUMBER || !v->is_int || v->i < 0 || v->i >= INT32_MAX) {
            st = lfail_line(L, (int)v->line, "id is not an integer in [0, INT32_MAX)");
            goto done;
        }
        memcpy(bytes + bytes_n, L->tmp, L->tmp_n);
        ents[m] = (vocab_entry){(int64_t)bytes_n, (int32_t)L->tmp_n, (int32_t)v->i, (int)k->line};
        bytes_n += L->tmp_n;
        if ((int32_t)v->i > max_id) max_id = (int32_t)v->i;
    }

    t->vocab_size = max_id + 1;
    size_t slots = 16;
    while (slots < 2 * (n_ents + 1)) slots *= 2;
    t->vocab_mask = slots - 1;
    if ((st = rg_alloc((void **)&t->tok_off, (size_t)t->vocab_size, sizeof(int64_t), "rg_tokenizer_load: vocabulary")) ||
        (st = rg_alloc((void **)&t->tok_len, (size_t)t->vocab_size, sizeof(int32_t), "rg_tokenizer_load: vocabulary")) ||
        (st = rg_alloc((void **)&t->vocab_slots, slots, sizeof(int32_t), "rg_tokenizer_load: vocabulary")))
        goto done;
    for (int32_t i = 0; i < t->vocab_size; i++) t->tok_len[i] = -1;
    for (size_t i = 0; i < slots; i++) t->vocab_slots[i] = -1;
    t->tok_bytes = bytes;
    bytes = NULL;
    for (size_t e = 0; e < n_ents; e++) {
        vocab_entry *v = &ents[e];
        if (t->tok_len[v->id] >= 0) {
            char msg[64];
            snprintf(msg, sizeof msg, "id %d is given twice", (int)v->id);
            st = lfail_line(L, v->line, msg);
            goto done;
        }
        if (vocab_find(t, t->tok_bytes + v->off, (size_t)v->len) >= 0) {
            st = lfail_line(L, v->line, "token is given twice");
            goto done;
        }
        t->tok_off[v->id] = v->off;
        t->tok_len[v->id] = v->len;
        size_t h = hash_bytes(t->tok_bytes + v->off, (size_t)v->len) & t->vocab_mask;
        while (t->vocab_slots[h] >= 0) h = (h + 1) & t->vocab_mask;
        t->vocab_slots[h] = v->id;
    }
    if (extra) { /* an added token: the same id when the vocabulary has it, else a new entry */
        int32_t have = vocab_find(t, (const uint8_t *)extra, extra_n);
        if (have >= 0 && have != extra_id) {
            char msg[160];
            snprintf(msg, sizeof msg, "added token '%s' has id %d but the vocabulary gives it %d", extra,
                     (int)extra_id, (int)have);
            st = lfail_line(L, 0, msg);
            goto done;
        }
        if (have < 0 && t->tok_len[extra_id] >= 0) {
            char msg[160];
            snprintf(msg, sizeof msg, "added token '%s' has id %d, which the vocabulary gives to another token",
                     extra, (int)extra_id);
            st = lfail_line(L, 0, msg);
            goto done;
        }
        if (have < 0) {
            memcpy(t->tok_bytes + bytes_n, extra, extra_n);
            t->tok_off[extra_id] = (int64_t)bytes_n;
            t->tok_len[extra_id] = (int32_t)extra_n;
            size_t h = hash_bytes((const uint8_t *)extra, extra_n) & t->vocab_mask;
            while (t->vocab_slots[h] >= 0) h = (h + 1) & t->vocab_mask;
            t->vocab_slots[h] = extra_id;
        }
    }
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        t->byte_id[b] = vocab_find(t, &c, 1);
        if (t->byte_id[b] < 0) {
            st = rg_fail(RG_ERR_FORMAT, "%s: %s: no token for the single byte 0x%02X", L->fn, L->path, b);
            goto done;
        }
    }
    t->eot = vocab_find(t, (const uint8_t *)EOT_TEXT, EOT_LEN);
done:
    rg_free(ents);
    rg_free(bytes);
    return st;
}

static merge_slot *merge_find(const rg_tokenizer *t, int32_t a, int32_t b) {
    for (size_t h = hash_pair(a, b) & t->merge_mask;; h = (h + 1) & t->merge_mask) {
        merge_slot *m = &t->merges[h];
        if (m->a < 0) return NULL;
        if (m->a == a && m->b == b) return m;
    }
}

rg_status rg_tok_merges_init(rg_tokenizer *t, size_t n) {
    size_t slots = 16;
    while (slots < 2 * n) slots *= 2;
    RG_TRY(rg_alloc((void **)&t->merges, slots, sizeof(merge_slot), "rg_tokenizer_load: merges"));
    t->merge_mask = slots - 1;
    for (size_t i = 0; i < slots; i++) t->merges[i].a = -1;
    return RG_OK;
}

rg_status rg_tok_merge(rg_tokenizer *t, loader *L, const uint8_t *sa, size_t na, const uint8_t *sb, size_t nb,
                       int32_t rank, int line) {
    int32_t a, b, m;
    RG_TRY(chars_to_bytes(L, sa, na, line));
    if ((a = vocab_find(t, L->tmp, L->tmp_n)) < 0) return lfail_line(L, line, "first token not in the vocabulary");
    size_t ba = L->tmp_n;
    /* the concatenation: a's bytes then b's, in L->tmp */
    RG_TRY(grow((void **)&L->tmp, &L->tmp_cap, ba + 4 * nb, 1, "rg_tokenizer_load: token buffer"));
    size_t keep_cap = L->tmp_cap;
    uint8_t *cat = L->tmp;
    L->tmp = NULL;
    L->tmp_cap = 0;
    rg_status st = chars_to_bytes(L, sb, nb, line);
    if (st == RG_OK && (b = vocab_find(t, L->tmp, L->tmp_n)) < 0)
        st = lfail_line(L, line, "second token not in the vocabulary");
    if (st == RG_OK) {
        memcpy(cat + ba, L->tmp, L->tmp_n);
        if ((m = vocab_find(t, cat, ba + L->tmp_n)) < 0) st = lfail_line(L, line, "merged token not in the vocabulary");
    }
    rg_free(L->tmp);
    L->tmp = cat;
    L->tmp_cap = keep_cap;
    if (st != RG_OK) return st;
    if (!merge_find(t, a, b)) { /* a repeated pair keeps its first rank */
        size_t h = hash_pair(a, b) & t->merge_mask;
        while (t->merges[h].a >= 0) h = (h + 1) & t->merge_mask;
        t->merges[h] = (merge_slot){a, b, rank, m};
    }
    return RG_OK;
}

/* merges.txt: optional "#version" line, then "a b" per line, rank = order. */
static rg_status load_merges(rg_tokenizer *t, loader *L, const uint8_t *s, size_t len) {
    size_t n_lines = 1;
    for (size_t i = 0; i < len; i++) n_lines += s[i] == '\n';
    RG_TRY(rg_tok_merges_init(t, n_lines));
    int32_t rank = 0;
    for (size_t p = 0, line = 1; p < len; line++) {
        size_t e = p;
        while (e < len && s[e] != '\n') e++;
        size_t next = e + 1, end = e;
        if (end > p && s[end - 1] == '\r') end--;
        if (line == 1 && end - p >= 8 && memcmp(s + p, "#version", 8) == 0) { p = next; continue; }
        if (end == p) { p = next; continue; } /* blank lines (the file's last) */
        size_t sp = p;
        while (sp < end && s[sp] != ' ') sp++;
        size_t sp2 = sp + 1;
        while (sp2 < end && s[sp2] != ' ') sp2++;
        if (sp == p || sp >= end - 1 || sp2 != end)
            return lfail_line(L, (int)line, "expected two tokens separated by one space");
        RG_TRY(rg_tok_merge(t, L, s + p, sp - p, s + sp + 1, end - sp - 1, rank, (int)line));
        rank++;
        p = next;
    }
    return RG_OK;
}

rg_status rg_tok_finish(rg_tokenizer *t, const char *fn) {
    rg_status st;
    if ((st = rg_calloc((void **)&t->cache_slots, CACHE_SLOTS, sizeof(uint32_t), fn)) ||
        (st = rg_alloc((void **)&t->cache, CACHE_ENTRIES, sizeof(cache_entry), fn)) ||
        (st = rg_alloc((void **)&t->cache_bytes, CACHE_BYTES, 1, fn)) ||
        (st = rg_alloc((void **)&t->cache_ids, CACHE_IDS, sizeof(int32_t), fn)))
        return st;
    return RG_OK;
}

rg_status rg_tokenizer_load(const char *vocab_json, const char *merges_txt, rg_tokenizer **out) {
    if (!out) return rg_fail(RG_ERR_INVALID_ARG, FN ": out is NULL");
    *out = NULL;
    if (!vocab_json || !merges_txt) return rg_fail(RG_ERR_INVALID_ARG, FN ": a path is NULL");
    rg_tokenizer *t;
    loader L;
    RG_TRY(rg_tok_begin(FN, &L, &t));
    uint8_t *buf = NULL;
    size_t len;
    rg_json_doc *doc = NULL;
    rg_status st;
    L.path = vocab_json;
    if ((st = slurp(vocab_json, &buf, &len)) != RG_OK ||
        (st = rg_json_parse((const char *)buf, len, 0, vocab_json, &doc)) != RG_OK ||
        (st = rg_tok_vocab(t, &L, rg_json_root(doc), NULL, 0)) != RG_OK)
        goto fail;
    rg_json_free(doc);
    doc = NULL;
    rg_free(buf);
    buf = NULL;
    L.path = merges_txt;
    if ((st = slurp(merges_txt, &buf, &len)) != RG_OK || (st = load_merges(t, &L, buf, len)) != RG_OK ||
        (st = rg_tok_finish(t, FN ": cache")) != RG_OK)
        goto fail;
    rg_free(buf);
    rg_tok_loader_free(&L);
    *out = t;
    rg_clear_error();
    return RG_OK;
fail:
    rg_json_free(doc);
    rg_free(buf);
    rg_tok_loader_free(&L);
    rg_tokenizer_free(t);
    return st;
}

static void free_scratch(rg_tokenizer *t) {
    rg_free(t->sym);
    rg_free(t->next);
    rg_free(t->prev);
    rg_free(t->changed);
    rg_free(t->heap);
    t->sym = t->next = t->prev = t->changed = NULL;
    t->heap = NULL;
    t->scratch_cap = 0;
}

void rg_tokenizer_free(rg_tokenizer *t) {
    if (!t) return;
    rg_free(t->tok_bytes);
    rg_free(t->tok_off);
    rg_free(t->tok_len);
    rg_free(t->vocab_slots);
    rg_free(t->merges);
    rg_free(t->cache_slots);
    rg_free(t->cache);
    rg_free(t->cache_bytes);
    rg_free(t->cache_ids);
    free_scratch(t);
    rg_free(t);
}

int32_t rg_tokenizer_vocab_size(const rg_tokenizer *t) { return t ? t->vocab_size : 0; }
int32_t rg_tokenizer_eot_id(const rg_tokenizer *t) { return t ? t->eot : -1; }

/* ---- encoding ---- */

static bool heap_less(heap_item x, heap_item y) { return x.rank < y.rank || (x.rank == y.rank && x.pos < y.pos); }

static void heap_push(heap_item *h, size_t *n, heap_item x) {
    size_t i = (*n)++;
    while (i > 0 && heap_less(x, h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = x;
}

static heap_item heap_pop(heap_item *h, size_t *n) {
    heap_item top = h[0], x = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(h[c + 1], h[c])) c++;
        if (!heap_less(h[c], x)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = x;
    return top;
}

static void push_pair(const rg_tokenizer *t, heap_item *h, size_t *nh, int32_t i, int32_t j) {
    merge_slot *m = merge_find(t, t->sym[i], t->sym[j]);
    if (m) heap_push(h, nh, (heap_item){m->rank, i});
}

static rg_status ensure_scratch(rg_tokenizer *t, size_t n) {
    if (n <= t->scratch_cap) return RG_OK;
    if (n > (size_t)INT32_MAX / 4)
        return rg_fail(RG_ERR_OVERFLOW, "rg_tokenizer_encode: a pre-token of %zu bytes is too long", n);
    free_scratch(t);
    size_t cap = n < 256 ? 256 : n;
    rg_status st;
    if ((st = rg_alloc((void **)&t->sym, cap, sizeof(int32_t), "rg_tokenizer_encode: scratch")) ||
        (st = rg_alloc((void **)&t->next, cap, sizeof(int32_t), "rg_tokenizer_encode: scratch")) ||
        (st = rg_alloc((void **)&t->prev, cap, sizeof(int32_t), "rg_tokenizer_encode: scratch")) ||
        (st = rg_alloc((void **)&t->changed, cap, sizeof(int32_t), "rg_tokenizer_encode: scratch")) ||
        (st = rg_alloc((void **)&t->heap, 3 * cap, sizeof(heap_item), "rg_tokenizer_encode: scratch"))) {
        free_scratch(t);
        return st;
    }
    t->scratch_cap = cap;
    return RG_OK;
}

static rg_status append_ids(rg_token_buf *out, const int32_t *ids, size_t n) {
    if (n == 0) return RG_OK;
    RG_TRY(grow((void **)&out->ids, &out->cap, out->n + n, sizeof(int32_t), "rg_tokenizer_encode: output"));
    memcpy(out->ids + out->n, ids, n * sizeof(int32_t));
    out->n += n;
    return RG_OK;
}

/* BPE of one pre-token s[0..n), n >= 1, appended to out. As GPT-2 does: take
 * the lowest-ranked adjacent pair, merge each of its occurrences left to
 * right, repeat. Symbols form a linked list; a heap of (rank, position) holds
 * candidate pairs, re-checked when popped (merges may have made them stale);
 * all pairs of one rank are merged before new pairs are queued. */
static rg_status bpe(rg_tokenizer *t, const uint8_t *s, size_t n, rg_token_buf *out) {
    RG_TRY(ensure_scratch(t, n));
    int32_t *sym = t->sym, *next = t->next, *prev = t->prev, *changed = t->changed;
    int32_t len = (int32_t)n;
    heap_item *h = t->heap;
    size_t nh = 0;
    for (int32_t i = 0; i < len; i++) {
        sym[i] = t->byte_id[s[i]];
        prev[i] = i - 1;
        next[i] = i + 1;
    }
    for (int32_t i = 0; i + 1 < len; i++) push_pair(t, h, &nh, i, i + 1);
    while (nh) {
        int32_t rank = h[0].rank, nc = 0;
        while (nh && h[0].rank == rank) {
            int32_t i = heap_pop(h, &nh).pos, j = next[i];
            if (sym[i] < 0 || j >= len) continue;
            merge_slot *m = merge_find(t, sym[i], sym[j]);
            if (!m || m->rank != rank) continue;
            sym[i] = m->merged;
            sym[j] = -1;
            next[i] = next[j];
            if (next[j] < len) prev[next[j]] = i;
            changed[nc++] = i;
        }
        for (int32_t c = 0; c < nc; c++) {
            int32_t i = changed[c];
            if (sym[i] < 0) continue;
            if (prev[i] >= 0) push_pair(t, h, &nh, prev[i], i);
            if (next[i] < len) push_pair(t, h, &nh, i, next[i]);
        }
    }
    size_t k = 0;
    for (int32_t i = 0; i < len; i = next[i]) changed[k++] = sym[i];
    return append_ids(out, changed, k);
}

static rg_status encode_piece(rg_tokenizer *t, const uint8_t *s, size_t n, rg_token_buf *out) {
    if (n == 1) return append_ids(out, &t->byte_id[s[0]], 1);
    if (n > CACHE_PIECE) return bpe(t, s, n, out);
    uint64_t hash = hash_bytes(s, n);
    size_t slot = hash & (CACHE_SLOTS - 1);
    for (; t->cache_slots[slot]; slot = (slot + 1) & (CACHE_SLOTS - 1)) {
        const cache_entry *e = &t->cache[t->cache_slots[slot] - 1];
        if (e->hash == hash && e->len == n && memcmp(t->cache_bytes + e->bytes_off, s, n) == 0)
            return append_ids(out, t->cache_ids + e->ids_off, e->n_ids);
    }
    size_t before = out->n;
    RG_TRY(bpe(t, s, n, out));
    size_t k = out->n - before;
    if (t->cache_n == CACHE_ENTRIES || t->cache_bytes_n + n > CACHE_BYTES || t->cache_ids_n + k > CACHE_IDS) {
        memset(t->cache_slots, 0, CACHE_SLOTS * sizeof(uint32_t)); /* full: start over */
        t->cache_n = t->cache_bytes_n = t->cache_ids_n = 0;
        slot = hash & (CACHE_SLOTS - 1);
        while (t->cache_slots[slot]) slot = (slot + 1) & (CACHE_SLOTS - 1);
    }
    t->cache[t->cache_n] = (cache_entry){hash, (uint32_t)n, (uint32_t)k, t->cache_bytes_n, t->cache_ids_n};
    memcpy(t->cache_bytes + t->cache_bytes_n, s, n);
    memcpy(t->cache_ids + t->cache_ids_n, out->ids + before, k * sizeof(int32_t));
    t->cache_bytes_n += (uint32_t)n;
    t->cache_ids_n += (uint32_t)k;
    t->cache_slots[slot] = ++t->cache_n;
    return RG_OK;
}

/* Pre-tokenises and encodes s[0..n) (no special tokens inside). */
static rg_status encode_plain(rg_tokenizer *t, const uint8_t *s, size_t n, rg_token_buf *out) {
    for (size_t pos = 0; pos < n;) {
        size_t end = rg_pretok_next(s, n, pos);
        RG_TRY(encode_piece(t, s + pos, end - pos, out));
        pos = end;
    }
    return RG_OK;
}

/* First occurrence of "<|endoftext|>" in s[from..n), or n. */
static size_t find_eot(const uint8_t *s, size_t n, size_t from) {
    while (from + EOT_LEN <= n) {
        const uint8_t *p = memchr(s + from, '<', n - from - EOT_LEN + 1);
        if (!p) return n;
        size_t at = (size_t)(p - s);
        if (memcmp(p, EOT_TEXT, EOT_LEN) == 0) return at;
        from = at + 1;
    }
    return n;
}

rg_status rg_tokenizer_encode(rg_tokenizer *t, const void *text, size_t len, unsigned flags,
                              rg_token_buf *out) {
    if (!t || !out || (!text && len))
        return rg_fail(RG_ERR_INVALID_ARG, "rg_tokenizer_encode: %s is NULL",
                       !t ? "t" : !out ? "out" : "text");
    if (flags & ~RG_TOKENIZE_ALLOW_SPECIAL)
        return rg_fail(RG_ERR_INVALID_ARG, "rg_tokenizer_encode: unknown flags 0x%x", flags);
    const uint8_t *s = text;
    size_t n0 = out->n;
    rg_status st = RG_OK;
    if (!(flags & RG_TOKENIZE_ALLOW_SPECIAL) || t->eot < 0) {
        st = encode_plain(t, s, len, out);
    } else {
        for (size_t pos = 0; pos < len && st == RG_OK;) {
            size_t at = find_eot(s, len, pos);
            st = encode_plain(t, s + pos, at - pos, out);
            if (st == RG_OK && at < len) st = append_ids(out, &t->eot, 1);
            pos = at < len ? at + EOT_LEN : len;
        }
    }
    if (st != RG_OK) {
        out->n = n0;
        return st;
    }
    rg_clear_error();
    return RG_OK;
}

rg_status rg_tokenizer_decode(const rg_tokenizer *t, const int32_t *ids, size_t n, rg_byte_buf *out) {
    if (!t || !out || (!ids && n))
        return rg_fail(RG_ERR_INVALID_ARG, "rg_tokenizer_decode: %s is NULL", !t ? "t" : !out ? "out" : "ids");
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab_size || t->tok_len[ids[i]] < 0)
            return rg_fail(RG_ERR_INVALID_ARG, "rg_tokenizer_decode: ids[%zu] = %d is not in the vocabulary (size %d)",
                           i, (int)ids[i], (int)t->vocab_size);
        total += (size_t)t->tok_len[ids[i]];
    }
    RG_TRY(grow((void **)&out->data, &out->cap, out->n + total + 1, 1, "rg_tokenizer_decode: output"));
    char *d = out->data + out->n;
    for (size_t i = 0; i < n; i++) {
        memcpy(d, t->tok_bytes + t->tok_off[ids[i]], (size_t)t->tok_len[ids[i]]);
        d += t->tok_len[ids[i]];
    }
    out->n += total;
    out->data[out->n] = '\0';
    rg_clear_error();
    return RG_OK;
}
