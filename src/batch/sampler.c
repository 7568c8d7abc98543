/* sampler.c — length-aware samplers (ragged.h section 5): a dataset of
 * sequence lengths -> a plan of batches (fixed count, token budget, length
 * buckets, best-fit packing), with the padding fraction each one implies. */
#include "batch/plan.h"
#include "core/alloc.h"
#include "core/status.h"
#include <stdlib.h>
#include <string.h>

#define FN "rg_plan_build"

const char *rg_sampler_name(rg_sampler_kind k) {
    switch (k) {
    case RG_SAMPLER_FIXED: return "fixed";
    case RG_SAMPLER_TOKEN_BUDGET: return "token-budget";
    case RG_SAMPLER_BUCKETS: return "buckets";
    case RG_SAMPLER_BEST_FIT: return "best-fit";
    }
    return "unknown";
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

rg_status rg_sort_by_length(int32_t n, const int32_t *lens, bool descending, int32_t *idx) {
    uint64_t *key;
    RG_TRY(rg_alloc((void **)&key, (size_t)n, sizeof(uint64_t), FN ": sort keys"));
    /* (length, index) in one integer: the index breaks ties and is recovered from the low bits */
    for (int32_t i = 0; i < n; i++) {
        uint64_t l = (uint64_t)(descending ? INT32_MAX - lens[i] : lens[i]);
        key[i] = l << 32 | (uint32_t)i;
    }
    qsort(key, (size_t)n, sizeof *key, cmp_u64);
    for (int32_t i = 0; i < n; i++) idx[i] = (int32_t)(key[i] & 0xffffffffu);
    rg_free(key);
    return RG_OK;
}

void rg_shuffle_i32(rg_rng *rng, int32_t *x, int32_t n) {
    for (int32_t i = n - 1; i > 0; i--) {
        int32_t j = (int32_t)rg_rng_below(rng, (uint64_t)i + 1), t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
}

static rg_status check_opts(const rg_sampler_opts *o, int32_t n, const int32_t *lens) {
    for (int32_t i = 0; i < n; i++)
        if (lens[i] < 1)
            return rg_fail(RG_ERR_INVALID_ARG, FN ": sequence %d has length %d, expected >= 1", i, lens[i]);
    int64_t limit = 0; /* the longest sequence that fits, 0 = any */
    const char *limit_name = "";
    switch (o->kind) {
    case RG_SAMPLER_FIXED:
        if (o->batch_size < 1)
            return rg_fail(RG_ERR_INVALID_ARG, FN ": fixed: batch_size is %d, expected >= 1", o->batch_size);
        break;
    case RG_SAMPLER_TOKEN_BUDGET:
    case RG_SAMPLER_BUCKETS:
        if (o->kind == RG_SAMPLER_BUCKETS && o->n_buckets < 1)
            return rg_fail(RG_ERR_INVALID_ARG, FN ": buckets: n_buckets is %d, expected >= 1", o->n_buckets);
        if (o->token_budget < (o->kind == RG_SAMPLER_TOKEN_BUDGET ? 1 : 0))
            return rg_fail(RG_ERR_INVALID_ARG, FN ": %s: token_budget is %lld, expected >= %d",
                           rg_sampler_name(o->kind), (long long)o->token_budget,
                           o->kind == RG_SAMPLER_TOKEN_BUDGET ? 1 : 0);
        if (o->batch_size < (o->token_budget > 0 ? 0 : 1))
            return rg_fail(RG_ERR_INVALID_ARG, FN ": %s: batch_size is %d, expected >= %d", rg_sampler_name(o->kind),
                           o->batch_size, o->token_budget > 0 ? 0 : 1);
        limit = o->token_budget;
        limit_name = "token_budget";
        break;
    case RG_SAMPLER_BEST_FIT:
        if (o->row_capacity < 1)
            return rg_fail(RG_ERR_INVALID_ARG, FN ": best-fit: row_capacity is %d, expected >= 1", o->row_capacity);
        if (o->rows_per_batch < 1)
            return rg_fail(RG_ERR_INVALID_ARG, FN ": best-fit: rows_per_batch is %d, expected >= 1",
                           o->rows_per_batch);
        limit = o->row_capacity;
        limit_name = "row_capacity";
        break;
    default:
        return rg_fail(RG_ERR_INVALID_ARG, FN ": opts.kind is %d, expected FIXED (0), TOKEN_BUDGET (1), "
                       "BUCKETS (2) or BEST_FIT (3)", (int)o->kind);
    }
    if (limit > 0)
        for (int32_t i = 0; i < n; i++)
            if (lens[i] > limit)
                return rg_fail(RG_ERR_INVALID_ARG, FN ": %s: sequence %d has length %d, expected <= %s %lld",
                               rg_sampler_name(o->kind), i, lens[i], limit_name, (long long)limit);
    return RG_OK;
}

/* Cuts order[lo..hi) into batches, appending their first positions to starts.
 * budget > 0: greedy, a batch grows while (B + 1) * longest <= budget and
 * B < cap (cap 0 = none); budget 0: groups of cap. */
static void cut(const int32_t *order, const int32_t *lens, int32_t lo, int32_t hi, int64_t budget, int32_t cap,
                int32_t *starts, int32_t *n_starts) {
    for (int32_t s = lo; s < hi;) {
        starts[(*n_starts)++] = s;
        if (budget <= 0) {
            s = hi - s > cap ? s + cap : hi;
            continue;
        }
        int64_t longest = 0, count = 0;
        while (s < hi && (cap <= 0 || count < cap)) {
            int64_t l = lens[order[s]] > longest ? lens[order[s]] : longest;
            if ((count + 1) * l > budget) break;
            longest = l;
            count++;
            s++;
        }
    }
}

/* Reorders the groups of items (group g = items[off[g]..off[g+1]]) in a random
 * order, rewriting items and off; tmp holds n_items, perm n_groups + 1. */
static void shuffle_groups(rg_rng *rng, int32_t n_groups, int32_t *off, int32_t *items, int32_t *tmp,
                           int32_t *perm) {
    for (int32_t g = 0; g < n_groups; g++) perm[g] = g;
    rg_shuffle_i32(rng, perm, n_groups);
    int32_t pos = 0;
    for (int32_t g = 0; g < n_groups; g++) {
        int32_t a = off[perm[g]], b = off[perm[g] + 1];
        memcpy(tmp + pos, items + a, (size_t)(b - a) * sizeof(int32_t));
        perm[g] = b - a; /* now the size of new group g */
        pos += b - a;
    }
    memcpy(items, tmp, (size_t)pos * sizeof(int32_t));
    for (int32_t g = 0, o = 0; g < n_groups; g++) {
        off[g] = o;
        o += perm[g];
    }
    off[n_groups] = pos;
}

/* Padded strategies: each row is one sequence; fills order and the batch starts. */
static void plan_padded(const rg_sampler_opts *o, const int32_t *lens, rg_rng *rng, rg_plan *p, int32_t *tmp,
                        int32_t *perm) {
    int32_t n = p->n_seqs;
    bool budgeted = o->kind == RG_SAMPLER_TOKEN_BUDGET || (o->kind == RG_SAMPLER_BUCKETS && o->token_budget > 0);
    int64_t budget = budgeted ? o->token_budget : 0;
    if (o->kind != RG_SAMPLER_BUCKETS) {
        for (int32_t i = 0; i < n; i++) p->order[i] = i;
        if (o->shuffle) rg_shuffle_i32(rng, p->order, n);
        cut(p->order, lens, 0, n, budget, o->batch_size, p->batch_rows, &p->n_batches);
    } else {
        /* order is sorted short to long here (rg_sort_by_length ran before) */
        for (int64_t k = 0; k < o->n_buckets; k++) {
            int32_t lo = (int32_t)(k * n / o->n_buckets), hi = (int32_t)((k + 1) * n / o->n_buckets);
            if (o->shuffle) rg_shuffle_i32(rng, p->order + lo, hi - lo);
            cut(p->order, lens, lo, hi, budget, o->batch_size, p->batch_rows, &p->n_batches);
        }
    }
    p->batch_rows[p->n_batches] = n;
    if (o->kind == RG_SAMPLER_BUCKETS && o->shuffle)
        shuffle_groups(rng, p->n_batches, p->batch_rows, p->order, tmp, perm);
    p->n_rows = n;
    for (int32_t r = 0; r <= n; r++) p->row_offsets[r] = r;
    for (int32_t b = 0; b < p->n_batches; b++) {
        int32_t longest = 0;
        for (int32_t s = p->batch_rows[b]; s < p->batch_rows[b + 1]; s++)
            if (lens[p->order[s]] > longest) longest = lens[p->order[s]];
        p->row_len[b] = longest;
    }
}

static rg_status plan_best_fit(const rg_sampler_opts *o, const int32_t *lens, rg_rng *rng, rg_plan *p,
                               int32_t *tmp, int32_t *perm) {
    RG_TRY(rg_best_fit_rows(p->n_seqs, lens, o->row_capacity, &p->n_rows, p->row_offsets, p->order));
    if (o->shuffle) shuffle_groups(rng, p->n_rows, p->row_offsets, p->order, tmp, perm);
    for (int32_t r = 0; r < p->n_rows; r += o->rows_per_batch) p->batch_rows[p->n_batches++] = r;
    p->batch_rows[p->n_batches] = p->n_rows;
    for (int32_t b = 0; b < p->n_batches; b++) p->row_len[b] = o->row_capacity;
    return RG_OK;
}

rg_status rg_plan_build(const rg_sampler_opts *opts, int32_t n_seqs, const int32_t *lens, rg_plan *out) {
    if (!out) return rg_fail(RG_ERR_INVALID_ARG, FN ": out is NULL");
    memset(out, 0, sizeof *out);
    if (!opts) return rg_fail(RG_ERR_INVALID_ARG, FN ": opts is NULL");
    if (!lens) return rg_fail(RG_ERR_INVALID_ARG, FN ": lens is NULL");
    if (n_seqs < 1) return rg_fail(RG_ERR_INVALID_ARG, FN ": n_seqs is %d, expected >= 1", n_seqs);
    RG_TRY(check_opts(opts, n_seqs, lens));

    /* Arrays are sized for the worst case (one sequence per row and per batch). */
    size_t n = (size_t)n_seqs;
    rg_plan p = {.kind = opts->kind, .n_seqs = n_seqs};
    int32_t *tmp = NULL, *perm = NULL;
    rg_status st;
    if ((st = rg_alloc((void **)&p.order, n, sizeof(int32_t), FN ": order")) ||
        (st = rg_alloc((void **)&p.batch_offsets, n + 1, sizeof(int32_t), FN ": batch_offsets")) ||
        (st = rg_alloc((void **)&p.batch_rows, n + 1, sizeof(int32_t), FN ": batch_rows")) ||
        (st = rg_alloc((void **)&p.row_offsets, n + 1, sizeof(int32_t), FN ": row_offsets")) ||
        (st = rg_alloc((void **)&p.row_len, n, sizeof(int32_t), FN ": row_len")) ||
        (st = rg_alloc((void **)&tmp, n, sizeof(int32_t), FN ": scratch")) ||
        (st = rg_alloc((void **)&perm, n + 1, sizeof(int32_t), FN ": scratch")))
        goto fail;
    rg_rng rng;
    rg_rng_seed(&rng, opts->seed);
    if (opts->kind == RG_SAMPLER_BEST_FIT) {
        if ((st = plan_best_fit(opts, lens, &rng, &p, tmp, perm))) goto fail;
    } else {
        if (opts->kind == RG_SAMPLER_BUCKETS && (st = rg_sort_by_length(n_seqs, lens, false, p.order))) goto fail;
        plan_padded(opts, lens, &rng, &p, tmp, perm);
    }
    for (int32_t b = 0; b <= p.n_batches; b++) p.batch_offsets[b] = p.row_offsets[p.batch_rows[b]];
    for (int32_t i = 0; i < n_seqs; i++) p.n_real += lens[i];
    for (int32_t b = 0; b < p.n_batches; b++)
        p.n_slots += (int64_t)(p.batch_rows[b + 1] - p.batch_rows[b]) * p.row_len[b];
    p.pad_fraction = (double)(p.n_slots - p.n_real) / (double)p.n_slots;
    rg_free(tmp);
    rg_free(perm);
    *out = p;
    rg_clear_error();
    return RG_OK;
fail:
    rg_free(tmp);
    rg_free(perm);
    rg_plan_free(&p);
    return st;
}

void rg_plan_free(rg_plan *p) {
    if (!p) return;
    rg_free(p->order);
    rg_free(p->batch_offsets);
    rg_free(p->batch_rows);
    rg_free(p->row_offsets);
    rg_free(p->row_len);
    memset(p, 0, sizeof *p);
}
