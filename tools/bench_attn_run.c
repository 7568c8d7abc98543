/* bench_attn_run.c — the attention benchmark's work: backend, measured peak,
 * device buffers with random inputs, timed passes over the batches, the
 * reference's sample and the flash-vs-reference check. */
#define _POSIX_C_SOURCE 200809L
#include "bench_attn.h"
#include "msg.h"
#include "rand.h"
#include "stats.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const impl_label[N_IMPL] = {"flash", "padded", "reference"};

int attn_case_init(attn_case *c, const int32_t *lens, int n, const attn_opts *o, const char *what, char *err,
                   size_t err_size) {
    memset(c, 0, sizeof *c);
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += lens[i];
    if (n < 1 || total > INT32_MAX || (int64_t)n * o->max_len > INT32_MAX) {
        snprintf(err, err_size, "%s: %d sequences of %lld tokens (%lld padded) overflow int32 cu_seqlens", what, n,
                 (long long)total, (long long)n * o->max_len);
        return -1;
    }
    c->cu = malloc(((size_t)n + 1) * sizeof *c->cu);
    c->cu_pad = malloc(((size_t)n + 1) * sizeof *c->cu_pad);
    if (!c->cu || !c->cu_pad) {
        free(c->cu);
        free(c->cu_pad);
        c->cu = c->cu_pad = NULL;
        snprintf(err, err_size, "%s: out of memory", what);
        return -1;
    }
    c->n_seqs = n;
    c->cu[0] = c->cu_pad[0] = 0;
    for (int i = 0; i < n; i++) {
        c->cu[i + 1] = c->cu[i] + lens[i];
        c->cu_pad[i + 1] = (i + 1) * o->max_len;
        if (lens[i] > c->max_seqlen) c->max_seqlen = lens[i];
    }
    c->tokens = c->cu[n];
    c->flops_fwd = rg_attn_flops_forward(n, c->cu, c->cu, o->heads, o->head_dim, o->causal);
    return 0;
}

static void case_free(attn_case *c) {
    free(c->cu);
    free(c->cu_pad);
    memset(c, 0, sizeof *c);
}

/* Fills n elements of dst with uniform [-1, 1) values, through a bounded host staging buffer. */
static rg_status fill_random(attn_run *run, void *dst, size_t n, uint64_t *st) {
    enum { CHUNK = 1 << 20 };
    size_t m = n < CHUNK ? n : CHUNK;
    float *tmp = malloc((m ? m : 1) * sizeof *tmp);
    if (!tmp) return RG_ERR_OUT_OF_MEMORY;
    rg_status s = RG_OK;
    for (size_t off = 0; off < n && s == RG_OK; off += CHUNK) {
        size_t k = n - off < CHUNK ? n - off : CHUNK;
        for (size_t i = 0; i < k; i++) tmp[i] = tool_rand_sym(st);
        s = rg_buffer_upload_f32(run->be, (char *)dst + off * run->es, run->dt, tmp, k);
    }
    free(tmp);
    return s;
}

/* a * b * c without size_t overflow. */
static bool mul3(size_t a, size_t b, size_t c, size_t *out) {
    if (a && b > SIZE_MAX / a) return false;
    if (a != 0 && b != 0 && c > SIZE_MAX / (a * b)) return false;
    *out = a * b * c;
    return true;
}

static int alloc_buffers(const attn_opts *o, attn_run *run) {
    size_t rows = 0;
    for (int b = 0; b < run->n_cases; b++) {
        const attn_case *c = &run->cases[b];
        size_t need = o->use[IMPL_PADDED] ? (size_t)c->cu_pad[c->n_seqs] : (size_t)c->tokens;
        if (need < (size_t)c->tokens) need = (size_t)c->tokens;
        if (need > rows) rows = need;
    }
    if ((size_t)run->sample.tokens > rows) rows = (size_t)run->sample.tokens;
    run->rows = rows;
    size_t bq, bk, blse;
    if (!mul3(rows, (size_t)o->heads * o->head_dim, run->es, &bq) ||
        !mul3(rows, (size_t)o->kv_heads * o->head_dim, run->es, &bk) || !mul3(rows, (size_t)o->heads, 4, &blse)) {
        return msg_error("buffers of %zu rows overflow size_t", rows);
    }
    struct { void **p; size_t bytes; bool need; const char *name; } bufs[] = {
        {&run->q, bq, true, "q"}, {&run->k, bk, true, "k"}, {&run->v, bk, true, "v"},
        {&run->o, bq, true, "o"}, {(void **)&run->lse, blse, true, "lse"},
        {&run->dout, bq, o->bwd, "dout"}, {&run->dq, bq, o->bwd, "dq"},
        {&run->dk, bk, o->bwd, "dk"}, {&run->dv, bk, o->bwd, "dv"},
    };
    double total = 0;
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        if (!bufs[i].need) continue;
        rg_status s = rg_buffer_alloc(run->be, bufs[i].bytes, bufs[i].p);
        if (s != RG_OK)
            return msg_fail(s, "allocating %s (%.1f MiB; %.1f MiB so far, for %zu rows)", bufs[i].name,
                        bufs[i].bytes / 1048576.0, total / 1048576.0, rows);
        total += (double)bufs[i].bytes;
    }
    uint64_t st = (uint64_t)o->seed ^ 0xA77E4710B3ull;
    size_t eq = bq / run->es, ek = bk / run->es;
    rg_status s = fill_random(run, run->q, eq, &st);
    if (s == RG_OK) s = fill_random(run, run->k, ek, &st);
    if (s == RG_OK) s = fill_random(run, run->v, ek, &st);
    if (s == RG_OK && o->bwd) s = fill_random(run, run->dout, eq, &st);
    if (s != RG_OK) return msg_fail(s, "uploading random inputs");
    return 0;
}

/* One forward (and backward when o->bwd) of impl on c; times in seconds. */
static int run_case(const attn_opts *o, attn_run *run, int impl, const attn_case *c, const char *what,
                    double *t_fwd, double *t_bwd) {
    rg_attn_desc d;
    memset(&d, 0, sizeof d);
    bool pad = impl == IMPL_PADDED;
    d.batch = c->n_seqs;
    d.n_heads = o->heads;
    d.n_kv_heads = o->kv_heads;
    d.head_dim = o->head_dim;
    d.cu_seqlens_q = d.cu_seqlens_k = pad ? c->cu_pad : c->cu;
    d.max_seqlen_q = d.max_seqlen_k = pad ? o->max_len : c->max_seqlen;
    d.causal = o->causal;
    d.algo = impl == IMPL_REF ? RG_ATTN_REFERENCE : RG_ATTN_FLASH;
    double t0 = bench_now();
    rg_status s = rg_attn_forward(run->be, &d, run->q, run->k, run->v, run->o, run->lse);
    if (s == RG_OK) s = rg_backend_sync(run->be);
    *t_fwd = bench_now() - t0;
    if (s != RG_OK) return msg_fail(s, "%s forward on %s", impl_label[impl], what);
    *t_bwd = 0;
    if (!o->bwd) return 0;
    t0 = bench_now();
    s = rg_attn_backward(run->be, &d, run->q, run->k, run->v, run->o, run->lse, run->dout, run->dq, run->dk, run->dv);
    if (s == RG_OK) s = rg_backend_sync(run->be);
    *t_bwd = bench_now() - t0;
    if (s != RG_OK) return msg_fail(s, "%s backward on %s", impl_label[impl], what);
    return 0;
}

static int alloc_result(attn_result *r, int reps) {
    r->fwd_s = calloc((size_t)reps, sizeof *r->fwd_s);
    r->bwd_s = calloc((size_t)reps, sizeof *r->bwd_s);
    return r->fwd_s && r->bwd_s ? 0 : -1;
}

/* Warm-up runs, then o->reps passes over the batches, interleaving the
 * implementations pass by pass so that a noisy spell hits them alike. */
static int timed_passes(const attn_opts *o, attn_run *run, const bool timed[N_IMPL]) {
    char what[64];
    double tf, tb;
    for (int i = 0; i < N_IMPL; i++) {
        if (!timed[i]) continue;
        if (alloc_result(&run->res[i], o->reps)) return msg_error("out of memory");
        run->res[i].n_batches = run->n_cases;
        for (int b = 0; b < run->n_cases; b++) {
            run->res[i].flops_fwd += run->cases[b].flops_fwd;
            run->res[i].tokens += run->cases[b].tokens;
        }
    }
    for (int p = 0; p < o->warmup + o->reps; p++) {
        bool warm = p < o->warmup;
        for (int i = 0; i < N_IMPL; i++) {
            if (!timed[i]) continue;
            if (warm && i == IMPL_PADDED && timed[IMPL_FLASH]) continue;   /* same kernel as flash, already warm */
            if (warm) {
                msg_step(&run->progress, "%s: warm-up %d/%d on batch 1", impl_label[i], p + 1, o->warmup);
                if (run_case(o, run, i, &run->cases[0], "batch 1", &tf, &tb)) return 1;
                continue;
            }
            int rep = p - o->warmup;
            msg_step(&run->progress, "%s: repetition %d/%d over %d batch%s", impl_label[i], rep + 1, o->reps, run->n_cases,
                     run->n_cases == 1 ? "" : "es");
            for (int b = 0; b < run->n_cases; b++) {
                snprintf(what, sizeof what, "batch %d", b + 1);
                if (run_case(o, run, i, &run->cases[b], what, &tf, &tb)) return 1;
                run->res[i].fwd_s[rep] += tf;
                run->res[i].bwd_s[rep] += tb;
            }
            run->res[i].n_reps = rep + 1;
        }
    }
    return 0;
}

/* Host copies of the outputs of the sample's last run. */
typedef struct outputs { float *o, *lse, *dq, *dk, *dv; } outputs;

static void outputs_free(outputs *x) { free(x->o); free(x->lse); free(x->dq); free(x->dk); free(x->dv); }

static rg_status download(const attn_opts *o, attn_run *run, const attn_case *c, outputs *x) {
    size_t nq = (size_t)c->tokens * o->heads * o->head_dim, nk = (size_t)c->tokens * o->kv_heads * o->head_dim;
    size_t nl = (size_t)c->tokens * o->heads;
    memset(x, 0, sizeof *x);
    x->o = malloc(nq * sizeof(float));
    x->lse = malloc(nl * sizeof(float));
    if (o->bwd) {
        x->dq = malloc(nq * sizeof(float));
        x->dk = malloc(nk * sizeof(float));
        x->dv = malloc(nk * sizeof(float));
    }
    if (!x->o || !x->lse || (o->bwd && (!x->dq || !x->dk || !x->dv))) return RG_ERR_OUT_OF_MEMORY;
    rg_status s = rg_buffer_download_f32(run->be, x->o, run->o, run->dt, nq);
    if (s == RG_OK) s = rg_buffer_download_f32(run->be, x->lse, run->lse, RG_DTYPE_F32, nl);
    if (s == RG_OK && o->bwd) s = rg_buffer_download_f32(run->be, x->dq, run->dq, run->dt, nq);
    if (s == RG_OK && o->bwd) s = rg_buffer_download_f32(run->be, x->dk, run->dk, run->dt, nk);
    if (s == RG_OK && o->bwd) s = rg_buffer_download_f32(run->be, x->dv, run->dv, run->dt, nk);
    return s;
}

/* ||got - ref|| / ||ref|| in double (0 when both are 0). */
static double rel_l2(const float *got, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)got[i] - ref[i];
        num += e * e;
        den += (double)ref[i] * ref[i];
    }
    if (den == 0) return num == 0 ? 0 : INFINITY;
    return sqrt(num / den);
}

/* The reference once on the sample (timed unless it is timed on the batches),
 * then, when asked, flash on the same sample compared with it. */
static int reference_sample(const attn_opts *o, attn_run *run) {
    double tf, tb;
    const attn_case *c = &run->sample;
    msg_step(&run->progress, "reference: one run on %d of %d sequences of batch 1", run->sample_seqs, run->sample_of);
    if (run_case(o, run, IMPL_REF, c, "the sample", &tf, &tb)) return 1;
    if (!o->ref_full) {
        attn_result *r = &run->res[IMPL_REF];
        if (alloc_result(r, 1)) return msg_error("out of memory");
        r->fwd_s[0] = tf;
        r->bwd_s[0] = tb;
        r->n_reps = r->n_batches = 1;
        r->flops_fwd = c->flops_fwd;
        r->tokens = c->tokens;
        r->is_sample = true;
    }
    if (!o->check) return 0;
    outputs ref, got;
    rg_status s = download(o, run, c, &ref);
    if (s != RG_OK) { outputs_free(&ref); return msg_fail(s, "downloading the reference's outputs"); }
    msg_step(&run->progress, "check: flash on the same sample");
    if (run_case(o, run, IMPL_FLASH, c, "the sample", &tf, &tb)) { outputs_free(&ref); return 1; }
    s = download(o, run, c, &got);
    if (s != RG_OK) { outputs_free(&ref); outputs_free(&got); return msg_fail(s, "downloading flash's outputs"); }
    size_t nq = (size_t)c->tokens * o->heads * o->head_dim, nk = (size_t)c->tokens * o->kv_heads * o->head_dim;
    struct { const char *name; const float *g, *r; size_t n; } t[] = {
        {"o", got.o, ref.o, nq}, {"lse", got.lse, ref.lse, (size_t)c->tokens * o->heads},
        {"dq", got.dq, ref.dq, nq}, {"dk", got.dk, ref.dk, nk}, {"dv", got.dv, ref.dv, nk},
    };
    int k = 0;
    double tol = run->dt == RG_DTYPE_F32 ? 1e-4 : 2e-2;   /* fp32 kernels agree to ~1e-6 */
    for (int i = 0; i < (o->bwd ? 5 : 2); i++) {
        double e = rel_l2(t[i].g, t[i].r, t[i].n);
        if (!(e <= tol)) run->check_failed = true;
        k += snprintf(run->check_text + k, sizeof run->check_text - (size_t)k, "%s%s %.1e", i ? ", " : "", t[i].name, e);
        if (k >= (int)sizeof run->check_text) break;
    }
    run->check_done = true;
    outputs_free(&ref);
    outputs_free(&got);
    return 0;
}

/* The peak, measured before (when = 0) and after (1) the attention runs: on a
 * shared machine one measurement can fall in a busy spell, so the larger of
 * the two medians is the ceiling quoted. A failure (no matmul op yet, out of
 * memory for a large --peak-n) leaves "% peak" empty and says why in a note. */
static void measure_peak(const attn_opts *o, attn_run *run, int when) {
    msg_step(&run->progress, "peak: %dx%d matmul%s", run->peak_n, run->peak_n, when ? " again" : "");
    double f = 0;
    rg_status s = rg_backend_measure_peak(run->be, run->peak_n, &f);
    if (s == RG_OK) {
        run->peak_at[when] = f;
        if (f > run->peak_flops) run->peak_flops = f;
        return;
    }
    if (when == 0) run->progress.total--;   /* no second measurement follows */
    if (run->peak_flops > 0) return;  /* the first one stands */
    snprintf(run->peak_why, sizeof run->peak_why, "%s: %s", rg_status_str(s), rg_last_error());
}

int attn_run_all(const attn_opts *o, attn_run *run) {
    bool cuda = !strcmp(o->backend, "cuda");
    rg_status s = rg_backend_init(cuda ? RG_BACKEND_CUDA : RG_BACKEND_CPU, o->threads, &run->be);
    if (s != RG_OK) {
        return msg_error("--backend %s: unavailable: %s", o->backend, rg_last_error());
    }
    run->dt = rg_backend_act_dtype(run->be);
    run->es = rg_dtype_size(run->dt);

    bool use_ref = o->use[IMPL_REF];
    if (use_ref && cuda) {
        snprintf(run->ref_skipped, sizeof run->ref_skipped, "not run: it runs on the CPU backend only");
        use_ref = false;
    }
    bool timed[N_IMPL] = {o->use[IMPL_FLASH], o->use[IMPL_PADDED], use_ref && o->ref_full};
    int n_timed = timed[0] + timed[1] + timed[2];
    bool sample = use_ref && (!o->ref_full || o->check);
    int n_warm = n_timed - (timed[IMPL_FLASH] && timed[IMPL_PADDED]);
    run->progress.total = 2 * o->peak + o->warmup * n_warm + o->reps * n_timed + (sample ? 1 + o->check : 0);
    double t_start = bench_now();

    if (o->peak) {
        run->peak_n = o->peak_n ? o->peak_n : cuda ? 8192 : 1024;
        measure_peak(o, run, 0);
    } else {
        snprintf(run->peak_why, sizeof run->peak_why, "--no-peak");
    }
    if (alloc_buffers(o, run)) return 1;
    if (timed_passes(o, run, timed)) return 1;
    if (sample && reference_sample(o, run)) return 1;
    if (run->peak_flops > 0) measure_peak(o, run, 1);
    msg_done(&run->progress, bench_now() - t_start);
    return 0;
}

double attn_extra_bytes(const attn_opts *o, const attn_run *run, int impl, bool bwd) {
    const attn_case *cs = run->res[impl].is_sample ? &run->sample : run->cases;
    int n = run->res[impl].is_sample ? 1 : run->n_cases;
    double worst = 0;
    for (int b = 0; b < n; b++) {
        double rows = impl == IMPL_PADDED ? (double)cs[b].cu_pad[cs[b].n_seqs] : (double)cs[b].tokens;
        double bytes = rows * o->heads * 4.0;   /* lse (h, rows) fp32 */
        if (impl == IMPL_PADDED) {
            /* padding rows of q, o (h heads) and k, v (h_kv heads); twice that with dout, dq, dk, dv */
            double per_row = (2.0 * o->heads + 2.0 * o->kv_heads) * o->head_dim * (double)run->es;
            bytes += (rows - cs[b].tokens) * per_row * (bwd ? 2 : 1);
        }
        if (bytes > worst) worst = bytes;
    }
    return worst;
}

void attn_run_free(attn_run *run) {
    if (run->be) {
        void *bufs[] = {run->q, run->k, run->v, run->o, run->lse, run->dout, run->dq, run->dk, run->dv};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) rg_buffer_free(run->be, bufs[i]);
        rg_backend_free(run->be);
    }
    for (int b = 0; b < run->n_cases; b++) case_free(&run->cases[b]);
    free(run->cases);
    case_free(&run->sample);
    for (int i = 0; i < N_IMPL; i++) { free(run->res[i].fwd_s); free(run->res[i].bwd_s); }
    memset(run, 0, sizeof *run);
}
