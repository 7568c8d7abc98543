/* test_tools.c — the CLI's plumbing (tools/): the flag parser and its messages,
 * summary statistics, result tables in md/json/csv, and the
 * `ragged bench attn` command's exit codes and messages (run from the build
 * directory, where ctest starts it). The tools' sources are compiled in here
 * directly: they are not part of the library. */
#define _POSIX_C_SOURCE 200809L
#include "../tools/args.c"
#include "../tools/report.c"
#include "../tools/stats.c"
#include "check.h"
#include "cli_util.h"
#include "ragged.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/rg_test_tools_XXXXXX";

/* Reads a whole file into a static buffer ("" when missing). */
static const char *slurp(const char *path) {
    static char buf[1 << 16];
    return cli_slurp(path, buf, sizeof buf);
}

/* Runs args_parse with stderr captured; returns its result, *err the message. */
static int parse_captured(const arg_spec *specs, int n, int argc, char **argv, const char **err) {
    char path[64];
    snprintf(path, sizeof path, "%s/stderr", tmpdir);
    fflush(stderr);
    int saved = dup(2);
    FILE *f = fopen(path, "w");
    if (!f || saved < 0) { *err = ""; return -1; }
    dup2(fileno(f), 2);
    int r = args_parse("test cmd", "test [options]", "", specs, n, argc, argv);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fclose(f);
    *err = slurp(path);
    return r;
}

static void test_args(void) {
    int heads = 16, dim = 64;
    double x = 2.0;
    bool causal = true;
    const char *out = "md", *file = NULL;
    const arg_spec specs[] = {
        {"S", "heads", 0, ARG_INT, &heads, "H", 1, 2147483647, "heads", NULL},
        {NULL, "head-dim", 'd', ARG_INT, &dim, "D", 8, 256, "dim", NULL},
        {NULL, "gflop", 0, ARG_DOUBLE, &x, "X", 0, HUGE_VAL, "x", NULL},
        {NULL, "causal", 'c', ARG_BOOL, &causal, NULL, 1, 0, "causal", NULL},
        {NULL, "output", 'o', ARG_CHOICE, &out, "md|json|csv", 1, 0, "fmt", NULL},
        {NULL, "lengths", 'l', ARG_STRING, &file, "FILE", 1, 0, "file", NULL},
    };
    int n = (int)(sizeof specs / sizeof specs[0]);
    const char *err = "";
    char *ok1[] = {"test", "--heads", "4", "-d", "32", "--no-causal", "-ojson", "--gflop=0.5", "--lengths", "a b.txt"};
    CHECK(parse_captured(specs, n, 10, ok1, &err) == ARGS_OK && !*err, "valid flags parse (stderr '%s')", err);
    CHECK(heads == 4 && dim == 32 && !causal && !strcmp(out, "json") && x == 0.5 && !strcmp(file, "a b.txt"),
          "values stored: heads %d dim %d causal %d out %s x %g file %s", heads, dim, causal, out, x, file);
    char *ok2[] = {"test", "--heads=7", "-d", "256", "--causal", "-o", "csv", "--causal=false"};
    CHECK(parse_captured(specs, n, 8, ok2, &err) == ARGS_OK, "= forms parse: %s", err);
    CHECK(heads == 7 && dim == 256 && !causal && !strcmp(out, "csv"), "later flags win");

    struct { int argc; char *argv[4]; const char *msg; } bad[] = {
        {3, {"test", "--heads", "x"}, "ragged: test cmd: --heads: expected a positive integer, got 'x'\n"},
        {3, {"test", "--heads", "0"}, "ragged: test cmd: --heads: expected a positive integer, got '0'\n"},
        {3, {"test", "--heads", "99999999999"}, "ragged: test cmd: --heads: expected a positive integer, got '99999999999'\n"},
        {3, {"test", "-d", "4"}, "ragged: test cmd: -d: expected an integer in [8, 256], got '4'\n"},
        {2, {"test", "-d"}, "ragged: test cmd: -d: missing value (D)\n"},
        {3, {"test", "--gflop", "-1"}, "ragged: test cmd: --gflop: expected a non-negative number, got '-1'\n"},
        {3, {"test", "--gflop", "nan"}, "ragged: test cmd: --gflop: expected a non-negative number, got 'nan'\n"},
        {3, {"test", "-o", "xml"}, "ragged: test cmd: -o: expected one of md|json|csv, got 'xml'\n"},
        {2, {"test", "--causal=maybe"}, "ragged: test cmd: --causal: expected true or false, got 'maybe'\n"},
        {2, {"test", "--no-causal=1"}, "ragged: test cmd: --no-causal: takes no value\n"},
        {2, {"test", "--nope"}, "ragged: test cmd: unknown option '--nope' (see 'ragged test cmd --help')\n"},
        {2, {"test", "stray"}, "ragged: test cmd: unexpected argument 'stray' (see 'ragged test cmd --help')\n"},
        {3, {"test", "--lengths", ""}, "ragged: test cmd: --lengths: expected a non-empty value\n"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int r = parse_captured(specs, n, bad[i].argc, bad[i].argv, &err);
        CHECK(r == ARGS_ERROR, "bad flags %zu ('%s') rejected", i, bad[i].argv[1]);
        CHECK(!strcmp(err, bad[i].msg), "message %zu: got '%s', expected '%s'", i, err, bad[i].msg);
    }
}

static void test_stats(rg_rng *rng) {
    stats s;
    double a[] = {3, 1, 2};
    CHECK(stats_compute(a, 3, &s), "stats of 3");
    CHECK(s.n == 3 && s.min == 1 && s.max == 3 && s.median == 2 && s.q1 == 1.5 && s.q3 == 2.5 && s.spread == 0.5 &&
          s.mean == 2 && fabs(s.stddev - 1) < 1e-12, "stats of {3,1,2}: median %g q1 %g q3 %g sd %g", s.median, s.q1, s.q3, s.stddev);
    CHECK(a[0] == 3 && a[1] == 1, "input left unsorted");
    double b[] = {4, 1, 3, 2};
    stats_compute(b, 4, &s);
    CHECK(s.median == 2.5 && s.q1 == 1.75 && s.q3 == 3.25, "stats of 1..4: %g %g %g", s.q1, s.median, s.q3);
    double c[] = {7.5};
    stats_compute(c, 1, &s);
    CHECK(s.n == 1 && s.median == 7.5 && s.spread == 0 && s.stddev == 0, "one value");
    CHECK(!stats_compute(c, 0, &s) && s.n == 0, "no values: false");

    /* Random sets against a plain reference: the median is the middle of a selection sort. */
    for (int t = 0; t < 50; t++) {
        int n = 1 + (int)rg_rng_below(rng, 40);
        double x[40], y[40];
        for (int i = 0; i < n; i++) x[i] = y[i] = rg_rng_uniform(rng) * 100;
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++)
                if (y[j] < y[i]) { double tmp = y[i]; y[i] = y[j]; y[j] = tmp; }
        double med = n % 2 ? y[n / 2] : 0.5 * (y[n / 2 - 1] + y[n / 2]);
        stats_compute(x, n, &s);
        CHECK(fabs(s.median - med) <= 1e-12 * med && s.min == y[0] && s.max == y[n - 1] && s.q1 <= s.median && s.median <= s.q3,
              "random set %d (n=%d): median %g vs %g", t, n, s.median, med);
    }
}

static const report_col cols[] = {
    {"impl", "impl", REPORT_STR, 0, 0, NULL},
    {"ms", "ms/batch", REPORT_NUM, 0, -1, NULL},
    {"ms_spread", "", REPORT_NUM, REPORT_MD_PM, -1, NULL},
    {"hidden", "", REPORT_NUM, REPORT_MD_HIDE, 3, NULL},
    {"speedup", "vs padded", REPORT_NUM, 0, 2, "x"},
};

static const char *print_to_string(const report *r, report_format fmt, bool *ok) {
    char path[64];
    snprintf(path, sizeof path, "%s/report", tmpdir);
    FILE *f = fopen(path, "w");
    *ok = f && report_print(r, f, fmt);
    if (f) fclose(f);
    return slurp(path);
}

static void test_report(void) {
    report r;
    report_init(&r, cols, 5);
    int i = report_add_row(&r);
    report_set_str(&r, i, "impl", "flash");
    report_set_num(&r, i, "ms", 12.34);
    report_set_num(&r, i, "ms_spread", 0.4);
    report_set_num(&r, i, "hidden", 1.5);
    report_set_num(&r, i, "speedup", 3.14159);
    i = report_add_row(&r);
    report_set_str(&r, i, "impl", "a,\"b\"");
    report_set_num(&r, i, "ms", 1234.5);
    report_meta(&r, "version", "%s", "0.1.0");
    report_meta(&r, "version", "%s", "0.2.0");   /* replaces */
    report_param(&r, "heads", "%d", 16);
    report_note(&r, "a note with %d", 7);
    bool ok;
    const char *md = print_to_string(&r, REPORT_MD, &ok);
    CHECK(ok, "md printed");
    CHECK(!strncmp(md, "| impl  |   ms/batch | vs padded |\n", 34), "md header, hidden columns left out:\n%s", md);
    CHECK(strstr(md, "\n| ----- | ---------: | --------: |\n") != NULL, "md alignment row:\n%s", md);
    CHECK(strstr(md, "\n| flash | 12.3 ± 0.4 |     3.14x |\n") != NULL, "md value ± spread with the value's digits:\n%s", md);
    CHECK(strstr(md, "\n| a,\"b\" |       1234 |         - |\n\n") != NULL, "md unset cell is '-':\n%s", md);
    CHECK(strstr(md, "version: 0.2.0\n- a note with 7\n") != NULL && !strstr(md, "heads"), "md footer:\n%s", md);

    const char *js = print_to_string(&r, REPORT_JSON, &ok);
    CHECK(ok, "json printed");
    CHECK(strstr(js, "\"meta\": {\"version\": \"0.2.0\"}") && strstr(js, "\"params\": {\"heads\": \"16\"}"), "json meta/params:\n%s", js);
    CHECK(strstr(js, "{\"impl\": \"flash\", \"ms\": 12.34, \"ms_spread\": 0.4, \"hidden\": 1.5, \"speedup\": 3.14159}"),
          "json row:\n%s", js);
    CHECK(strstr(js, "{\"impl\": \"a,\\\"b\\\"\", \"ms\": 1234.5, \"ms_spread\": null, \"hidden\": null, \"speedup\": null}"),
          "json escapes and nulls:\n%s", js);

    const char *csv = print_to_string(&r, REPORT_CSV, &ok);
    CHECK(ok, "csv printed");
    CHECK(!strcmp(csv, "impl,ms,ms_spread,hidden,speedup,version,heads\n"
                       "flash,12.34,0.4,1.5,3.14159,0.2.0,16\n"
                       "\"a,\"\"b\"\"\",1234.5,,,,0.2.0,16\n"), "csv:\n%s", csv);

    report_set_num(&r, 0, "no_such_column", 1);
    print_to_string(&r, REPORT_MD, &ok);
    CHECK(!ok, "an unknown column key makes printing fail");
    report_free(&r);

    report_format f;
    CHECK(report_parse_format("json", &f) && f == REPORT_JSON && !report_parse_format("xml", &f), "format names");
    char buf[48];
    CHECK(!strcmp(report_format_num(buf, 0.012345, -1), "0.0123") && !strcmp(report_format_num(buf, 45.67, -1), "45.7") &&
          !strcmp(report_format_num(buf, 98765.4, -1), "98765") && !strcmp(report_format_num(buf, NAN, 2), "nan"),
          "number formatting by magnitude");
}

/* True when this build's CPU flash kernel runs (the tiny end-to-end run needs it). */
static bool flash_available(void) {
    rg_backend *be = NULL;
    if (rg_backend_init(RG_BACKEND_CPU, 1, &be) != RG_OK) return false;
    float q[8], o[8], lse[1];
    for (int i = 0; i < 8; i++) q[i] = 0.5f;
    int32_t cu[2] = {0, 1};
    rg_attn_desc d = {.batch = 1, .n_heads = 1, .n_kv_heads = 1, .head_dim = 8, .cu_seqlens_q = cu,
                      .cu_seqlens_k = cu, .max_seqlen_q = 1, .max_seqlen_k = 1, .algo = RG_ATTN_FLASH};
    rg_status s = rg_attn_forward(be, &d, q, q, q, o, lse);
    rg_backend_free(be);
    return s == RG_OK;
}

static void test_cli(void) {
    if (access("./ragged", X_OK) != 0) {
        CHECK(false, "./ragged not found: run this test from the build directory (ctest does)");
        return;
    }
    const char *out, *err;
    CHECK(cli_run(tmpdir, "bench attn --help", &out, &err) == 0 && strstr(out, "usage: ragged bench attn"), "--help exits 0");
    const char *flags[] = {"--lengths", "--batches", "--batch-size", "--max-len", "--seed", "--heads", "--kv-heads",
                           "--head-dim", "--[no-]causal", "--mode", "--impl", "--ref-gflop", "--[no-]ref-full",
                           "--[no-]check", "--reps", "--warmup", "--threads", "--backend", "--[no-]peak",
                           "--peak-n", "--output", "--[no-]quiet"};
    /* Each flag on an option line ("  -x, --flag" or "  --flag"), its default on that line or,
     * when the flag's column overflows, on the next. */
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        bool found = false;
        for (const char *line = out; line && *line && !found; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
            const char *opt = line[0] == ' ' && line[1] == ' ' && line[2] == '-' ? line + 2 : NULL;
            if (opt && opt[1] != '-') opt += 4;   /* skip "-x, " */
            size_t fl = strlen(flags[i]);
            if (!opt || strncmp(opt, flags[i], fl) || (opt[fl] != ' ' && opt[fl] != '\n')) continue;
            const char *eol = strchr(line, '\n'), *next_eol = eol ? strchr(eol + 1, '\n') : NULL;
            const char *dflt = strstr(line, "(default: ");
            found = dflt && (!next_eol || dflt < next_eol);
        }
        CHECK(found, "--help lists %s with its default", flags[i]);
    }
    CHECK(cli_run(tmpdir, "bench --help", &out, &err) == 0 && strstr(out, "attn") && strstr(out, "--heads"), "bench --help");

    struct { const char *args, *msg; int code; } bad[] = {
        {"bench attn --heads x", "ragged: bench attn: --heads: expected a positive integer, got 'x'\n", 2},
        {"bench attn --head-dim 12", "ragged: bench attn: --head-dim: expected a multiple of 8 in [8, 256], got '12'\n", 2},
        {"bench attn --kv-heads 3", "ragged: bench attn: --kv-heads: 3 does not divide --heads 16\n", 2},
        {"bench attn -o xml", "ragged: bench attn: -o: expected one of md|json|csv, got 'xml'\n", 2},
        {"bench attn --impl flash,nope", "ragged: bench attn: --impl: expected a comma-separated list of flash, padded, "
                                         "reference, got 'flash,nope'\n", 2},
        {"bench attn --batches 0", "ragged: bench attn: --batches: 0 (every batch) needs --lengths FILE\n", 2},
        {"bench attn --heads=x", "ragged: bench attn: --heads: expected a positive integer, got 'x'\n", 2},
        {"bench nosuch", "ragged: bench: unknown subcommand 'nosuch'\n", 2},
        {"bench attn --lengths /nonexistent/l.txt", "ragged: bench attn: --lengths: rg_lengths_read: cannot open "
                                                    "'/nonexistent/l.txt'", 1},
        {"bench attn -b 100000 --max-len 100000", "ragged: bench attn: batch 1: 100000 sequences of ", 1},
        {"bench attn --backend cuda --no-peak -q", NULL, 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (!bad[i].msg && rg_backend_available(RG_BACKEND_CUDA)) continue;   /* the cuda case needs no GPU */
        int code = cli_run(tmpdir, bad[i].args, &out, &err);
        CHECK(code == bad[i].code, "'ragged %s' exits %d (got %d)", bad[i].args, bad[i].code, code);
        if (bad[i].msg)   /* the message first; a usage summary may follow */
            CHECK(!strncmp(err, bad[i].msg, strlen(bad[i].msg)), "'ragged %s' says '%s' (got '%s')", bad[i].args, bad[i].msg, err);
        else CHECK(strstr(err, "ragged: bench attn: --backend cuda: unavailable: ") == err, "cuda unavailable: '%s'", err);
        CHECK(!*out, "nothing on stdout for '%s'", bad[i].args);
    }
    char lpath[64], args[256];
    snprintf(lpath, sizeof lpath, "%s/big.txt", tmpdir);
    cli_write_file(lpath, "5 20\n3 x\n");
    snprintf(args, sizeof args, "bench attn --lengths %s", lpath);
    CHECK(cli_run(tmpdir, args, &out, &err) == 1 && strstr(err, "ragged: bench attn: --lengths: ") == err && strstr(err, lpath) &&
          strstr(err, ":2:"), "a malformed lengths file is named with its line: '%s'", err);
    cli_write_file(lpath, "5 20\n");
    snprintf(args, sizeof args, "bench attn --lengths %s --max-len 16", lpath);
    CHECK(cli_run(tmpdir, args, &out, &err) == 2 && strstr(err, "--max-len: 16 is below the longest length 20"), "max-len check: %s", err);

    if (!flash_available()) {
        printf("the CPU flash kernel is not in this build yet: the end-to-end run of 'ragged bench attn' is not tested\n");
        return;
    }
    /* Tiny end-to-end runs: every implementation, both modes, the check passes, each format parses as expected. */
    cli_write_file(lpath, "# tiny\n3 1 7\n16 2 5\n");
    snprintf(args, sizeof args, "bench attn --lengths %s --max-len 16 --heads 4 --kv-heads 2 -d 16 -r 2 -w 1 -q --peak-n 8 -o json", lpath);
    CHECK(cli_run(tmpdir, args, &out, &err) == 0, "tiny json run exits 0: %s", err);
    CHECK(strstr(out, "\"impl\": \"flash\", \"mode\": \"fwd\"") && strstr(out, "\"impl\": \"padded\", \"mode\": \"fwd+bwd\"") &&
          strstr(out, "\"impl\": \"reference\", \"mode\": \"fwd+bwd\"") && strstr(out, "check: flash vs reference") &&
          !strstr(out, "MISMATCH") && strstr(out, "\"n_batches\": \"2\""), "tiny json run's rows and check:\n%s", out);
    CHECK(!*err, "-q: nothing on stderr (got '%s')", err);
    snprintf(args, sizeof args, "bench attn --lengths %s --max-len 16 --heads 2 -d 8 -r 1 -w 0 --no-peak --mode fwd -o csv", lpath);
    CHECK(cli_run(tmpdir, args, &out, &err) == 0, "tiny csv run exits 0: %s", err);
    CHECK(!strncmp(out, "impl,mode,batches,ms_median,", 28) && strstr(out, "\nflash,fwd,2,") && !strstr(out, "fwd+bwd"),
          "csv rows, fwd only:\n%s", out);
    CHECK(strstr(err, "bench attn [") && strstr(err, "done in"), "progress on stderr: '%s'", err);
    CHECK(cli_run(tmpdir, "bench attn -n 1 -b 4 --max-len 24 --heads 1 -d 8 -r 1 -w 0 --no-peak -q --no-causal", &out, &err) == 0 &&
          strstr(out, "| impl") && strstr(out, "not causal"), "generated lengths, markdown: %s%s", out, err);
}

int main(void) {
    rg_rng rng;
    rg_test_init("test_tools", &rng);
    if (!mkdtemp(tmpdir)) { printf("cannot create a temporary directory\n"); return 1; }
    test_args();
    test_stats(&rng);
    test_report();
    test_cli();
    const char *names[] = {"stderr", "report", "lengths.txt", "out", "err", "big.txt"};
    char p[96];
    for (int i = 0; i < 6; i++) { snprintf(p, sizeof p, "%s/%s", tmpdir, names[i]); remove(p); }
    rmdir(tmpdir);
    return rg_test_finish();
}
