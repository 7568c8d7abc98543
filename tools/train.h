/* train.h — `ragged train`: options, and the data side (train_data.c): the
 * synthetic dataset's sequences turned into batches of a layout. */
#ifndef RG_TOOLS_TRAIN_H
#define RG_TOOLS_TRAIN_H
#include "ragged.h"
#include "model_cli.h"
#include <stdbool.h>

typedef struct train_opts {
    model_flags model;
    const char *resume, *save, *data;
    int seed;
    /* real text: token shards (train_corpus.h), a HuggingFace start and end */
    const char *val_data, *init_from, *save_hf;
    int eot;
    /* data */
    const char *tasks;          /* comma-separated copy, reverse, sort */
    int symbols, min_len, max_len;
    const char *strategy;       /* packed | pad-to-longest | pad-to-max */
    int batch_size, accum;
    /* optimizer and schedule */
    const char *optim;          /* adamw | sgd */
    double lr, min_lr, weight_decay, beta1, beta2, eps, momentum, clip;
    bool decay_all;
    int steps, warmup, schedule_steps;
    /* evaluation, logging, checkpoints */
    int eval_every, eval_seqs, log_every, save_every;
    int threads;
    const char *backend;
    /* derived */
    rg_model_config cfg;
    rg_synth_opts synth;
    rg_batch_layout layout;
} train_opts;

/* Batches of the synthetic dataset: a scratch buffer for the sequences of
 * one batch, and the layout options. */
typedef struct train_data {
    rg_synth_opts synth;
    rg_batch_opts bopts;
    int32_t batch_size;
    int32_t *tokens;            /* (batch_size, max_len) */
    const int32_t **seqs;       /* (batch_size) */
    int32_t *lens;              /* (batch_size) */
} train_data;

/* 0, or -1 after printing an error. */
int train_data_init(train_data *d, const train_opts *o);
void train_data_free(train_data *d);
/* Builds the batch of sequences first..first+n-1 of a split (n <= batch_size).
 * answers_only: targets before each sequence's SEP are RG_IGNORE_INDEX, so
 * the loss covers the answer tokens alone. Returns the library's status. */
rg_status train_data_batch(train_data *d, rg_synth_split split, int64_t first, int32_t n, bool answers_only,
                           rg_batch *out);
/* Slots of the largest batch that train_data_batch can build. */
int64_t train_data_max_slots(const train_data *d);

int cmd_train(int argc, char **argv);

#endif
