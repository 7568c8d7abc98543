/* stats.h — wall-clock timing and summary statistics over repetitions
 * (median, quartiles, min/max, mean, standard deviation). */
#ifndef RG_TOOLS_STATS_H
#define RG_TOOLS_STATS_H
#include <stdbool.h>

/* Seconds from an arbitrary fixed origin (monotonic clock). */
double bench_now(void);

typedef struct stats {
    int n;
    double mean, stddev;       /* stddev: sample (n - 1) standard deviation, 0 when n < 2 */
    double min, q1, median, q3, max;  /* quartiles by linear interpolation (numpy's default) */
    double spread;             /* the "±" printed beside the median: half the interquartile range */
} stats;

/* Summarises x[0..n); x is not modified. False (and *out zeroed) when n < 1
 * or the scratch copy cannot be allocated. */
bool stats_compute(const double *x, int n, stats *out);

/* The q-quantile (0 <= q <= 1) of sorted[0..n), linear interpolation. */
double stats_quantile_sorted(const double *sorted, int n, double q);

#endif
