/* test_cli_data.c — real text through the CLI: `ragged eval` on shards equals
 * the loss of rg_model_eval_step summed over the same documents one by one
 * (each document alone, cut into pieces of max_seq_len; a shard that starts
 * inside a document gives that fragment as a document of its own; targets
 * counted exactly); `ragged train --data` is deterministic, reports the padding
 * it avoided as a recount gives it, resumes bit for bit, starts from and saves
 * HuggingFace directories; help and errors name the flag, file or pattern. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "cli_util.h"
#include "ragged.h"
#include "test_model_util.h"
#include <glob.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { V = 40, EOT = 39, MAXLEN = 16 };
static char dir[64];

static void put_le32(unsigned char *p, int32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)((uint32_t)v >> (8 * i));
}

/* A shard written by hand: header fields as given, tokens as uint16. */
static void write_raw_shard(const char *path, int32_t magic, const uint16_t *t, int n) {
    unsigned char h[1024] = {0};
    put_le32(h, magic);
    put_le32(h + 4, 1);
    put_le32(h + 8, n);
    FILE *f = fopen(path, "wb");
    fwrite(h, 1, sizeof h, f);
    for (int i = 0; i < n; i++) {
        unsigned char b[2] = {(unsigned char)t[i], (unsigned char)(t[i] >> 8)};
        fwrite(b, 1, 2, f);
    }
    fclose(f);
}

/* Loss and targets of every document of the shards of pattern, one by one. */
static void reference(rg_model *m, const char *pattern, double *loss, int64_t *targets, int64_t *pieces, int64_t *tokens) {
    glob_t g;
    *loss = 0;
    *targets = *pieces = *tokens = 0;
    if (glob(pattern, 0, NULL, &g) != 0) return;
    rg_batch_opts o = {.layout = RG_LAYOUT_PACKED, .max_len = MAXLEN, .vocab_size = V, .pad_id = 0};
    int32_t buf[MAXLEN];
    for (size_t k = 0; k < g.gl_pathc; k++) {
        rg_shard s;
        if (rg_shard_read(g.gl_pathv[k], EOT, &s) != RG_OK) continue;
        for (int64_t d = 0; d < s.n_docs; d++)
            for (int64_t at = s.doc_offsets[d]; at < s.doc_offsets[d + 1]; at += MAXLEN) {
                int32_t len = (int32_t)(s.doc_offsets[d + 1] - at < MAXLEN ? s.doc_offsets[d + 1] - at : MAXLEN);
                for (int32_t t = 0; t < len; t++) buf[t] = s.tokens[at + t];
                const int32_t *seq = buf;
                rg_batch b;
                rg_step_result r;
                TRY_OK(rg_batch_build(&o, 1, &seq, &len, &b));
                TRY_OK(rg_model_eval_step(m, &b, &r));
                *loss += r.loss_sum;
                *targets += r.n_targets;
                *pieces += 1;
                *tokens += len;
                rg_batch_free(&b);
            }
        rg_shard_free(&s);
    }
    globfree(&g);
}

/* The value after key in text (a double), or NAN. */
static double after(const char *text, const char *key) {
    const char *p = strstr(text, key);
    return p ? strtod(p + strlen(key), NULL) : NAN;
}

/* "loss X" values of the "step N/M | loss X" lines, in order. */
static int step_losses(const char *out, double *x, int cap) {
    int n = 0;
    for (const char *p = out; (p = strstr(p, "| loss ")) && n < cap; p += 7) x[n++] = strtod(p + 7, NULL);
    return n;
}

int main(void) {
    rg_rng r;
    rg_test_init("test_cli_data", &r);
    if (access("./ragged", X_OK) != 0) {
        printf("./ragged not found (run from the build directory)\n");
        return 77;
    }
    snprintf(dir, sizeof dir, "/tmp/rg_cdata_XXXXXX");
    if (!mkdtemp(dir)) return 1;
    char hf[128], prefix[128], pat[160], p[256], args[1024];
    snprintf(hf, sizeof hf, "%s/hf", dir);
    snprintf(prefix, sizeof prefix, "%s/s", dir);
    snprintf(pat, sizeof pat, "%s/s_*.bin", dir);

    /* a tiny GPT-2, saved as HuggingFace does */
    rg_backend *be;
    TRY_OK(rg_backend_init(RG_BACKEND_CPU, 1, &be));
    rg_model_config cfg = tm_gpt2_like(2, 2, 2, V, MAXLEN);
    rg_model *m;
    TRY_OK(rg_model_init(be, &cfg, rg_rng_u64(&r), &m));
    TRY_OK(rg_hf_gpt2_save(m, hf));

    /* documents: empty ones (EOT alone), short, exactly max_seq_len, long ones; small shards */
    rg_shard_writer *w;
    TRY_OK(rg_shard_writer_open(prefix, 60, EOT, &w));
    int n_docs = rg_test_quick() ? 25 : 60;
    for (int d = 0; d < n_docs; d++) {
        int32_t len = d == 0 ? 0 : d == 1 ? MAXLEN - 1 : d == 2 ? MAXLEN : d == 3 ? 3 * MAXLEN + 5
                                                                              : (int32_t)rg_rng_below(&r, 2 * MAXLEN);
        int32_t t[4 * MAXLEN];
        for (int32_t i = 0; i < len; i++) t[i] = (int32_t)rg_rng_below(&r, EOT);
        TRY_OK(rg_shard_writer_add(w, t, (size_t)len));
    }
    int32_t n_shards;
    TRY_OK(rg_shard_writer_close(w, &n_shards, NULL));
    CHECK(n_shards > 2, "the documents fill %d shards", (int)n_shards);
    /* a last shard that starts inside a document (as llm.c's own shards may) */
    uint16_t cut[] = {5, 6, 7, EOT, 8, 9, 10, EOT};
    snprintf(p, sizeof p, "%s_999999.bin", prefix);
    write_raw_shard(p, 20240520, cut, 8);

    double ref_loss;
    int64_t ref_targets, ref_pieces, ref_tokens;
    reference(m, pat, &ref_loss, &ref_targets, &ref_pieces, &ref_tokens);
    const char *out, *err;
    for (int b = 1; b <= 5; b += 4) {
        snprintf(args, sizeof args, "eval --model %s --data '%s' --eot %d -b %d -t 1", hf, pat, EOT, b);
        int rc = cli_run(dir, args, &out, &err);
        double loss = after(out, "eval: loss "), targets = after(out, "perplexity ");
        const char *ov = strstr(out, " over ");
        long long nt = ov ? atoll(ov + 6) : -1;
        CHECK(rc == 0 && nt == ref_targets && fabs(loss - ref_loss / ref_targets) <= 1e-5 * fabs(ref_loss / ref_targets) + 1e-6,
              "eval -b %d: loss %.6f over %lld targets, one by one %.6f over %lld (rc %d)\n%s%s", b, loss, nt,
              ref_loss / ref_targets, (long long)ref_targets, rc, out, err);
        CHECK(fabs(targets - exp(loss)) <= 1e-3 * exp(loss), "perplexity %.4f = exp(loss %.6f)", targets, loss);
    }
    /* the same model as a ragged checkpoint gives the same loss */
    snprintf(args, sizeof args, "train --init-from %s --data '%s' --eot %d --steps 1 --lr 1e-9 --min-lr 0 --save %s/ck.st "
             "--save-hf %s/hf2 -t 1 -b 2", hf, pat, EOT, dir, dir);
    int rc = cli_run(dir, args, &out, &err);
    CHECK(rc == 0 && strstr(out, "saved HuggingFace GPT-2"), "train --init-from --save-hf: rc %d\n%s%s", rc, out, err);
    snprintf(p, sizeof p, "%s/hf2", dir);
    rg_model *m2;
    TRY_OK(rg_model_init(be, &cfg, 1, &m2));
    CHECK(rg_hf_gpt2_load(m2, p) == RG_OK, "--save-hf directory loads: %s", rg_last_error());
    rg_model_free(m2);

    /* padding reported = recount: pieces * max_seq_len slots, minus the tokens */
    double slots = after(out, "would take "), avoided = after(out, "padding): ");
    CHECK(slots == (double)(ref_pieces * MAXLEN) && avoided == (double)(ref_pieces * MAXLEN - ref_tokens),
          "padding reported: %g slots, %g avoided; recount %lld and %lld\n%s", slots, avoided,
          (long long)(ref_pieces * MAXLEN), (long long)(ref_pieces * MAXLEN - ref_tokens), out);
    CHECK(strstr(out, "1 shard starts inside a document") != NULL, "the cut shard is reported:\n%s", out);

    /* deterministic, and resumable bit for bit */
    double a[8], b2[8], c[8];
    snprintf(args, sizeof args, "train --init-from %s --data '%s' --val-data '%s' --eot %d --steps 4 --log-every 1 "
             "--save none -t 1 -b 2 --seed 3", hf, pat, pat, EOT);
    rc = cli_run(dir, args, &out, &err);
    int na = step_losses(out, a, 8);
    CHECK(rc == 0 && strstr(out, "val loss"), "train with --val-data: rc %d\n%s%s", rc, out, err);
    rc = cli_run(dir, args, &out, &err);
    int nb = step_losses(out, b2, 8);
    CHECK(rc == 0 && na == 4 && nb == 4 && !memcmp(a, b2, sizeof(double) * 4), "same seed, same losses (%d, %d lines)", na, nb);
    snprintf(args, sizeof args, "train --init-from %s --data '%s' --eot %d --steps 2 --schedule-steps 4 --log-every 1 "
             "--save %s/r.st -t 1 -b 2 --seed 3", hf, pat, EOT, dir);
    rc = cli_run(dir, args, &out, &err);
    snprintf(args, sizeof args, "train --resume %s/r.st --steps 4 --log-every 1 --save none -t 1", dir);
    rc |= cli_run(dir, args, &out, &err);
    int nc = step_losses(out, c, 8);
    CHECK(rc == 0 && nc == 2 && c[0] == a[2] && c[1] == a[3], "resumed run: losses %g %g, straight run %g %g (rc %d)\n%s%s",
          nc ? c[0] : NAN, nc > 1 ? c[1] : NAN, a[2], a[3], rc, out, err);

    /* errors */
    snprintf(args, sizeof args, "train --preset tiny --data '%s/none_*.bin'", dir);
    rc = cli_run(dir, args, &out, &err);
    CHECK(rc == 1 && strstr(err, "none_*.bin") && strstr(err, "matches no file"), "empty glob: rc %d %s", rc, err);
    snprintf(p, sizeof p, "%s/bad_000000.bin", dir);
    write_raw_shard(p, 12345, cut, 8);
    snprintf(args, sizeof args, "eval --model %s --data %s --eot %d", hf, p, EOT);
    rc = cli_run(dir, args, &out, &err);
    CHECK(rc == 1 && strstr(err, "bad_000000.bin") && strstr(err, "magic"), "bad magic: rc %d %s", rc, err);
    snprintf(args, sizeof args, "train --preset tiny --vocab 20 --data '%s' --eot %d", pat, EOT);
    rc = cli_run(dir, args, &out, &err);
    CHECK(rc == 1 && strstr(err, "vocabulary"), "tokens beyond the model's vocabulary: rc %d %s", rc, err);
    snprintf(args, sizeof args, "eval --model %s/missing --data '%s'", dir, pat);
    rc = cli_run(dir, args, &out, &err);
    CHECK(rc == 1 && strstr(err, "missing"), "missing model: rc %d %s", rc, err);
    rc = cli_run(dir, "eval --data x.bin", &out, &err);
    CHECK(rc == 2 && strstr(err, "--model"), "eval without --model: rc %d %s", rc, err);
    rc = cli_run(dir, "train --val-data x.bin", &out, &err);
    CHECK(rc == 2 && strstr(err, "--val-data"), "--val-data without --data: rc %d %s", rc, err);
    snprintf(args, sizeof args, "train --init-from %s --preset gpt2", hf);
    rc = cli_run(dir, args, &out, &err);
    CHECK(rc == 2 && strstr(err, "--init-from"), "--init-from with --preset: rc %d %s", rc, err);
    rc = cli_run(dir, "train --help", &out, &err);
    CHECK(rc == 0 && strstr(out, "--data GLOB") && strstr(out, "quote the glob") && strstr(out, "--init-from") &&
              strstr(out, "--save-hf") && strstr(out, "--val-data"),
          "train --help: %s", out);
    rc = cli_run(dir, "eval --help", &out, &err);
    CHECK(rc == 0 && strstr(out, "--model PATH") && strstr(out, "perplexity"), "eval --help: %s", out);
    rc = cli_run(dir, "--help", &out, &err);
    CHECK(rc == 0 && strstr(out, "prepare") && strstr(out, "eval"), "ragged --help lists prepare and eval: %s", out);

    rg_model_free(m);
    rg_backend_free(be);
    snprintf(args, sizeof args, "rm -rf %s", dir);
    CHECK(system(args) == 0, "cleanup");
    return rg_test_finish();
}
