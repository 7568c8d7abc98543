/* test_kv_cache.c — the paged KV cache: pool exhaustion (exact message,
 * nothing changed), block ownership invariants under random add / append /
 * reserve / remove against a plain model, reuse after free, block tables,
 * the scatter of written rows into their slots (and nowhere else), stale
 * batches, and bad arguments. */
#include "check.h"
#include "ragged.h"
#include "gen/kv_cache.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rg_backend *be;

static bool fails_with(rg_status got, rg_status want, const char *needle, const char *label) {
    const char *m = rg_last_error();
    return CHECK(got == want && strstr(m, needle) != NULL, "%s: got %s \"%s\", expected %s mentioning \"%s\"",
                 label, rg_status_str(got), m, rg_status_str(want), needle);
}

/* Every block owned once, in range, enough for the length; owned + free = pool. */
static bool check_invariants(const rg_kv_cache *kv, int32_t n, const int32_t *ids, const int32_t *lens,
                             const char *label) {
    int32_t nb = rg_kv_cache_n_blocks(kv), bs = rg_kv_cache_block_size(kv), owned = 0;
    uint8_t *seen = calloc((size_t)nb, 1);
    int32_t *blocks = malloc(sizeof(int32_t) * (size_t)nb);
    bool ok = true;
    for (int32_t i = 0; ok && i < n; i++) {
        int32_t cnt = -1;
        ok = CHECK(rg_kv_cache_seq_blocks(kv, ids[i], nb, blocks, &cnt) == RG_OK, "%s: seq_blocks(%d): %s", label,
                   ids[i], rg_last_error());
        ok = ok && CHECK(rg_kv_cache_seq_len(kv, ids[i]) == lens[i], "%s: seq %d length %d, expected %d", label,
                         ids[i], rg_kv_cache_seq_len(kv, ids[i]), lens[i]);
        ok = ok && CHECK(cnt >= (lens[i] + bs - 1) / bs, "%s: seq %d has %d blocks for %d tokens", label, ids[i],
                         cnt, lens[i]);
        for (int32_t j = 0; ok && j < cnt; j++) {
            ok = CHECK(blocks[j] >= 0 && blocks[j] < nb, "%s: block %d out of range", label, blocks[j]) &&
                 CHECK(!seen[blocks[j]], "%s: block %d owned twice", label, blocks[j]);
            if (ok) seen[blocks[j]] = 1;
        }
        owned += cnt;
    }
    ok = ok && CHECK(owned + rg_kv_cache_n_free_blocks(kv) == nb, "%s: %d owned + %d free != %d blocks", label,
                     owned, rg_kv_cache_n_free_blocks(kv), nb);
    free(seen);
    free(blocks);
    return ok;
}

static void test_exhaustion(void) {
    rg_kv_cache *kv;
    if (!CHECK(rg_kv_cache_init(be, 1, 1, 8, 16, 512, &kv) == RG_OK, "init: %s", rg_last_error())) return;
    int32_t big = 7, three = 3, n = 511 * 16, two_blocks = 17;
    rg_kv_cache_add_seq(kv, big);
    rg_kv_cache_add_seq(kv, three);
    CHECK(rg_kv_cache_append(kv, 1, &big, &n) == RG_OK, "fill 511 blocks: %s", rg_last_error());
    CHECK(rg_kv_cache_n_free_blocks(kv) == 1, "free %d, expected 1", rg_kv_cache_n_free_blocks(kv));
    rg_status s = rg_kv_cache_reserve(kv, three, two_blocks);
    CHECK(s == RG_ERR_EXHAUSTED && strcmp(rg_last_error(), "kv cache: sequence 3 needs 2 more blocks, 1 free of 512") == 0,
          "reserve: got %s \"%s\"", rg_status_str(s), rg_last_error());
    s = rg_kv_cache_append(kv, 1, &three, &two_blocks);
    CHECK(s == RG_ERR_EXHAUSTED && strstr(rg_last_error(), "kv cache: sequence 3 needs 2 more blocks, 1 free of 512"),
          "append: got %s \"%s\"", rg_status_str(s), rg_last_error());
    int32_t ids[2] = {three, big}, lens[2] = {0, n};
    check_invariants(kv, 2, ids, lens, "after exhaustion");
    CHECK(rg_kv_cache_n_free_blocks(kv) == 1, "exhaustion changed the free count");

    /* A batch: each fits alone, not together; nothing changes. */
    int32_t add[2] = {16, 1};  /* seq 3 takes the last block, seq 7 needs a new one (its blocks are full) */
    s = rg_kv_cache_append(kv, 2, ids, add);
    fails_with(s, RG_ERR_EXHAUSTED, "sequence 7 needs 1 more blocks, 0 free of 512", "batch exhaustion");
    CHECK(strstr(rg_last_error(), "asks 2 blocks, 1 free") != NULL, "batch totals missing: %s", rg_last_error());
    check_invariants(kv, 2, ids, lens, "after batch exhaustion");

    /* Freeing returns the blocks; they are reused. */
    CHECK(rg_kv_cache_remove_seq(kv, big) == RG_OK, "remove: %s", rg_last_error());
    CHECK(rg_kv_cache_n_free_blocks(kv) == 512, "free %d after remove, expected 512", rg_kv_cache_n_free_blocks(kv));
    int32_t all = 512 * 16;
    CHECK(rg_kv_cache_append(kv, 1, &three, &all) == RG_OK, "whole pool after free: %s", rg_last_error());
    lens[0] = all;
    check_invariants(kv, 1, ids, lens, "whole pool");
    int32_t one = 1;
    fails_with(rg_kv_cache_append(kv, 1, &three, &one), RG_ERR_EXHAUSTED, "needs 1 more blocks, 0 free of 512", "full");
    rg_kv_cache_free(kv);
}

/* Random add / append / reserve / remove against a model of lengths. */
static void test_random_invariants(rg_rng *r, bool quick) {
    int32_t nb = 1 + (int32_t)rg_rng_below(r, 200), bs = (int32_t[]){1, 3, 16, 32}[rg_rng_below(r, 4)];
    rg_kv_cache *kv;
    if (!CHECK(rg_kv_cache_init(be, 2, 2, 8, bs, nb, &kv) == RG_OK, "init: %s", rg_last_error())) return;
    enum { MAXS = 64 };
    int32_t ids[MAXS], lens[MAXS], n = 0, next_id = 0, exhausted = 0;
    int steps = quick ? 800 : 4000;
    char label[64];
    for (int it = 0; it < steps; it++) {
        uint64_t op = rg_rng_below(r, 10);
        snprintf(label, sizeof label, "step %d op %d", it, (int)op);
        if (op < 2 && n < MAXS) {
            ids[n] = next_id;
            next_id += 1 + (int32_t)rg_rng_below(r, 3);
            CHECK(rg_kv_cache_add_seq(kv, ids[n]) == RG_OK, "%s: add: %s", label, rg_last_error());
            lens[n++] = 0;
        } else if (op < 4 && n > 0) {
            int32_t i = (int32_t)rg_rng_below(r, (uint64_t)n);
            CHECK(rg_kv_cache_remove_seq(kv, ids[i]) == RG_OK, "%s: remove: %s", label, rg_last_error());
            CHECK(rg_kv_cache_seq_len(kv, ids[i]) == -1, "%s: removed sequence still has a length", label);
            ids[i] = ids[n - 1];
            lens[i] = lens[n - 1];
            n--;
        } else if (op < 5 && n > 0) {
            int32_t i = (int32_t)rg_rng_below(r, (uint64_t)n), more = (int32_t)rg_rng_below(r, (uint64_t)(3 * bs + 1));
            int32_t before = rg_kv_cache_n_free_blocks(kv);
            rg_status s = rg_kv_cache_reserve(kv, ids[i], more);
            if (s == RG_ERR_EXHAUSTED) {
                exhausted++;
                CHECK(rg_kv_cache_n_free_blocks(kv) == before, "%s: failed reserve changed the pool", label);
            } else {
                CHECK(s == RG_OK, "%s: reserve: %s", label, rg_last_error());
            }
        } else if (n > 0) {
            /* A batch of distinct sequences, each growing by 0..2 blocks' worth. */
            int32_t k = 1 + (int32_t)rg_rng_below(r, (uint64_t)n), bids[MAXS], add[MAXS], pick[MAXS];
            for (int32_t i = 0; i < n; i++) pick[i] = i;
            for (int32_t i = 0; i < k; i++) {
                int32_t j = i + (int32_t)rg_rng_below(r, (uint64_t)(n - i)), t = pick[i];
                pick[i] = pick[j];
                pick[j] = t;
                bids[i] = ids[pick[i]];
                add[i] = (int32_t)rg_rng_below(r, (uint64_t)(2 * bs + 1));
            }
            int32_t before = rg_kv_cache_n_free_blocks(kv);
            rg_status s = rg_kv_cache_append(kv, k, bids, add);
            if (s == RG_ERR_EXHAUSTED) {
                exhausted++;
                CHECK(rg_kv_cache_n_free_blocks(kv) == before, "%s: failed append changed the pool", label);
            } else if (CHECK(s == RG_OK, "%s: append: %s", label, rg_last_error())) {
                for (int32_t i = 0; i < k; i++) lens[pick[i]] += add[i];
            }
        }
        if (!check_invariants(kv, n, ids, lens, label)) break;
    }
    printf("random invariants: %d blocks of %d, %d steps, %d exhausted\n", nb, bs, steps, exhausted);
    while (n > 0) rg_kv_cache_remove_seq(kv, ids[--n]);
    CHECK(rg_kv_cache_n_free_blocks(kv) == nb, "all removed: %d free of %d", rg_kv_cache_n_free_blocks(kv), nb);
    rg_kv_cache_free(kv);
}

/* Block tables, slot mapping and the scatter: every written row lands in its
 * slot, every other slot keeps its sentinel. */
static void test_write_and_tables(rg_rng *r) {
    const int32_t hkv = 2, d = 8, row = hkv * d, bs = 4, nb = 40, L = 3;
    rg_kv_cache *kv;
    if (!CHECK(rg_kv_cache_init(be, L, hkv, d, bs, nb, &kv) == RG_OK, "init: %s", rg_last_error())) return;
    float *pool = kv->pool;
    size_t pool_n = (size_t)L * 2 * nb * bs * row;
    for (size_t i = 0; i < pool_n; i++) pool[i] = -777.0f;
    int32_t ids[3] = {11, 5, 8}, lens[3] = {9, 1, 0}, cu[4] = {0, 3, 4, 4}, last[3] = {3, 1, 0};
    for (int i = 0; i < 3; i++) rg_kv_cache_add_seq(kv, ids[i]);
    int32_t other = 99, o_len = 6;  /* takes blocks between them */
    rg_kv_cache_add_seq(kv, other);
    int32_t six[3] = {6, 0, 0};
    rg_kv_cache_append(kv, 3, ids, six);
    rg_kv_cache_append(kv, 1, &other, &o_len);
    rg_kv_cache_append(kv, 3, ids, last);
    CHECK(rg_kv_cache_seq_len(kv, 11) == 9, "len 11");

    int32_t table[3 * 4], tl[3];
    CHECK(rg_kv_cache_block_table(kv, 3, ids, 4, table, tl) == RG_OK, "block_table: %s", rg_last_error());
    for (int b = 0; b < 3; b++) {
        int32_t blocks[8], cnt;
        rg_kv_cache_seq_blocks(kv, ids[b], 8, blocks, &cnt);
        int32_t used = (lens[b] + bs - 1) / bs;
        CHECK(tl[b] == lens[b], "table length of %d: %d", ids[b], tl[b]);
        for (int j = 0; j < 4; j++)
            CHECK(table[b * 4 + j] == (j < used ? blocks[j] : -1), "table[%d][%d] = %d", b, j, table[b * 4 + j]);
    }
    fails_with(rg_kv_cache_block_table(kv, 3, ids, 2, table, tl), RG_ERR_INVALID_ARG, "spans 3 blocks", "small table");

    float k[4 * 16], v[4 * 16 * 2];
    for (int i = 0; i < 4 * 16; i++) k[i] = (float)rg_rng_normal(r);
    for (int i = 0; i < 4 * 32; i++) v[i] = (float)rg_rng_normal(r);
    CHECK(rg_kv_cache_set_batch(kv, 3, ids, cu) == RG_OK, "set_batch: %s", rg_last_error());
    CHECK(rg_kv_cache_write(kv, 1, k, 0, v, 2 * row) == RG_OK, "write: %s", rg_last_error());
    /* Expected: token i of seq b (position lens[b] - cnt + i) in layer 1. */
    uint8_t *hit = calloc(pool_n, 1);
    bool ok = true;
    for (int b = 0; b < 3; b++) {
        int32_t blocks[8], cnt;
        rg_kv_cache_seq_blocks(kv, ids[b], 8, blocks, &cnt);
        for (int32_t t = cu[b]; t < cu[b + 1]; t++) {
            int32_t pos = lens[b] - (cu[b + 1] - cu[b]) + (t - cu[b]);
            size_t slot = (size_t)blocks[pos / bs] * bs + pos % bs;
            float *kc = (float *)rg_kv_pool(kv, 1, 0) + slot * row, *vc = (float *)rg_kv_pool(kv, 1, 1) + slot * row;
            ok = ok && CHECK(memcmp(kc, k + t * row, sizeof(float) * row) == 0, "k row %d misplaced", t);
            ok = ok && CHECK(memcmp(vc, v + t * 2 * row, sizeof(float) * row) == 0, "v row %d misplaced", t);
            for (int c = 0; c < row; c++) {
                hit[(size_t)(kc - pool) + c] = 1;
                hit[(size_t)(vc - pool) + c] = 1;
            }
        }
    }
    size_t stray = 0;
    for (size_t i = 0; i < pool_n; i++) stray += !hit[i] && pool[i] != -777.0f;
    CHECK(stray == 0, "%zu pool elements written outside the batch's slots", stray);
    free(hit);

    /* Stale and missing batches, bad layers and strides. */
    fails_with(rg_kv_cache_write(kv, 3, k, 0, v, 0), RG_ERR_INVALID_ARG, "layer 3", "write layer");
    fails_with(rg_kv_cache_write(kv, 0, k, 15, v, 0), RG_ERR_INVALID_ARG, "strides (15, 0)", "write stride");
    fails_with(rg_kv_cache_write(kv, 0, NULL, 0, v, 0), RG_ERR_INVALID_ARG, "NULL", "write NULL");
    rg_kv_cache_reserve(kv, 5, 100);
    fails_with(rg_kv_cache_write(kv, 0, k, 0, v, 0), RG_ERR_INVALID_ARG, "stale", "stale write");
    int32_t bad_cu[4] = {0, 3, 2, 4}, big_cu[4] = {0, 3, 5, 5}, cu1[4] = {1, 3, 4, 4}, dup[3] = {11, 5, 11};
    fails_with(rg_kv_cache_set_batch(kv, 3, ids, bad_cu), RG_ERR_INVALID_ARG, "decreases at index 2", "cu decreasing");
    fails_with(rg_kv_cache_set_batch(kv, 3, ids, big_cu), RG_ERR_INVALID_ARG, "sequence 5 brings 2 new tokens", "too many new");
    fails_with(rg_kv_cache_set_batch(kv, 3, ids, cu1), RG_ERR_INVALID_ARG, "cu_new[0] = 1", "cu start");
    fails_with(rg_kv_cache_set_batch(kv, 3, dup, cu), RG_ERR_INVALID_ARG, "appears twice", "dup ids");
    fails_with(rg_kv_cache_set_batch(kv, 0, ids, cu), RG_ERR_INVALID_ARG, "n_seqs = 0", "no seqs");
    rg_kv_cache_free(kv);
}

static void test_bad_args(void) {
    rg_kv_cache *kv = (rg_kv_cache *)&kv;
    fails_with(rg_kv_cache_init(be, 1, 1, 64, 0, 8, &kv), RG_ERR_INVALID_ARG, "block_size = 0", "zero block size");
    CHECK(kv == NULL, "failed init left *out set");
    fails_with(rg_kv_cache_init(be, 1, 1, 64, 16, 0, &kv), RG_ERR_INVALID_ARG, "n_blocks = 0", "zero blocks");
    fails_with(rg_kv_cache_init(be, 0, 1, 64, 16, 8, &kv), RG_ERR_INVALID_ARG, "n_layers = 0", "zero layers");
    fails_with(rg_kv_cache_init(be, 1, 0, 64, 16, 8, &kv), RG_ERR_INVALID_ARG, "n_kv_heads = 0", "zero heads");
    fails_with(rg_kv_cache_init(be, 1, 1, 12, 16, 8, &kv), RG_ERR_INVALID_ARG, "head_dim = 12", "head_dim 12");
    fails_with(rg_kv_cache_init(be, 1, 1, 264, 16, 8, &kv), RG_ERR_INVALID_ARG, "head_dim = 264", "head_dim 264");
    fails_with(rg_kv_cache_init(be, 1, 1, 0, 16, 8, &kv), RG_ERR_INVALID_ARG, "head_dim = 0", "head_dim 0");
    fails_with(rg_kv_cache_init(NULL, 1, 1, 64, 16, 8, &kv), RG_ERR_INVALID_ARG, "backend is NULL", "NULL be");
    fails_with(rg_kv_cache_init(be, 1, 1, 64, 16, 8, NULL), RG_ERR_INVALID_ARG, "out is NULL", "NULL out");
    fails_with(rg_kv_cache_init(be, 1, 1, 64, 1 << 16, 1 << 16, &kv), RG_ERR_OVERFLOW, "above INT32_MAX", "slots");

    if (!CHECK(rg_kv_cache_init(be, 1, 1, 64, 16, 8, &kv) == RG_OK, "init: %s", rg_last_error())) return;
    int32_t id = 3, bad = 42, n1 = 1, neg = -1, two[2] = {3, 3}, cu[2] = {0, 0};
    fails_with(rg_kv_cache_add_seq(kv, -2), RG_ERR_INVALID_ARG, "negative", "negative id");
    CHECK(rg_kv_cache_add_seq(kv, id) == RG_OK, "add: %s", rg_last_error());
    fails_with(rg_kv_cache_add_seq(kv, id), RG_ERR_INVALID_ARG, "sequence 3 already exists", "dup add");
    fails_with(rg_kv_cache_remove_seq(kv, bad), RG_ERR_INVALID_ARG, "unknown sequence 42", "remove unknown");
    fails_with(rg_kv_cache_reserve(kv, bad, 1), RG_ERR_INVALID_ARG, "unknown sequence 42", "reserve unknown");
    fails_with(rg_kv_cache_reserve(kv, id, -1), RG_ERR_INVALID_ARG, "n_tokens = -1", "reserve negative");
    fails_with(rg_kv_cache_append(kv, 1, &bad, &n1), RG_ERR_INVALID_ARG, "unknown sequence 42", "append unknown");
    fails_with(rg_kv_cache_append(kv, 1, &id, &neg), RG_ERR_INVALID_ARG, "n_new[0] = -1", "append negative");
    fails_with(rg_kv_cache_append(kv, 2, two, (int32_t[]){1, 1}), RG_ERR_INVALID_ARG, "appears twice", "append dup");
    fails_with(rg_kv_cache_append(kv, 0, &id, &n1), RG_ERR_INVALID_ARG, "n_seqs = 0", "append none");
    fails_with(rg_kv_cache_append(kv, 1, NULL, &n1), RG_ERR_INVALID_ARG, "NULL", "append NULL");
    fails_with(rg_kv_cache_set_batch(kv, 1, &bad, cu), RG_ERR_INVALID_ARG, "unknown sequence 42", "batch unknown");
    int32_t cnt;
    fails_with(rg_kv_cache_seq_blocks(kv, bad, 0, NULL, &cnt), RG_ERR_INVALID_ARG, "unknown sequence 42", "blocks unknown");
    CHECK(rg_kv_cache_seq_len(kv, bad) == -1, "unknown sequence has a length");
    fails_with(rg_kv_cache_write(kv, 0, &cnt, 0, &cnt, 0), RG_ERR_INVALID_ARG, "no batch", "write without batch");
    CHECK(rg_kv_cache_seq_len(kv, id) == 0 && rg_kv_cache_n_free_blocks(kv) == 8, "failed calls changed the cache");
    rg_kv_cache_free(kv);
    rg_kv_cache_free(NULL);
}

int main(void) {
    rg_rng r;
    rg_test_init("test_kv_cache", &r);
    if (rg_backend_init(RG_BACKEND_CPU, 0, &be) != RG_OK) { printf("no cpu backend: %s\n", rg_last_error()); return 1; }
    test_exhaustion();
    for (int i = 0; i < (rg_test_quick() ? 3 : 10); i++) test_random_invariants(&r, rg_test_quick());
    test_write_and_tables(&r);
    test_bad_args();
    rg_backend_free(be);
    return rg_test_finish();
}
