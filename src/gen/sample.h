/* sample.h — next-token sampling on the host (ragged.h rg_sampling): the
 * repetition penalty, greedy, temperature, top-k, top-p and a draw from the
 * request's RNG. A workspace of vocabulary size is allocated once. */
#ifndef RG_GEN_SAMPLE_H
#define RG_GEN_SAMPLE_H
#include "ragged.h"
#include "core/rng.h"

typedef struct rg_sample_cand { float v; int32_t id; } rg_sample_cand;

typedef struct rg_sample_ws {
    int32_t V;
    rg_sample_cand *cand;     /* (V) */
    double *p;                /* (V) */
    uint8_t *seen;            /* (V) zero between calls */
} rg_sample_ws;

rg_status rg_sample_ws_init(int32_t V, rg_sample_ws *ws);
void rg_sample_ws_free(rg_sample_ws *ws);

/* HF's repetition penalty over logits (V), in place: every distinct token of
 * a[0..na) and b[0..nb) (ids in [0, V)) once. penalty == 1 does nothing. */
void rg_sample_penalize(rg_sample_ws *ws, float *logits, float penalty, const int32_t *a, int32_t na,
                        const int32_t *b, int32_t nb);

/* Whether s picks the argmax (greedy, temperature 0 or top-k 1). */
bool rg_sample_is_greedy(const rg_sampling *s);

/* The token for logits (V) already penalised; settings valid (rg_sampling_validate). */
int32_t rg_sample_pick(rg_sample_ws *ws, const rg_sampling *s, rg_rng *rng, const float *logits);

#endif
