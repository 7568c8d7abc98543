/* test_cli_model.c — `ragged bench` (the model benchmark) and `ragged train`
 * from the outside: the built ./ragged run on tiny configurations (ctest
 * starts this in the build directory). Help lists every flag with its
 * default; bad flags give their exact message and exit code 2; a tiny bench
 * run parses as JSON/CSV with every strategy row and writes its SVG chart; a
 * tiny training run lowers the loss, writes a checkpoint that reloads, and a
 * run stopped and resumed gives the same losses and the same final weights
 * as one run straight through. Also: the tools' model-size arithmetic against
 * the library's, checkpoints of every optimizer state. */
#define _POSIX_C_SOURCE 200809L
#include "../tools/model_cli.c"
#include "../tools/args.c"
#include "backend.h"
#include "check.h"
#include "cli_util.h"
#include "io/json.h"
#include "ragged.h"
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/rg_test_cli_model_XXXXXX";

/* Every flag on an option line with "(default: " on that line or, when the
 * flag's column overflows, on the next. */
static void check_help(const char *cmd, const char *const *flags, size_t n) {
    const char *out = "", *err = "";
    char args[128];
    snprintf(args, sizeof args, "%s --help", cmd);
    CHECK(cli_run(tmpdir, args, &out, &err) == 0 && !*err, "'ragged %s' exits 0, nothing on stderr", args);
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (const char *line = out; line && *line && !found; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
            const char *opt = line[0] == ' ' && line[1] == ' ' && line[2] == '-' ? line + 2 : NULL;
            if (opt && opt[1] != '-') opt += 4;
            size_t fl = strlen(flags[i]);
            if (!opt || strncmp(opt, flags[i], fl) || (opt[fl] != ' ' && opt[fl] != '\n')) continue;
            const char *eol = strchr(line, '\n'), *next_eol = eol ? strchr(eol + 1, '\n') : NULL;
            const char *dflt = strstr(line, "(default: ");
            found = dflt && (!next_eol || dflt < next_eol);
        }
        CHECK(found, "'ragged %s --help' lists %s with its default", cmd, flags[i]);
    }
}

static void test_help(void) {
    static const char *const model[] = {"--preset", "--layers", "--d-model", "--heads", "--kv-heads", "--vocab",
                                        "--max-seq-len", "--mlp-ratio"};
    static const char *const bench[] = {"--lengths", "--batch-size", "--min-len", "--max-len", "--seed", "--strategies",
                                        "--buckets", "--token-budget", "--mode", "--steps", "--warmup", "--threads",
                                        "--backend", "--[no-]peak", "--peak-n", "--output", "--plot", "--[no-]quiet"};
    static const char *const train[] = {"--resume", "--seed", "--data", "--tasks", "--symbols", "--min-len", "--max-len",
                                        "--strategy", "--batch-size", "--accum", "--optim", "--lr", "--min-lr",
                                        "--warmup", "--steps", "--schedule-steps", "--weight-decay", "--[no-]decay-all",
                                        "--beta1", "--beta2", "--eps", "--momentum", "--clip", "--log-every",
                                        "--eval-every", "--eval-seqs", "--save", "--save-every", "--threads",
                                        "--backend"};
    check_help("bench", model, 8);
    check_help("bench", bench, sizeof bench / sizeof bench[0]);
    check_help("bench model", bench, sizeof bench / sizeof bench[0]);
    check_help("train", model, 8);
    check_help("train", train, sizeof train / sizeof train[0]);
    const char *out = "", *err = "";
    CHECK(cli_run(tmpdir, "bench --help", &out, &err) == 0 && strstr(out, "subcommands:") && strstr(out, "attn") &&
          strstr(out, "NON-causal"), "bench --help names the subcommands and the eval's attention");
    CHECK(cli_run(tmpdir, "--help", &out, &err) == 0 && strstr(out, "  train ") && strstr(out, "  bench "), "ragged --help lists train");
}

static void test_bad_flags(void) {
    char lpath[128], args[512], ckpt[128];
    snprintf(lpath, sizeof lpath, "%s/long.txt", tmpdir);
    cli_write_file(lpath, "3 300\n");
    snprintf(ckpt, sizeof ckpt, "%s/none.st", tmpdir);
    struct { const char *args, *msg; int code; } bad[] = {
        {"bench --strategies pad,packed", "ragged: bench: --strategies: expected a comma-separated list of pad-to-max, "
                                          "pad-to-longest, packed, bucketed, got 'pad,packed'\n", 2},
        {"bench --preset nope", "ragged: bench: --preset: expected one of seed|gpt2|cpu|tiny, got 'nope'\n", 2},
        {"bench --heads 3", "ragged: bench: model (--preset cpu with the overrides): d_model = 256 must be a positive "
                            "multiple of n_heads = 3\n", 2},
        {"bench --heads x", "ragged: bench: --heads: expected a non-negative integer, got 'x'\n", 2},
        {"bench -p tiny --max-len 65", "ragged: bench: --max-len: 65 exceeds the model's max_seq_len 64\n", 2},
        {"bench -p tiny --min-len 9 --max-len 8", "ragged: bench: --min-len: 9 exceeds --max-len 8\n", 2},
        {"bench --steps 0", "ragged: bench: --steps: expected a positive integer, got '0'\n", 2},
        {"bench -o xml", "ragged: bench: -o: expected one of md|json|csv, got 'xml'\n", 2},
        {"bench --mode fwd", "ragged: bench: --mode: expected one of eval|train|both, got 'fwd'\n", 2},
        {"bench stray", "ragged: bench: unknown subcommand 'stray'\n", 2},
        {"bench --lengths /nonexistent/l.txt", "ragged: bench: --lengths: rg_lengths_read: cannot open "
                                               "'/nonexistent/l.txt'", 1},
        {"train --data /nonexistent/x.bin", "ragged: train: --data: no such file: '/nonexistent/x.bin'\n", 1},
        {"train --tasks copy,add", "ragged: train: --tasks: expected a comma-separated list of copy, reverse, sort, "
                                   "got 'copy,add'\n", 2},
        {"train -p tiny --max-len 100", "ragged: train: --max-len: 100 exceeds the model's max_seq_len 64\n", 2},
        {"train -p tiny --min-len 70", "ragged: train: --min-len: 70 exceeds the longest length 64 (--max-len, or the "
                                       "model's max_seq_len)\n", 2},
        {"train -p tiny --min-len 6 --max-len 6", "ragged: train: --min-len/--max-len: no length 2n + 3 lies in "
                                                  "[min_len 6, max_len 6] (widen the range)\n", 2},
        {"train -p tiny --min-lr 0.1", "ragged: train: --min-lr: 0.1 exceeds --lr 0.001\n", 2},
        {"train -p tiny --warmup 300", "ragged: train: --warmup: 300 must be below the schedule's length 300 "
                                       "(--schedule-steps or --steps)\n", 2},
        {"train -p tiny --symbols 59", "ragged: train: --symbols: expected 2..58 (the vocabulary 64 less 6 special "
                                       "tokens), got '59'\n", 2},
        {"train -p tiny --vocab 7", "ragged: train: --vocab: the synthetic tasks need a vocabulary of at least 8 tokens, "
                                    "the model has 7\n", 2},
        {"train -p tiny --save none --save-every 5", "ragged: train: --save-every: needs a checkpoint file (--save FILE, "
                                                     "not 'none')\n", 2},
        {"train --optim lamb", "ragged: train: --optim: expected one of adamw|sgd, got 'lamb'\n", 2},
        {"train --nope", "ragged: train: unknown option '--nope' (see 'ragged train --help')\n", 2},
        {"train --resume /nonexistent/c.st", "ragged: train: --resume: ", 1},
        {"train --backend cuda -p tiny --save none", NULL, 1},
    };
    const char *out = "", *err = "";
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (!bad[i].msg && rg_backend_available(RG_BACKEND_CUDA)) continue;
        int code = cli_run(tmpdir, bad[i].args, &out, &err);
        CHECK(code == bad[i].code, "'ragged %s' exits %d (got %d)", bad[i].args, bad[i].code, code);
        if (bad[i].msg)
            CHECK(!strncmp(err, bad[i].msg, strlen(bad[i].msg)), "'ragged %s' says '%s' (got '%s')", bad[i].args,
                  bad[i].msg, err);
        else CHECK(strstr(err, "ragged: train: --backend cuda: unavailable: ") == err, "cuda unavailable: '%s'", err);
        CHECK(!*out, "nothing on stdout for '%s' (got '%s')", bad[i].args, out);
    }
    snprintf(args, sizeof args, "bench --lengths %s", lpath);
    CHECK(cli_run(tmpdir, args, &out, &err) == 2 && strstr(err, "ragged: bench: --lengths: the longest length 300 in ") == err &&
          strstr(err, "exceeds the model's max_seq_len 256 (--preset seed or --max-seq-len)\n"), "too long lengths: '%s'", err);
    snprintf(args, sizeof args, "train --resume %s -p tiny", ckpt);
    CHECK(cli_run(tmpdir, args, &out, &err) == 2 && !strcmp(err, "ragged: train: --resume: the model comes from the checkpoint: "
                                                         "drop --preset and the model flags\n"), "resume + preset: '%s'", err);
    snprintf(args, sizeof args, "train --resume %s --layers 3", ckpt);
    CHECK(cli_run(tmpdir, args, &out, &err) == 2 && strstr(err, "drop --preset"), "resume + override: '%s'", err);
}

/* The tools' parameter count for every preset equals the model's. */
static void test_model_size(bool with_model) {
    rg_model_config c;
    rg_model_config_preset("gpt2", &c);   /* tied, final LayerNorm with bias, no head bias: 124.44M */
    CHECK(fabs(model_config_params(&c) - 124439808) < 0.5, "gpt2: %.0f params", model_config_params(&c));
    if (!with_model) return;
    rg_backend *be;
    if (!CHECK(rg_backend_init(RG_BACKEND_CPU, 1, &be) == RG_OK, "cpu backend")) return;
    const char *names[] = {"tiny", "cpu"};
    for (int i = 0; i < 2; i++) {
        rg_model_config c;
        rg_model_config_preset(names[i], &c);
        rg_model *m;
        if (rg_model_init(be, &c, 1, &m) != RG_OK) continue;
        CHECK(model_config_params(&c) == (double)rg_model_n_params(m), "%s: %g params, the model says %lld", names[i],
              model_config_params(&c), (long long)rg_model_n_params(m));
        rg_model_free(m);
    }
    rg_backend_free(be);
}

/* True when this build's CPU backend has the model's ops and the flash kernel. */
static bool model_runs(void) {
    rg_backend *be = NULL;
    if (rg_backend_init(RG_BACKEND_CPU, 1, &be) != RG_OK) return false;
    const rg_backend_ops *op = be->ops;
    bool ok = op->matmul_forward && op->matmul_backward && op->layernorm_forward && op->xent_forward_backward &&
              op->embedding_forward && op->adamw_update && op->sgd_update;
    float q[8], o[8], lse[1];
    for (int i = 0; i < 8; i++) q[i] = 0.5f;
    int32_t cu[2] = {0, 1};
    rg_attn_desc d = {.batch = 1, .n_heads = 1, .n_kv_heads = 1, .head_dim = 8, .cu_seqlens_q = cu,
                      .cu_seqlens_k = cu, .max_seqlen_q = 1, .max_seqlen_k = 1, .algo = RG_ATTN_FLASH};
    ok = ok && rg_attn_forward(be, &d, q, q, q, o, lse) == RG_OK;
    rg_backend_free(be);
    return ok;
}

/* Value of key in a JSON row as text, for messages. */
static const rg_json *row_of(const rg_json *rows, const char *strategy, const char *mode) {
    for (size_t i = 0; rows && i < rows->len; i++) {
        const rg_json *s = rg_json_get(&rows->items[i], "strategy"), *m = rg_json_get(&rows->items[i], "mode");
        if (s && m && s->type == RG_JSON_STRING && m->type == RG_JSON_STRING && !strcmp(s->str, strategy) &&
            !strcmp(m->str, mode))
            return &rows->items[i];
    }
    return NULL;
}

static double num(const rg_json *row, const char *key) {
    const rg_json *v = rg_json_get(row, key);
    return v && v->type == RG_JSON_NUMBER ? v->num : NAN;
}

static void test_bench_run(void) {
    const char *out = "", *err = "";
    char args[512], svg[128], buf[1 << 16];
    snprintf(svg, sizeof svg, "%s/chart.svg", tmpdir);
    snprintf(args, sizeof args, "bench -p tiny -b 5 -n 2 -w 1 -q --peak-n 32 -t 1 -o json --plot %s", svg);
    CHECK(cli_run(tmpdir, args, &out, &err) == 0 && !*err, "tiny bench -o json exits 0, quiet (stderr '%s')", err);
    rg_json_doc *doc = NULL;
    if (!CHECK(rg_json_parse(out, strlen(out), 0, "bench output", &doc) == RG_OK, "bench -o json parses: %s\n%s",
               rg_last_error(), out))
        return;
    const rg_json *root = rg_json_root(doc), *rows = rg_json_get(root, "rows");
    CHECK(rows && rows->type == RG_JSON_ARRAY && rows->len == 8, "8 rows (4 strategies x eval, train)");
    const char *strats[] = {"pad-to-max", "pad-to-longest", "packed", "bucketed"}, *modes[] = {"eval", "train"};
    for (int s = 0; s < 4; s++)
        for (int m = 0; m < 2; m++) {
            const rg_json *r = row_of(rows, strats[s], modes[m]);
            if (!CHECK(r != NULL, "a row for %s %s", strats[s], modes[m])) continue;
            double ms = num(r, "ms_median"), tps = num(r, "tokens_per_s"), pad = num(r, "padding_pct");
            double mem = num(r, "mem_mib"), sp = num(r, "speedup_vs_pad_to_max"), loss = num(r, "loss");
            double real = num(r, "real_tokens"), slots = num(r, "slots"), gf = num(r, "gflops"), eg = num(r, "executed_gflops");
            CHECK(ms > 0 && tps > 0 && mem > 0 && sp > 0 && gf > 0 && isfinite(num(r, "pct_peak")),
                  "%s %s: positive ms %g, tokens/s %g, memory %g, speed-up %g", strats[s], modes[m], ms, tps, mem, sp);
            CHECK(loss > 0 && loss < 10, "%s %s: a finite loss %g (random tokens: about ln 64 = 4.2)", strats[s], modes[m], loss);
            CHECK(fabs(pad - 100 * (slots - real) / slots) < 1e-4 * (1 + pad), "%s %s: padding %g%% = slots vs real", strats[s], modes[m], pad);
            if (s == 2) CHECK(pad == 0 && slots == real && eg == gf, "packed: no padding, executed = useful FLOPs");
            if (s == 0) CHECK(sp == 1 && pad > 0 && eg > gf, "pad-to-max: speed-up 1, padding %g, more executed than useful", pad);
            if (s > 0) {
                const rg_json *r0 = row_of(rows, "pad-to-max", modes[m]);
                if (r0 && s < 3) CHECK(num(r0, "real_tokens") == real && num(r0, "seqs") == num(r, "seqs"),
                                       "%s %s: the same sequences as pad-to-max", strats[s], modes[m]);
                if (r0 && s == 3) CHECK(num(r0, "real_tokens") == real, "bucketed: the same tokens as pad-to-max");
                if (r0) CHECK(num(r0, "mem_mib") >= mem, "%s %s: no more memory than pad-to-max", strats[s], modes[m]);
                if (r0 && s < 3) CHECK(num(r0, "slots") > slots, "%s: fewer slots than pad-to-max", strats[s]);
            }
        }
    /* The same sequences, same model: eval losses agree across layouts (non-causal, pads masked). */
    const rg_json *e0 = row_of(rows, "pad-to-max", "eval"), *e2 = row_of(rows, "packed", "eval");
    if (e0 && e2) CHECK(fabs(num(e0, "loss") - num(e2, "loss")) < 1e-4 * num(e2, "loss"),
                        "eval loss equal padded vs packed: %.7f vs %.7f", num(e0, "loss"), num(e2, "loss"));
    const rg_json *params = rg_json_get(root, "params"), *notes = rg_json_get(root, "notes");
    CHECK(params && rg_json_get(params, "preset") && !strcmp(rg_json_get(params, "preset")->str, "tiny"), "params.preset");
    bool noncausal = false;
    for (size_t i = 0; notes && i < notes->len; i++) noncausal = noncausal || strstr(notes->items[i].str, "NON-causal");
    CHECK(noncausal, "the notes say eval is non-causal");
    rg_json_free(doc);

    cli_slurp(svg, buf, sizeof buf);
    CHECK(!strncmp(buf, "<svg ", 5) && strstr(buf, "</svg>\n") && strstr(buf, ">pad-to-max<") && strstr(buf, ">bucketed<") &&
          strstr(buf, ">train (causal)<"), "the SVG chart has every strategy and both modes");
    DIR *d = opendir(tmpdir);
    bool tmp_left = false;
    for (struct dirent *e; d && (e = readdir(d));) tmp_left = tmp_left || strstr(e->d_name, ".tmp.");
    if (d) closedir(d);
    CHECK(!tmp_left, "no temporary file left beside the chart");

    /* CSV, a lengths file, a subset of strategies, one mode; progress on stderr. */
    char lpath[128];
    snprintf(lpath, sizeof lpath, "%s/lengths.txt", tmpdir);
    cli_write_file(lpath, "# two batches\n3 1 40 7\n64 2 5 9\n");
    snprintf(args, sizeof args, "bench -p tiny -l %s -n 3 -w 0 --no-peak -m train --strategies packed,pad-to-max -o csv", lpath);
    CHECK(cli_run(tmpdir, args, &out, &err) == 0, "tiny csv run exits 0: %s", err);
    CHECK(!strncmp(out, "strategy,mode,steps,ms_median,", 30) && strstr(out, "\npad-to-max,train,3,") &&
          strstr(out, "\npacked,train,3,") && !strstr(out, "eval") && !strstr(out, "bucketed"), "csv rows:\n%s", out);
    CHECK(strstr(err, "bench [") && strstr(err, "train packed: step 3/3") && strstr(err, "done in"), "progress: '%s'", err);
    snprintf(args, sizeof args, "bench -p tiny -n 1 -w 0 -b 3 --no-peak -q --strategies bucketed -m eval");
    CHECK(cli_run(tmpdir, args, &out, &err) == 0 && strstr(out, "| bucketed ") && strstr(out, "not measured (--no-peak)"),
          "markdown, one strategy: %s%s", out, err);
}

/* "step N/M | loss X" lines of a training log: losses[N-1] = X. */
static int read_losses(const char *log, double *losses, int cap) {
    int n = 0;
    for (const char *p = strstr(log, "step "); p; p = strstr(p + 1, "\nstep ")) {
        int step, total;
        double loss;
        if (*p == '\n') p++;
        if (sscanf(p, "step %d/%d | loss %lf", &step, &total, &loss) == 3 && step >= 1 && step <= cap) {
            losses[step - 1] = loss;
            if (step > n) n = step;
        }
    }
    return n;
}

/* Compares every tensor of two checkpoints bit for bit; the number that differ. */
static int compare_checkpoints(const char *a, const char *b, size_t *count) {
    rg_safetensors *x = NULL, *y = NULL;
    *count = 0;
    if (rg_safetensors_open(a, &x) != RG_OK || rg_safetensors_open(b, &y) != RG_OK) {
        rg_safetensors_close(x);
        return -1;
    }
    int differ = rg_safetensors_count(x) != rg_safetensors_count(y);
    for (size_t i = 0; !differ && i < rg_safetensors_count(x); i++) {
        rg_tensor_info ti, tj;
        rg_safetensors_info(x, i, &ti);
        if (rg_safetensors_find(y, ti.name, &tj) != RG_OK || ti.nbytes != tj.nbytes || memcmp(ti.data, tj.data, ti.nbytes))
            differ++;
    }
    *count = rg_safetensors_count(x);
    rg_safetensors_close(x);
    rg_safetensors_close(y);
    return differ;
}

static void test_train_run(void) {
    const char *out = "", *err = "";
    char args[768], a[128], b[128], c[128], log_a[1 << 15];
    snprintf(a, sizeof a, "%s/a.safetensors", tmpdir);
    snprintf(b, sizeof b, "%s/b.safetensors", tmpdir);
    snprintf(c, sizeof c, "%s/c.safetensors", tmpdir);
    int N = rg_test_quick() ? 12 : 40;
    /* Straight through: 2N steps. The loss falls (random init ~ ln 64 and above). */
    snprintf(args, sizeof args, "train -p tiny -t 1 -n %d --lr 3e-3 --warmup 5 --log-every 1 --eval-every %d -o %s", 2 * N,
             N, a);
    CHECK(cli_run(tmpdir, args, &out, &err) == 0 && !*err, "tiny training exits 0: %s", err);
    snprintf(log_a, sizeof log_a, "%s", out);
    double la[200] = {0}, lc[200] = {0};
    int na = read_losses(log_a, la, 200);
    CHECK(na == 2 * N, "a loss per step (%d of %d)", na, 2 * N);
    double first = (la[0] + la[1] + la[2]) / 3, last = (la[na - 1] + la[na - 2] + la[na - 3]) / 3;
    CHECK(last < first - 0.2, "the loss falls: %.4f over the first 3 steps, %.4f over the last 3", first, last);
    double e1 = 0, e2 = 0;
    const char *p = strstr(log_a, "eval loss "), *q = p ? strstr(p + 1, "eval loss ") : NULL;
    CHECK(p && q && sscanf(p, "eval loss %lf", &e1) == 1 && sscanf(q, "eval loss %lf", &e2) == 1 && e2 < e1,
          "held-out eval loss falls: %g -> %g", e1, e2);
    CHECK(strstr(log_a, "answers ") && strstr(log_a, "saved "), "eval reports the answers' loss, the save is logged");

    /* The checkpoint: every parameter, AdamW's m and v, the step and the config. */
    rg_safetensors *st = NULL;
    if (CHECK(rg_checkpoint_open(a, &st) == RG_OK, "checkpoint opens: %s", rg_last_error())) {
        rg_model_config cfg;
        rg_model_config_preset("tiny", &cfg);
        rg_backend *be;
        rg_model *m;
        rg_backend_init(RG_BACKEND_CPU, 1, &be);
        rg_model_init(be, &cfg, 1, &m);
        int32_t nt = rg_model_n_tensors(m);
        CHECK(rg_safetensors_count(st) == (size_t)nt * 3, "%zu tensors = %d parameters x (weights, m, v)",
              rg_safetensors_count(st), nt);
        const char *step = rg_safetensors_metadata(st, "step"), *fmt = rg_safetensors_metadata(st, "format");
        CHECK(step && atoi(step) == 2 * N && fmt && !strcmp(fmt, "ragged.checkpoint.v1"), "metadata step %s, format %s", step, fmt);
        CHECK(rg_safetensors_metadata(st, "model.d_model") && !strcmp(rg_safetensors_metadata(st, "model.d_model"), "32") &&
              !strcmp(rg_safetensors_metadata(st, "optim.kind"), "adamw") &&
              !strcmp(rg_safetensors_metadata(st, "train.strategy"), "packed"), "config, optimizer and options in metadata");
        /* Reloadable: the weights read back into a model and give finite logits. */
        rg_model_tensor_info ti;
        float *w = NULL;
        bool loaded = true;
        for (int32_t i = 0; i < nt && loaded; i++) {
            rg_model_tensor_info_get(m, i, &ti);
            w = realloc(w, (size_t)ti.numel * sizeof *w);
            loaded = w && rg_safetensors_read_f32(st, ti.name, w, (size_t)ti.numel) == RG_OK &&
                     rg_model_tensor_set(m, RG_MODEL_PARAMS, i, w) == RG_OK;
        }
        CHECK(loaded, "every parameter reloads into a fresh model: %s", rg_last_error());
        free(w);
        rg_model_free(m);
        rg_backend_free(be);
        rg_safetensors_close(st);
    }

    /* Stopped at N (the schedule told the final length), resumed to 2N: the
     * same losses, the same final weights and optimizer state, bit for bit. */
    snprintf(args, sizeof args, "train -p tiny -t 1 -n %d --schedule-steps %d --lr 3e-3 --warmup 5 --log-every 1 "
             "--eval-every %d -o %s", N, 2 * N, N, b);
    CHECK(cli_run(tmpdir, args, &out, &err) == 0, "first half exits 0: %s", err);
    snprintf(args, sizeof args, "train -t 1 --resume %s -n %d --log-every 1 -o %s", b, 2 * N, c);
    CHECK(cli_run(tmpdir, args, &out, &err) == 0, "resumed half exits 0: %s", err);
    CHECK(strstr(out, "resumed from ") && strstr(out, "at step "), "the resume is announced");
    int nc = read_losses(out, lc, 200);
    CHECK(nc == 2 * N && lc[N - 1] == 0, "the resumed run logs steps %d..%d only", N + 1, 2 * N);
    int same = 0;
    for (int i = N; i < 2 * N; i++) same += la[i] == lc[i];
    CHECK(same == N, "resumed losses equal the straight run's (%d of %d steps; step %d: %.4f vs %.4f)", same, N, N + 1,
          la[N], lc[N]);
    size_t count;
    int d = compare_checkpoints(a, c, &count);
    CHECK(d == 0 && count > 0, "final checkpoints identical bit for bit (%d of %zu tensors differ)", d, count);
    snprintf(args, sizeof args, "train --resume %s -n %d", c, 2 * N);
    CHECK(cli_run(tmpdir, args, &out, &err) == 2 && strstr(err, "is not beyond the checkpoint's step"), "nothing to resume: '%s'", err);

    /* SGD with momentum, accumulation and padded batches: its one state (m) saved and resumed exactly. */
    snprintf(args, sizeof args, "train -p tiny -t 1 -n 8 --optim sgd --lr 0.05 --min-lr 0 --momentum 0.9 --warmup 2 "
             "--accum 2 -b 3 --strategy pad-to-longest --log-every 1 --eval-every 0 --eval-seqs 5 -o %s", a);
    CHECK(cli_run(tmpdir, args, &out, &err) == 0, "sgd run exits 0: %s", err);
    read_losses(out, la, 200);
    snprintf(args, sizeof args, "train -p tiny -t 1 -n 5 --schedule-steps 8 --optim sgd --lr 0.05 --min-lr 0 --momentum 0.9 "
             "--warmup 2 --accum 2 -b 3 --strategy pad-to-longest --log-every 1 --eval-every 0 --eval-seqs 5 -o %s", b);
    CHECK(cli_run(tmpdir, args, &out, &err) == 0, "sgd first part exits 0: %s", err);
    snprintf(args, sizeof args, "train -t 1 -r %s -n 8 --log-every 1 -o %s", b, c);
    CHECK(cli_run(tmpdir, args, &out, &err) == 0, "sgd resume exits 0: %s", err);
    read_losses(out, lc, 200);
    CHECK(la[5] == lc[5] && la[7] == lc[7] && la[7] > 0, "sgd resumed losses equal (%.4f %.4f)", la[7], lc[7]);
    d = compare_checkpoints(a, c, &count);
    /* tiny: 24 tensors (wte, wpe, 10 per block x 2, lm_head weight and bias), each with its momentum */
    CHECK(d == 0 && count == 2 * 24, "sgd checkpoints identical, weights and momentum (%d differ of %zu)", d, count);
    snprintf(args, sizeof args, "train -t 1 -r %s -n 9 --optim adamw", b);
    CHECK(cli_run(tmpdir, args, &out, &err) == 1 && strstr(err, "no tensor 'optim.v."), "switching to AdamW on resume needs its state: %s", err);
}

int main(void) {
    rg_rng rng;
    rg_test_init("test_cli_model", &rng);
    if (!mkdtemp(tmpdir)) { printf("cannot create a temporary directory\n"); return 1; }
    if (access("./ragged", X_OK) != 0) {
        CHECK(false, "./ragged not found: run this test from the build directory (ctest does)");
        return rg_test_finish();
    }
    test_help();
    test_bad_flags();
    bool runs = model_runs();
    test_model_size(runs);
    if (runs) {
        test_bench_run();
        test_train_run();
    } else {
        printf("this build's CPU backend lacks the model's ops or the flash kernel: the runs of 'ragged bench' and "
               "'ragged train' are not tested\n");
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) printf("could not remove %s\n", tmpdir);
    return rg_test_finish();
}
