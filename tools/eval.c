/* eval.c — `ragged eval`: a model's loss and perplexity over every document
 * of token shards, packed like training (ragged.h section 5, rg_doc_pack: each
 * document its own attention block, positions restarting, no padding), the
 * targets counted exactly as a train step counts them. */
#define _POSIX_C_SOURCE 200809L
#include "ragged.h"
#include "args.h"
#include "checkpoint.h"
#include "cli.h"
#include "msg.h"
#include "stats.h"
#include "train_corpus.h"
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define CMD "eval"

int cmd_eval(int argc, char **argv) {
    msg_command(CMD);
    const char *model = NULL, *data = NULL, *backend = "cpu";
    int eot = 50256, batch_size = 8, seq_len = 0, threads = 0;
    const arg_spec specs[] = {
        {"Model and data", "model", 'm', ARG_STRING, &model, "PATH", 1, 0,
         "a HuggingFace GPT-2 directory (config.json + model.safetensors) or a ragged checkpoint file", "required"},
        {NULL, "data", 0, ARG_STRING, &data, "GLOB", 1, 0,
         "token shards: a quoted glob ('data/x_val_*.bin'), a file, or a directory of .bin files", "required"},
        {NULL, "eot", 0, ARG_INT, &eot, "ID", 0, 65535, "the <|endoftext|> id that starts each document", "50256, GPT-2's"},
        {"Batches", "batch-size", 'b', ARG_INT, &batch_size, "B", 1, INT_MAX, "rows of --seq-len tokens per batch", NULL},
        {NULL, "seq-len", 0, ARG_INT, &seq_len, "L", 0, INT_MAX,
         "row length: longer documents are evaluated in pieces of L", "0 = the model's max_seq_len"},
        {"Device", "backend", 0, ARG_CHOICE, &backend, "cpu|cuda", 1, 0, "device", NULL},
        {NULL, "threads", 't', ARG_INT, &threads, "N", 0, INT_MAX, "CPU threads", "0 = every core"},
    };
    static const char about[] =
        "Evaluates a model on every document of token shards (as `ragged prepare` writes\n"
        "them; documents start at each EOT): mean cross-entropy in nats per target\n"
        "token and its perplexity exp(loss). Documents are packed by best fit into\n"
        "rows, each one its own attention block with positions from 0, so no token\n"
        "sees another document and none is padding; a document longer than the row\n"
        "length is evaluated in consecutive pieces (the target across a cut is not\n"
        "counted). A piece of n tokens has n - 1 targets, exactly as in training.\n"
        "Exit status: 0 ok, 1 runtime failure, 2 bad usage.";
    int n_specs = (int)(sizeof specs / sizeof specs[0]);
    int pr = args_parse(CMD, "ragged eval --model PATH --data GLOB [options]", about, specs, n_specs, argc, argv);
    if (pr != ARGS_OK) return pr == ARGS_HELP ? 0 : 2;
    if (!model) return args_error(CMD, "--model", "required (a HuggingFace GPT-2 directory or a ragged checkpoint)");
    if (!data) return args_error(CMD, "--data", "required (token shards, e.g. 'data/x_val_*.bin')");

    int rc = 1;
    rg_backend *be = NULL;
    rg_model *m = NULL;
    corpus c = {0};
    corpus_batches cb = {0};
    bool cuda = !strcmp(backend, "cuda"), hf;
    if (rg_backend_init(cuda ? RG_BACKEND_CUDA : RG_BACKEND_CPU, threads, &be) != RG_OK) {
        msg_error("--backend %s: unavailable: %s", backend, rg_last_error());
        goto done;
    }
    char err[1024];
    if (ckpt_load_model(model, be, &m, &hf, err, sizeof err)) {
        msg_error("--model: %s", err);
        goto done;
    }
    const rg_model_config *cfg = rg_model_get_config(m);
    if (seq_len > cfg->max_seq_len) {
        rc = args_error(CMD, "--seq-len", "%d exceeds the model's max_seq_len %d", seq_len, cfg->max_seq_len);
        goto done;
    }
    int32_t row = seq_len ? seq_len : cfg->max_seq_len;
    if ((int64_t)row * batch_size > INT32_MAX) {
        rc = args_error(CMD, "--batch-size", "%d rows of %d tokens overflow int32", batch_size, row);
        goto done;
    }
    if (corpus_load(data, "--data", eot, cfg->vocab_size, &c) ||
        corpus_batches_init(&cb, &c, row, batch_size, cfg->vocab_size, 0, false))
        goto done;
    if (rg_model_reserve(m, (int64_t)row * batch_size, cb.max_pieces, false) != RG_OK) {
        msg_error("reserving activations: %s", rg_last_error());
        goto done;
    }
    char desc[512];
    corpus_batches_describe(&cb, desc, sizeof desc);
    printf("model: %s (%s)\ndata: %s: %d shard%s; %s\n", model, hf ? "HuggingFace GPT-2" : "ragged checkpoint", data,
           c.n_shards, c.n_shards == 1 ? "" : "s", desc);
    fflush(stdout);
    double loss = 0, t0 = bench_now();
    int64_t targets = 0, tokens = 0;
    msg_progress prog;
    msg_progress_start(&prog, false);
    prog.total = cb.pack.plan.n_batches;
    for (int32_t i = 0; i < cb.pack.plan.n_batches; i++) {
        rg_batch b;
        rg_step_result r;
        rg_status s = corpus_batch(&cb, i, &b);
        if (s == RG_OK) s = rg_model_eval_step(m, &b, &r);
        if (s != RG_OK) {
            msg_fail(s, "batch %d", (int)i);
            rg_batch_free(&b);
            goto done;
        }
        loss += r.loss_sum;
        targets += r.n_targets;
        tokens += b.n_real;
        rg_batch_free(&b);
        if (prog.tty) msg_step(&prog, "%" PRId64 " tokens", tokens);
    }
    if (rg_backend_sync(be) != RG_OK) { msg_fail(RG_ERR_BACKEND, "sync"); goto done; }
    double el = bench_now() - t0;
    if (prog.tty) msg_done(&prog, el);
    if (!targets) { msg_error("--data: the documents hold no targets (every piece has a single token)"); goto done; }
    double mean = loss / (double)targets;
    printf("eval: loss %.6f nats/token, perplexity %.4f over %" PRId64 " targets (%" PRId64 " tokens) | %.0f tokens/s "
           "| %s, %d threads\n", mean, exp(mean), targets, tokens, el > 0 ? tokens / el : 0, rg_backend_name(be),
           rg_backend_n_threads(be));
    rc = 0;
done:
    corpus_batches_free(&cb);
    corpus_free(&c);
    rg_model_free(m);
    rg_backend_free(be);
    return rc;
}
