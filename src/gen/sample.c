/* sample.c — next-token sampling (ragged.h rg_sampling): penalty, greedy,
 * temperature, top-k, top-p, then an inverse-CDF draw in double. */
#include "gen/sample.h"
#include "core/alloc.h"
#include "core/status.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

void rg_sampling_default(rg_sampling *out) {
    if (!out) return;
    *out = (rg_sampling){.greedy = false, .temperature = 1.0f, .top_k = 0, .top_p = 1.0f,
                         .repetition_penalty = 1.0f, .seed = 0};
}

rg_status rg_sampling_validate(const rg_sampling *s) {
    const char *fn = "rg_sampling_validate";
    if (!s) return rg_fail(RG_ERR_INVALID_ARG, "%s: settings are NULL", fn);
    if (!isfinite(s->temperature))
        return rg_fail(RG_ERR_INVALID_ARG, "%s: temperature is not finite", fn);
    if (s->top_k < 0) return rg_fail(RG_ERR_INVALID_ARG, "%s: top_k = %d, expected >= 0", fn, s->top_k);
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f))
        return rg_fail(RG_ERR_INVALID_ARG, "%s: top_p = %g, expected in (0, 1]", fn, (double)s->top_p);
    if (!(s->repetition_penalty > 0.0f) || !isfinite(s->repetition_penalty))
        return rg_fail(RG_ERR_INVALID_ARG, "%s: repetition_penalty = %g, expected a finite value > 0", fn,
                       (double)s->repetition_penalty);
    return RG_OK;
}

rg_status rg_sample_ws_init(int32_t V, rg_sample_ws *ws) {
    memset(ws, 0, sizeof *ws);
    ws->V = V;
    rg_status s = rg_alloc((void **)&ws->cand, (size_t)V, sizeof *ws->cand, "sampler candidates");
    if (s == RG_OK) s = rg_alloc((void **)&ws->p, (size_t)V, sizeof *ws->p, "sampler probabilities");
    if (s == RG_OK) s = rg_calloc((void **)&ws->seen, (size_t)V, 1, "sampler seen set");
    if (s != RG_OK) rg_sample_ws_free(ws);
    return s;
}

void rg_sample_ws_free(rg_sample_ws *ws) {
    rg_free(ws->cand);
    rg_free(ws->p);
    rg_free(ws->seen);
    memset(ws, 0, sizeof *ws);
}

static void penalize_list(rg_sample_ws *ws, float *logits, float penalty, const int32_t *t, int32_t n) {
    for (int32_t i = 0; i < n; i++) {
        int32_t id = t[i];
        if (ws->seen[id]) continue;
        ws->seen[id] = 1;
        logits[id] = logits[id] > 0 ? logits[id] / penalty : logits[id] * penalty;
    }
}

void rg_sample_penalize(rg_sample_ws *ws, float *logits, float penalty, const int32_t *a, int32_t na,
                        const int32_t *b, int32_t nb) {
    if (penalty == 1.0f) return;
    penalize_list(ws, logits, penalty, a, na);
    penalize_list(ws, logits, penalty, b, nb);
    for (int32_t i = 0; i < na; i++) ws->seen[a[i]] = 0;
    for (int32_t i = 0; i < nb; i++) ws->seen[b[i]] = 0;
}

static int32_t argmax(const float *x, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Descending value, then ascending id: a total order, so ties are deterministic. */
static int cmp_cand(const void *pa, const void *pb) {
    const rg_sample_cand *a = pa, *b = pb;
    if (a->v != b->v) return a->v > b->v ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* True when a ranks after b in cmp_cand's order. */
static bool after(rg_sample_cand a, rg_sample_cand b) { return cmp_cand(&a, &b) > 0; }

/* Restores a heap below i: with best_on_top the root is the first candidate of
 * cmp_cand's order, otherwise the last. */
static void sift_down(rg_sample_cand *h, int32_t n, int32_t i, bool best_on_top) {
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && (best_on_top ? after(h[w], h[l]) : after(h[l], h[w]))) w = l;
        if (r < n && (best_on_top ? after(h[w], h[r]) : after(h[r], h[w]))) w = r;
        if (w == i) return;
        rg_sample_cand t = h[i]; h[i] = h[w]; h[w] = t;
        i = w;
    }
}

/* The k first candidates of cmp_cand's order into c[0..k), sorted: a heap
 * whose root is the worst kept one, O(V log k) instead of a full sort. */
static void top_k(rg_sample_cand *c, const float *logits, int32_t V, int32_t k) {
    for (int32_t i = 0; i < k; i++) c[i] = (rg_sample_cand){logits[i], i};
    for (int32_t i = k / 2 - 1; i >= 0; i--) sift_down(c, k, i, false);
    for (int32_t i = k; i < V; i++) {
        rg_sample_cand x = {logits[i], i};
        if (after(x, c[0])) continue;
        c[0] = x;
        sift_down(c, k, 0, false);
    }
    qsort(c, (size_t)k, sizeof *c, cmp_cand);
}

/* top-p without top-k: candidates leave a heap of the whole vocabulary in
 * cmp_cand's order until their mass reaches top_p of the total, O(V + kept
 * log V) rather than a sort of V for every token. The popped candidates
 * collect at the end of the heap's array, best last. */
static int32_t pick_top_p(rg_sample_ws *ws, const rg_sampling *s, rg_rng *rng, const float *logits) {
    const int32_t V = ws->V;
    rg_sample_cand *h = ws->cand;
    double *p = ws->p, inv_t = 1.0 / (double)s->temperature, total = 0;
    for (int32_t i = 0; i < V; i++) h[i] = (rg_sample_cand){logits[i], i};
    for (int32_t i = V / 2 - 1; i >= 0; i--) sift_down(h, V, i, true);
    const double mx = (double)h[0].v;
    for (int32_t i = 0; i < V; i++) total += exp(((double)logits[i] - mx) * inv_t);
    /* Smallest prefix whose probability reaches top_p (HF: drop the tail of mass <= 1 - top_p). */
    double target = (double)s->top_p * total, cum = 0;
    int32_t n = V, keep = 0;
    do {
        rg_sample_cand top = h[0];
        h[0] = h[--n];
        h[n] = top;
        sift_down(h, n, 0, true);
        p[keep] = exp(((double)top.v - mx) * inv_t);
        cum += p[keep++];
    } while (n > 0 && cum < target);
    double u = rg_rng_uniform(rng) * cum, acc = 0;
    for (int32_t k = 0; k < keep; k++) {
        acc += p[k];
        if (u < acc) return h[V - 1 - k].id;
    }
    return h[V - keep].id;   /* rounding left u at the very top */
}

bool rg_sample_is_greedy(const rg_sampling *s) { return s->greedy || s->temperature <= 0.0f || s->top_k == 1; }

int32_t rg_sample_pick(rg_sample_ws *ws, const rg_sampling *s, rg_rng *rng, const float *logits) {
    const int32_t V = ws->V;
    if (rg_sample_is_greedy(s)) return argmax(logits, V);
    bool by_k = s->top_k > 0 && s->top_k < V;
    if (!by_k && s->top_p < 1.0f) return pick_top_p(ws, s, rng, logits);
    rg_sample_cand *c = ws->cand;
    double *p = ws->p;
    int32_t n = V;
    /* Only top-k needs an order here: a heap selection of the k first. */
    if (by_k) {
        n = s->top_k;
        top_k(c, logits, V, n);
    } else {
        for (int32_t i = 0; i < V; i++) c[i] = (rg_sample_cand){logits[i], i};
    }
    double mx = -INFINITY, inv_t = 1.0 / (double)s->temperature, sum = 0;
    for (int32_t i = 0; i < n; i++) mx = fmax(mx, (double)c[i].v);
    for (int32_t i = 0; i < n; i++) { p[i] = exp(((double)c[i].v - mx) * inv_t); sum += p[i]; }
    if (s->top_p < 1.0f) {
        /* Smallest prefix whose probability reaches top_p (HF: drop the tail of mass <= 1 - top_p). */
        double cum = 0, target = (double)s->top_p * sum;
        int32_t keep = 0;
        while (keep < n && cum < target) cum += p[keep++];
        n = keep > 0 ? keep : 1;
        sum = 0;
        for (int32_t i = 0; i < n; i++) sum += p[i];
    }
    double u = rg_rng_uniform(rng) * sum, cum = 0;
    for (int32_t i = 0; i < n; i++) {
        cum += p[i];
        if (u < cum) return c[i].id;
    }
    return c[n - 1].id;   /* rounding left u at the very top */
}
