/* generate.c — `ragged generate`: text generation from a HuggingFace GPT-2
 * directory (config.json, model.safetensors, tokenizer.json or vocab.json +
 * merges.txt) with the
 * continuous-batching engine (ragged.h section 9). One prompt streams its
 * tokens to stdout as they come; several prompts each print their completion
 * when it finishes, with a progress line on stderr. Prefill and decode
 * tokens/s go to stderr at the end. */
#define _POSIX_C_SOURCE 200809L
#include "ragged.h"
#include "args.h"
#include "cli.h"
#include "msg.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD "generate"

typedef struct gen_opts {
    const char *model, *prompt, *prompts_path, *backend;
    int max_new, top_k, seed, threads, max_batch;
    double temperature, top_p, penalty;
    bool greedy, stop_at_eot, quiet;
} gen_opts;

typedef struct gen_prompt {
    char *text;               /* owned */
    rg_token_buf ids;
    int32_t max_new;
    rg_byte_buf out;          /* decoded completion (several prompts) */
} gen_prompt;

typedef struct gen_ctx {
    const gen_opts *o;
    rg_tokenizer *tok;
    gen_prompt *p;
    int n, n_done;
    int32_t eot;
    bool stream;              /* one prompt: write tokens as they come */
    rg_status fail;           /* a decode failure inside the callback */
    msg_progress progress;
} gen_ctx;

static int parse_opts(gen_opts *o, int argc, char **argv) {
    const arg_spec specs[] = {
        {"Input", "model", 'm', ARG_STRING, &o->model, "DIR", 1, 0,
         "HF GPT-2 directory: config.json, model.safetensors, tokenizer.json or vocab.json + merges.txt", "none, required"},
        {NULL, "prompt", 'P', ARG_STRING, &o->prompt, "TEXT", 1, 0, "a prompt; repeat for several", "none"},
        {NULL, "prompts", 0, ARG_STRING, &o->prompts_path, "FILE", 1, 0,
         "more prompts, one per line (empty lines skipped)", "none"},
        {"Sampling", "max-new-tokens", 'n', ARG_INT, &o->max_new, "N", 1, INT_MAX,
         "tokens to generate per prompt (lowered to fit the model's n_positions)", NULL},
        {NULL, "greedy", 0, ARG_BOOL, &o->greedy, NULL, 1, 0, "argmax decoding (ignores temperature, top-k, top-p)", NULL},
        {NULL, "temperature", 'T', ARG_DOUBLE, &o->temperature, "T", 0, 100, "softmax temperature; 0 = greedy", NULL},
        {NULL, "top-k", 'k', ARG_INT, &o->top_k, "K", 0, INT_MAX, "keep the K most likely tokens; 0 = all", NULL},
        {NULL, "top-p", 0, ARG_DOUBLE, &o->top_p, "P", 1e-9, 1, "nucleus: the most likely tokens up to mass P", NULL},
        {NULL, "repetition-penalty", 0, ARG_DOUBLE, &o->penalty, "R", 1e-6, 1e6,
         "HF's: divide (multiply) the positive (negative) logits of tokens already seen", NULL},
        {NULL, "seed", 's', ARG_INT, &o->seed, "S", 0, INT_MAX, "prompt i samples with seed S + i", NULL},
        {NULL, "stop-at-eot", 0, ARG_BOOL, &o->stop_at_eot, NULL, 1, 0, "stop a completion at <|endoftext|>", NULL},
        {"Run", "max-batch", 'b', ARG_INT, &o->max_batch, "B", 1, 4096,
         "sequences decoded together (continuous batching)", NULL},
        {NULL, "backend", 0, ARG_CHOICE, &o->backend, "cpu|cuda", 1, 0, "device", NULL},
        {NULL, "threads", 't', ARG_INT, &o->threads, "N", 0, INT_MAX, "CPU threads", "0 = every core"},
        {NULL, "quiet", 'q', ARG_BOOL, &o->quiet, NULL, 1, 0, "no progress and no speed report on stderr", NULL},
    };
    static const char about[] =
        "Generates text from a HuggingFace GPT-2 checkpoint directory with the KV-cached\n"
        "engine: the prompts of a step are prefilled as one packed batch, then every\n"
        "running sequence decodes one token per step; a finished sequence leaves at once\n"
        "and a waiting prompt takes its place. The tokenizer is DIR/tokenizer.json, or\n"
        "DIR/vocab.json + DIR/merges.txt. One prompt: the prompt, then its tokens as\n"
        "they come, on stdout.\n"
        "Several prompts (--prompt repeated and/or --prompts): each completion is printed\n"
        "when it finishes, as '### prompt I' then the prompt and its completion, with a\n"
        "progress line on stderr. At the end, stderr gets prefill and decode tokens/s.\n"
        "Exit status: 0 ok, 1 runtime failure, 2 bad usage.";
    return args_parse(CMD, "ragged generate --model DIR --prompt TEXT [options]", about, specs,
                      (int)(sizeof specs / sizeof specs[0]), argc, argv);
}

static int add_prompt(gen_ctx *c, const char *text, size_t len) {
    gen_prompt *np = realloc(c->p, sizeof *np * (size_t)(c->n + 1));
    if (!np) return msg_error("out of memory");
    c->p = np;
    gen_prompt *p = &c->p[c->n];
    memset(p, 0, sizeof *p);
    p->text = malloc(len + 1);
    if (!p->text) return msg_error("out of memory");
    memcpy(p->text, text, len);
    p->text[len] = 0;
    c->n++;
    return 0;
}

/* Flags without a value (args.h's booleans), so that the scan below knows
 * which arguments are values of other flags. */
static bool takes_no_value(const char *a) {
    static const char *const names[] = {"greedy", "stop-at-eot", "quiet"};
    if (!strcmp(a, "-q") || !strcmp(a, "-h") || !strcmp(a, "--help") || strchr(a, '=')) return true;
    if (a[0] == '-' && a[1] != '-' && a[1] && a[2]) return true;   /* -xVALUE */
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!strncmp(a, "--", 2) && !strcmp(a + 2, names[i])) return true;
        if (!strncmp(a, "--no-", 5) && !strcmp(a + 5, names[i])) return true;
    }
    return false;
}

/* Every --prompt in order (the parser, which already accepted argv, keeps
 * only the last), then the file's lines. */
static int collect_prompts(gen_ctx *c, const gen_opts *o, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if ((!strcmp(a, "--prompt") || !strcmp(a, "-P")) && i + 1 < argc) v = argv[++i];
        else if (!strncmp(a, "--prompt=", 9)) v = a + 9;
        else if (!strncmp(a, "-P", 2) && a[2]) v = a + 2;
        else if (!takes_no_value(a)) i++;   /* skip this flag's value */
        if (v && add_prompt(c, v, strlen(v))) return 1;
    }
    if (o->prompts_path) {
        FILE *f = fopen(o->prompts_path, "rb");
        if (!f) return msg_error("--prompts: cannot open '%s'", o->prompts_path);
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, f)) >= 0) {
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
            if (n > 0 && add_prompt(c, line, (size_t)n)) { free(line); fclose(f); return 1; }
        }
        free(line);
        fclose(f);
    }
    return 0;
}

static void on_token(void *user, int32_t req, int32_t index, int32_t token, rg_gen_finish fin) {
    gen_ctx *c = user;
    gen_prompt *p = &c->p[req];
    (void)index;
    if (!(fin == RG_GEN_EOT && token == c->eot)) {
        size_t before = p->out.n;
        rg_status s = rg_tokenizer_decode(c->tok, &token, 1, &p->out);
        if (s != RG_OK && c->fail == RG_OK) c->fail = s;
        if (c->stream && s == RG_OK) {
            fwrite(p->out.data + before, 1, p->out.n - before, stdout);
            fflush(stdout);
        }
    }
    if (fin == RG_GEN_RUNNING) return;
    c->n_done++;
    if (c->stream) { putchar('\n'); fflush(stdout); return; }
    /* fwrite, not %s: a token may decode to byte 0 */
    printf("### prompt %d\n%s", req + 1, p->text);
    if (p->out.n) fwrite(p->out.data, 1, p->out.n, stdout);
    putchar('\n');
    fflush(stdout);
    msg_step(&c->progress, "prompt %d done (%d tokens%s)", req + 1, index + 1, fin == RG_GEN_EOT ? ", <|endoftext|>" : "");
}

static void free_ctx(gen_ctx *c) {
    for (int i = 0; i < c->n; i++) {
        free(c->p[i].text);
        rg_token_buf_free(&c->p[i].ids);
        rg_byte_buf_free(&c->p[i].out);
    }
    free(c->p);
    rg_tokenizer_free(c->tok);
}

static int run(const gen_opts *o, gen_ctx *c) {
    rg_status s = rg_tokenizer_load_dir(o->model, &c->tok);
    if (s != RG_OK) return msg_fail(s, "--model: tokenizer");
    rg_model_config cfg;
    s = rg_hf_gpt2_config_read(o->model, &cfg);
    if (s != RG_OK) return msg_fail(s, "--model");
    if (rg_tokenizer_vocab_size(c->tok) > cfg.vocab_size)
        return msg_error("--model: the tokenizer has %d tokens, the model's vocabulary %d", rg_tokenizer_vocab_size(c->tok),
                         cfg.vocab_size);
    c->eot = o->stop_at_eot ? rg_tokenizer_eot_id(c->tok) : -1;
    for (int i = 0; i < c->n; i++) {
        gen_prompt *p = &c->p[i];
        s = rg_tokenizer_encode(c->tok, p->text, strlen(p->text), 0, &p->ids);
        if (s != RG_OK) return msg_fail(s, "encoding prompt %d", i + 1);
        if (p->ids.n < 1) return msg_error("prompt %d is empty", i + 1);
        if ((int64_t)p->ids.n >= cfg.max_seq_len)
            return msg_error("prompt %d has %zu tokens, the model's n_positions is %d (room for none to generate)",
                             i + 1, p->ids.n, cfg.max_seq_len);
        p->max_new = o->max_new;
        if ((int64_t)p->ids.n + p->max_new > cfg.max_seq_len) {
            p->max_new = cfg.max_seq_len - (int32_t)p->ids.n;
            if (!o->quiet)
                fprintf(stderr, "ragged: generate: prompt %d: %zu tokens + %d new exceed n_positions %d: generating %d\n",
                        i + 1, p->ids.n, o->max_new, cfg.max_seq_len, p->max_new);
        }
    }
    rg_backend *be = NULL;
    rg_model *m = NULL;
    rg_generator *g = NULL;
    s = rg_backend_init(strcmp(o->backend, "cuda") ? RG_BACKEND_CPU : RG_BACKEND_CUDA, o->threads, &be);
    if (s != RG_OK) return msg_fail(s, "--backend %s", o->backend);
    int rc = 0;
    s = rg_model_init(be, &cfg, 0, &m);
    if (s == RG_OK) s = rg_hf_gpt2_load(m, o->model);
    if (s != RG_OK) { rc = msg_fail(s, "--model: loading %s", o->model); goto done; }
    rg_generator_opts go = {.max_batch = o->max_batch < c->n ? o->max_batch : c->n, .on_token = on_token, .user = c};
    s = rg_generator_create(m, &go, &g);
    if (s != RG_OK) { rc = msg_fail(s, "creating the generator"); goto done; }
    for (int i = 0; i < c->n && !rc; i++) {
        rg_gen_request r = {.prompt = c->p[i].ids.ids, .prompt_len = (int32_t)c->p[i].ids.n,
                            .max_new_tokens = c->p[i].max_new, .eot_id = c->eot};
        rg_sampling_default(&r.sampling);
        r.sampling.greedy = o->greedy;
        r.sampling.temperature = (float)o->temperature;
        r.sampling.top_k = o->top_k;
        r.sampling.top_p = (float)o->top_p;
        r.sampling.repetition_penalty = (float)o->penalty;
        r.sampling.seed = (uint64_t)o->seed + (uint64_t)i;
        int32_t id;
        s = rg_generator_add(g, &r, &id);
        if (s != RG_OK) rc = msg_fail(s, "prompt %d", i + 1);
    }
    if (rc) goto done;
    c->stream = c->n == 1;
    if (c->stream) { fputs(c->p[0].text, stdout); fflush(stdout); }
    msg_progress_start(&c->progress, o->quiet || c->stream);
    c->progress.total = c->n;
    int64_t pre_tok = 0, dec_tok = 0, gen_tok = 0;
    double pre_s = 0, dec_s = 0;
    while (rg_generator_n_pending(g) > 0) {
        rg_gen_step_stats st;
        s = rg_generator_step(g, &st);
        if (s != RG_OK) { rc = msg_fail(s, "generation step"); goto done; }
        if (c->fail != RG_OK) { rc = msg_fail(c->fail, "decoding a generated token"); goto done; }
        pre_tok += st.prefill_tokens;
        pre_s += st.prefill_s;
        dec_tok += st.decode_tokens;
        dec_s += st.decode_s;
        gen_tok += st.prefill_seqs + st.decode_tokens;
    }
    if (!o->quiet) {
        msg_done(&c->progress, pre_s + dec_s);
        fprintf(stderr, "ragged: generate: %d prompt%s, %lld tokens generated; prefill %lld tokens in %.3f s (%.1f tokens/s), "
                "decode %lld tokens in %.3f s (%.1f tokens/s); %s, %d threads\n", c->n, c->n == 1 ? "" : "s",
                (long long)gen_tok, (long long)pre_tok, pre_s, pre_s > 0 ? pre_tok / pre_s : 0.0, (long long)dec_tok,
                dec_s, dec_s > 0 ? dec_tok / dec_s : 0.0, rg_backend_name(be), rg_backend_n_threads(be));
    }
done:
    rg_generator_free(g);
    rg_model_free(m);
    rg_backend_free(be);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    msg_command(CMD);
    gen_opts o = {.model = NULL, .prompt = NULL, .prompts_path = NULL, .backend = "cpu", .max_new = 64, .top_k = 0,
                  .seed = 0, .threads = 0, .max_batch = 16, .temperature = 1.0, .top_p = 1.0, .penalty = 1.0,
                  .greedy = false, .stop_at_eot = true, .quiet = false};
    int pr = parse_opts(&o, argc, argv);
    if (pr == ARGS_HELP) return 0;
    if (pr != ARGS_OK) return 2;
    if (!o.model) return args_error(CMD, "--model", "required (a HuggingFace GPT-2 directory)");
    gen_ctx c;
    memset(&c, 0, sizeof c);
    c.o = &o;
    int rc = collect_prompts(&c, &o, argc, argv);
    if (!rc && c.n == 0) rc = args_error(CMD, "--prompt", "give at least one prompt (--prompt TEXT or --prompts FILE)");
    if (!rc) rc = run(&o, &c);
    free_ctx(&c);
    return rc;
}
