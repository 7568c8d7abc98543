/* test_sample.c — next-token sampling against plain references: greedy,
 * temperature 0 and top-k 1 are the argmax; HF's repetition penalty (divide
 * positive logits, multiply negative ones, once per distinct token of the
 * prompt and the output); empirical distributions of temperature, top-k,
 * top-p and both together against the exact renormalised probabilities
 * (computed here in double), with a bound derived from the number of draws;
 * a seed gives the same stream; settings out of range are refused. */
#include "check.h"
#include "ragged.h"
#include "gen/sample.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRY_OK(expr) do { rg_status s_ = (expr); if (s_ != RG_OK) { \
    CHECK(false, "%s failed: %s (%s)", #expr, rg_status_str(s_), rg_last_error()); exit(rg_test_finish()); } } while (0)

static void random_logits(rg_rng *rng, float *x, int V, double scale) {
    for (int i = 0; i < V; i++) x[i] = (float)(scale * rg_rng_normal(rng));
}

static void test_argmax(rg_rng *rng) {
    const int V = 1000;
    rg_sample_ws ws;
    TRY_OK(rg_sample_ws_init(V, &ws));
    float *x = malloc(sizeof(float) * V);
    bool ok = true;
    for (int trial = 0; trial < 50; trial++) {
        random_logits(rng, x, V, 3.0);
        int best = 0;
        for (int i = 1; i < V; i++) if (x[i] > x[best]) best = i;
        rg_sampling s;
        rg_sampling_default(&s);
        s.seed = rg_rng_u64(rng);
        rg_rng r;
        rg_rng_seed(&r, s.seed);
        s.top_k = 1;
        ok = ok && rg_sample_pick(&ws, &s, &r, x) == best;
        s.top_k = 0;
        s.temperature = 0;
        ok = ok && rg_sample_pick(&ws, &s, &r, x) == best;
        s.temperature = 1;
        s.greedy = true;
        s.top_p = 0.5f;
        ok = ok && rg_sample_pick(&ws, &s, &r, x) == best;
    }
    CHECK(ok, "top_k = 1, temperature 0 and greedy all give the argmax");
    /* A tie goes to the lower id, for greedy and top-k = 1 alike. */
    for (int i = 0; i < V; i++) x[i] = -1;
    x[700] = x[300] = 2;
    rg_sampling s;
    rg_sampling_default(&s);
    s.greedy = true;
    rg_rng r;
    rg_rng_seed(&r, 1);
    CHECK(rg_sample_pick(&ws, &s, &r, x) == 300, "greedy tie goes to the lower id");
    s.greedy = false;
    s.top_k = 1;
    CHECK(rg_sample_pick(&ws, &s, &r, x) == 300, "top-k 1 tie goes to the lower id");
    /* Four tied leaders, top-k 2: only the two lowest ids may come out, both do. */
    for (int i = 0; i < V; i++) x[i] = 0;
    x[940] = x[7] = x[523] = x[12] = 2;
    s.top_k = 2;
    int hits[2] = {0, 0}, other = 0;
    for (int i = 0; i < 400; i++) {
        int32_t t = rg_sample_pick(&ws, &s, &r, x);
        if (t == 7) hits[0]++;
        else if (t == 12) hits[1]++;
        else other++;
    }
    CHECK(other == 0 && hits[0] > 0 && hits[1] > 0, "top-k 2 over four tied leaders keeps ids 7 and 12 (%d, %d, other %d)",
          hits[0], hits[1], other);
    free(x);
    rg_sample_ws_free(&ws);
}

static void test_penalty(rg_rng *rng) {
    const int V = 50;
    rg_sample_ws ws;
    TRY_OK(rg_sample_ws_init(V, &ws));
    float x[50], ref[50];
    int32_t a[20], b[15];
    for (int trial = 0; trial < 20; trial++) {
        random_logits(rng, x, V, 2.0);
        for (int i = 0; i < 20; i++) a[i] = (int32_t)rg_rng_below(rng, 12);   /* repeats on purpose */
        for (int i = 0; i < 15; i++) b[i] = (int32_t)rg_rng_below(rng, V);
        float pen = 0.5f + (float)rg_rng_uniform(rng) * 2.0f;
        /* Reference: the set of tokens, then HF's rule once each. */
        bool in[50] = {false};
        for (int i = 0; i < 20; i++) in[a[i]] = true;
        for (int i = 0; i < 15; i++) in[b[i]] = true;
        for (int v = 0; v < V; v++) ref[v] = in[v] ? (x[v] > 0 ? x[v] / pen : x[v] * pen) : x[v];
        rg_sample_penalize(&ws, x, pen, a, 20, b, 15);
        CHECK(!memcmp(x, ref, sizeof x), "trial %d: repetition penalty %.3f as HF defines it", trial, (double)pen);
        bool clean = true;
        for (int v = 0; v < V; v++) clean = clean && ws.seen[v] == 0;
        CHECK(clean, "trial %d: the workspace's seen set is cleared", trial);
    }
    random_logits(rng, x, V, 2.0);
    memcpy(ref, x, sizeof x);
    rg_sample_penalize(&ws, x, 1.0f, a, 20, b, 15);
    CHECK(!memcmp(x, ref, sizeof x), "penalty 1 changes nothing");
    rg_sample_ws_free(&ws);
}

/* Exact distribution of settings s over logits x (V), in double: temperature,
 * top-k (ties by lower id), softmax, top-p prefix, renormalised. */
static void reference_probs(const float *x, int V, const rg_sampling *s, double *p) {
    int *ord = malloc(sizeof(int) * V);
    for (int i = 0; i < V; i++) ord[i] = i;
    for (int i = 1; i < V; i++)   /* insertion sort: descending value, ascending id */
        for (int j = i; j > 0 && (x[ord[j]] > x[ord[j - 1]] || (x[ord[j]] == x[ord[j - 1]] && ord[j] < ord[j - 1])); j--) {
            int t = ord[j]; ord[j] = ord[j - 1]; ord[j - 1] = t;
        }
    int n = s->top_k > 0 && s->top_k < V ? s->top_k : V;
    double z = 0, *e = calloc((size_t)V, sizeof(double));
    for (int i = 0; i < n; i++) { e[i] = exp(((double)x[ord[i]] - x[ord[0]]) / s->temperature); z += e[i]; }
    if (s->top_p < 1) {
        double cum = 0;
        int keep = 0;
        while (keep < n && cum < s->top_p) cum += e[keep++] / z;
        n = keep;
        z = 0;
        for (int i = 0; i < n; i++) z += e[i];
    }
    for (int i = 0; i < V; i++) p[i] = 0;
    for (int i = 0; i < n; i++) p[ord[i]] = e[i] / z;
    free(e);
    free(ord);
}

static void test_distributions(rg_rng *rng) {
    const int V = 12;
    const int N = rg_test_quick() ? 40000 : 200000;
    /* ties: logits rounded to integers, so that equal values straddle the top-k / top-p cut
     * (the kept ones must be the lower ids). */
    struct { float t; int k; float p; bool ties; const char *what; } cases[] = {
        {1.0f, 0, 1.0f, false, "temperature 1"}, {0.6f, 0, 1.0f, false, "temperature 0.6"},
        {1.7f, 4, 1.0f, false, "top-k 4, T 1.7"}, {1.0f, 0, 0.8f, false, "top-p 0.8"},
        {0.9f, 7, 0.6f, false, "top-k 7 + top-p 0.6, T 0.9"}, {1.0f, 5, 1.0f, true, "top-k 5 over tied logits"},
        {1.2f, 0, 0.7f, true, "top-p 0.7 over tied logits"}, {1.0f, 9, 0.9f, true, "top-k 9 + top-p 0.9, tied"},
    };
    rg_sample_ws ws;
    TRY_OK(rg_sample_ws_init(V, &ws));
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        float x[12];
        random_logits(rng, x, V, 1.5);
        if (cases[c].ties)
            for (int v = 0; v < V; v++) x[v] = roundf(x[v]);
        rg_sampling s;
        rg_sampling_default(&s);
        s.temperature = cases[c].t;
        s.top_k = cases[c].k;
        s.top_p = cases[c].p;
        s.seed = rg_rng_u64(rng);
        TRY_OK(rg_sampling_validate(&s));
        double p[12];
        reference_probs(x, V, &s, p);
        long count[12] = {0};
        rg_rng r;
        rg_rng_seed(&r, s.seed);
        for (int i = 0; i < N; i++) {
            int32_t t = rg_sample_pick(&ws, &s, &r, x);
            if (t >= 0 && t < V) count[t]++;
        }
        /* Each count is binomial(N, p): within 5 standard deviations (plus one
         * draw) with probability > 1 - 1e-5 per token; a token outside the
         * kept set must never appear. */
        bool ok = true;
        double worst = 0;
        for (int v = 0; v < V; v++) {
            double f = (double)count[v] / N, sd = sqrt(p[v] * (1 - p[v]) / N), dev = fabs(f - p[v]);
            if (p[v] == 0) ok = ok && count[v] == 0;
            else ok = ok && dev <= 5 * sd + 1.0 / N;
            if (sd > 0 && dev / sd > worst) worst = dev / sd;
        }
        CHECK(ok, "%s: %d draws match the renormalised probabilities (worst %.2f sd)", cases[c].what, N, worst);
    }
    rg_sample_ws_free(&ws);
}

static void test_seed_and_validate(rg_rng *rng) {
    const int V = 30;
    rg_sample_ws ws;
    TRY_OK(rg_sample_ws_init(V, &ws));
    float x[30];
    random_logits(rng, x, V, 1.0);
    rg_sampling s;
    rg_sampling_default(&s);
    s.seed = rg_rng_u64(rng);
    rg_rng r1, r2;
    rg_rng_seed(&r1, s.seed);
    rg_rng_seed(&r2, s.seed);
    bool same = true;
    for (int i = 0; i < 200; i++) same = same && rg_sample_pick(&ws, &s, &r1, x) == rg_sample_pick(&ws, &s, &r2, x);
    CHECK(same, "one seed, one stream");
    rg_sample_ws_free(&ws);
    struct { float t; int k; float p, pen; const char *needle; } bad[] = {
        {NAN, 0, 1, 1, "temperature"}, {1, -1, 1, 1, "top_k"}, {1, 0, 0, 1, "top_p"}, {1, 0, 1.5f, 1, "top_p"},
        {1, 0, 1, 0, "repetition_penalty"}, {1, 0, 1, INFINITY, "repetition_penalty"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rg_sampling b;
        rg_sampling_default(&b);
        b.temperature = bad[i].t;
        b.top_k = bad[i].k;
        b.top_p = bad[i].p;
        b.repetition_penalty = bad[i].pen;
        rg_status st = rg_sampling_validate(&b);
        CHECK(st == RG_ERR_INVALID_ARG && strstr(rg_last_error(), bad[i].needle), "bad setting %zu refused naming %s",
              i, bad[i].needle);
    }
    CHECK(rg_sampling_validate(NULL) == RG_ERR_INVALID_ARG, "NULL settings refused");
}

int main(void) {
    rg_rng rng;
    rg_test_init("test_sample", &rng);
    test_argmax(&rng);
    test_penalty(&rng);
    test_distributions(&rng);
    test_seed_and_validate(&rng);
    return rg_test_finish();
}
