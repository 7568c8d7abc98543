/* train.c — `ragged train`: trains a model from a preset on the synthetic
 * copy/reverse/sort dataset (ragged.h section 5), packed batches by default,
 * AdamW or SGD with warm-up + cosine, clipping and gradient accumulation; a
 * progress line every --log-every steps, held-out eval loss every
 * --eval-every, safetensors checkpoints (atomic) every --save-every and at
 * the end; --resume continues a checkpoint exactly. With --data, token shards
 * instead: documents packed by best fit into rows (train_corpus.h), held-out
 * loss on --val-data; --init-from / --save-hf read and write HuggingFace GPT-2. */
#define _POSIX_C_SOURCE 200809L
#include "ragged.h"
#include "args.h"
#include "checkpoint.h"
#include "cli.h"
#include "stats.h"
#include "train.h"
#include "train_corpus.h"
#include "msg.h"
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD "train"

/* The preset's default, recognised by address: --preset given explicitly
 * (even "cpu") points into argv instead. */
static const char default_preset[] = "cpu";
static const char default_save[] = "ragged.safetensors";

static void opts_default(train_opts *o) {
    memset(o, 0, sizeof *o);
    o->model.preset = default_preset;
    o->resume = NULL;
    o->save = default_save;
    o->data = NULL;
    o->val_data = NULL;
    o->init_from = NULL;
    o->save_hf = NULL;
    o->eot = 50256;
    o->seed = 1;
    o->tasks = "copy,reverse,sort";
    o->symbols = 0;
    o->min_len = 1;
    o->max_len = 0;
    o->strategy = "packed";
    o->batch_size = 16;
    o->accum = 1;
    o->optim = "adamw";
    o->lr = 1e-3;
    o->min_lr = 1e-4;
    o->weight_decay = 0.1;
    o->beta1 = 0.9;
    o->beta2 = 0.95;
    o->eps = 1e-8;
    o->momentum = 0;
    o->clip = 1.0;
    o->decay_all = false;
    o->steps = 300;
    o->warmup = -1;
    o->schedule_steps = 0;
    o->eval_every = 50;
    o->eval_seqs = 128;
    o->log_every = 10;
    o->save_every = 0;
    o->threads = 0;
    o->backend = "cpu";
}

static int parse_opts(train_opts *o, int argc, char **argv) {
    arg_spec specs[MODEL_FLAG_SPECS + 40];
    model_flag_specs(&o->model, "Model (with --resume: the checkpoint's)", specs);
    const arg_spec rest[] = {
        {"Run", "resume", 'r', ARG_STRING, &o->resume, "FILE", 1, 0,
         "continue a checkpoint exactly (weights, optimizer, step, options)", "none"},
        {NULL, "init-from", 0, ARG_STRING, &o->init_from, "DIR", 1, 0,
         "start from a HuggingFace GPT-2 directory (config.json + safetensors) instead of --preset", "none"},
        {NULL, "seed", 's', ARG_INT, &o->seed, "S", 0, INT_MAX, "seed of the initial weights and of the dataset", NULL},
        {"Data", "data", 0, ARG_STRING, &o->data, "GLOB", 1, 0,
         "token shards (`ragged prepare`): a quoted glob 'dir/x_train_*.bin', a file, or a directory of .bin files",
         "none: synthetic tasks"},
        {NULL, "val-data", 0, ARG_STRING, &o->val_data, "GLOB", 1, 0, "held-out shards for the eval loss (with --data)",
         "none"},
        {NULL, "eot", 0, ARG_INT, &o->eot, "ID", 0, 65535, "the <|endoftext|> id that starts each document (with --data)",
         "50256, GPT-2's"},
        {NULL, "tasks", 0, ARG_STRING, &o->tasks, "LIST", 1, 0,
         "synthetic tasks: copy, reverse, sort (comma-separated)", NULL},
        {NULL, "symbols", 0, ARG_INT, &o->symbols, "N", 0, INT_MAX, "alphabet of the x", "0 = min(32, vocab - 6)"},
        {NULL, "min-len", 0, ARG_INT, &o->min_len, "N", 1, INT_MAX, "shortest sequence (at least 5 occur)", NULL},
        {NULL, "max-len", 0, ARG_INT, &o->max_len, "N", 0, INT_MAX,
         "longest sequence (with --data: the row length; longer documents are cut into pieces)", "0 = max_seq_len"},
        {NULL, "strategy", 0, ARG_CHOICE, &o->strategy, "packed|pad-to-longest|pad-to-max", 1, 0, "batch layout", NULL},
        {NULL, "batch-size", 'b', ARG_INT, &o->batch_size, "B", 1, INT_MAX,
         "sequences per micro-batch (with --data: rows of --max-len tokens, packed)", NULL},
        {NULL, "accum", 0, ARG_INT, &o->accum, "K", 1, INT_MAX, "micro-batches per step (gradient accumulation)", NULL},
        {"Optimizer", "optim", 0, ARG_CHOICE, &o->optim, "adamw|sgd", 1, 0, "optimizer (torch semantics)", NULL},
        {NULL, "lr", 0, ARG_DOUBLE, &o->lr, "X", 0, HUGE_VAL, "peak learning rate", NULL},
        {NULL, "min-lr", 0, ARG_DOUBLE, &o->min_lr, "X", 0, HUGE_VAL, "learning rate at the end of the cosine", NULL},
        {NULL, "warmup", 0, ARG_INT, &o->warmup, "N", -1, INT_MAX, "steps of linear warm-up",
         "-1 = min(20, a tenth of the schedule)"},
        {NULL, "steps", 'n', ARG_INT, &o->steps, "N", 1, INT_MAX, "train until this step (optimizer updates)", NULL},
        {NULL, "schedule-steps", 0, ARG_INT, &o->schedule_steps, "N", 0, INT_MAX,
         "cosine length (give the final one to stop and resume)", "0 = --steps"},
        {NULL, "weight-decay", 0, ARG_DOUBLE, &o->weight_decay, "X", 0, HUGE_VAL, "weight decay (AdamW: decoupled)", NULL},
        {NULL, "decay-all", 0, ARG_BOOL, &o->decay_all, NULL, 1, 0,
         "decay every tensor, not only the 2-D ones", NULL},
        {NULL, "beta1", 0, ARG_DOUBLE, &o->beta1, "X", 0, 0.999999, "AdamW beta1", NULL},
        {NULL, "beta2", 0, ARG_DOUBLE, &o->beta2, "X", 0, 0.999999, "AdamW beta2", NULL},
        {NULL, "eps", 0, ARG_DOUBLE, &o->eps, "X", 1e-30, 1, "AdamW epsilon", NULL},
        {NULL, "momentum", 0, ARG_DOUBLE, &o->momentum, "X", 0, 0.999999, "SGD momentum", NULL},
        {NULL, "clip", 0, ARG_DOUBLE, &o->clip, "X", 0, HUGE_VAL, "clip the gradient's global norm to X", "1, 0 = off"},
        {"Progress and checkpoints", "log-every", 0, ARG_INT, &o->log_every, "N", 1, INT_MAX,
         "a progress line every N steps (loss averaged over them)", NULL},
        {NULL, "eval-every", 0, ARG_INT, &o->eval_every, "N", 0, INT_MAX, "held-out eval loss every N steps, and at the end",
         "50; 0 = end only"},
        {NULL, "eval-seqs", 0, ARG_INT, &o->eval_seqs, "N", 1, INT_MAX, "held-out sequences per eval", NULL},
        {NULL, "save", 'o', ARG_STRING, &o->save, "FILE", 1, 0, "checkpoint (safetensors, atomic); 'none': no file", NULL},
        {NULL, "save-every", 0, ARG_INT, &o->save_every, "N", 0, INT_MAX, "also save every N steps", "0 = at the end only"},
        {NULL, "save-hf", 0, ARG_STRING, &o->save_hf, "DIR", 1, 0,
         "at the end, also write a HuggingFace GPT-2 directory (GPT2LMHeadModel.from_pretrained loads it)", "none"},
        {NULL, "threads", 't', ARG_INT, &o->threads, "N", 0, INT_MAX, "CPU threads", "0 = every core"},
        {NULL, "backend", 0, ARG_CHOICE, &o->backend, "cpu|cuda", 1, 0, "device", NULL},
    };
    int n = MODEL_FLAG_SPECS;
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++) specs[n++] = rest[i];
    static const char about[] =
        "Trains a GPT-style decoder on a learnable synthetic dataset of variable-length\n"
        "sequences: 'TASK x_1..x_k SEP y_1..y_k EOS' with y = x copied, reversed or sorted,\n"
        "k random, so the answers can be learned (their loss, printed as 'answers', can\n"
        "fall to 0) while the x stay at ln(--symbols). Packed batches by default (no\n"
        "padding). Step s uses training sequences s*B*K.., so a run stopped and resumed\n"
        "sees the same data: with --resume, the model, optimizer, schedule and data\n"
        "options default to the checkpoint's, and training continues bit for bit as if\n"
        "never stopped (same thread count).\n\n"
        "Real text: --data 'dir/x_train_*.bin' (quote the glob: ragged expands it, in\n"
        "sorted order) reads llm.c shards (`ragged prepare`), splits them into\n"
        "documents at each --eot, cuts documents longer than --max-len into pieces, and\n"
        "packs the pieces by best-fit-decreasing into rows of --max-len tokens,\n"
        "--batch-size rows per micro-batch: every document is its own attention block\n"
        "with positions from 0, and no slot is padding (the padding avoided is printed\n"
        "at the start). Each epoch shuffles the rows (from --seed and the epoch). A\n"
        "shard that ends inside a document gives its tail as a shorter document, and\n"
        "the next shard's leading tokens become a document of their own. Use a model\n"
        "whose vocabulary holds the tokens (--preset gpt2, --vocab, or --init-from).\n"
        "Exit status: 0 ok, 1 runtime failure, 2 bad usage.";
    return args_parse(CMD, "ragged train [options]", about, specs, n, argc, argv);
}

static int parse_tasks(const char *s, uint32_t *out) {
    char list[256];
    snprintf(list, sizeof list, "%s", s);
    *out = 0;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        uint32_t bit = !strcmp(tok, "copy") ? RG_SYNTH_COPY : !strcmp(tok, "reverse") ? RG_SYNTH_REVERSE
                     : !strcmp(tok, "sort") ? RG_SYNTH_SORT : 0;
        if (!bit) return -1;
        *out |= bit;
    }
    return *out ? 0 : -1;
}

/* Options the flag table cannot check; fills cfg (unless resuming: the
 * caller sets it from the checkpoint first), synth and layout. */
static int validate_common(train_opts *o);

/* --data: the row length and the flags that belong to the synthetic tasks. */
static int validate_data(train_opts *o) {
    if (strcmp(o->strategy, "packed"))
        return args_error(CMD, "--strategy", "with --data, batches are always packed (got '%s')", o->strategy);
    int max_len = o->max_len ? o->max_len : o->cfg.max_seq_len;
    if (max_len > o->cfg.max_seq_len)
        return args_error(CMD, "--max-len", "%d exceeds the model's max_seq_len %d", max_len, o->cfg.max_seq_len);
    if ((int64_t)o->batch_size * max_len > INT32_MAX)
        return args_error(CMD, "--batch-size", "%d rows of %d tokens overflow int32 slots", o->batch_size, max_len);
    o->synth = (rg_synth_opts){.seed = (uint64_t)o->seed, .max_len = max_len};
    o->layout = RG_LAYOUT_PACKED;
    return validate_common(o);
}

static bool gpt2_shaped(const rg_model_config *c) {
    return c->ln_bias && c->linear_bias && c->final_ln && c->tied_embeddings && !c->lm_head_bias &&
           c->n_kv_heads == c->n_heads;
}

static int validate_opts(train_opts *o, bool resuming) {
    if (!resuming && !o->init_from && model_flags_config(&o->model, CMD, &o->cfg) != ARGS_OK) return ARGS_ERROR;
    if (o->val_data && !o->data) return args_error(CMD, "--val-data", "needs --data (the synthetic tasks have their own held-out split)");
    if (o->save_hf && !gpt2_shaped(&o->cfg))
        return args_error(CMD, "--save-hf", "the model is not GPT-2-shaped (LayerNorm and linear biases, final LayerNorm, "
                          "tied head, no head bias, n_kv_heads = n_heads): use --preset gpt2 or --init-from");
    if (o->data) return validate_data(o);
    uint32_t tasks;
    if (parse_tasks(o->tasks, &tasks))
        return args_error(CMD, "--tasks", "expected a comma-separated list of copy, reverse, sort, got '%s'", o->tasks);
    int room = o->cfg.vocab_size - RG_SYNTH_FIRST_SYMBOL;
    if (room < 2)
        return args_error(CMD, "--vocab", "the synthetic tasks need a vocabulary of at least %d tokens, the model has %d",
                          RG_SYNTH_FIRST_SYMBOL + 2, o->cfg.vocab_size);
    int symbols = o->symbols ? o->symbols : room < 32 ? room : 32;
    if (symbols < 2 || symbols > room)
        return args_error(CMD, "--symbols", "expected 2..%d (the vocabulary %d less %d special tokens), got '%d'", room,
                          o->cfg.vocab_size, RG_SYNTH_FIRST_SYMBOL, o->symbols);
    int max_len = o->max_len ? o->max_len : o->cfg.max_seq_len;
    if (max_len > o->cfg.max_seq_len)
        return args_error(CMD, "--max-len", "%d exceeds the model's max_seq_len %d", max_len, o->cfg.max_seq_len);
    if (o->min_len > max_len)
        return args_error(CMD, "--min-len", "%d exceeds the longest length %d (--max-len, or the model's max_seq_len)",
                          o->min_len, max_len);
    o->synth = (rg_synth_opts){.seed = (uint64_t)o->seed, .tasks = tasks, .vocab_size = o->cfg.vocab_size,
                               .n_symbols = symbols, .min_len = o->min_len, .max_len = max_len};
    if (rg_synth_validate(&o->synth) != RG_OK) {
        const char *m = strstr(rg_last_error(), ": ");
        return args_error(CMD, "--min-len/--max-len", "%s", m ? m + 2 : rg_last_error());
    }
    o->layout = !strcmp(o->strategy, "packed") ? RG_LAYOUT_PACKED
              : !strcmp(o->strategy, "pad-to-max") ? RG_LAYOUT_PAD_MAX : RG_LAYOUT_PAD_LONGEST;
    if ((int64_t)o->batch_size * (o->layout == RG_LAYOUT_PAD_MAX ? o->cfg.max_seq_len : max_len) > INT32_MAX)
        return args_error(CMD, "--batch-size", "%d sequences of up to %d tokens overflow int32 slots", o->batch_size,
                          max_len);
    return validate_common(o);
}

/* The optimizer, schedule and checkpoint flags. */
static int validate_common(train_opts *o) {
    if (o->min_lr > o->lr) return args_error(CMD, "--min-lr", "%g exceeds --lr %g", o->min_lr, o->lr);
    if (!(o->lr > 0)) return args_error(CMD, "--lr", "expected a number > 0, got '%g'", o->lr);
    int sched = o->schedule_steps ? o->schedule_steps : o->steps;
    if (o->warmup < 0) o->warmup = sched / 10 < 20 ? sched / 10 : 20;
    if (sched <= o->warmup)
        return args_error(CMD, "--warmup", "%d must be below the schedule's length %d (--schedule-steps or --steps)",
                          o->warmup, sched);
    if (o->save_every && !strcmp(o->save, "none"))
        return args_error(CMD, "--save-every", "needs a checkpoint file (--save FILE, not 'none')");
    return ARGS_OK;
}

static rg_optim_config optim_config(const train_opts *o) {
    rg_optim_config c;
    rg_optim_config_default(!strcmp(o->optim, "sgd") ? RG_OPTIM_SGD : RG_OPTIM_ADAMW, &c);
    c.lr = (float)o->lr;
    c.min_lr = (float)o->min_lr;
    c.warmup_steps = o->warmup;
    c.total_steps = o->schedule_steps ? o->schedule_steps : o->steps;
    c.momentum = (float)o->momentum;
    c.beta1 = (float)o->beta1;
    c.beta2 = (float)o->beta2;
    c.eps = (float)o->eps;
    c.weight_decay = (float)o->weight_decay;
    c.decay_matrices_only = !o->decay_all;
    c.clip_norm = (float)o->clip;
    return c;
}

/* ---- the trainer's options in checkpoint metadata ("train.*") ---- */
typedef struct saved_opts { char buf[20][2][512]; const char *kv[40]; size_t n; } saved_opts;

static void saved_add(saved_opts *s, const char *key, const char *fmt, ...) {
    va_list ap;
    snprintf(s->buf[s->n][0], sizeof s->buf[0][0], "%s", key);
    va_start(ap, fmt);
    vsnprintf(s->buf[s->n][1], sizeof s->buf[0][1], fmt, ap);
    va_end(ap);
    s->kv[2 * s->n] = s->buf[s->n][0];
    s->kv[2 * s->n + 1] = s->buf[s->n][1];
    s->n++;
}

static void saved_fill(saved_opts *s, const train_opts *o) {
    s->n = 0;
    saved_add(s, "train.preset", "%s", o->model.preset);
    saved_add(s, "train.seed", "%d", o->seed);
    saved_add(s, "train.tasks", "%s", o->tasks);
    saved_add(s, "train.symbols", "%d", o->synth.n_symbols);
    saved_add(s, "train.min_len", "%d", o->synth.min_len);
    saved_add(s, "train.max_len", "%d", o->synth.max_len);
    saved_add(s, "train.strategy", "%s", o->strategy);
    saved_add(s, "train.batch_size", "%d", o->batch_size);
    saved_add(s, "train.accum", "%d", o->accum);
    saved_add(s, "train.steps", "%d", o->steps);
    saved_add(s, "train.eval_every", "%d", o->eval_every);
    saved_add(s, "train.eval_seqs", "%d", o->eval_seqs);
    saved_add(s, "train.data", "%s", o->data ? o->data : "");
    saved_add(s, "train.val_data", "%s", o->val_data ? o->val_data : "");
    saved_add(s, "train.eot", "%d", o->eot);
}

/* Sets o's defaults from a checkpoint (its optimizer config and train.*). */
static int defaults_from_checkpoint(train_opts *o, const rg_safetensors *st, const rg_optim_config *c, char **keep) {
    o->optim = c->kind == RG_OPTIM_ADAMW ? "adamw" : "sgd";
    o->lr = c->lr;
    o->min_lr = c->min_lr;
    o->warmup = (int)c->warmup_steps;
    o->schedule_steps = (int)c->total_steps;
    o->momentum = c->momentum;
    o->beta1 = c->beta1;
    o->beta2 = c->beta2;
    o->eps = c->eps;
    o->weight_decay = c->weight_decay;
    o->decay_all = !c->decay_matrices_only;
    o->clip = c->clip_norm;
    struct { const char *key; int *dst; } ints[] = {
        {"train.seed", &o->seed}, {"train.symbols", &o->symbols}, {"train.min_len", &o->min_len},
        {"train.max_len", &o->max_len}, {"train.batch_size", &o->batch_size}, {"train.accum", &o->accum},
        {"train.steps", &o->steps}, {"train.eval_every", &o->eval_every}, {"train.eval_seqs", &o->eval_seqs},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        const char *v = rg_safetensors_metadata(st, ints[i].key);
        char *end;
        long x = v ? strtol(v, &end, 10) : 0;
        if (!v || !*v || *end || x < 0 || x > INT_MAX) {
            msg_error("--resume: metadata '%s' is %s%s%s", ints[i].key, v ? "'" : "missing",
                      v ? v : "", v ? "', expected a non-negative integer" : "");
            return -1;
        }
        *ints[i].dst = (int)x;
    }
    /* The data source (absent in checkpoints from before --data: the synthetic tasks). */
    const char *dv = rg_safetensors_metadata(st, "train.data"), *vv = rg_safetensors_metadata(st, "train.val_data");
    const char *ev = rg_safetensors_metadata(st, "train.eot");
    if (dv && *dv && !(o->data = keep[3] = strdup(dv))) { msg_error("out of memory"); return -1; }
    if (vv && *vv && !(o->val_data = keep[4] = strdup(vv))) { msg_error("out of memory"); return -1; }
    if (ev) o->eot = atoi(ev);
    /* Strings: copied, as the options point at them after the checkpoint is closed. */
    struct { const char *key; const char **dst; bool layout; } strs[] = {
        {"train.tasks", &o->tasks, false}, {"train.strategy", &o->strategy, true}, {"train.preset", &o->model.preset, false},
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        const char *v = rg_safetensors_metadata(st, strs[i].key);
        if (!v || (strs[i].layout && strcmp(v, "packed") && strcmp(v, "pad-to-longest") && strcmp(v, "pad-to-max"))) {
            msg_error("--resume: metadata '%s' is %s", strs[i].key, v ? "not a valid value" : "missing");
            return -1;
        }
        keep[i] = strdup(v);
        if (!keep[i]) { msg_error("out of memory"); return -1; }
        *strs[i].dst = keep[i];
    }
    return 0;
}

/* "1h02m", "3m05s", "12s". */
static void format_duration(char *buf, size_t n, double s) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

typedef struct eval_set { rg_batch *all, *answers; int n; int64_t seqs; } eval_set;

static void eval_set_free(eval_set *e) {
    for (int i = 0; i < e->n; i++) { rg_batch_free(&e->all[i]); rg_batch_free(&e->answers[i]); }
    free(e->all);
    free(e->answers);
    memset(e, 0, sizeof *e);
}

static int eval_set_build(eval_set *e, train_data *d, const train_opts *o) {
    memset(e, 0, sizeof *e);
    int n = (o->eval_seqs + o->batch_size - 1) / o->batch_size;
    e->all = calloc((size_t)n, sizeof *e->all);
    e->answers = calloc((size_t)n, sizeof *e->answers);
    if (!e->all || !e->answers) { msg_error("out of memory"); return -1; }
    e->n = n;
    for (int i = 0; i < n; i++) {
        int64_t first = (int64_t)i * o->batch_size;
        int32_t k = (int32_t)(o->eval_seqs - first < o->batch_size ? o->eval_seqs - first : o->batch_size);
        rg_status s = train_data_batch(d, RG_SYNTH_HELDOUT, first, k, false, &e->all[i]);
        if (s == RG_OK) s = train_data_batch(d, RG_SYNTH_HELDOUT, first, k, true, &e->answers[i]);
        if (s != RG_OK) {
            msg_error("building the held-out batches: %s", rg_last_error());
            return -1;
        }
        e->seqs += k;
    }
    return 0;
}

static int run_eval(rg_model *m, const eval_set *e, double *all, double *answers) {
    double s[2] = {0, 0};
    int64_t n[2] = {0, 0};
    for (int i = 0; i < e->n; i++)
        for (int k = 0; k < 2; k++) {
            rg_step_result r;
            if (rg_model_eval_step(m, k ? &e->answers[i] : &e->all[i], &r) != RG_OK) {
                msg_error("eval: %s", rg_last_error());
                return -1;
            }
            s[k] += r.loss_sum;
            n[k] += r.n_targets;
        }
    *all = n[0] ? s[0] / n[0] : NAN;
    *answers = n[1] ? s[1] / n[1] : NAN;
    return 0;
}

static int save(const train_opts *o, rg_model *m, int64_t step, int width) {
    if (!strcmp(o->save, "none")) return 0;
    saved_opts so;
    saved_fill(&so, o);
    char err[1024];
    size_t bytes = 0;
    if (ckpt_save(o->save, m, so.kv, so.n, &bytes, err, sizeof err)) {
        msg_error("saving '%s': %s", o->save, err);
        return -1;
    }
    printf("step %*" PRId64 " | saved %s (%.1f MiB)\n", width, step, o->save, bytes / 1048576.0);
    fflush(stdout);
    return 0;
}

/* Mean loss over every batch of a corpus (the held-out shards). */
static int run_eval_corpus(rg_model *m, corpus_batches *cv, double *mean, int64_t *targets) {
    double sum = 0;
    int64_t n = 0;
    for (int32_t i = 0; i < cv->pack.plan.n_batches; i++) {
        rg_batch b;
        rg_step_result r;
        rg_status s = corpus_batch(cv, i, &b);
        if (s == RG_OK) s = rg_model_eval_step(m, &b, &r);
        rg_batch_free(&b);
        if (s != RG_OK) return msg_error("eval: %s", rg_last_error()), -1;
        sum += r.loss_sum;
        n += r.n_targets;
    }
    *mean = n ? sum / (double)n : NAN;
    *targets = n;
    return 0;
}

/* The seed of epoch e's row order. */
static uint64_t epoch_seed(int seed, int64_t e) { return (uint64_t)seed * 0x9E3779B97F4A7C15ull + (uint64_t)e; }

/* Micro-batch g (0-based over the whole run) of the shards: epoch g / n_batches. */
static rg_status corpus_micro(corpus_batches *cb, int seed, int64_t g, int64_t *epoch, rg_batch *out) {
    int64_t nb = cb->pack.plan.n_batches, e = g / nb;
    if (e != *epoch) {
        if (corpus_batches_reseed(cb, epoch_seed(seed, e))) return RG_ERR_OUT_OF_MEMORY;
        *epoch = e;
    }
    return corpus_batch(cb, (int32_t)(g % nb), out);
}

/* The training loop from the model's current step to o->steps. With cb, the
 * batches come from the shards (cv: the held-out ones, may be NULL). */
static int train_loop(const train_opts *o, rg_model *m, train_data *d, const eval_set *ev, corpus_batches *cb,
                      corpus_batches *cv) {
    int64_t epoch = 0;
    int64_t start = rg_model_optim_step(m), total = o->steps;
    int width = snprintf(NULL, 0, "%" PRId64, total);
    rg_batch *micro = calloc((size_t)o->accum, sizeof *micro);
    if (!micro) { msg_error("out of memory"); return 1; }
    double t0 = bench_now(), t_log = t0, loss_sum = 0, norm = 0;
    int64_t targets = 0, tokens = 0, n_log = 0;
    float lr = 0;
    int rc = 0;
    for (int64_t step = start; step < total && !rc; step++) {
        for (int j = 0; j < o->accum; j++) {
            int64_t first = (step * o->accum + j) * (int64_t)o->batch_size;
            rg_status bs = cb ? corpus_micro(cb, o->seed, step * o->accum + j, &epoch, &micro[j])
                              : train_data_batch(d, RG_SYNTH_TRAIN, first, o->batch_size, false, &micro[j]);
            if (bs != RG_OK) {
                msg_error("step %" PRId64 ": building a batch: %s", step + 1, rg_last_error());
                rc = 1;
            }
        }
        rg_step_result r;
        if (!rc && rg_model_train_step(m, micro, o->accum, &r) != RG_OK) {
            msg_error("step %" PRId64 ": %s", step + 1, rg_last_error());
            rc = 1;
        }
        for (int j = 0; j < o->accum; j++) {
            tokens += micro[j].n_real;
            rg_batch_free(&micro[j]);
        }
        if (rc) break;
        int64_t done = step + 1;
        loss_sum += r.loss_sum;
        targets += r.n_targets;
        norm += r.grad_norm;
        lr = r.lr;
        n_log++;
        if (done % o->log_every == 0 || done == total) {
            double now = bench_now(), per = (now - t0) / (double)(done - start);
            char eta[32];
            format_duration(eta, sizeof eta, per * (double)(total - done));
            printf("step %*" PRId64 "/%" PRId64 " | loss %.4f | lr %.3e | grad norm %.3f | %.0f tok/s | %.0f ms/step | "
                   "ETA %s\n", width, done, total, targets ? loss_sum / targets : NAN, lr, norm / n_log,
                   tokens / (now - t_log), 1e3 * (now - t_log) / n_log, eta);
            fflush(stdout);
            t_log = now;
            loss_sum = norm = 0;
            targets = tokens = n_log = 0;
        }
        bool last = done == total;
        if (cb && cv && (last || (o->eval_every && done % o->eval_every == 0))) {
            double mean;
            int64_t nt;
            if (run_eval_corpus(m, cv, &mean, &nt)) { rc = 1; break; }
            printf("step %*" PRId64 " | val loss %.4f (perplexity %.2f) on %" PRId64 " held-out targets\n", width, done,
                   mean, exp(mean), nt);
            fflush(stdout);
        }
        if (!cb && (last || (o->eval_every && done % o->eval_every == 0))) {
            double all, ans;
            if (run_eval(m, ev, &all, &ans)) { rc = 1; break; }
            printf("step %*" PRId64 " | eval loss %.4f (answers %.4f) on %" PRId64 " held-out sequences\n", width, done,
                   all, ans, ev->seqs);
            fflush(stdout);
        }
        if (last || (o->save_every && done % o->save_every == 0))
            if (save(o, m, done, width)) rc = 1;
        if (last && !rc && o->save_hf) {
            if (rg_hf_gpt2_save(m, o->save_hf) != RG_OK) {
                msg_error("--save-hf '%s': %s", o->save_hf, rg_last_error());
                rc = 1;
            } else {
                printf("step %*" PRId64 " | saved HuggingFace GPT-2 to %s/ (config.json, model.safetensors)\n", width,
                       done, o->save_hf);
                fflush(stdout);
            }
        }
    }
    if (!rc && start >= total) printf("nothing to do: the model is at step %" PRId64 ", --steps %" PRId64 "\n", start, total);
    free(micro);
    return rc;
}

int cmd_train(int argc, char **argv) {
    msg_command(CMD);
    train_opts o;
    opts_default(&o);
    int pr = parse_opts(&o, argc, argv);
    if (pr == ARGS_HELP) return 0;
    if (pr != ARGS_OK) return 2;

    rg_safetensors *ckpt = NULL;
    rg_optim_config saved_opt;
    int64_t step0 = 0;
    char *keep[5] = {NULL, NULL, NULL, NULL, NULL};
    int rc = 2;
    rg_backend *be = NULL;
    rg_model *m = NULL;
    train_data data = {0};
    eval_set ev = {0};
    corpus ctr = {0}, cva = {0};
    corpus_batches cb = {0}, cv = {0};
    if (o.init_from && (o.resume || o.model.preset != default_preset || model_flags_overridden(&o.model))) {
        args_error(CMD, "--init-from", "the model comes from '%s': drop %s", o.init_from,
                   o.resume ? "--resume" : "--preset and the model flags");
        return 2;
    }
    if (o.init_from && rg_hf_gpt2_config_read(o.init_from, &o.cfg) != RG_OK) {
        msg_error("--init-from: %s", rg_last_error());
        return 1;
    }
    if (o.resume) {
        if (o.model.preset != default_preset || model_flags_overridden(&o.model)) {
            args_error(CMD, "--resume", "the model comes from the checkpoint: drop --preset and the model flags");
            return 2;
        }
        char err[1024];
        rg_model_config cfg;
        if (ckpt_open(o.resume, &ckpt, &cfg, &saved_opt, &step0, err, sizeof err)) {
            msg_error("--resume: %s", err);
            return 1;
        }
        /* Second pass: the checkpoint's options as defaults, the flags given on top. */
        const char *resume = o.resume;
        opts_default(&o);
        if (defaults_from_checkpoint(&o, ckpt, &saved_opt, keep)) { rc = 1; goto done; }
        parse_opts(&o, argc, argv);
        o.resume = resume;
        o.cfg = cfg;
    }
    if (validate_opts(&o, o.resume != NULL) != ARGS_OK) goto done;
    if (o.resume && step0 >= o.steps) {
        args_error(CMD, "--steps", "%d is not beyond the checkpoint's step %" PRId64, o.steps, step0);
        goto done;
    }
    rg_optim_config oc = optim_config(&o);
    if (rg_optim_config_validate(&oc) != RG_OK) {
        args_error(CMD, NULL, "optimizer: %s", strstr(rg_last_error(), ": ") ? strstr(rg_last_error(), ": ") + 2 : rg_last_error());
        goto done;
    }

    rc = 1;
    bool cuda = !strcmp(o.backend, "cuda");
    if (rg_backend_init(cuda ? RG_BACKEND_CUDA : RG_BACKEND_CPU, o.threads, &be) != RG_OK) {
        msg_error("--backend %s: unavailable: %s", o.backend, rg_last_error());
        goto done;
    }
    if (rg_model_init(be, &o.cfg, (uint64_t)o.seed, &m) != RG_OK || rg_model_set_optim(m, &oc) != RG_OK) {
        msg_error("creating the model: %s", rg_last_error());
        goto done;
    }
    if (o.init_from && rg_hf_gpt2_load(m, o.init_from) != RG_OK) {
        msg_error("--init-from: %s", rg_last_error());
        goto done;
    }
    if (ckpt) {
        char err[1024];
        if (ckpt_restore(ckpt, o.resume, m, step0, err, sizeof err)) {
            msg_error("--resume: %s", err);
            goto done;
        }
        rg_safetensors_close(ckpt);
        ckpt = NULL;
    }
    char pack_desc[512] = "";
    if (o.data) {
        int32_t row = o.synth.max_len;
        if (corpus_load(o.data, "--data", o.eot, o.cfg.vocab_size, &ctr) ||
            corpus_batches_init(&cb, &ctr, row, o.batch_size, o.cfg.vocab_size, epoch_seed(o.seed, 0), true))
            goto done;
        if (o.val_data && (corpus_load(o.val_data, "--val-data", o.eot, o.cfg.vocab_size, &cva) ||
                           corpus_batches_init(&cv, &cva, row, o.batch_size, o.cfg.vocab_size, 0, false)))
            goto done;
        corpus_batches_describe(&cb, pack_desc, sizeof pack_desc);
        if (rg_model_reserve(m, (int64_t)row * o.batch_size, cb.max_pieces > cv.max_pieces ? cb.max_pieces : cv.max_pieces,
                             true) != RG_OK) {
            msg_error("reserving activations: %s", rg_last_error());
            goto done;
        }
    } else {
        if (train_data_init(&data, &o) || eval_set_build(&ev, &data, &o)) goto done;
        if (rg_model_reserve(m, train_data_max_slots(&data), o.batch_size, true) != RG_OK) {
            msg_error("reserving activations: %s", rg_last_error());
            goto done;
        }
    }

    char desc[256];
    model_config_describe(&o.cfg, desc, sizeof desc);
    if (o.init_from) printf("model: --init-from %s: %s\n", o.init_from, desc);
    else printf("model: %s%s: %s\n", o.resume ? "from the checkpoint, preset " : "--preset ", o.model.preset, desc);
    /* Lengths are 2k + 3: the odd values inside [min_len, max_len]. */
    int lo = o.synth.min_len < 5 ? 5 : o.synth.min_len | 1, hi = (o.synth.max_len - 3) / 2 * 2 + 3;
    if (o.data) {
        printf("data: %s: %d shard%s, %" PRId64 " tokens, eot %d, seed %d; %d rows x %d micro-batch%s per step\n"
               "packing: %s\n", o.data, ctr.n_shards, ctr.n_shards == 1 ? "" : "s", ctr.n_tokens, o.eot, o.seed,
               o.batch_size, o.accum, o.accum == 1 ? "" : "es", pack_desc);
        if (ctr.n_fragments)
            printf("data: %" PRId64 " shard%s start%s inside a document: %s leading tokens are a document of their own\n",
                   ctr.n_fragments, ctr.n_fragments == 1 ? "" : "s", ctr.n_fragments == 1 ? "s" : "",
                   ctr.n_fragments == 1 ? "its" : "their");
        if (o.val_data)
            printf("val: %s: %d shard%s, %" PRId64 " documents, %" PRId64 " tokens\n", o.val_data, cva.n_shards,
                   cva.n_shards == 1 ? "" : "s", cva.n_docs, cva.n_tokens);
    } else {
        printf("data: synthetic %s, %d symbols, lengths %d..%d (odd), seed %d; %s batches of %d sequences x %d "
               "micro-batch%s\n", o.tasks, o.synth.n_symbols, lo, hi, o.seed, o.strategy,
               o.batch_size, o.accum, o.accum == 1 ? "" : "es");
    }
    printf("optimizer: %s lr %g -> %g (cosine over %" PRId64 " steps, warm-up %" PRId64 "), weight decay %g%s, "
           "clip %g; %s, %d threads\n", oc.kind == RG_OPTIM_ADAMW ? "AdamW" : "SGD", oc.lr, oc.min_lr, oc.total_steps,
           oc.warmup_steps, oc.weight_decay, oc.decay_matrices_only ? " (2-D tensors)" : "", oc.clip_norm,
           rg_backend_name(be), rg_backend_n_threads(be));
    if (o.resume) printf("resumed from %s at step %" PRId64 "\n", o.resume, step0);
    fflush(stdout);
    rc = train_loop(&o, m, &data, &ev, o.data ? &cb : NULL, o.val_data ? &cv : NULL);
done:
    corpus_batches_free(&cb);
    corpus_batches_free(&cv);
    corpus_free(&ctr);
    corpus_free(&cva);
    eval_set_free(&ev);
    train_data_free(&data);
    rg_model_free(m);
    rg_backend_free(be);
    rg_safetensors_close(ckpt);
    for (int i = 0; i < 5; i++) free(keep[i]);
    return rc;
}
