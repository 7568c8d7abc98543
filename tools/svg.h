/* svg.h — a grouped bar chart as a standalone SVG file (the benchmark's figure:
 * one group per strategy, one bar per series, e.g. eval and train). */
#ifndef RG_TOOLS_SVG_H
#define RG_TOOLS_SVG_H
#include <stddef.h>

/* values and spreads are (n_groups, n_series), row-major; a NAN value leaves
 * its bar out, a spread > 0 draws a whisker of +- spread. Writes path
 * atomically: "<path>.tmp.<pid>" first, then renamed over path (a previous
 * file stays untouched on failure). Returns 0, or -1 with a message in err. */
int svg_bar_chart(const char *path, const char *title, const char *subtitle, const char *y_label,
                  const char *const *groups, int n_groups, const char *const *series, int n_series,
                  const double *values, const double *spreads, char *err, size_t err_size);

#endif
