/* synthetic.c — the learnable synthetic dataset of ragged.h section 5: copy,
 * reverse and sort tasks of varying length, each sequence a function of
 * (seed, split, index) alone. */
#include "core/rng.h"
#include "core/status.h"
#include "ragged.h"
#include <stdlib.h>

#define FN_V "rg_synth_validate"
#define FN_S "rg_synth_sequence"

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static const rg_synth_task task_bits[3] = {RG_SYNTH_COPY, RG_SYNTH_REVERSE, RG_SYNTH_SORT};

const char *rg_synth_task_name(rg_synth_task t) {
    switch (t) {
    case RG_SYNTH_COPY: return "copy";
    case RG_SYNTH_REVERSE: return "reverse";
    case RG_SYNTH_SORT: return "sort";
    default: return "unknown";
    }
}

/* Payload sizes n with 2n + 3 in [min_len, max_len]: [*lo, *hi] (empty when lo > hi). */
static void payload_range(const rg_synth_opts *o, int64_t *lo, int64_t *hi) {
    int64_t a = ((int64_t)o->min_len - 3 + 1) / 2;   /* ceil((min_len - 3) / 2) */
    *lo = a < 1 ? 1 : a;
    *hi = ((int64_t)o->max_len - 3) / 2;
}

static rg_status validate(const rg_synth_opts *o, const char *fn) {
    if (!o) return rg_fail(RG_ERR_INVALID_ARG, "%s: opts is NULL", fn);
    if (o->tasks == 0 || (o->tasks & ~(uint32_t)RG_SYNTH_ALL))
        return rg_fail(RG_ERR_INVALID_ARG, "%s: tasks = 0x%x, expected a non-empty OR of RG_SYNTH_COPY (1), "
                       "RG_SYNTH_REVERSE (2) and RG_SYNTH_SORT (4)", fn, o->tasks);
    if (o->vocab_size < RG_SYNTH_FIRST_SYMBOL + 2)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: vocab_size = %d, expected >= %d (%d special tokens and 2 symbols)",
                       fn, o->vocab_size, RG_SYNTH_FIRST_SYMBOL + 2, RG_SYNTH_FIRST_SYMBOL);
    int32_t room = o->vocab_size - RG_SYNTH_FIRST_SYMBOL;
    if (o->n_symbols != 0 && (o->n_symbols < 2 || o->n_symbols > room))
        return rg_fail(RG_ERR_INVALID_ARG, "%s: n_symbols = %d, expected 0 (all) or 2..%d (vocab_size %d less %d "
                       "special tokens)", fn, o->n_symbols, room, o->vocab_size, RG_SYNTH_FIRST_SYMBOL);
    if (o->min_len < 1) return rg_fail(RG_ERR_INVALID_ARG, "%s: min_len = %d, expected >= 1", fn, o->min_len);
    if (o->max_len < 5 || o->max_len < o->min_len)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: max_len = %d, expected >= 5 and >= min_len (%d)", fn, o->max_len,
                       o->min_len);
    int64_t lo, hi;
    payload_range(o, &lo, &hi);
    if (lo > hi)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: no length 2n + 3 lies in [min_len %d, max_len %d] (widen the range)",
                       fn, o->min_len, o->max_len);
    return RG_OK;
}

rg_status rg_synth_validate(const rg_synth_opts *o) { return validate(o, FN_V); }

rg_status rg_synth_sequence(const rg_synth_opts *o, rg_synth_split split, int64_t index, int32_t *tokens,
                            int32_t cap, int32_t *len) {
    RG_TRY(validate(o, FN_S));
    if (split != RG_SYNTH_TRAIN && split != RG_SYNTH_HELDOUT)
        return rg_fail(RG_ERR_INVALID_ARG, FN_S ": split = %d, expected RG_SYNTH_TRAIN (0) or RG_SYNTH_HELDOUT (1)",
                       (int)split);
    if (index < 0) return rg_fail(RG_ERR_INVALID_ARG, FN_S ": index = %lld, expected >= 0", (long long)index);
    if (!tokens || !len) return rg_fail(RG_ERR_INVALID_ARG, FN_S ": tokens or len is NULL");
    /* One generator per sequence, seeded from a mix of (seed, split, index) so
     * that neighbouring indices give unrelated streams. */
    rg_rng r;
    uint64_t key = o->seed * 0x9E3779B97F4A7C15ull;
    key ^= ((uint64_t)index + 1) * 0xD1B54A32D192ED03ull;
    key ^= (uint64_t)split * 0xA0761D6478BD642Full + (split ? 0x8EBC6AF09C88C6E3ull : 0);
    rg_rng_seed(&r, key);
    int32_t n_tasks = 0, which[3];
    for (int i = 0; i < 3; i++)
        if (o->tasks & task_bits[i]) which[n_tasks++] = i;
    int task = which[rg_rng_below(&r, (uint64_t)n_tasks)];
    int64_t lo, hi;
    payload_range(o, &lo, &hi);
    int32_t n = (int32_t)(lo + (int64_t)rg_rng_below(&r, (uint64_t)(hi - lo + 1)));
    int32_t L = 2 * n + 3;
    if (cap < L)
        return rg_fail(RG_ERR_INVALID_ARG, FN_S ": cap = %d, sequence %lld needs %d tokens", cap, (long long)index, L);
    int32_t ns = o->n_symbols ? o->n_symbols : o->vocab_size - RG_SYNTH_FIRST_SYMBOL;
    int32_t *x = tokens + 1, *y = tokens + n + 2;
    tokens[0] = RG_SYNTH_TASK0 + task;
    for (int32_t i = 0; i < n; i++) x[i] = RG_SYNTH_FIRST_SYMBOL + (int32_t)rg_rng_below(&r, (uint64_t)ns);
    tokens[n + 1] = RG_SYNTH_SEP;
    if (task == 0) {
        for (int32_t i = 0; i < n; i++) y[i] = x[i];
    } else if (task == 1) {
        for (int32_t i = 0; i < n; i++) y[i] = x[n - 1 - i];
    } else {
        for (int32_t i = 0; i < n; i++) y[i] = x[i];
        qsort(y, (size_t)n, sizeof *y, cmp_i32);
    }
    tokens[L - 1] = RG_SYNTH_EOS;
    *len = L;
    rg_clear_error();
    return RG_OK;
}
