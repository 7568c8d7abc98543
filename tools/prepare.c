/* prepare.c — `ragged prepare`: text files -> llm.c token shards (ragged.h
 * section 8). One document per file, or files split on --delimiter; each
 * document encoded with a GPT-2 BPE tokenizer (tokenizer.json, or vocab.json +
 * merges.txt) and written EOT-first; the first --val-docs documents go to
 * PREFIX_val_*.bin, the rest to PREFIX_train_*.bin. A progress line on a
 * terminal's stderr, a summary on stdout; on failure the shards written so far
 * are removed, so a run leaves all of its output or none. */
#define _POSIX_C_SOURCE 200809L
#include "ragged.h"
#include "args.h"
#include "cli.h"
#include "msg.h"
#include "stats.h"
#include "train_corpus.h"
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CMD "prepare"

typedef struct prep_opts {
    const char *tokenizer, *out, *delimiter;
    int shard_tokens, val_docs;
    bool quiet;
} prep_opts;

/* Moves argv's positional arguments (not flags, not flag values) to pos[]; argv keeps the flags. */
static int split_positionals(const arg_spec *specs, int n, int *argc, char **argv, char **pos) {
    int k = 1, np = 0;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1]) { pos[np++] = argv[i]; continue; }
        argv[k++] = argv[i];
        if (!strcmp(a, "--")) continue;
        if (strchr(a, '=')) continue;
        const char *name = a[1] == '-' ? a + 2 : NULL;
        for (int s = 0; s < n; s++) {
            bool match = name ? !strcmp(name, specs[s].name) : (a[2] == 0 && a[1] == specs[s].short_name);
            if (match && specs[s].kind != ARG_BOOL && i + 1 < *argc) argv[k++] = argv[++i];
        }
    }
    *argc = k;
    return np;
}

/* "\n", "\t", "\r", "\\", "\xHH" in s, unescaped into out; returns the length or -1. */
static long unescape(const char *s, char *out) {
    long n = 0;
    for (; *s; s++) {
        if (*s != '\\') { out[n++] = *s; continue; }
        s++;
        if (*s == 'n') out[n++] = '\n';
        else if (*s == 't') out[n++] = '\t';
        else if (*s == 'r') out[n++] = '\r';
        else if (*s == '\\') out[n++] = '\\';
        else if (*s == 'x' && s[1] && s[2]) {
            char hex[3] = {s[1], s[2], 0}, *end;
            long v = strtol(hex, &end, 16);
            if (*end) return -1;
            out[n++] = (char)v;
            s += 2;
        } else return -1;
    }
    return n;
}

/* A whole file (or stdin) in memory. */
static int read_all(const char *path, char **buf, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return msg_error("cannot open '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (!b) break;
        if (n == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) { free(b); b = NULL; break; }
            b = nb;
        }
        size_t k = fread(b + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    bool err = ferror(f);
    if (f != stdin) fclose(f);
    if (!b) return msg_error("out of memory reading '%s'", path);
    if (err) { free(b); return msg_error("cannot read '%s': %s", path, strerror(errno)); }
    *buf = b;
    *len = n;
    return 0;
}

/* Next occurrence of d[0..dn) in s[from..n), or n. */
static size_t find(const char *s, size_t n, size_t from, const char *d, size_t dn) {
    while (from + dn <= n) {
        const char *p = memchr(s + from, d[0], n - from - dn + 1);
        if (!p) return n;
        if (!memcmp(p, d, dn)) return (size_t)(p - s);
        from = (size_t)(p - s) + 1;
    }
    return n;
}

typedef struct prep_run {
    const prep_opts *o;
    rg_tokenizer *tok;
    rg_shard_writer *train, *val;
    char train_prefix[4096], val_prefix[4096];
    rg_token_buf ids;
    int64_t docs, empty, val_written, bytes_done, bytes_total, tokens;
    double t0, last_draw;
    bool tty, drawn;
} prep_run;

static void draw(prep_run *r, bool force) {
    if (!r->tty) return;
    double now = bench_now();
    if (!force && now - r->last_draw < 0.2) return;
    r->last_draw = now;
    double el = now - r->t0, mb = r->bytes_done / 1e6, rate = el > 0 ? mb / el : 0;
    char total[64] = "";
    if (r->bytes_total > 0)
        snprintf(total, sizeof total, "/%.1f MB (%.0f%%)", r->bytes_total / 1e6, 100.0 * r->bytes_done / r->bytes_total);
    fprintf(stderr, "\r\033[K" CMD ": %.1f%s%s | %" PRId64 " docs | %.2fM tokens | %.1f MB/s", mb, total,
            r->bytes_total > 0 ? "" : " MB", r->docs, r->tokens / 1e6, rate);
    r->drawn = true;
}

static void end_line(prep_run *r) {
    if (r->drawn) fprintf(stderr, "\n");
    r->drawn = false;
}

static int add_doc(prep_run *r, const char *s, size_t n, const char *path) {
    if (n == 0) { r->empty++; return 0; }
    r->ids.n = 0;
    if (rg_tokenizer_encode(r->tok, s, n, 0, &r->ids) != RG_OK)
        return end_line(r), msg_error("'%s': encoding: %s", path, rg_last_error());
    bool to_val = r->val_written < r->o->val_docs;
    rg_shard_writer **w = to_val ? &r->val : &r->train;
    if (!*w && rg_shard_writer_open(to_val ? r->val_prefix : r->train_prefix, r->o->shard_tokens,
                                    rg_tokenizer_eot_id(r->tok), w) != RG_OK)
        return end_line(r), msg_error("%s", rg_last_error());
    if (rg_shard_writer_add(*w, r->ids.ids, r->ids.n) != RG_OK)
        return end_line(r), msg_error("writing shards: %s", rg_last_error());
    r->val_written += to_val;
    r->docs++;
    r->tokens += (int64_t)r->ids.n + 1;
    return 0;
}

static int do_file(prep_run *r, const char *path, const char *delim, size_t dn) {
    char *buf = NULL;
    size_t len = 0;
    if (read_all(path, &buf, &len)) return -1;
    int rc = 0;
    if (!dn) {
        rc = add_doc(r, buf, len, path);
        r->bytes_done += (int64_t)len;
    } else {
        for (size_t at = 0; at <= len && !rc;) {
            size_t end = find(buf, len, at, delim, dn);
            rc = add_doc(r, buf + at, end - at, path);
            r->bytes_done += (int64_t)(end - at + (end < len ? dn : 0));
            draw(r, false);
            if (end == len) break;
            at = end + dn;
        }
    }
    free(buf);
    draw(r, false);
    return rc;
}

/* Removes shards prefix_000000.bin .. prefix_{n-1}.bin. */
static void remove_shards(const char *prefix, int32_t n) {
    char p[4200];
    for (int32_t i = 0; i < n; i++) {
        snprintf(p, sizeof p, "%s_%06d.bin", prefix, (int)i);
        remove(p);
    }
}

/* Warns about a shard left from an earlier, longer run (a glob would pick it up). */
static void warn_stale(const char *prefix, int32_t n) {
    char p[4200];
    snprintf(p, sizeof p, "%s_%06d.bin", prefix, (int)n);
    if (access(p, F_OK) == 0)
        fprintf(stderr, "ragged: " CMD ": warning: '%s' is left from an earlier run; remove it before globbing "
                        "'%s_*.bin'\n", p, prefix);
}

int cmd_prepare(int argc, char **argv) {
    msg_command(CMD);
    prep_opts o = {.tokenizer = NULL, .out = NULL, .delimiter = NULL, .shard_tokens = 100000000, .val_docs = 0};
    const arg_spec specs[] = {
        {"Input and output", "tokenizer", 0, ARG_STRING, &o.tokenizer, "DIR", 1, 0,
         "directory with tokenizer.json, or vocab.json + merges.txt (GPT-2 byte-level BPE)", "required"},
        {NULL, "out", 'o', ARG_STRING, &o.out, "PREFIX", 1, 0,
         "write PREFIX_train_000000.bin, ... (and PREFIX_val_000000.bin, ... with --val-docs)", "required"},
        {NULL, "delimiter", 'd', ARG_STRING, &o.delimiter, "STR", 1, 0,
         "split each input into documents at STR (escapes \\n \\t \\r \\\\ \\xHH); empty documents are skipped",
         "none: one document per file"},
        {NULL, "shard-tokens", 0, ARG_INT, &o.shard_tokens, "N", 1, INT_MAX,
         "tokens per shard at most (a longer document gets a shard of its own)", "100000000, llm.c's"},
        {NULL, "val-docs", 0, ARG_INT, &o.val_docs, "N", 0, INT_MAX,
         "the first N documents go to the validation shards", "0: no validation split"},
        {NULL, "quiet", 'q', ARG_BOOL, &o.quiet, NULL, 1, 0, "no progress line", NULL},
    };
    int n_specs = (int)(sizeof specs / sizeof specs[0]);
    static const char about[] =
        "Tokenises text into llm.c-compatible shards (1024-byte header: magic 20240520,\n"
        "version 1, token count; then uint16 tokens), each document prefixed by\n"
        "<|endoftext|>; documents never straddle shards. INPUT is a file, a directory\n"
        "(its files, sorted; names starting with '.' skipped), a glob in quotes\n"
        "('texts/*.txt', expanded by ragged in sorted order) or - for standard input.\n"
        "Inputs are read whole, in the order given; bytes that are not UTF-8 are\n"
        "kept (byte-level BPE encodes any bytes). '<|endoftext|>' inside the text is\n"
        "encoded as plain text, as llm.c's encode_ordinary does. Every shard is\n"
        "written to a temporary file and renamed; if the run fails, the shards it\n"
        "wrote are removed. Exit status: 0 ok, 1 runtime failure, 2 bad usage.";
    char **pos = malloc((size_t)(argc > 0 ? argc : 1) * sizeof *pos);
    if (!pos) return msg_error("out of memory");
    int n_pos = split_positionals(specs, n_specs, &argc, argv, pos);
    int pr = args_parse(CMD, "ragged prepare --tokenizer DIR --out PREFIX [options] INPUT...", about, specs, n_specs,
                        argc, argv);
    if (pr != ARGS_OK) { free(pos); return pr == ARGS_HELP ? 0 : 2; }
    int rc = 2;
    path_list in = {0};
    char delim[4096];
    long dn = 0;
    prep_run r = {.o = &o};
    if (!o.tokenizer) { args_error(CMD, "--tokenizer", "required (a directory with tokenizer.json or vocab.json + merges.txt)"); goto done; }
    if (!o.out) { args_error(CMD, "--out", "required (the shards' path prefix)"); goto done; }
    if (!n_pos) { args_error(CMD, NULL, "no INPUT given (files, directories, quoted globs, or - for stdin)"); goto done; }
    if (o.delimiter && (strlen(o.delimiter) >= sizeof delim || (dn = unescape(o.delimiter, delim)) <= 0)) {
        args_error(CMD, "--delimiter", "expected a non-empty string (escapes \\n \\t \\r \\\\ \\xHH), got '%s'", o.delimiter);
        goto done;
    }
    rc = 1;
    int n_stdin = 0;
    for (int i = 0; i < n_pos; i++) {
        n_stdin += !strcmp(pos[i], "-");
        if (paths_add(&in, pos[i], true, NULL, "INPUT")) goto done;
    }
    if (n_stdin > 1) { rc = args_error(CMD, NULL, "'-' (standard input) given %d times", n_stdin); goto done; }
    if (rg_tokenizer_load_dir(o.tokenizer, &r.tok) != RG_OK) { msg_error("--tokenizer: %s", rg_last_error()); goto done; }
    int32_t vocab = rg_tokenizer_vocab_size(r.tok), eot = rg_tokenizer_eot_id(r.tok);
    if (vocab > 65536) {
        msg_error("--tokenizer: '%s' has a vocabulary of %d tokens; llm.c shards store uint16 tokens (at most 65536)",
                  o.tokenizer, (int)vocab);
        goto done;
    }
    if (eot < 0) { msg_error("--tokenizer: '%s' has no <|endoftext|> token to separate documents", o.tokenizer); goto done; }
    snprintf(r.train_prefix, sizeof r.train_prefix, "%s_train", o.out);
    snprintf(r.val_prefix, sizeof r.val_prefix, "%s_val", o.out);
    for (int i = 0; i < in.n; i++) {
        struct stat sb;
        if (strcmp(in.paths[i], "-") && stat(in.paths[i], &sb) == 0) r.bytes_total += (int64_t)sb.st_size;
    }
    if (n_stdin) r.bytes_total = 0; /* unknown */
    r.tty = !o.quiet && isatty(STDERR_FILENO);
    r.t0 = bench_now();
    int fail = 0;
    for (int i = 0; i < in.n && !fail; i++) fail = do_file(&r, in.paths[i], delim, (size_t)dn);
    if (!fail) draw(&r, true);
    end_line(&r);
    int32_t shards[2] = {0, 0};
    int64_t toks[2] = {0, 0};
    rg_shard_writer *w[2] = {r.train, r.val};
    const char *prefixes[2] = {r.train_prefix, r.val_prefix};
    for (int k = 0; k < 2; k++)
        if (w[k] && rg_shard_writer_close(w[k], &shards[k], &toks[k]) != RG_OK && !fail)
            fail = msg_error("writing shards: %s", rg_last_error());
    if (fail) {
        for (int k = 0; k < 2; k++) remove_shards(prefixes[k], shards[k]);
        fprintf(stderr, "ragged: " CMD ": no shards were left behind\n");
        goto done;
    }
    if (r.docs == 0) {
        msg_error("no document: the inputs hold %s", r.empty ? "only empty documents" : "nothing");
        goto done;
    }
    for (int k = 0; k < 2; k++) warn_stale(prefixes[k], shards[k]);
    double el = bench_now() - r.t0;
    printf("prepared %" PRId64 " documents (%" PRId64 " empty skipped) from %d input%s, %.2f MB in %.2f s (%.2f MB/s, "
           "%.2f bytes/token)\n", r.docs, r.empty, in.n, in.n == 1 ? "" : "s", r.bytes_done / 1e6, el,
           el > 0 ? r.bytes_done / 1e6 / el : 0, r.tokens ? (double)r.bytes_done / (double)r.tokens : 0);
    printf("train: %" PRId64 " documents, %" PRId64 " tokens (EOTs included) in %d shard%s %s_000000.bin..\n",
           r.docs - r.val_written, toks[0], (int)shards[0], shards[0] == 1 ? "" : "s", r.train_prefix);
    if (o.val_docs)
        printf("val: %" PRId64 " documents, %" PRId64 " tokens in %d shard%s %s_000000.bin..\n", r.val_written, toks[1],
               (int)shards[1], shards[1] == 1 ? "" : "s", r.val_prefix);
    printf("tokenizer: %s (vocab %d, <|endoftext|> = %d)\n", o.tokenizer, (int)vocab, (int)eot);
    rc = 0;
done:
    rg_token_buf_free(&r.ids);
    rg_tokenizer_free(r.tok);
    paths_free(&in);
    free(pos);
    return rc;
}
