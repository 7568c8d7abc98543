/* test_gelu.c — the vectorised exact GELU (src/cpu/gelu.c) against double erfc-based
 * references: strided sweeps of every float in [-12, 12] and of the whole float line,
 * random floats, special values, and the backend ops (sizes, aliasing, sentinels). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "check.h"
#include "cpu/cpu.h"

/* The bound, in ulps of the fp32 result (the spacing of floats at |ref|), wherever
 * the result is a normal float. Why 4: on the large-|x| side the result is a chain
 * of about six fp32 roundings (exp's polynomial and reduction, t = (a-K)/(a+K), the
 * polynomial H or V, two or three products), each a relative 2^-25..2^-24, i.e.
 * up to 1/2..1 ulp of a result near the top of its binade, plus the fit's own error
 * (<= 0.7 ulp, scripts/gelu_coeffs.py prints it): a worst case near 6, but
 * the roundings do not all line up. An exhaustive run over every float with |x| in
 * [1e-38, 14.5] (beyond, the results are x or +-0) measured at most 3.79 ulp (gelu,
 * x = -5.476) and 3.94 ulp (gelu', x = -1.769) (bench/NOTES.md); every operation is
 * IEEE (no fast-math), so every build with fused multiply-add gives those bits.
 * Builds without it (FP_FAST_FMAF undefined, e.g. x86 without -march=native: the
 * sanitizer run) round a * b + c twice; the same exhaustive run there measured
 * 4.29 ulp for both, hence 4.5. gelu' is held to the bound right up to its zero at
 * x ~ -0.7518. dinp = dout * gelu' rounds once more: GRAD_ULP + 1/2. Below FLT_MIN
 * the result must be within SUB_ABS of the truth (the subnormal spacing is 2^-149). */
#ifdef FP_FAST_FMAF
#define GELU_ULP 4.0
#define GRAD_ULP 4.0
#else
#define GELU_ULP 4.5
#define GRAD_ULP 4.5
#endif
#define SUB_ABS 0x1p-148

static double ref_fwd(double x) { return 0.5 * x * erfc(-x / sqrt(2.0)); }
static double ref_grad(double x) {
    return 0.5 * erfc(-x / sqrt(2.0)) + x * exp(-0.5 * x * x) / sqrt(2.0 * 3.14159265358979323846);
}

static float from_bits(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}
static uint32_t to_bits(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

/* Error of got in ulps of ref (ref a normal float's magnitude), or -1 when ref is
 * below FLT_MIN and got is within SUB_ABS (-2 when it is not). */
/* One float ulp at the magnitude of v (v normal). */
static double ulp_of(double v) {
    int e;
    frexp(v, &e);
    return ldexp(1.0, e - 24);
}

static double ulp_err(float got, double ref) {
    if (fabs(ref) < FLT_MIN) return fabs((double)got - ref) <= SUB_ABS ? -1.0 : -2.0;
    int e;
    frexp(ref, &e);   /* |ref| in [2^(e-1), 2^e): ulp 2^(e-24) */
    return fabs((double)got - ref) / ldexp(1.0, e - 24);
}

typedef struct {
    double fwd, grad;   /* worst ulps seen */
    float fwd_at, grad_at;
    int64_t n, bad;
} stats;

/* Runs a batch of finite inputs through both spans and scores them. */
#define BATCH 4096
static void score(stats *s, const float *x, int64_t n) {
    static float y[BATCH], g[BATCH], one[BATCH];
    for (int64_t i = 0; i < n; i++) one[i] = 1.0f;
    rg_cpu_gelu_erf_span(y, x, n);
    rg_cpu_gelu_erf_grad_span(g, x, one, n);   /* dout = 1: exactly gelu' */
    for (int64_t i = 0; i < n; i++) {
        double ef = ulp_err(y[i], ref_fwd(x[i])), eg = ulp_err(g[i], ref_grad(x[i]));
        if (ef > s->fwd) s->fwd = ef, s->fwd_at = x[i];
        if (eg > s->grad) s->grad = eg, s->grad_at = x[i];
        if (ef == -2.0 || eg == -2.0 || ef > GELU_ULP || eg > GRAD_ULP) {
            if (s->bad++ < 5)
                printf("  x = %.9g (0x%08x): gelu %.9g vs %.17g (%.2f ulp), gelu' %.9g vs %.17g (%.2f ulp)\n", x[i],
                       to_bits(x[i]), y[i], ref_fwd(x[i]), ef, g[i], ref_grad(x[i]), eg);
        }
    }
    s->n += n;
}

static void report(const char *what, const stats *s) {
    printf("%s: %lld floats, worst gelu %.3f ulp (x = %.9g), gelu' %.3f ulp (x = %.9g)\n", what, (long long)s->n,
           s->fwd, s->fwd_at, s->grad, s->grad_at);
    CHECK(s->bad == 0 && s->n > 0, "%s: %lld floats outside the bounds (%.1f / %.1f ulp)", what, (long long)s->bad,
          GELU_ULP, GRAD_ULP);
}

/* Every stride-th float of the bit patterns lo..hi (both of one sign, lo <= hi),
 * starting at a random offset. */
static void sweep_bits(stats *s, uint32_t lo, uint32_t hi, uint32_t stride, rg_rng *rng) {
    float x[BATCH];
    int64_t n = 0;
    for (uint64_t b = lo + rg_rng_below(rng, stride); b <= hi; b += stride) {
        x[n++] = from_bits((uint32_t)b);
        if (n == BATCH) score(s, x, n), n = 0;
    }
    if (n) score(s, x, n);
}

static void test_sweeps(rg_rng *rng) {
    bool quick = rg_test_quick();
    /* every float in [-12, 12]: positive patterns 0 .. bits(12), negative likewise */
    stats dense = {0};
    uint32_t stride = quick ? 4099 : 97, b12 = to_bits(12.0f);
    sweep_bits(&dense, 0, b12, stride, rng);
    sweep_bits(&dense, 0x80000000u, 0x80000000u | b12, stride, rng);
    report("every float in [-12, 12], stride", &dense);

    /* the whole float line (finite values), both signs */
    stats line = {0};
    uint32_t stride2 = quick ? 40009 : 1021, binf = to_bits(INFINITY);
    sweep_bits(&line, 0, binf - 1, stride2, rng);
    sweep_bits(&line, 0x80000000u, 0x80000000u | (binf - 1), stride2, rng);
    report("all finite floats, stride", &line);

    /* random floats: uniform bit patterns (finite) and uniform in [-16, 16] */
    stats rnd = {0};
    float x[BATCH];
    int64_t batches = quick ? 16 : 256;
    for (int64_t k = 0; k < batches; k++) {
        for (int i = 0; i < BATCH; i++) {
            if (i % 2) {
                x[i] = (float)(32.0 * rg_rng_uniform(rng) - 16.0);
            } else {
                uint32_t b;
                do b = (uint32_t)rg_rng_u64(rng); while ((b & 0x7f800000u) == 0x7f800000u);
                x[i] = from_bits(b);
            }
        }
        score(&rnd, x, BATCH);
    }
    report("random floats", &rnd);
}

/* Special values: the vector kernels give what the scalar definition gives (NaN
 * where it is NaN, the same infinity, gelu's sign of zero), within the bounds
 * where both are finite. */
static bool same_class(float got, float want, double ulps, double bound, double ref, bool zero_sign) {
    if (isnan(want)) return isnan(got);
    if (isinf(want)) return got == want;
    if (want == 0.0f && ref == 0.0) return got == 0.0f && (!zero_sign || signbit(got) == signbit(want));
    if (fabs(ref) < FLT_MIN) return ulps == -1.0;   /* subnormal: absolute error */
    return ulps >= 0.0 && ulps <= bound;
}

static void test_special(void) {
    const float xs[] = {0.0f, -0.0f, 0x1p-149f, -0x1p-149f, 0x1.fffffcp-127f, -0x1.fffffcp-127f, FLT_MIN, -FLT_MIN,
                        1e-30f, -1e-30f, 3e38f, -3e38f, FLT_MAX, -FLT_MAX, INFINITY, -INFINITY, NAN, -NAN,
                        0.375f, -0.375f, 0x1.7ffffep-2f, -0x1.7ffffep-2f, 2.5f, -2.5f, 14.5f, -14.5f, 13.0f, -13.0f,
                        -0.75179154f, -0.7517916f, -10.0f, 1e19f, -1e19f, 2e19f, -2e19f};
    int n = (int)(sizeof xs / sizeof xs[0]);
    float y[64], g[64], one[64];
    for (int i = 0; i < n; i++) one[i] = 1.0f;
    rg_cpu_gelu_erf_span(y, xs, n);
    rg_cpu_gelu_erf_grad_span(g, xs, one, n);
    for (int i = 0; i < n; i++) {
        float x = xs[i], wy = rg_cpu_gelu(x, RG_GELU_ERF), wg = rg_cpu_gelu_grad(x, RG_GELU_ERF);
        double ry = isfinite(x) ? ref_fwd(x) : wy, rg = isfinite(x) ? ref_grad(x) : wg;
        double ey = isfinite(ry) ? ulp_err(y[i], ry) : 0, eg = isfinite(rg) ? ulp_err(g[i], rg) : 0;
        CHECK(same_class(y[i], wy, ey, GELU_ULP, ry, true), "gelu(%g) = %.9g, scalar %.9g, double %.17g", x, y[i], wy, ry);
        CHECK(same_class(g[i], wg, eg, GRAD_ULP, rg, false), "gelu'(%g) = %.9g, scalar %.9g, double %.17g", x, g[i], wg,
              rg);
    }
    /* the negative tail keeps its relative precision: gelu(-10) ~ -7.6e-23 */
    float m10 = -10.0f, y10, g10;
    rg_cpu_gelu_erf_span(&y10, &m10, 1);
    CHECK(ulp_err(y10, ref_fwd(-10.0)) <= GELU_ULP, "gelu(-10) = %.9g vs %.17g", y10, ref_fwd(-10.0));
    rg_cpu_gelu_erf_grad_span(&g10, &m10, &one[0], 1);
    CHECK(ulp_err(g10, ref_grad(-10.0)) <= GRAD_ULP, "gelu'(-10) = %.9g vs %.17g", g10, ref_grad(-10.0));
}

/* The backend ops (parallel chunks) on awkward sizes, out of place and in place,
 * with sentinels; dinp = dout * gelu' within the bound derived below. */
static void test_ops(rg_rng *rng) {
    const int64_t sizes[] = {1, 3, 17, 4095, 4096, 4097, 3 * 4096 + 5, rg_test_quick() ? 20000 : 100003};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int64_t n = sizes[si];
        float *x = rg_guarded_alloc(n), *y = rg_guarded_alloc(n), *dout = rg_guarded_alloc(n),
              *dinp = rg_guarded_alloc(n), *xs = rg_guarded_alloc(n);
        rg_rng_fill_uniform(rng, x, n, -15.0f, 15.0f);
        rg_rng_fill_uniform(rng, dout, n, -2.0f, 2.0f);
        memcpy(xs, x, n * sizeof *x);
        int64_t bad_f = 0, bad_b = 0, bad_alias = 0;
        CHECK(rg_cpu_gelu_forward(NULL, y, x, n, RG_GELU_ERF) == RG_OK, "gelu_forward n=%lld", (long long)n);
        CHECK(rg_cpu_gelu_backward(NULL, dinp, x, dout, n, RG_GELU_ERF) == RG_OK, "gelu_backward n=%lld",
              (long long)n);
        for (int64_t i = 0; i < n; i++) {
            double ef = ulp_err(y[i], ref_fwd(x[i]));
            bad_f += ef == -2.0 || ef > GELU_ULP;
            /* dinp = fl(dout * g) with g within GRAD_ULP ulps of gelu': the bound is
             * |dout| GRAD_ULP ulp(gelu') plus the product's half ulp. It is not
             * GRAD_ULP + 1/2 ulps of the product, whose binade can sit higher
             * than gelu''s relative to the value (up to 2x as many ulps). */
            double rg = ref_grad(x[i]), rp = (double)dout[i] * rg;
            double bound = fabs((double)dout[i]) * GRAD_ULP * ulp_of(rg) + 0.5 * ulp_of(rp) + SUB_ABS;
            bad_b += !(fabs((double)dinp[i] - rp) <= bound);
        }
        /* in place: out == inp (forward), dinp == dout (backward): the same values */
        CHECK(rg_cpu_gelu_forward(NULL, xs, xs, n, RG_GELU_ERF) == RG_OK, "gelu_forward in place");
        CHECK(rg_cpu_gelu_backward(NULL, dout, x, dout, n, RG_GELU_ERF) == RG_OK, "gelu_backward in place");
        for (int64_t i = 0; i < n; i++) bad_alias += xs[i] != y[i] || dout[i] != dinp[i];
        CHECK(bad_f == 0 && bad_b == 0, "ops n=%lld: %lld forward, %lld backward values outside the bounds",
              (long long)n, (long long)bad_f, (long long)bad_b);
        CHECK(bad_alias == 0, "ops n=%lld: in-place results differ at %lld places", (long long)n,
              (long long)bad_alias);
        CHECK(rg_guarded_ok(x, n, "x") && rg_guarded_ok(y, n, "y") && rg_guarded_ok(dout, n, "dout") &&
                  rg_guarded_ok(dinp, n, "dinp") && rg_guarded_ok(xs, n, "xs"),
              "ops n=%lld: sentinels", (long long)n);
        rg_guarded_free(x), rg_guarded_free(y), rg_guarded_free(dout), rg_guarded_free(dinp), rg_guarded_free(xs);
    }
}

int main(void) {
    rg_rng rng;
    rg_test_init("test_gelu", &rng);
    test_special();
    test_ops(&rng);
    test_sweeps(&rng);
    return rg_test_finish();
}
