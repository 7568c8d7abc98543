/* tokenizer_load.h — private: the steps that build an rg_tokenizer (tokenizer.c),
 * shared by the vocab.json + merges.txt loader and the tokenizer.json loader
 * (tokenizer_json.c). Errors read "FN: PATH:LINE: problem". */
#ifndef RG_IO_TOKENIZER_LOAD_H
#define RG_IO_TOKENIZER_LOAD_H
#include "io/json.h"
#include "ragged.h"
#include <stddef.h>
#include <stdint.h>

typedef struct rg_tok_loader {
    const char *fn;          /* public function, for messages */
    const char *path;        /* file being read, for messages */
    int16_t cp_byte[512];    /* GPT-2 alphabet code point -> byte, -1 if none */
    uint8_t *tmp;            /* bytes of the token being converted */
    size_t tmp_n, tmp_cap;
} rg_tok_loader;

/* A zeroed tokenizer and a loader with the byte alphabet set up. */
rg_status rg_tok_begin(const char *fn, rg_tok_loader *L, rg_tokenizer **t);
/* The vocabulary from a JSON object token -> id (tokens in the byte alphabet).
 * extra (may be NULL) is one more token, given as raw bytes with id extra_id
 * (tokenizer.json's added <|endoftext|>): it may already be in obj with that id. */
rg_status rg_tok_vocab(rg_tokenizer *t, rg_tok_loader *L, const rg_json *obj, const char *extra, int32_t extra_id);
/* Room for n merges. */
rg_status rg_tok_merges_init(rg_tokenizer *t, size_t n);
/* Merge a + b (alphabet characters, UTF-8) at rank; line names it in errors. */
rg_status rg_tok_merge(rg_tokenizer *t, rg_tok_loader *L, const uint8_t *a, size_t na, const uint8_t *b, size_t nb,
                       int32_t rank, int line);
/* The encode cache; the tokenizer is then ready. */
rg_status rg_tok_finish(rg_tokenizer *t, const char *fn);
/* Frees the loader's scratch. */
void rg_tok_loader_free(rg_tok_loader *L);

#endif
