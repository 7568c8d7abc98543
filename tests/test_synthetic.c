/* test_synthetic.c — the synthetic dataset (ragged.h section 5): every
 * sequence re-derived by a plain reference of its task, lengths covering their
 * range, determinism in (seed, split, index), task mixes, every bad option. */
#include "check.h"
#include "ragged.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Checks one sequence's shape and its answer against the task's definition;
 * returns the task index (0 copy, 1 reverse, 2 sort) or -1. */
static int check_sequence(const rg_synth_opts *o, const int32_t *t, int32_t len, const char *what) {
    int32_t ns = o->n_symbols ? o->n_symbols : o->vocab_size - RG_SYNTH_FIRST_SYMBOL;
    if (!CHECK(len >= 5 && len % 2 == 1 && len >= o->min_len && len <= o->max_len, "%s: length %d in [%d, %d], odd",
               what, len, o->min_len, o->max_len))
        return -1;
    int32_t n = (len - 3) / 2;
    int task = t[0] - RG_SYNTH_TASK0;
    bool ok = task >= 0 && task < 3 && (o->tasks & (1u << task)) && t[n + 1] == RG_SYNTH_SEP && t[len - 1] == RG_SYNTH_EOS;
    for (int32_t i = 0; i < n && ok; i++) ok = t[1 + i] >= RG_SYNTH_FIRST_SYMBOL && t[1 + i] < RG_SYNTH_FIRST_SYMBOL + ns;
    if (!CHECK(ok, "%s: TASK x SEP y EOS shape with symbols in range (task token %d)", what, t[0])) return -1;
    /* The reference answer: copy, reverse, or an insertion sort. */
    int32_t *ref = calloc((size_t)n + 1, sizeof *ref);
    if (!ref) return -1;
    if (task == 0) for (int32_t i = 0; i < n; i++) ref[i] = t[1 + i];
    if (task == 1) for (int32_t i = 0; i < n; i++) ref[i] = t[n - i];
    if (task == 2)
        for (int32_t i = 0; i < n; i++) {
            int32_t v = t[1 + i], j = i;
            for (; j > 0 && ref[j - 1] > v; j--) ref[j] = ref[j - 1];
            ref[j] = v;
        }
    ok = !memcmp(ref, t + n + 2, (size_t)n * sizeof *ref);
    free(ref);
    CHECK(ok, "%s: the answer is the %s of the input", what, rg_synth_task_name((rg_synth_task)(1u << task)));
    return ok ? task : -1;
}

static void test_sequences(rg_rng *rng) {
    struct { uint32_t tasks; int32_t vocab, symbols, min_len, max_len; } cfgs[] = {
        {RG_SYNTH_ALL, 64, 0, 1, 64},         /* the tiny preset's shape */
        {RG_SYNTH_ALL, 1024, 16, 5, 255},
        {RG_SYNTH_COPY, 8, 2, 5, 5},          /* smallest vocabulary, one length */
        {RG_SYNTH_REVERSE | RG_SYNTH_SORT, 100, 0, 20, 21},
        {RG_SYNTH_SORT, 50257, 0, 1, 1000},   /* a large alphabet */
        {RG_SYNTH_ALL, 32, 3, 6, 8},          /* max_len even: only 7 fits */
    };
    int n_seq = rg_test_quick() ? 300 : 2000;
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        rg_synth_opts o = {.seed = rg_rng_u64(rng), .tasks = cfgs[c].tasks, .vocab_size = cfgs[c].vocab,
                           .n_symbols = cfgs[c].symbols, .min_len = cfgs[c].min_len, .max_len = cfgs[c].max_len};
        CHECK(rg_synth_validate(&o) == RG_OK, "config %zu valid: %s", c, rg_last_error());
        int32_t cap = o.max_len + 8;
        int32_t *a = malloc((size_t)cap * sizeof *a), *b = malloc((size_t)cap * sizeof *b);
        int32_t lo = o.max_len, hi = 0, count[3] = {0, 0, 0}, same_as_other_split = 0;
        for (int i = 0; i < n_seq; i++) {
            int64_t index = i < n_seq / 2 ? i : (int64_t)rg_rng_below(rng, 1ull << 40);
            int32_t len = 0, len2 = 0;
            char what[96];
            snprintf(what, sizeof what, "config %zu index %lld", c, (long long)index);
            for (int32_t k = 0; k < cap; k++) a[k] = b[k] = -7;
            if (!CHECK(rg_synth_sequence(&o, RG_SYNTH_TRAIN, index, a, cap, &len) == RG_OK, "%s: %s", what, rg_last_error())) break;
            CHECK(a[len] == -7, "%s: nothing written past the length", what);
            int task = check_sequence(&o, a, len, what);
            if (task < 0) break;
            count[task]++;
            if (len < lo) lo = len;
            if (len > hi) hi = len;
            /* The same index again gives the same sequence; the held-out split another stream. */
            rg_synth_sequence(&o, RG_SYNTH_TRAIN, index, b, cap, &len2);
            CHECK(len2 == len && !memcmp(a, b, (size_t)len * sizeof *a), "%s: deterministic", what);
            rg_synth_sequence(&o, RG_SYNTH_HELDOUT, index, b, cap, &len2);
            check_sequence(&o, b, len2, what);
            same_as_other_split += len2 == len && !memcmp(a, b, (size_t)len * sizeof *a);
        }
        /* Lengths cover the range: the extreme payload sizes occur. */
        int32_t want_lo = o.min_len <= 5 ? 5 : o.min_len | 1, want_hi = (o.max_len - 1) | 1;
        if (want_hi > o.max_len) want_hi -= 2;
        int32_t span = (want_hi - want_lo) / 2 + 1;
        if (span * 10 < n_seq)
            CHECK(lo == want_lo && hi == want_hi, "config %zu: lengths %d..%d cover %d..%d", c, lo, hi, want_lo, want_hi);
        int n_tasks = 0;
        for (int t = 0; t < 3; t++) n_tasks += (o.tasks >> t) & 1;
        for (int t = 0; t < 3; t++) {
            if (!((o.tasks >> t) & 1)) { CHECK(count[t] == 0, "config %zu: disabled task %d never occurs", c, t); continue; }
            double share = (double)count[t] / n_seq;
            CHECK(share > 0.6 / n_tasks && share < 1.4 / n_tasks, "config %zu: task %d share %.3f near 1/%d", c, t, share,
                  n_tasks);
        }
        /* Unrelated streams: for configs with many possible sequences, no collisions. */
        if (o.max_len >= 64) CHECK(same_as_other_split <= 2, "config %zu: splits differ (%d equal, ~0.01 expected by chance)", c, same_as_other_split);
        free(a);
        free(b);
    }
    /* A different seed gives a different stream. */
    rg_synth_opts o = {.seed = 1, .tasks = RG_SYNTH_ALL, .vocab_size = 64, .min_len = 1, .max_len = 64};
    int32_t x[64], y[64], lx, ly, differ = 0;
    for (int i = 0; i < 20; i++) {
        o.seed = 1;
        rg_synth_sequence(&o, RG_SYNTH_TRAIN, i, x, 64, &lx);
        o.seed = 2;
        rg_synth_sequence(&o, RG_SYNTH_TRAIN, i, y, 64, &ly);
        differ += lx != ly || memcmp(x, y, (size_t)lx * sizeof *x);
    }
    CHECK(differ >= 18, "seeds 1 and 2 give different sequences (%d of 20 differ)", differ);
}

static void test_errors(void) {
    rg_synth_opts good = {.seed = 3, .tasks = RG_SYNTH_ALL, .vocab_size = 64, .n_symbols = 0, .min_len = 1, .max_len = 64};
    struct { const char *field; rg_synth_opts o; const char *msg; } bad[] = {
        {"tasks", good, "rg_synth_validate: tasks = 0x0, expected a non-empty OR of RG_SYNTH_COPY (1), RG_SYNTH_REVERSE (2) "
                        "and RG_SYNTH_SORT (4)"},
        {"tasks8", good, "rg_synth_validate: tasks = 0x9, expected"},
        {"vocab", good, "rg_synth_validate: vocab_size = 7, expected >= 8 (6 special tokens and 2 symbols)"},
        {"symbols", good, "rg_synth_validate: n_symbols = 59, expected 0 (all) or 2..58 (vocab_size 64 less 6 special tokens)"},
        {"symbols1", good, "rg_synth_validate: n_symbols = 1, expected 0 (all) or 2..58"},
        {"min", good, "rg_synth_validate: min_len = 0, expected >= 1"},
        {"max", good, "rg_synth_validate: max_len = 4, expected >= 5 and >= min_len (1)"},
        {"order", good, "rg_synth_validate: max_len = 9, expected >= 5 and >= min_len (10)"},
        {"gap", good, "rg_synth_validate: no length 2n + 3 lies in [min_len 8, max_len 8] (widen the range)"},
    };
    bad[0].o.tasks = 0;
    bad[1].o.tasks = 9;
    bad[2].o.vocab_size = 7;
    bad[3].o.n_symbols = 59;
    bad[4].o.n_symbols = 1;
    bad[5].o.min_len = 0;
    bad[6].o.max_len = 4;
    bad[7].o.min_len = 10, bad[7].o.max_len = 9;
    bad[8].o.min_len = 8, bad[8].o.max_len = 8;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(rg_synth_validate(&bad[i].o) == RG_ERR_INVALID_ARG, "bad %s rejected", bad[i].field);
        CHECK(!strncmp(rg_last_error(), bad[i].msg, strlen(bad[i].msg)), "bad %s: '%s', expected '%s'", bad[i].field,
              rg_last_error(), bad[i].msg);
        int32_t t[64], len = -1;
        CHECK(rg_synth_sequence(&bad[i].o, RG_SYNTH_TRAIN, 0, t, 64, &len) == RG_ERR_INVALID_ARG && len == -1,
              "bad %s: sequence refused, nothing written", bad[i].field);
    }
    CHECK(rg_synth_validate(NULL) == RG_ERR_INVALID_ARG && strstr(rg_last_error(), "opts is NULL"), "NULL opts");
    int32_t t[64], len = -1;
    CHECK(rg_synth_sequence(&good, 2, 0, t, 64, &len) == RG_ERR_INVALID_ARG && strstr(rg_last_error(), "split = 2"), "bad split");
    CHECK(rg_synth_sequence(&good, RG_SYNTH_TRAIN, -1, t, 64, &len) == RG_ERR_INVALID_ARG &&
          strstr(rg_last_error(), "index = -1, expected >= 0"), "negative index");
    CHECK(rg_synth_sequence(&good, RG_SYNTH_TRAIN, 0, NULL, 64, &len) == RG_ERR_INVALID_ARG, "NULL tokens");
    CHECK(rg_synth_sequence(&good, RG_SYNTH_TRAIN, 0, t, 64, NULL) == RG_ERR_INVALID_ARG, "NULL len");
    /* Too little room: an error naming the need, and the buffer untouched. */
    int64_t idx = 0;
    int32_t need = 0;
    for (; idx < 100; idx++) {
        rg_synth_sequence(&good, RG_SYNTH_TRAIN, idx, t, 64, &need);
        if (need > 5) break;
    }
    for (int i = 0; i < 64; i++) t[i] = -9;
    len = -1;
    CHECK(rg_synth_sequence(&good, RG_SYNTH_TRAIN, idx, t, need - 1, &len) == RG_ERR_INVALID_ARG && len == -1, "cap too small");
    char msg[96];
    snprintf(msg, sizeof msg, "cap = %d, sequence %lld needs %d tokens", need - 1, (long long)idx, need);
    CHECK(strstr(rg_last_error(), msg) != NULL, "cap message '%s' (expected '%s')", rg_last_error(), msg);
    bool untouched = true;
    for (int i = 0; i < 64; i++) untouched = untouched && t[i] == -9;
    CHECK(untouched, "nothing written when the room is short");
    CHECK(rg_synth_sequence(&good, RG_SYNTH_TRAIN, idx, t, need, &len) == RG_OK && len == need && !*rg_last_error(),
          "exact room is enough, error cleared");
    CHECK(!strcmp(rg_synth_task_name(RG_SYNTH_SORT), "sort") && !strcmp(rg_synth_task_name(RG_SYNTH_ALL), "unknown"),
          "task names");
}

int main(void) {
    rg_rng rng;
    rg_test_init("test_synthetic", &rng);
    test_sequences(&rng);
    test_errors();
    return rg_test_finish();
}
