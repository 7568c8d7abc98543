/* test_cli_generate.c — `ragged generate` from the outside (ctest starts this
 * in the build directory): a tiny GPT-2 directory (rg_hf_gpt2_save, plus a
 * byte-level vocab.json / merges.txt written here) generates exactly the text
 * the library's engine gives for the same prompts (greedy), for one prompt
 * (streamed) and several (--prompt repeated and --prompts FILE), reports
 * tokens/s on stderr, lowers --max-new-tokens to fit n_positions; --help lists
 * every flag with its default; bad usage and bad inputs give their message
 * and exit code. `ragged bench generate` on the tiny preset: its JSON rows and
 * the --prompts-out file. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "tok_util.h"
#include "cli_util.h"
#include "test_model_util.h"
#include "ragged.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/rg_test_cli_generate_XXXXXX";
static char mdir[128];

/* Ids 0..255 the bytes, 256 "he" (one merge), 257 <|endoftext|>; a random tiny GPT-2 of vocabulary 258. */
static void write_model_dir(rg_rng *rng) {
    snprintf(mdir, sizeof mdir, "%s/model", tmpdir);
    rg_backend *be;
    TRY_OK(rg_backend_init(RG_BACKEND_CPU, 0, &be));
    rg_model_config cfg = tm_gpt2_like(2, 2, 2, 258, 48);
    rg_model *m = tm_model(be, &cfg, 1);
    tm_randomize(m, rng, 0.5);
    TRY_OK(rg_hf_gpt2_save(m, mdir));
    rg_model_free(m);
    rg_backend_free(be);
    char path[256];
    snprintf(path, sizeof path, "%s/vocab.json", mdir);
    FILE *f = fopen(path, "wb");
    fprintf(f, "{");
    for (int b = 0; b < 256; b++) {
        fprintf(f, "%s\"", b ? ", " : "");
        uint8_t byte = (uint8_t)b;
        tt_put_token(f, &byte, 1, true, false);
        fprintf(f, "\": %d", b);
    }
    fprintf(f, ", \"he\": 256, \"<|endoftext|>\": 257}\n");
    fclose(f);
    snprintf(path, sizeof path, "%s/merges.txt", mdir);
    cli_write_file(path, "#version: 0.2\nh e\n");
}

/* The library's greedy completions of n prompts (max_new each, EOT stops), as text. */
/* Whether the n bytes at needle occur in the hn bytes at hay (both may hold NUL). */
static bool has_bytes(const char *hay, size_t hn, const char *needle, size_t nn) {
    for (size_t i = 0; i + nn <= hn; i++)
        if (!memcmp(hay + i, needle, nn)) return true;
    return false;
}

/* has_bytes for a C string needle in the last stdout. */
static bool out_has(const char *out, const char *needle) {
    return has_bytes(out, cli_last_out_len(), needle, strlen(needle));
}

/* out[i] (out_n[i] bytes, NUL-terminated; the text itself may hold NUL bytes)
 * = prompt i and its greedy completion from the library. */
static void expected(int n, const char *const *prompts, int max_new, char **out, size_t *out_n) {
    char vp[256], mp[256];
    snprintf(vp, sizeof vp, "%s/vocab.json", mdir);
    snprintf(mp, sizeof mp, "%s/merges.txt", mdir);
    rg_tokenizer *tok;
    TRY_OK(rg_tokenizer_load(vp, mp, &tok));
    rg_backend *be;
    TRY_OK(rg_backend_init(RG_BACKEND_CPU, 0, &be));
    rg_model_config cfg;
    TRY_OK(rg_hf_gpt2_config_read(mdir, &cfg));
    rg_model *m = tm_model(be, &cfg, 0);
    TRY_OK(rg_hf_gpt2_load(m, mdir));
    rg_generator *g;
    rg_generator_opts o = {.max_batch = 1};
    TRY_OK(rg_generator_create(m, &o, &g));
    for (int i = 0; i < n; i++) {
        rg_token_buf ids = {0};
        TRY_OK(rg_tokenizer_encode(tok, prompts[i], strlen(prompts[i]), 0, &ids));
        rg_gen_request r = {.prompt = ids.ids, .prompt_len = (int32_t)ids.n, .eot_id = 257,
                            .max_new_tokens = max_new < cfg.max_seq_len - (int)ids.n ? max_new : cfg.max_seq_len - (int)ids.n};
        rg_sampling_default(&r.sampling);
        r.sampling.greedy = true;
        int32_t id;
        TRY_OK(rg_generator_add(g, &r, &id));
        while (rg_generator_n_pending(g)) TRY_OK(rg_generator_step(g, NULL));
        const int32_t *t;
        int32_t nt;
        rg_gen_finish fin;
        TRY_OK(rg_generator_tokens(g, id, &t, &nt, &fin));
        if (fin == RG_GEN_EOT) nt--;
        rg_byte_buf b = {0};
        TRY_OK(rg_tokenizer_decode(tok, t, (size_t)nt, &b));
        size_t pn = strlen(prompts[i]);
        out[i] = malloc(pn + b.n + 1);
        memcpy(out[i], prompts[i], pn);
        if (b.n) memcpy(out[i] + pn, b.data, b.n);
        out[i][pn + b.n] = 0;
        out_n[i] = pn + b.n;
        rg_byte_buf_free(&b);
        rg_token_buf_free(&ids);
    }
    rg_generator_free(g);
    rg_model_free(m);
    rg_backend_free(be);
    rg_tokenizer_free(tok);
}

/* The flag on an option line (after "  " or ", ", followed by a space or the
 * line's end), with "(default: " on that line or, when the flag's column
 * overflows, on the next. */
static bool help_lists(const char *out, const char *flag) {
    size_t fl = strlen(flag);
    for (const char *at = strstr(out, flag); at; at = strstr(at + 1, flag)) {
        if (at - out < 2 || at[-1] != ' ' || (at[-2] != ' ' && at[-2] != ',') || (at[fl] != ' ' && at[fl] != '\n'))
            continue;
        const char *eol = strchr(at, '\n'), *next = eol ? strchr(eol + 1, '\n') : NULL, *d = strstr(at, "(default: ");
        bool wrapped = eol && !strncmp(eol + 1, "                  ", 18);   /* help on a continuation line */
        if (d && (!eol || d < eol || (wrapped && (!next || d < next)))) return true;
    }
    return false;
}

static void test_help(void) {
    static const char *const flags[] = {"--model", "--prompt", "--prompts", "--max-new-tokens", "--[no-]greedy",
                                        "--temperature", "--top-k", "--top-p", "--repetition-penalty", "--seed",
                                        "--[no-]stop-at-eot", "--max-batch", "--backend", "--threads", "--[no-]quiet"};
    const char *out, *err;
    CHECK(cli_run(tmpdir, "generate --help", &out, &err) == 0 && !*err, "generate --help exits 0, quiet stderr");
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        CHECK(help_lists(out, flags[i]), "generate --help lists %s with its default", flags[i]);
    }
    CHECK(cli_run(tmpdir, "--help", &out, &err) == 0 && strstr(out, "  generate "), "ragged --help lists generate");
}

static void test_outputs(void) {
    const char *out, *err;
    char args[1024];
    /* One prompt, streamed: the prompt, its completion, a newline. */
    const char *one[] = {"hello there"};
    char *exp[4];
    size_t exp_n[4];
    expected(1, one, 20, exp, exp_n);
    snprintf(args, sizeof args, "generate -m %s --prompt 'hello there' --greedy -n 20", mdir);
    int code = cli_run(tmpdir, args, &out, &err);
    char want[512];
    memcpy(want, exp[0], exp_n[0]);
    want[exp_n[0]] = '\n';
    CHECK(code == 0 && cli_last_out_len() == exp_n[0] + 1 && !memcmp(out, want, exp_n[0] + 1),
          "one prompt: stdout is the engine's greedy text (exit %d; %zu bytes, expected %zu)\n got  '%s'\n want '%.*s'",
          code, cli_last_out_len(), exp_n[0] + 1, out, (int)exp_n[0] + 1, want);
    CHECK(strstr(err, "tokens/s") && strstr(err, "prefill") && strstr(err, "decode"), "stderr reports tokens/s: %s", err);
    free(exp[0]);

    /* Several prompts: two flags and a file with an empty line. */
    const char *many[] = {"the", "he said", "oh", "a b c"};
    expected(4, many, 12, exp, exp_n);
    char fpath[128];
    snprintf(fpath, sizeof fpath, "%s/prompts.txt", tmpdir);
    cli_write_file(fpath, "oh\n\na b c\n");
    snprintf(args, sizeof args, "generate -m %s -P the --prompt='he said' --prompts %s --greedy -n 12 -b 2", mdir, fpath);
    code = cli_run(tmpdir, args, &out, &err);
    CHECK(code == 0, "several prompts exit 0 (got %d): %s", code, err);
    for (int i = 0; i < 4; i++) {
        char block[512];
        int hn = snprintf(block, sizeof block, "### prompt %d\n", i + 1);
        memcpy(block + hn, exp[i], exp_n[i]);
        block[hn + exp_n[i]] = '\n';
        CHECK(has_bytes(out, cli_last_out_len(), block, hn + exp_n[i] + 1), "prompt %d printed as '%.*s'", i + 1,
              (int)(hn + exp_n[i] + 1), block);
        free(exp[i]);
    }
    CHECK(strstr(err, "4 prompts"), "stderr counts the prompts: %s", err);
    /* Prompts found among other flags, booleans and values alike (a value that looks like --prompt is a value). */
    snprintf(args, sizeof args, "generate -q -m %s --greedy -P oh --no-stop-at-eot -n 3 -T 0.5 --prompts %s "
             "--quiet -s 7 --prompt=the", mdir, fpath);
    code = cli_run(tmpdir, args, &out, &err);
    CHECK(code == 0 && out_has(out, "### prompt 1\noh") && out_has(out, "### prompt 2\nthe") &&
          out_has(out, "### prompt 3\noh") && out_has(out, "### prompt 4\na b c") && !out_has(out, "### prompt 5"),
          "--prompt flags in order, then the file (exit %d): %s", code, out);

    /* --max-new-tokens beyond n_positions (48) is lowered, with a note ("hello" is 4 tokens: he l l o). */
    snprintf(args, sizeof args, "generate -m %s -P hello --greedy -n 1000 --no-stop-at-eot", mdir);
    code = cli_run(tmpdir, args, &out, &err);
    CHECK(code == 0 && strstr(err, "4 tokens + 1000 new exceed n_positions 48: generating 44") &&
          strstr(err, "44 tokens generated"), "max-new-tokens lowered (exit %d): %s", code, err);
    snprintf(args, sizeof args, "generate -m %s -P hello -T 0.8 -k 5 --top-p 0.9 --repetition-penalty 1.2 -s 3 -q", mdir);
    const char *o1;
    code = cli_run(tmpdir, args, &o1, &err);
    char first[4096];
    size_t first_n = cli_last_out_len() < sizeof first ? cli_last_out_len() : sizeof first;
    memcpy(first, o1, first_n);
    code += cli_run(tmpdir, args, &out, &err);
    CHECK(code == 0 && cli_last_out_len() == first_n && !memcmp(first, out, first_n) && !*err,
          "sampling with a seed repeats, -q keeps stderr empty");
}

static void test_errors(void) {
    char args[1024], longp[256];
    memset(longp, 'x', 60);   /* 60 byte tokens > n_positions 48 */
    longp[60] = 0;
    struct { const char *fmt, *msg; int code; } bad[] = {
        {"generate -P hi", "ragged: generate: --model: required (a HuggingFace GPT-2 directory)\n", 2},
        {"generate -m %s", "ragged: generate: --prompt: give at least one prompt (--prompt TEXT or --prompts FILE)\n", 2},
        {"generate -m %s -P hi --top-p 0", "ragged: generate: --top-p: expected", 2},
        {"generate -m %s -P hi --backend tpu", "ragged: generate: --backend: expected one of cpu|cuda, got 'tpu'\n", 2},
        {"generate -m /nonexistent/dir -P hi", "ragged: generate: --model: tokenizer: ", 1},
        {"generate -m %s --prompts /nonexistent/p.txt", "ragged: generate: --prompts: cannot open '/nonexistent/p.txt'\n", 1},
        {"generate -m %s -P LONG", "ragged: generate: prompt 1 has 60 tokens, the model's n_positions is 48", 1},
    };
    const char *out, *err;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char fmt[256];
        snprintf(fmt, sizeof fmt, "%s", bad[i].fmt);
        char *L = strstr(fmt, "LONG");
        if (L) { snprintf(args, sizeof args, "generate -m %s -P %s", mdir, longp); }
        else snprintf(args, sizeof args, fmt, mdir);
        int code = cli_run(tmpdir, args, &out, &err);
        CHECK(code == bad[i].code && !strncmp(err, bad[i].msg, strlen(bad[i].msg)),
              "'ragged %s' exits %d with '%s' (got %d, '%s')", args, bad[i].code, bad[i].msg, code, err);
    }
}

/* `ragged bench generate` on the tiny preset: JSON rows per batch size, the prompts file. */
static void test_bench(void) {
    static const char *const flags[] = {"--preset", "--model", "--batches", "--min-len", "--max-len", "--max-new-tokens",
                                        "--seed", "--block-size", "--prompts-out", "--threads", "--backend",
                                        "--bandwidth-mib", "--output", "--[no-]quiet"};
    const char *out, *err;
    CHECK(cli_run(tmpdir, "bench generate --help", &out, &err) == 0, "bench generate --help exits 0");
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        CHECK(help_lists(out, flags[i]), "bench generate --help lists %s with its default", flags[i]);
    }
    CHECK(cli_run(tmpdir, "bench --help", &out, &err) == 0 && strstr(out, "  generate "), "bench --help lists generate");
    char args[512], ppath[128], buf[4096];
    snprintf(ppath, sizeof ppath, "%s/prompts_used.txt", tmpdir);
    snprintf(args, sizeof args, "bench generate -p tiny --min-len 2 --max-len 6 -n 5 -B 1,3 --bandwidth-mib 4 -q -o json "
             "--prompts-out %s", ppath);
    int code = cli_run(tmpdir, args, &out, &err);
    CHECK(code == 0 && !*err, "tiny bench generate exits 0 quietly (%d): %s", code, err);
    CHECK(strstr(out, "{\"batch\": 1, ") && strstr(out, "{\"batch\": 3, ") && strstr(out, "\"step_over_floor\": ") &&
          strstr(out, "\"decode_steps\": 4, \"generated_tokens\": 15,"), "JSON rows for batches 1 and 3, 4 decode steps, "
          "15 tokens generated by 3 prompts: %s", out);
    cli_slurp(ppath, buf, sizeof buf);
    int lines = 0;
    bool ok = true;
    for (char *line = buf; *line; lines++) {
        char *eol = strchr(line, '\n');
        if (!eol) { ok = false; break; }
        int n = 0;
        for (char *t = line; t < eol;) {
            long id = strtol(t, &t, 10);
            ok = ok && id >= 0 && id < 64;
            n++;
            while (*t == ' ') t++;
        }
        ok = ok && n >= 2 && n <= 6;
        line = eol + 1;
    }
    CHECK(ok && lines == 3, "--prompts-out: 3 lines of 2..6 ids in [0, 64) (%d lines): %s", lines, buf);
    code = cli_run(tmpdir, "bench generate -p tiny --max-len 60 -n 8", &out, &err);
    CHECK(code == 2 && !strcmp(err, "ragged: bench generate: --max-len: 60 + --max-new-tokens 8 exceed the model's "
          "max_seq_len 64\n"), "prompt + new tokens beyond max_seq_len refused (%d): %s", code, err);
    code = cli_run(tmpdir, "bench generate -p tiny -B 1,0", &out, &err);
    CHECK(code == 2 && strstr(err, "--batches: expected"), "bad --batches refused (%d): %s", code, err);
}

int main(void) {
    rg_rng rng;
    rg_test_init("test_cli_generate", &rng);
    if (access("./ragged", X_OK) != 0) {
        printf("test_cli_generate: ./ragged not found (run from the build directory); skipped\n");
        return 77;
    }
    if (!mkdtemp(tmpdir)) { CHECK(false, "mkdtemp"); return rg_test_finish(); }
    write_model_dir(&rng);
    test_help();
    test_outputs();
    test_errors();
    test_bench();
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) printf("could not remove %s\n", tmpdir);
    return rg_test_finish();
}
