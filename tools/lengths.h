/* lengths.h — batches of sequence lengths for the benchmarks: read from a file
 * (one batch per line, '#' starts a comment) or drawn uniform in [1, max_len-1].
 * A stand-in until the library's rg_lengths_read / rg_lengths_uniform (src/batch)
 * land in main; then these become thin wrappers or go away. */
#ifndef RG_TOOLS_LENGTHS_H
#define RG_TOOLS_LENGTHS_H
#include <stddef.h>
#include <stdint.h>

typedef struct lengths_set {
    int n_batches;
    int32_t *start;   /* (n_batches + 1): batch i is lens[start[i] .. start[i+1]) */
    int32_t *lens;    /* (start[n_batches]) sequence lengths, each >= 1 */
    int32_t max_len;  /* longest length in the set */
} lengths_set;

/* Reads path. On failure returns -1 with a message in err ("FILE:LINE: ...")
 * and leaves *out zeroed. Each batch's total must fit int32. */
int lengths_read(const char *path, lengths_set *out, char *err, size_t err_size);

/* n_batches batches of batch_size lengths uniform in [1, max_len - 1]
 * (max_len >= 2), from seed. Returns -1 (with err) when out of memory. */
int lengths_uniform(int n_batches, int batch_size, int32_t max_len, uint64_t seed, lengths_set *out,
                    char *err, size_t err_size);

void lengths_free(lengths_set *s);

#endif
