/* test_generate.c — generation on the CPU (fp32): the KV-cached forward
 * (prefill of a packed batch, then decode) gives the logits of a full
 * recomputation with rg_model_logits at every step (1e-5 relative; MHA and
 * GQA, final LayerNorm or not, blocks small enough to span many); the engine's
 * greedy tokens for prompts of lengths {1, 5, 17, 300} batched equal those of
 * one prompt at a time and the argmax of the recomputed logits; continuous
 * batching (small max batch, small pool, requests queued) gives the tokens of
 * static batching with the same seeds while sampling; the streamed tokens are
 * the polled ones; documented errors (empty prompt, too long, pool too small,
 * a backend lacking gather_rows); the gather_rows and argmax_rows ops
 * themselves and the bandwidth helper. */
#include "check.h"
#include "test_model_util.h"
#include "kv_util.h"
#include "backend.h"
#include "model/model.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rg_backend *be;

static bool fails_with(rg_status got, rg_status want, const char *needle, const char *label) {
    const char *m = rg_last_error();
    return CHECK(got == want && strstr(m, needle) != NULL, "%s: got %s \"%s\", expected %s mentioning \"%s\"",
                 label, rg_status_str(got), m, rg_status_str(want), needle);
}

/* Prefill of n prompts in one pass, then decode steps with random tokens;
 * every step's logits against the recomputation. */
static void test_cached_logits(rg_rng *rng, const char *label, rg_model_config cfg, int block_size) {
    enum { N = 4 };
    int32_t lens[N] = {1, 5, 13, 2 * block_size + 1};
    const int steps = 12, V = cfg.vocab_size;
    rg_model *m = tm_model(be, &cfg, rg_rng_u64(rng));
    tm_randomize(m, rng, 0.3);
    int32_t cap[N];
    for (int i = 0; i < N; i++) cap[i] = lens[i] + steps;
    int32_t **seqs = tm_random_seqs(rng, N, cap, V);
    rg_kv_cache *kv;
    rg_gen_scratch *g;
    TRY_OK(rg_kv_cache_init(be, cfg.n_layers, cfg.n_kv_heads, cfg.d_model / cfg.n_heads, block_size, 64, &kv));
    TRY_OK(rg_gen_scratch_init(m, 64, N, &g));
    int32_t ids[N] = {7, 3, 11, 0}, cu[N + 1], tokens[64];
    TRY_OK(kvt_prefill(kv, N, ids, seqs, lens, cu, tokens));
    float *got = malloc(sizeof(float) * N * V);
    TRY_OK(rg_model_forward_kv(m, g, kv, true, N, ids, cu, tokens, got));
    double worst = 0;
    for (int step = 0; step <= steps; step++) {
        float *ref = tm_last_logits(m, N, seqs, lens, V, cfg.max_seq_len);
        for (int i = 0; i < N; i++) {
            double e = rg_rel_err(got + (size_t)i * V, ref + (size_t)i * V, (size_t)V);
            if (e > worst) worst = e;
        }
        char what[160];
        snprintf(what, sizeof what, "%s: logits at step %d (%s)", label, step, step ? "decode" : "prefill");
        CHECK_CLOSE(what, got, ref, (size_t)N * V, 1e-5);
        free(ref);
        if (step == steps) break;
        int32_t dcu[N + 1], dtok[N];
        TRY_OK(kvt_decode_step(kv, N, ids, seqs, lens, dcu, dtok));
        TRY_OK(rg_model_forward_kv(m, g, kv, false, N, ids, dcu, dtok, got));
    }
    printf("%s: worst per-sequence relative error %.2e over %d steps\n", label, worst, steps + 1);
    /* A decode pass refuses a sequence bringing more than one token. */
    int32_t two[1] = {2}, c2[2] = {0, 2}, t2[2] = {1, 2};
    TRY_OK(rg_kv_cache_append(kv, 1, ids, two));
    fails_with(rg_model_forward_kv(m, g, kv, false, 1, ids, c2, t2, got), RG_ERR_INVALID_ARG, "exactly one",
               "decode with two new tokens");
    free(got);
    tm_free_seqs(seqs, N);
    rg_gen_scratch_free(g);
    rg_kv_cache_free(kv);
    rg_model_free(m);
}

/* Runs requests to completion; out[i] receives request i's tokens (n[i]). */
typedef struct run_log { int32_t tok[16][64]; int32_t n[16]; int32_t bad_order; } run_log;

static void on_token(void *user, int32_t req, int32_t index, int32_t token, rg_gen_finish fin) {
    run_log *lg = user;
    (void)fin;
    if (req < 0 || req >= 16 || index != lg->n[req] || index >= 64) { lg->bad_order++; return; }
    lg->tok[req][lg->n[req]++] = token;
}

static int run_all(rg_model *m, rg_generator_opts o, int n, const rg_gen_request *reqs, int32_t **out, int32_t *nout,
                   int *max_running, run_log *lg) {
    rg_generator *gen;
    if (lg) { memset(lg, 0, sizeof *lg); o.on_token = on_token; o.user = lg; }
    TRY_OK(rg_generator_create(m, &o, &gen));
    int32_t ids[16];
    for (int i = 0; i < n; i++) {
        TRY_OK(rg_generator_add(gen, &reqs[i], &ids[i]));
        CHECK(ids[i] == i, "request ids count from 0 (got %d for %d)", ids[i], i);
    }
    int steps = 0;
    *max_running = 0;
    while (rg_generator_n_pending(gen) > 0 && steps < 10000) {
        rg_gen_step_stats st;
        TRY_OK(rg_generator_step(gen, &st));
        if (st.running + st.finished > *max_running) *max_running = st.running + st.finished;
        steps++;
    }
    for (int i = 0; i < n; i++) {
        const int32_t *t;
        rg_gen_finish fin;
        TRY_OK(rg_generator_tokens(gen, ids[i], &t, &nout[i], &fin));
        CHECK(fin != RG_GEN_RUNNING, "request %d finished", i);
        CHECK(fin == RG_GEN_EOT ? t[nout[i] - 1] == reqs[i].eot_id : nout[i] == reqs[i].max_new_tokens,
              "request %d: finish reason %d agrees with its tokens (%d of %d)", i, (int)fin, nout[i],
              reqs[i].max_new_tokens);
        out[i] = malloc(sizeof(int32_t) * (size_t)(nout[i] ? nout[i] : 1));
        memcpy(out[i], t, sizeof(int32_t) * (size_t)nout[i]);
        if (lg)
            CHECK(lg->n[i] == nout[i] && !memcmp(lg->tok[i], t, sizeof(int32_t) * (size_t)nout[i]),
                  "request %d: streamed tokens equal the polled ones", i);
        TRY_OK(rg_generator_release(gen, ids[i]));
    }
    if (lg) CHECK(lg->bad_order == 0, "tokens streamed in order");
    rg_generator_free(gen);
    return steps;
}

static void test_batch_equals_single(rg_rng *rng) {
    enum { N = 4, NEW = 6 };
    int32_t lens[N] = {1, 5, 17, 300};
    rg_model_config cfg = tm_gpt2_like(2, 4, 4, 61, 320);
    rg_model *m = tm_model(be, &cfg, rg_rng_u64(rng));
    tm_randomize(m, rng, 0.5);
    int32_t **seqs = tm_random_seqs(rng, N, lens, cfg.vocab_size);
    rg_gen_request reqs[N];
    for (int i = 0; i < N; i++) {
        reqs[i] = (rg_gen_request){.prompt = seqs[i], .prompt_len = lens[i], .max_new_tokens = NEW, .eot_id = -1};
        rg_sampling_default(&reqs[i].sampling);
        reqs[i].sampling.greedy = true;
    }
    int32_t *batched[N], nb[N], *single[N], ns[N];
    int maxr;
    rg_generator_opts o = {.max_batch = N, .block_size = 16, .max_prefill_tokens = 400};
    int steps = run_all(m, o, N, reqs, batched, nb, &maxr, NULL);
    CHECK(steps == NEW && maxr == N, "all four prompts prefill together (%d steps, %d running)", steps, maxr);
    for (int i = 0; i < N; i++) {
        rg_generator_opts o1 = {.max_batch = 1};
        run_all(m, o1, 1, &reqs[i], &single[i], &ns[i], &maxr, NULL);
        CHECK(nb[i] == ns[i] && !memcmp(batched[i], single[i], sizeof(int32_t) * NEW),
              "prompt of %d tokens: batched greedy tokens equal one-at-a-time", lens[i]);
        /* And both are the argmax of the recomputed logits. */
        int32_t len = lens[i] + NEW, *full = malloc(sizeof(int32_t) * len);
        memcpy(full, seqs[i], sizeof(int32_t) * lens[i]);
        memcpy(full + lens[i], batched[i], sizeof(int32_t) * NEW);
        bool ok = true;
        for (int k = 0; k < NEW; k++) {
            int32_t l = lens[i] + k, *one[1] = {full};
            float *lg = tm_last_logits(m, 1, one, &l, cfg.vocab_size, cfg.max_seq_len);
            int32_t best = 0;
            for (int v = 1; v < cfg.vocab_size; v++) if (lg[v] > lg[best]) best = v;
            ok = ok && best == batched[i][k];
            free(lg);
        }
        CHECK(ok, "prompt of %d tokens: greedy tokens are the argmax of the recomputed logits", lens[i]);
        free(full);
        free(batched[i]);
        free(single[i]);
    }
    tm_free_seqs(seqs, N);
    rg_model_free(m);
}

static void test_continuous_equals_static(rg_rng *rng) {
    enum { N = 10 };
    rg_model_config cfg = tm_seed_like(2, 4, 2, 37, 96);   /* GQA */
    rg_model *m = tm_model(be, &cfg, rg_rng_u64(rng));
    tm_randomize(m, rng, 0.4);
    int32_t lens[N];
    for (int i = 0; i < N; i++) lens[i] = 1 + (int32_t)rg_rng_below(rng, 40);
    int32_t **seqs = tm_random_seqs(rng, N, lens, cfg.vocab_size);
    rg_gen_request reqs[N];
    for (int i = 0; i < N; i++) {
        reqs[i] = (rg_gen_request){.prompt = seqs[i], .prompt_len = lens[i],
                                   .max_new_tokens = 3 + (int32_t)rg_rng_below(rng, 30), .eot_id = -1};
        rg_sampling *s = &reqs[i].sampling;
        rg_sampling_default(s);
        s->temperature = 0.8f + 0.1f * (i % 4);
        s->top_k = i % 2 ? 0 : 12;
        s->top_p = i % 3 ? 0.9f : 1.0f;
        s->repetition_penalty = i % 2 ? 1.3f : 1.0f;
        s->seed = rg_rng_u64(rng);
    }
    int32_t *st[N], nst[N], *ct[N], nct[N];
    int max_static, max_cont;
    run_log *lg = malloc(sizeof *lg);
    rg_generator_opts os = {.max_batch = N, .max_prefill_tokens = 512};
    /* Two thirds of the requests stop early: their EOT is the token they
     * sample third when nothing stops them (or earlier, if it came before). */
    run_all(m, os, N, reqs, st, nst, &max_static, NULL);
    for (int i = 0; i < N; i++) {
        if (i % 3) reqs[i].eot_id = st[i][2];
        free(st[i]);
    }
    int steps_static = run_all(m, os, N, reqs, st, nst, &max_static, lg);
    /* Three running at most and a pool of 12 blocks of 8: requests wait for slots and for blocks. */
    rg_generator_opts oc = {.max_batch = 3, .block_size = 8, .n_blocks = 12};
    int steps_cont = run_all(m, oc, N, reqs, ct, nct, &max_cont, lg);
    CHECK(max_static == N && max_cont <= 3 && steps_cont > steps_static,
          "static runs %d at once in %d steps, continuous at most 3 (got %d) in more steps (%d)", max_static,
          steps_static, max_cont, steps_cont);
    int early = 0;
    for (int i = 0; i < N; i++) {
        CHECK(nst[i] == nct[i] && !memcmp(st[i], ct[i], sizeof(int32_t) * (size_t)nst[i]),
              "request %d: continuous batching gives the static tokens (%d vs %d tokens)", i, nct[i], nst[i]);
        early += nst[i] < reqs[i].max_new_tokens;
        if (i % 3) CHECK(nst[i] <= 3 && st[i][nst[i] - 1] == reqs[i].eot_id, "request %d stops at its EOT", i);
        free(st[i]);
        free(ct[i]);
    }
    CHECK(early >= 1, "some requests stopped early (%d)", early);
    printf("continuous vs static: %d steps vs %d, %d of %d requests stopped at EOT\n", steps_cont, steps_static,
           early, N);
    free(lg);
    tm_free_seqs(seqs, N);
    rg_model_free(m);
}

static void test_errors(rg_rng *rng) {
    rg_model_config cfg = tm_gpt2_like(1, 2, 2, 32, 24);
    rg_model *m = tm_model(be, &cfg, rg_rng_u64(rng));
    rg_generator *g;
    rg_generator_opts o = {.max_batch = 2, .block_size = 4, .n_blocks = 5};
    TRY_OK(rg_generator_create(m, &o, &g));
    int32_t p[30] = {0}, id = -1;
    rg_gen_request r = {.prompt = p, .prompt_len = 0, .max_new_tokens = 4, .eot_id = -1};
    rg_sampling_default(&r.sampling);
    fails_with(rg_generator_add(g, &r, &id), RG_ERR_INVALID_ARG, "empty prompt", "empty prompt");
    r.prompt_len = 25;
    fails_with(rg_generator_add(g, &r, &id), RG_ERR_INVALID_ARG, "longer than the model's max_seq_len", "prompt too long");
    r.prompt_len = 20;
    r.max_new_tokens = 5;
    fails_with(rg_generator_add(g, &r, &id), RG_ERR_INVALID_ARG, "lower max_new_tokens to 4", "prompt + new too long");
    r.max_new_tokens = 4;   /* 23 tokens in the cache: 6 blocks of 4 > 5 */
    fails_with(rg_generator_add(g, &r, &id), RG_ERR_EXHAUSTED, "needs 6 blocks of 4 tokens", "pool too small");
    r.prompt_len = 3;
    r.sampling.top_p = 0;
    fails_with(rg_generator_add(g, &r, &id), RG_ERR_INVALID_ARG, "top_p", "bad top_p");
    r.sampling.top_p = 1;
    p[1] = 32;
    fails_with(rg_generator_add(g, &r, &id), RG_ERR_INVALID_ARG, "outside [0, 32)", "token outside the vocabulary");
    p[1] = 0;
    CHECK(rg_generator_n_pending(g) == 0, "refused requests leave nothing queued");
    /* Two requests of 4 blocks each on a pool of 5: the second waits for the first. */
    r.prompt_len = 10;
    r.max_new_tokens = 6;
    int32_t a, b;
    TRY_OK(rg_generator_add(g, &r, &a));
    TRY_OK(rg_generator_add(g, &r, &b));
    rg_gen_step_stats st;
    TRY_OK(rg_generator_step(g, &st));
    CHECK(st.prefill_seqs == 1 && st.waiting == 1, "the second request waits for blocks (prefilled %d, waiting %d)",
          st.prefill_seqs, st.waiting);
    fails_with(rg_generator_release(g, a), RG_ERR_INVALID_ARG, "has not finished", "release while running");
    int steps = 1;
    while (rg_generator_n_pending(g) && steps < 100) { TRY_OK(rg_generator_step(g, &st)); steps++; }
    const int32_t *t;
    int32_t n;
    rg_gen_finish fin;
    TRY_OK(rg_generator_tokens(g, b, &t, &n, &fin));
    CHECK(n == 6 && fin == RG_GEN_LENGTH && steps == 12, "the waiting request ran after the first (%d steps)", steps);
    TRY_OK(rg_generator_step(g, &st));
    CHECK(st.prefill_seqs == 0 && st.decode_tokens == 0, "a step with nothing to do does nothing");
    rg_generator_free(g);

    /* A backend without gather_rows is refused up front. */
    static rg_backend_ops ops;
    ops = *be->ops;
    ops.gather_rows = NULL;
    rg_backend fake = *be;
    fake.ops = &ops;
    rg_model *m2 = tm_model(&fake, &cfg, 1);
    g = NULL;
    fails_with(rg_generator_create(m2, &o, &g), RG_ERR_UNSUPPORTED, "backend cpu lacks gather_rows", "no gather_rows");
    CHECK(g == NULL, "no generator on failure");
    rg_model_free(m2);
    rg_model_free(m);
}

/* The gather_rows op against a plain copy: repeated and out-of-order rows,
 * sentinels around the output. */
static void test_gather(rg_rng *rng) {
    const int C = 37, R = 50, n = 23;
    float *inp = malloc(sizeof(float) * R * C), *out = rg_guarded_alloc((size_t)n * C), *ref = malloc(sizeof(float) * n * C);
    int32_t rows[23];
    for (int i = 0; i < R * C; i++) inp[i] = (float)rg_rng_normal(rng);
    for (int i = 0; i < n; i++) {
        rows[i] = i < 3 ? R - 1 - i : (int32_t)rg_rng_below(rng, R);
        memcpy(ref + (size_t)i * C, inp + (size_t)rows[i] * C, sizeof(float) * C);
    }
    TRY_OK(be->ops->gather_rows(be, out, inp, rows, n, C));
    CHECK(!memcmp(out, ref, sizeof(float) * n * C) && rg_guarded_ok(out, (size_t)n * C, "gather out"),
          "gather_rows copies the asked rows exactly, nothing outside");
    rg_guarded_free(out);
    free(inp);
    free(ref);
}

/* argmax_rows: rows of small integers (many ties: the first maximum wins),
 * an all -inf row, V = 1 and V off any vector width. */
static void test_argmax(rg_rng *rng) {
    static const int Vs[] = {1, 7, 1000, 50257};
    for (size_t k = 0; k < sizeof Vs / sizeof Vs[0]; k++) {
        const int V = Vs[k], n = 9;
        int32_t ref[9];
        float *x = tm_argmax_case(rng, n, V, 2, ref);
        float *guard = rg_guarded_alloc(n);   /* n int32 in a guarded float buffer */
        int32_t *out = (int32_t *)guard;
        bool ok = true;
        TRY_OK(be->ops->argmax_rows(be, out, x, n, V));
        for (int i = 0; i < n; i++) ok = ok && out[i] == ref[i];
        CHECK(ok && rg_guarded_ok(guard, n, "argmax out"), "argmax_rows, V = %d: the first maximum of each row", V);
        rg_guarded_free(guard);
        free(x);
    }
}

/* The bandwidth helper the decode floor divides by. */
static void test_bandwidth(void) {
    double bw = 0;
    TRY_OK(rg_backend_measure_bandwidth(be, (size_t)4 << 20, &bw));
    CHECK(isfinite(bw) && bw > 1e6, "measured bandwidth %.3g B/s is positive and finite", bw);
    fails_with(rg_backend_measure_bandwidth(be, 1000, &bw), RG_ERR_INVALID_ARG, "1 MiB", "bandwidth of 1000 bytes");
    fails_with(rg_backend_measure_bandwidth(be, (size_t)4 << 20, NULL), RG_ERR_INVALID_ARG, "NULL", "NULL output");
}

int main(void) {
    rg_rng rng;
    rg_test_init("test_generate", &rng);
    TRY_OK(rg_backend_init(RG_BACKEND_CPU, 0, &be));
    test_cached_logits(&rng, "seed-like MHA, block 4", tm_seed_like(2, 4, 4, 53, 64), 4);
    test_cached_logits(&rng, "gpt2-like GQA 4/2, block 16", tm_gpt2_like(3, 4, 2, 50, 64), 16);
    test_cached_logits(&rng, "gpt2-like MQA 4/1, block 3", tm_gpt2_like(2, 4, 1, 47, 64), 3);
    test_batch_equals_single(&rng);
    test_continuous_equals_static(&rng);
    test_errors(&rng);
    test_gather(&rng);
    test_argmax(&rng);
    test_bandwidth();
    rg_backend_free(be);
    return rg_test_finish();
}
