/* plan.h — helpers shared by the samplers of src/batch (private to the library). */
#ifndef RG_BATCH_PLAN_H
#define RG_BATCH_PLAN_H
#include "core/rng.h"
#include "ragged.h"
#include <stdbool.h>

/* idx = 0..n-1 ordered by length (ascending or descending), ties by lower index. */
rg_status rg_sort_by_length(int32_t n, const int32_t *lens, bool descending, int32_t *idx);

/* Fisher-Yates shuffle of x[0..n). */
void rg_shuffle_i32(rg_rng *rng, int32_t *x, int32_t n);

/* Best-fit-decreasing packing of n sequences (every lens[i] in [1, cap]) into
 * rows of cap tokens. Writes *n_rows, row_offsets (n_rows + 1, caller sized
 * n + 1) and seqs (n): row r holds seqs[row_offsets[r]..row_offsets[r+1]] in
 * placement order; rows are numbered in the order they were opened. */
rg_status rg_best_fit_rows(int32_t n, const int32_t *lens, int32_t cap, int32_t *n_rows,
                           int32_t *row_offsets, int32_t *seqs);

#endif
