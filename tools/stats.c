/* stats.c — timing and summary statistics over repetitions (see stats.h). */
#define _POSIX_C_SOURCE 200809L
#include "stats.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double bench_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double stats_quantile_sorted(const double *s, int n, double q) {
    if (n < 1) return NAN;
    double pos = q * (n - 1);
    int lo = (int)floor(pos);
    if (lo >= n - 1) return s[n - 1];
    if (lo < 0) return s[0];
    double f = pos - lo;
    return s[lo] + f * (s[lo + 1] - s[lo]);
}

bool stats_compute(const double *x, int n, stats *out) {
    memset(out, 0, sizeof *out);
    if (n < 1) return false;
    double *s = malloc((size_t)n * sizeof *s);
    if (!s) return false;
    memcpy(s, x, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += s[i];
    double mean = sum / n, ss = 0;
    for (int i = 0; i < n; i++) ss += (s[i] - mean) * (s[i] - mean);
    out->n = n;
    out->mean = mean;
    out->stddev = n > 1 ? sqrt(ss / (n - 1)) : 0;
    out->min = s[0];
    out->max = s[n - 1];
    out->q1 = stats_quantile_sorted(s, n, 0.25);
    out->median = stats_quantile_sorted(s, n, 0.5);
    out->q3 = stats_quantile_sorted(s, n, 0.75);
    out->spread = (out->q3 - out->q1) / 2;
    free(s);
    return true;
}
