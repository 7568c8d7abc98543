/* train_corpus.c — input patterns, token shards as documents, their packed
 * batches (see train_corpus.h). */
#define _POSIX_C_SOURCE 200809L
#include "train_corpus.h"
#include "msg.h"
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int push(path_list *l, const char *p) {
    if (l->n == l->cap) {
        int nc = l->cap ? 2 * l->cap : 16;
        char **np = realloc(l->paths, (size_t)nc * sizeof *np);
        if (!np) return msg_error("out of memory"), -1;
        l->paths = np;
        l->cap = nc;
    }
    if (!(l->paths[l->n] = strdup(p))) return msg_error("out of memory"), -1;
    l->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int add_dir(path_list *l, const char *dir, const char *suffix, const char *flag) {
    DIR *d = opendir(dir);
    if (!d) return msg_error("%s: cannot read directory '%s': %s", flag, dir, strerror(errno)), -1;
    int first = l->n, rc = 0;
    for (struct dirent *e; !rc && (e = readdir(d));) {
        if (e->d_name[0] == '.' || (suffix && !ends_with(e->d_name, suffix))) continue;
        size_t n = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(n);
        if (!p) { rc = msg_error("out of memory"); break; }
        snprintf(p, n, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) rc = push(l, p);
        free(p);
    }
    closedir(d);
    if (rc) return -1;
    if (l->n == first)
        return msg_error("%s: directory '%s' holds no %s%sfiles", flag, dir, suffix ? suffix : "", suffix ? " " : ""), -1;
    qsort(l->paths + first, (size_t)(l->n - first), sizeof *l->paths, cmp_str);
    return 0;
}

int paths_add(path_list *l, const char *pattern, bool allow_stdin, const char *suffix, const char *flag) {
    if (!strcmp(pattern, "-")) {
        if (!allow_stdin) return msg_error("%s: '-' (standard input) is not accepted here", flag), -1;
        return push(l, "-");
    }
    struct stat sb;
    if (stat(pattern, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return add_dir(l, pattern, suffix, flag);
        return push(l, pattern);
    }
    if (!strpbrk(pattern, "*?[")) return msg_error("%s: no such file: '%s'", flag, pattern), -1;
    glob_t g;
    int r = glob(pattern, 0, NULL, &g); /* glob sorts its matches */
    if (r == GLOB_NOMATCH) return msg_error("%s: the pattern '%s' matches no file", flag, pattern), -1;
    if (r != 0) return msg_error("%s: cannot expand the pattern '%s'", flag, pattern), -1;
    int rc = 0;
    for (size_t i = 0; i < g.gl_pathc && !rc; i++) {
        if (stat(g.gl_pathv[i], &sb) == 0 && S_ISDIR(sb.st_mode)) continue;
        rc = push(l, g.gl_pathv[i]);
    }
    globfree(&g);
    return rc;
}

void paths_free(path_list *l) {
    for (int i = 0; i < l->n; i++) free(l->paths[i]);
    free(l->paths);
    memset(l, 0, sizeof *l);
}

/* ---- shards ---- */

void corpus_free(corpus *c) {
    free(c->tokens);
    free(c->doc_offsets);
    memset(c, 0, sizeof *c);
}

int corpus_load(const char *pattern, const char *flag, int32_t eot, int32_t vocab, corpus *out) {
    memset(out, 0, sizeof *out);
    path_list files = {0};
    if (paths_add(&files, pattern, false, ".bin", flag)) return -1;
    int rc = 0;
    int64_t cap_tok = 0, cap_doc = 0;
    out->max_token = -1;
    for (int f = 0; f < files.n && !rc; f++) {
        rg_shard s;
        rg_status st = rg_shard_read(files.paths[f], eot, &s);
        if (st != RG_OK) { rc = msg_error("%s: %s", flag, rg_last_error()); break; }
        if (s.n_tokens == 0) { rg_shard_free(&s); continue; }
        for (int64_t i = 0; i < s.n_tokens; i++)
            if (s.tokens[i] > out->max_token) out->max_token = s.tokens[i];
        if (out->max_token >= vocab) {
            int64_t i = 0;
            while (s.tokens[i] < vocab) i++;
            rc = msg_error("%s: '%s': token %d (at %" PRId64 ") is outside the model's vocabulary of %d "
                           "(a model for these shards needs --vocab %d or more, e.g. --preset gpt2, or --init-from)",
                           flag, files.paths[f], (int)s.tokens[i], i, (int)vocab, (int)out->max_token + 1);
            rg_shard_free(&s);
            break;
        }
        if (out->n_tokens + s.n_tokens > cap_tok) {
            int64_t nc = cap_tok ? cap_tok : 1 << 20;
            while (nc < out->n_tokens + s.n_tokens) nc *= 2;
            uint16_t *nt = realloc(out->tokens, (size_t)nc * sizeof *nt);
            if (!nt) { rc = msg_error("out of memory for %" PRId64 " tokens", nc); rg_shard_free(&s); break; }
            out->tokens = nt;
            cap_tok = nc;
        }
        if (out->n_docs + s.n_docs + 1 > cap_doc) {
            int64_t nc = cap_doc ? cap_doc : 1 << 14;
            while (nc < out->n_docs + s.n_docs + 1) nc *= 2;
            int64_t *no = realloc(out->doc_offsets, (size_t)nc * sizeof *no);
            if (!no) { rc = msg_error("out of memory for %" PRId64 " documents", nc); rg_shard_free(&s); break; }
            out->doc_offsets = no;
            cap_doc = nc;
        }
        memcpy(out->tokens + out->n_tokens, s.tokens, (size_t)s.n_tokens * sizeof *s.tokens);
        for (int64_t d = 0; d < s.n_docs; d++) out->doc_offsets[out->n_docs + d] = out->n_tokens + s.doc_offsets[d];
        out->n_fragments += s.tokens[0] != eot;
        out->n_docs += s.n_docs;
        out->n_tokens += s.n_tokens;
        out->doc_offsets[out->n_docs] = out->n_tokens;
        out->n_shards++;
        rg_shard_free(&s);
    }
    paths_free(&files);
    if (!rc && out->n_docs == 0) rc = msg_error("%s: the shards of '%s' hold no tokens", flag, pattern);
    if (rc) corpus_free(out);
    return rc ? -1 : 0;
}

/* ---- batches ---- */

static int pack(corpus_batches *b, int32_t row_len, int32_t rows, uint64_t seed, bool shuffle) {
    rg_doc_pack_free(&b->pack);
    if (rg_doc_pack_build(b->c->n_docs, b->c->doc_offsets, row_len, rows, seed, shuffle, &b->pack) != RG_OK)
        return msg_error("packing the documents: %s", rg_last_error()), -1;
    return 0;
}

int corpus_batches_init(corpus_batches *b, const corpus *c, int32_t row_len, int32_t rows_per_batch, int32_t vocab,
                        uint64_t seed, bool shuffle) {
    memset(b, 0, sizeof *b);
    b->c = c;
    b->vocab = vocab;
    if (pack(b, row_len, rows_per_batch, seed, shuffle)) return -1;
    const rg_plan *p = &b->pack.plan;
    for (int32_t i = 0; i < p->n_batches; i++) {
        int32_t k = p->batch_offsets[i + 1] - p->batch_offsets[i];
        if (k > b->max_pieces) b->max_pieces = k;
    }
    b->scratch = malloc((size_t)rows_per_batch * (size_t)row_len * sizeof *b->scratch);
    b->rows_per_batch = rows_per_batch;
    b->seqs = malloc((size_t)b->max_pieces * sizeof *b->seqs);
    b->lens = malloc((size_t)b->max_pieces * sizeof *b->lens);
    if (!b->scratch || !b->seqs || !b->lens) {
        corpus_batches_free(b);
        return msg_error("out of memory for batches of %d rows of %d tokens", rows_per_batch, row_len), -1;
    }
    return 0;
}

int corpus_batches_reseed(corpus_batches *b, uint64_t seed) {
    /* the packing does not depend on the seed, only the order of rows does, so
     * batch sizes (and max_pieces) can change: keep the largest */
    if (pack(b, b->pack.row_len, b->rows_per_batch, seed, true)) return -1;
    int32_t need = 0;
    const rg_plan *p = &b->pack.plan;
    for (int32_t i = 0; i < p->n_batches; i++)
        if (p->batch_offsets[i + 1] - p->batch_offsets[i] > need) need = p->batch_offsets[i + 1] - p->batch_offsets[i];
    if (need > b->max_pieces) {
        const int32_t **ns = realloc(b->seqs, (size_t)need * sizeof *ns);
        if (ns) b->seqs = ns;
        int32_t *nl = ns ? realloc(b->lens, (size_t)need * sizeof *nl) : NULL;
        if (!nl) return msg_error("out of memory"), -1;
        b->lens = nl;
        b->max_pieces = need;
    }
    return 0;
}

void corpus_batches_free(corpus_batches *b) {
    rg_doc_pack_free(&b->pack);
    free(b->scratch);
    free(b->seqs);
    free(b->lens);
    memset(b, 0, sizeof *b);
}

rg_status corpus_batch(corpus_batches *b, int32_t i, rg_batch *out) {
    const rg_plan *p = &b->pack.plan;
    int32_t first = p->batch_offsets[i], n = p->batch_offsets[i + 1] - first;
    int32_t *lens = b->lens;
    int64_t at = 0;
    for (int32_t k = 0; k < n; k++) {
        int32_t piece = p->order[first + k], len = b->pack.piece_len[piece];
        const uint16_t *src = b->c->tokens + b->pack.piece_start[piece];
        for (int32_t t = 0; t < len; t++) b->scratch[at + t] = src[t];
        b->seqs[k] = b->scratch + at;
        lens[k] = len;
        at += len;
    }
    rg_batch_opts o = {.layout = RG_LAYOUT_PACKED, .max_len = b->pack.row_len, .vocab_size = b->vocab, .pad_id = 0};
    return rg_batch_build(&o, n, b->seqs, lens, out);
}

void corpus_batches_describe(const corpus_batches *b, char *buf, size_t n) {
    const rg_doc_pack *k = &b->pack;
    int64_t avoided = k->pad_max_slots - k->n_real;
    snprintf(buf, n,
             "%d pieces of %" PRId64 " documents (%" PRId64 " longer than %d, split) -> %d rows of %d in %d batches, "
             "%" PRId64 " tokens, packed with no padding; padding each piece to %d would take %" PRId64
             " slots (%.1f%% padding): %" PRId64 " pad tokens avoided (%.2fx fewer tokens computed)",
             k->n_pieces, k->n_docs, k->n_split, k->row_len, k->plan.n_rows, k->row_len, k->plan.n_batches, k->n_real,
             k->row_len, k->pad_max_slots, 100.0 * (double)avoided / (double)k->pad_max_slots, avoided,
             (double)k->pad_max_slots / (double)k->n_real);
}
