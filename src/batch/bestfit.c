/* bestfit.c — best-fit-decreasing bin packing of sequences into rows of a fixed
 * capacity. Open rows live in a treap keyed by (room left, row id), so "the
 * row with the least room that still fits" is one O(log rows) descent and the
 * whole packing is O(n log n), not the O(n * rows) of a scan. */
#include "batch/plan.h"
#include "core/alloc.h"
#include "core/status.h"
#include <string.h>

typedef struct rows_tree {
    int32_t *left, *right, *room; /* (n) per row; -1 = no child */
    uint32_t *prio;               /* (n) heap priority: a fixed hash of the row id */
    int32_t root;                 /* -1 when no row has room */
} rows_tree;

/* Is the key (room, id) of node below (room, id)? */
static bool key_below(const rows_tree *t, int32_t node, int32_t room, int32_t id) {
    return t->room[node] < room || (t->room[node] == room && node < id);
}

/* Splits the subtree at node into keys < (room, id) and keys >= (room, id). */
static void split(rows_tree *t, int32_t node, int32_t room, int32_t id, int32_t *lo, int32_t *hi) {
    if (node < 0) {
        *lo = *hi = -1;
    } else if (key_below(t, node, room, id)) {
        split(t, t->right[node], room, id, &t->right[node], hi);
        *lo = node;
    } else {
        split(t, t->left[node], room, id, lo, &t->left[node]);
        *hi = node;
    }
}

/* Joins a and b, every key of a below every key of b. */
static int32_t merge(rows_tree *t, int32_t a, int32_t b) {
    if (a < 0) return b;
    if (b < 0) return a;
    if (t->prio[a] > t->prio[b]) {
        t->right[a] = merge(t, t->right[a], b);
        return a;
    }
    t->left[b] = merge(t, a, t->left[b]);
    return b;
}

static void insert(rows_tree *t, int32_t r) {
    int32_t lo, hi;
    t->left[r] = t->right[r] = -1;
    split(t, t->root, t->room[r], r, &lo, &hi);
    t->root = merge(t, merge(t, lo, r), hi);
}

static void erase(rows_tree *t, int32_t r) {
    int32_t lo, mid, hi;
    split(t, t->root, t->room[r], r, &lo, &hi);       /* hi starts with r */
    split(t, hi, t->room[r], r + 1, &mid, &hi);       /* mid is r alone */
    t->root = merge(t, lo, hi);
}

/* The row with the least room >= len (ties: lowest id), or -1. */
static int32_t best_row(const rows_tree *t, int32_t len) {
    int32_t best = -1;
    for (int32_t node = t->root; node >= 0;) {
        if (t->room[node] >= len) {
            best = node;
            node = t->left[node];
        } else {
            node = t->right[node];
        }
    }
    return best;
}

static uint32_t hash_id(uint32_t x) {
    x ^= x >> 16; x *= 0x7feb352dU; x ^= x >> 15; x *= 0x846ca68bU; x ^= x >> 16;
    return x;
}

rg_status rg_best_fit_rows(int32_t n, const int32_t *lens, int32_t cap, int32_t *n_rows,
                           int32_t *row_offsets, int32_t *seqs) {
    rows_tree t = {.root = -1};
    int32_t *sorted = NULL, *row_of = NULL;
    size_t un = (size_t)n;
    rg_status st;
    if ((st = rg_alloc((void **)&t.left, un, sizeof(int32_t), "rg_plan_build: best-fit tree")) ||
        (st = rg_alloc((void **)&t.right, un, sizeof(int32_t), "rg_plan_build: best-fit tree")) ||
        (st = rg_alloc((void **)&t.room, un, sizeof(int32_t), "rg_plan_build: best-fit tree")) ||
        (st = rg_alloc((void **)&t.prio, un, sizeof(uint32_t), "rg_plan_build: best-fit tree")) ||
        (st = rg_alloc((void **)&sorted, un, sizeof(int32_t), "rg_plan_build: best-fit order")) ||
        (st = rg_alloc((void **)&row_of, un, sizeof(int32_t), "rg_plan_build: best-fit rows")) ||
        (st = rg_sort_by_length(n, lens, true, sorted)))
        goto done;

    int32_t rows = 0;
    for (int32_t k = 0; k < n; k++) {
        int32_t i = sorted[k], r = best_row(&t, lens[i]);
        if (r < 0) {
            r = rows++;
            t.room[r] = cap;
            t.prio[r] = hash_id((uint32_t)r);
        } else {
            erase(&t, r);
        }
        t.room[r] -= lens[i];
        if (t.room[r] > 0) insert(&t, r); /* a full row can take nothing more */
        row_of[i] = r;
    }

    /* Group by row, keeping placement (longest-first) order inside each row. */
    memset(row_offsets, 0, ((size_t)rows + 1) * sizeof(int32_t));
    for (int32_t i = 0; i < n; i++) row_offsets[row_of[i] + 1]++;
    for (int32_t r = 0; r < rows; r++) row_offsets[r + 1] += row_offsets[r];
    for (int32_t r = 0; r < rows; r++) t.left[r] = row_offsets[r]; /* reuse as fill cursors */
    for (int32_t k = 0; k < n; k++) seqs[t.left[row_of[sorted[k]]]++] = sorted[k];
    *n_rows = rows;
done:
    rg_free(t.left);
    rg_free(t.right);
    rg_free(t.room);
    rg_free(t.prio);
    rg_free(sorted);
    rg_free(row_of);
    return st;
}
