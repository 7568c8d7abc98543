/* bench_gen.c — `ragged bench generate`: the generation engine's prefill and
 * decode speed for batches of 1, 16 and 64 prompts of mixed lengths (greedy,
 * EOT off, so every sequence decodes the same count), and how far each decode
 * step is from its memory floor: (bytes of weights + bytes of KV read per
 * step) / the backend's measured bandwidth. */
#define _POSIX_C_SOURCE 200809L
#include "ragged.h"
#include "args.h"
#include "cli.h"
#include "model_cli.h"
#include "msg.h"
#include "rand.h"
#include "report.h"
#include "stats.h"
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD "bench generate"
enum { MAX_SIZES = 16 };

typedef struct gb_opts {
    model_flags model;
    const char *model_dir, *batches, *prompts_out, *backend, *output;
    int min_len, max_len, max_new, seed, block_size, threads, bw_mib;
    bool quiet, no_graph;
    /* derived */
    int sizes[MAX_SIZES], n_sizes, max_b;
    report_format format;
} gb_opts;

/* One batch size's run. */
typedef struct gb_result {
    int B;
    int64_t prompt_tokens, prefill_tokens, decode_tokens, generated;
    double prefill_s, decode_s;
    stats step_ms;               /* pure decode steps (no prefill in them) */
    double floor_ms;             /* median over those steps */
    double kv_mib;               /* KV read by the median step */
} gb_result;

static int parse_opts(gb_opts *o, int argc, char **argv) {
    arg_spec specs[MODEL_FLAG_SPECS + 16];
    model_flag_specs(&o->model, "Model (random weights unless --model)", specs);
    const arg_spec rest[] = {
        {NULL, "model", 'M', ARG_STRING, &o->model_dir, "DIR", 1, 0,
         "a HuggingFace GPT-2 directory instead of the preset's random weights", "none"},
        {"Workload", "batches", 'B', ARG_STRING, &o->batches, "LIST", 1, 0,
         "prompts per run, comma-separated; run B uses the first B prompts", NULL},
        {NULL, "min-len", 0, ARG_INT, &o->min_len, "N", 1, INT_MAX, "shortest prompt", NULL},
        {NULL, "max-len", 0, ARG_INT, &o->max_len, "N", 1, INT_MAX,
         "longest prompt (lengths uniform in [--min-len, N], seeded)", NULL},
        {NULL, "max-new-tokens", 'n', ARG_INT, &o->max_new, "N", 2, INT_MAX,
         "tokens generated per prompt (greedy, no EOT stop)", NULL},
        {NULL, "seed", 's', ARG_INT, &o->seed, "S", 0, INT_MAX, "seed of lengths, tokens and random weights", NULL},
        {NULL, "block-size", 0, ARG_INT, &o->block_size, "N", 1, 4096, "KV cache block size", NULL},
        {NULL, "prompts-out", 0, ARG_STRING, &o->prompts_out, "FILE", 1, 0,
         "write the prompts (one per line, token ids separated by spaces) for a PyTorch/HF replay", "none"},
        {"Run", "threads", 't', ARG_INT, &o->threads, "N", 0, INT_MAX, "CPU threads", "0 = every core"},
        {NULL, "backend", 0, ARG_CHOICE, &o->backend, "cpu|cuda", 1, 0, "device", NULL},
        {NULL, "no-graph", 0, ARG_BOOL, &o->no_graph, NULL, 1, 0,
         "decode op by op instead of replaying each step as one CUDA graph (for comparison)", "graphs on"},
        {NULL, "bandwidth-mib", 0, ARG_INT, &o->bw_mib, "MIB", 1, 16384,
         "buffer size of the bandwidth measurement (three buffers)", NULL},
        {"Output", "output", 'o', ARG_CHOICE, &o->output, "md|json|csv", 1, 0, "result format on stdout", NULL},
        {NULL, "quiet", 'q', ARG_BOOL, &o->quiet, NULL, 1, 0, "no progress on stderr", NULL},
    };
    int n = MODEL_FLAG_SPECS;
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++) specs[n++] = rest[i];
    static const char about[] =
        "The generation engine on batches of prompts of mixed lengths: all the prompts\n"
        "of a run are prefilled as one packed batch, then every sequence decodes\n"
        "--max-new-tokens tokens (greedy, EOT ignored). Reports prefill tokens/s,\n"
        "decode tokens/s, ms per decode step (median ± half the interquartile range)\n"
        "and the decode floor: (weights read per step + KV cache read per step) / the\n"
        "backend's measured memory bandwidth (STREAM add), with the ratio step/floor.\n"
        "The default model is GPT-2 124M's shape with random weights (slow on a CPU:\n"
        "try --preset cpu). Exit status: 0 ok, 1 runtime failure, 2 bad usage.";
    return args_parse(CMD, "ragged bench generate [options]", about, specs, n, argc, argv);
}

static int validate(gb_opts *o, rg_model_config *cfg) {
    if (o->model_dir) {
        if (model_flags_overridden(&o->model))
            return args_error(CMD, "--model", "takes the directory's config; drop the model overrides");
        if (rg_hf_gpt2_config_read(o->model_dir, cfg) != RG_OK) {
            msg_error("--model: %s", rg_last_error());
            return 1;
        }
    } else if (model_flags_config(&o->model, CMD, cfg) != ARGS_OK) {
        return ARGS_ERROR;
    }
    char list[256];
    snprintf(list, sizeof list, "%s", o->batches);
    o->n_sizes = 0;
    o->max_b = 0;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        char *end;
        long b = strtol(tok, &end, 10);
        if (*end || b < 1 || b > 4096 || o->n_sizes == MAX_SIZES)
            return args_error(CMD, "--batches", "expected up to %d sizes in 1..4096, comma-separated, got '%s'",
                              MAX_SIZES, o->batches);
        o->sizes[o->n_sizes++] = (int)b;
        if (b > o->max_b) o->max_b = (int)b;
    }
    if (!o->n_sizes) return args_error(CMD, "--batches", "expected at least one size, got '%s'", o->batches);
    if (o->min_len > o->max_len) return args_error(CMD, "--min-len", "%d exceeds --max-len %d", o->min_len, o->max_len);
    if ((int64_t)o->max_len + o->max_new > cfg->max_seq_len)
        return args_error(CMD, "--max-len", "%d + --max-new-tokens %d exceed the model's max_seq_len %d", o->max_len,
                          o->max_new, cfg->max_seq_len);
    report_parse_format(o->output, &o->format);
    return ARGS_OK;
}

static int write_prompts(const char *path, int n, int32_t *const *p, const int32_t *lens) {
    FILE *f = fopen(path, "w");
    if (!f) return msg_error("--prompts-out: cannot open '%s' for writing", path);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < lens[i]; j++) fprintf(f, "%d%c", p[i][j], j + 1 < lens[i] ? ' ' : '\n');
    if (fclose(f) != 0) return msg_error("--prompts-out: cannot write '%s'", path);
    return 0;
}

/* Bytes one decode step reads: every weight once (the position table only
 * for the batch's rows, so it is left out; a tied head counts once), and the
 * K and V of every cached token of every layer. */
static double weight_bytes(const rg_model_config *c, size_t act) {
    return (model_config_params(c) - (double)c->max_seq_len * c->d_model) * (double)act;
}

static double kv_bytes_per_token(const rg_model_config *c, size_t act) {
    return 2.0 * c->n_layers * c->n_kv_heads * (double)(c->d_model / c->n_heads) * (double)act;
}

/* Runs B prompts to the end; decode steps without a prefill in them are the timed ones. */
static int run_size(const gb_opts *o, rg_model *m, const rg_model_config *cfg, size_t act, int B,
                    int32_t *const *prompts, const int32_t *lens, double bw, gb_result *r) {
    memset(r, 0, sizeof *r);
    r->B = B;
    for (int i = 0; i < B; i++) r->prompt_tokens += lens[i];
    int64_t per_seq = ((int64_t)o->max_len + o->max_new + o->block_size - 1) / o->block_size;
    int64_t budget = r->prompt_tokens > cfg->max_seq_len ? r->prompt_tokens : cfg->max_seq_len;
    rg_generator_opts go = {.max_batch = B, .block_size = o->block_size, .n_blocks = (int32_t)(per_seq * B),
                            .max_prefill_tokens = (int32_t)budget, .no_graph = o->no_graph};
    rg_generator *g;
    rg_status s = rg_generator_create(m, &go, &g);
    if (s != RG_OK) return msg_fail(s, "batch %d: creating the generator", B);
    for (int i = 0; i < B && s == RG_OK; i++) {
        rg_gen_request q = {.prompt = prompts[i], .prompt_len = lens[i], .max_new_tokens = o->max_new, .eot_id = -1};
        rg_sampling_default(&q.sampling);
        q.sampling.greedy = true;
        int32_t id;
        s = rg_generator_add(g, &q, &id);
    }
    double *ms = malloc(sizeof(double) * (size_t)o->max_new), *fl = malloc(sizeof(double) * (size_t)o->max_new);
    double *kv = malloc(sizeof(double) * (size_t)o->max_new);
    bool oom = !ms || !fl || !kv;
    if (oom) s = RG_ERR_OUT_OF_MEMORY;
    const double wb = weight_bytes(cfg, act), kvt = kv_bytes_per_token(cfg, act);
    int n = 0, k = 0;   /* timed steps; decode steps so far */
    while (s == RG_OK && rg_generator_n_pending(g) > 0) {
        rg_gen_step_stats st;
        s = rg_generator_step(g, &st);
        if (s != RG_OK) break;
        r->prefill_tokens += st.prefill_tokens;
        r->prefill_s += st.prefill_s;
        r->decode_tokens += st.decode_tokens;
        r->decode_s += st.decode_s;
        r->generated += st.prefill_seqs + st.decode_tokens;
        if (st.decode_tokens == 0) continue;
        /* Decode step k attends over prompt + k + 1 tokens per sequence (the new one included). */
        double kv_bytes = ((double)r->prompt_tokens + (double)B * (k + 1)) * kvt;
        k++;
        if (st.prefill_seqs) continue;
        ms[n] = st.decode_s * 1e3;
        fl[n] = (wb + kv_bytes) / bw * 1e3;
        kv[n] = kv_bytes / 1048576.0;
        n++;
    }
    rg_generator_free(g);
    if (s == RG_OK && n > 0) {
        stats f, kvs;
        oom = !stats_compute(ms, n, &r->step_ms) || !stats_compute(fl, n, &f) || !stats_compute(kv, n, &kvs);
        r->floor_ms = f.median;
        r->kv_mib = kvs.median;
    }
    free(ms);
    free(fl);
    free(kv);
    if (oom) return msg_error("batch %d: out of memory for the step timings", B);
    return s == RG_OK ? 0 : msg_fail(s, "batch %d", B);
}

static const report_col columns[] = {
    {"batch", "batch", REPORT_NUM, 0, 0, NULL},
    {"prompt_tokens", "prompt tokens", REPORT_NUM, 0, 0, NULL},
    {"prefill_tokens_per_s", "prefill tok/s", REPORT_NUM, 0, 0, NULL},
    {"decode_tokens_per_s", "decode tok/s", REPORT_NUM, 0, 1, NULL},
    {"ms_per_step", "ms/decode step", REPORT_NUM, 0, -1, NULL},
    {"ms_spread", "", REPORT_NUM, REPORT_MD_PM, -1, NULL},
    {"floor_ms", "floor ms", REPORT_NUM, 0, -1, NULL},
    {"step_over_floor", "step/floor", REPORT_NUM, 0, 2, "x"},
    {"kv_mib_per_step", "KV MiB/step", REPORT_NUM, 0, -1, NULL},
    {"decode_steps", "", REPORT_NUM, REPORT_MD_HIDE, 0, NULL},
    {"generated_tokens", "", REPORT_NUM, REPORT_MD_HIDE, 0, NULL},
    {"prefill_s", "", REPORT_NUM, REPORT_MD_HIDE, -1, NULL},
    {"decode_s", "", REPORT_NUM, REPORT_MD_HIDE, -1, NULL},
    {"ms_min", "", REPORT_NUM, REPORT_MD_HIDE, -1, NULL},
    {"ms_max", "", REPORT_NUM, REPORT_MD_HIDE, -1, NULL},
};

static void add_row(report *rep, const gb_result *r) {
    int row = report_add_row(rep);
    report_set_num(rep, row, "batch", r->B);
    report_set_num(rep, row, "prompt_tokens", (double)r->prompt_tokens);
    if (r->prefill_s > 0) report_set_num(rep, row, "prefill_tokens_per_s", r->prefill_tokens / r->prefill_s);
    if (r->decode_s > 0) report_set_num(rep, row, "decode_tokens_per_s", r->decode_tokens / r->decode_s);
    if (r->step_ms.n > 0) {
        report_set_num(rep, row, "ms_per_step", r->step_ms.median);
        if (r->step_ms.n > 1) report_set_num(rep, row, "ms_spread", r->step_ms.spread);
        report_set_num(rep, row, "floor_ms", r->floor_ms);
        report_set_num(rep, row, "step_over_floor", r->step_ms.median / r->floor_ms);
        report_set_num(rep, row, "kv_mib_per_step", r->kv_mib);
        report_set_num(rep, row, "ms_min", r->step_ms.min);
        report_set_num(rep, row, "ms_max", r->step_ms.max);
    }
    report_set_num(rep, row, "decode_steps", r->step_ms.n);
    report_set_num(rep, row, "generated_tokens", (double)r->generated);
    report_set_num(rep, row, "prefill_s", r->prefill_s);
    report_set_num(rep, row, "decode_s", r->decode_s);
}

static int run_all(const gb_opts *o, const rg_model_config *cfg) {
    /* Prompts of the largest run; run B takes the first B. */
    int32_t *lens = malloc(sizeof(int32_t) * (size_t)o->max_b), **prompts = calloc((size_t)o->max_b, sizeof *prompts);
    if (!lens || !prompts) { free(lens); free(prompts); return msg_error("out of memory"); }
    uint64_t st = (uint64_t)o->seed * 0x9E3779B97F4A7C15ull + 1;
    int rc = 0;
    for (int i = 0; i < o->max_b && !rc; i++) {
        lens[i] = o->min_len + (int32_t)tool_rand_below(&st, (uint64_t)(o->max_len - o->min_len + 1));
        prompts[i] = malloc(sizeof(int32_t) * (size_t)lens[i]);
        if (!prompts[i]) { rc = msg_error("out of memory"); break; }
        for (int j = 0; j < lens[i]; j++) prompts[i][j] = (int32_t)tool_rand_below(&st, (uint64_t)cfg->vocab_size);
    }
    if (!rc && o->prompts_out) rc = write_prompts(o->prompts_out, o->max_b, prompts, lens);

    rg_backend *be = NULL;
    rg_model *m = NULL;
    rg_status s = RG_OK;
    double bw = 0;
    msg_progress pr;
    msg_progress_start(&pr, o->quiet);
    pr.total = o->n_sizes + 1;
    if (!rc) {
        s = rg_backend_init(strcmp(o->backend, "cuda") ? RG_BACKEND_CPU : RG_BACKEND_CUDA, o->threads, &be);
        if (s != RG_OK) rc = msg_fail(s, "--backend %s", o->backend);
    }
    if (!rc) {
        s = rg_model_init(be, cfg, (uint64_t)o->seed, &m);
        if (s == RG_OK && o->model_dir) s = rg_hf_gpt2_load(m, o->model_dir);
        if (s != RG_OK) rc = msg_fail(s, "model");
    }
    if (!rc) {
        msg_step(&pr, "measuring the memory bandwidth (%d MiB buffers)", o->bw_mib);
        s = rg_backend_measure_bandwidth(be, (size_t)o->bw_mib << 20, &bw);
        if (s != RG_OK) rc = msg_fail(s, "bandwidth");
    }
    size_t act = be ? rg_dtype_size(rg_backend_act_dtype(be)) : 4;
    gb_result res[MAX_SIZES];
    double t0 = bench_now();
    /* Warm-up: one short run (page faults, thread pools, BLAS buffers). */
    if (!rc) {
        gb_opts w = *o;
        w.max_new = 2;
        rc = run_size(&w, m, cfg, act, 1, prompts, lens, bw, &res[0]);
    }
    for (int i = 0; i < o->n_sizes && !rc; i++) {
        msg_step(&pr, "batch %d: %d prompts, %d new tokens each", o->sizes[i], o->sizes[i], o->max_new);
        rc = run_size(o, m, cfg, act, o->sizes[i], prompts, lens, bw, &res[i]);
    }
    if (!rc) {
        msg_done(&pr, bench_now() - t0);
        report rep;
        report_init(&rep, columns, (int)(sizeof columns / sizeof columns[0]));
        report_build_info(&rep, be);
        for (int i = 0; i < o->n_sizes; i++) add_row(&rep, &res[i]);
        char desc[256];
        model_config_describe(cfg, desc, sizeof desc);
        report_param(&rep, "model", "%s", o->model_dir ? o->model_dir : o->model.preset);
        report_param(&rep, "min_len", "%d", o->min_len);
        report_param(&rep, "max_len", "%d", o->max_len);
        report_param(&rep, "max_new_tokens", "%d", o->max_new);
        report_param(&rep, "seed", "%d", o->seed);
        report_param(&rep, "block_size", "%d", o->block_size);
        report_param(&rep, "decode_graphs", "%s", o->no_graph ? "off" : "on (where the backend has them)");
        report_param(&rep, "bandwidth_gb_s", "%.2f", bw / 1e9);
        report_param(&rep, "weight_mib", "%.2f", weight_bytes(cfg, act) / 1048576.0);
        report_note(&rep, "model: %s: %s (%s weights)", o->model_dir ? o->model_dir : o->model.preset, desc,
                    o->model_dir ? "loaded" : "random");
        report_note(&rep, "prompts: lengths uniform in [%d, %d] (seed %d), random tokens; batch B runs the first B; all of a "
                    "run's prompts prefill in one packed pass, then %d greedy tokens each (EOT ignored)", o->min_len,
                    o->max_len, o->seed, o->max_new);
        report_note(&rep, "prefill tok/s: prompt tokens / prefill seconds (the first token's sampling included); decode "
                    "tok/s: decode tokens / decode seconds; ms/decode step: median ± half the IQR over the decode steps");
        report_note(&rep, "floor: (weights %.1f MiB + the KV cache the step reads) / %.2f GB/s (STREAM add, %d MiB buffers), "
                    "median over the steps; step/floor: median step / median floor", weight_bytes(cfg, act) / 1048576.0,
                    bw / 1e9, o->bw_mib);
        if (!report_print(&rep, stdout, o->format)) rc = msg_error("cannot write the report");
        report_free(&rep);
    }
    rg_model_free(m);
    rg_backend_free(be);
    for (int i = 0; i < o->max_b; i++) free(prompts[i]);
    free(prompts);
    free(lens);
    return rc;
}

int cmd_bench_generate(int argc, char **argv) {
    msg_command(CMD);
    gb_opts o;
    memset(&o, 0, sizeof o);
    o.model.preset = "gpt2";
    o.batches = "1,16,64";
    o.min_len = 16;
    o.max_len = 512;
    o.max_new = 128;
    o.seed = 42;
    o.block_size = RG_KV_BLOCK_SIZE_DEFAULT;
    o.backend = "cpu";
    o.output = "md";
    o.bw_mib = 256;
    int pr = parse_opts(&o, argc, argv);
    if (pr == ARGS_HELP) return 0;
    if (pr != ARGS_OK) return 2;
    rg_model_config cfg;
    int v = validate(&o, &cfg);
    if (v != ARGS_OK) return v;
    return run_all(&o, &cfg);
}
