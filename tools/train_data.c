/* train_data.c — the trainer's batches: sequences of the synthetic dataset
 * (ragged.h section 5) built into a batch layout (section 4). */
#include "train.h"
#include "msg.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int train_data_init(train_data *d, const train_opts *o) {
    memset(d, 0, sizeof *d);
    d->synth = o->synth;
    d->bopts = (rg_batch_opts){.layout = o->layout, .max_len = o->layout == RG_LAYOUT_PAD_MAX ? o->cfg.max_seq_len
                                                                                              : o->synth.max_len,
                               .vocab_size = o->cfg.vocab_size, .pad_id = 0};
    d->batch_size = o->batch_size;
    d->tokens = malloc((size_t)o->batch_size * o->synth.max_len * sizeof *d->tokens);
    d->seqs = malloc((size_t)o->batch_size * sizeof *d->seqs);
    d->lens = malloc((size_t)o->batch_size * sizeof *d->lens);
    if (!d->tokens || !d->seqs || !d->lens) {
        msg_error("out of memory for batches of %d sequences of up to %d tokens", o->batch_size,
                  o->synth.max_len);
        train_data_free(d);
        return -1;
    }
    return 0;
}

void train_data_free(train_data *d) {
    free(d->tokens);
    free(d->seqs);
    free(d->lens);
    memset(d, 0, sizeof *d);
}

int64_t train_data_max_slots(const train_data *d) {
    return (int64_t)d->batch_size * (d->bopts.layout == RG_LAYOUT_PAD_MAX ? d->bopts.max_len : d->synth.max_len);
}

rg_status train_data_batch(train_data *d, rg_synth_split split, int64_t first, int32_t n, bool answers_only,
                           rg_batch *out) {
    int32_t L = d->synth.max_len;
    for (int32_t i = 0; i < n; i++) {
        int32_t *t = d->tokens + (size_t)i * L;
        rg_status s = rg_synth_sequence(&d->synth, split, first + i, t, L, &d->lens[i]);
        if (s != RG_OK) return s;
        d->seqs[i] = t;
    }
    rg_status s = rg_batch_build(&d->bopts, n, d->seqs, d->lens, out);
    if (s != RG_OK || !answers_only) return s;
    /* A sequence of length 2k + 3 has its SEP at position k + 1: the targets
     * from there on are the answer and EOS. */
    for (int32_t t = 0; t < out->n_tokens; t++) {
        int32_t sq = out->seq_ids[t];
        if (sq < 0) continue;
        int32_t k = (out->seqlens[sq] - 3) / 2;
        if (out->position_ids[t] < k + 1 && out->targets[t] != RG_IGNORE_INDEX) {
            out->targets[t] = RG_IGNORE_INDEX;
            out->n_targets--;
        }
    }
    return RG_OK;
}
