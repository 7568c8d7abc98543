/* train_corpus.h — real text for `ragged prepare`, `train --data` and `eval`:
 * input patterns expanded to files (files, directories, quoted globs, "-"),
 * token shards read back into one stream of documents, and that stream's
 * packed batches (ragged.h section 5, rg_doc_pack). */
#ifndef RG_TOOLS_TRAIN_CORPUS_H
#define RG_TOOLS_TRAIN_CORPUS_H
#include "ragged.h"
#include <stdbool.h>
#include <stdint.h>

typedef struct path_list { char **paths; int n, cap; } path_list;

/* Appends the files of one pattern: "-" (stdin, when allow_stdin), a
 * directory (its regular files whose names do not start with '.', sorted; only
 * those ending in suffix when suffix is not NULL), a glob (matches sorted; an
 * error if none), or a file (an error if missing). flag names the option in
 * messages. Returns 0, or -1 after printing an error. */
int paths_add(path_list *l, const char *pattern, bool allow_stdin, const char *suffix, const char *flag);
void paths_free(path_list *l);

/* The documents of the shards a pattern names: tokens end to end (every
 * shard's tokens, in file order) and doc_offsets (n_docs + 1) split at each
 * EOT (ragged.h section 8: a shard that starts inside a document gives that
 * fragment as a document of its own; a shard that ends inside one gives its
 * tail as a shorter document; nothing is joined across shards). */
typedef struct corpus {
    int64_t n_tokens, n_docs;
    uint16_t *tokens;
    int64_t *doc_offsets;
    int n_shards;
    int64_t n_fragments;     /* documents that do not start with EOT (a shard cut inside a document) */
    int32_t max_token;
} corpus;

/* Reads every shard of pattern; tokens must lie below vocab (the model's).
 * Returns 0, or -1 after printing an error naming the file. */
int corpus_load(const char *pattern, const char *flag, int32_t eot, int32_t vocab, corpus *out);
void corpus_free(corpus *c);

/* Packed batches over a corpus: rows of row_len, rows_per_batch rows each. */
typedef struct corpus_batches {
    const corpus *c;
    rg_doc_pack pack;
    int32_t vocab;
    int32_t *scratch;        /* (rows_per_batch * row_len) the batch's tokens as int32 */
    const int32_t **seqs;    /* (max_pieces) */
    int32_t *lens;           /* (max_pieces) */
    int32_t max_pieces;      /* most pieces in one batch */
    int32_t rows_per_batch;
} corpus_batches;

/* Packs c (shuffle: rows reordered by seed). Returns 0, or -1 after an error. */
int corpus_batches_init(corpus_batches *b, const corpus *c, int32_t row_len, int32_t rows_per_batch, int32_t vocab,
                        uint64_t seed, bool shuffle);
/* Re-packs with another seed (a new epoch's row order); same sizes. */
int corpus_batches_reseed(corpus_batches *b, uint64_t seed);
void corpus_batches_free(corpus_batches *b);
/* Builds batch i (packed: one attention block per piece). Returns the library's status. */
rg_status corpus_batch(corpus_batches *b, int32_t i, rg_batch *out);
/* "P pieces of D documents (S split) in R rows of L, N batches; packed: T tokens, no padding; padded to L
 * per piece it would be X slots, Y% padding: Z pad tokens avoided". */
void corpus_batches_describe(const corpus_batches *b, char *buf, size_t n);

#endif
