/* svg.c — a grouped bar chart written as a standalone SVG file (see svg.h). */
#define _POSIX_C_SOURCE 200809L
#include "svg.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *const palette[] = {"#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860"};

/* Text with &, <, >, " escaped. */
static void put_text(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static void text(FILE *f, double x, double y, const char *anchor, int size, const char *extra, const char *s) {
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"%d\"%s>", x, y, anchor, size, extra);
    put_text(f, s);
    fputs("</text>\n", f);
}

/* The smallest 1, 2 or 5 times a power of ten that is >= x (x > 0). */
static double nice_ceil(double x) {
    double p = pow(10, floor(log10(x)));
    for (int i = 0; i < 3; i++) {
        double m = (double[]){1, 2, 5}[i] * p;
        if (m >= x * (1 - 1e-9)) return m;
    }
    return 10 * p;
}

static void format_value(char *buf, size_t n, double v) {
    if (v >= 100) snprintf(buf, n, "%.0f", v);
    else if (v >= 10) snprintf(buf, n, "%.1f", v);
    else snprintf(buf, n, "%.3g", v);
}

static void draw(FILE *f, const char *title, const char *subtitle, const char *y_label, const char *const *groups,
                 int n_groups, const char *const *series, int n_series, const double *values, const double *spreads) {
    const double W = 760, H = 440, L = 80, R = 20, T = 70, B = 60;
    const double pw = W - L - R, ph = H - T - B;
    double top = 0;
    for (int i = 0; i < n_groups * n_series; i++)
        if (isfinite(values[i])) {
            double v = values[i] + (spreads && spreads[i] > 0 ? spreads[i] : 0);
            if (v > top) top = v;
        }
    /* Axis top: a round number with about five ticks. */
    double step = top > 0 ? nice_ceil(top / 5) : 1, ymax = step * ceil(top / step * (1 + 1e-9));
    if (ymax <= 0) ymax = step;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
               "font-family=\"sans-serif\">\n", W, H, W, H);
    fprintf(f, "<rect width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>\n", W, H);
    text(f, W / 2, 26, "middle", 17, " font-weight=\"bold\"", title);
    if (subtitle && *subtitle) text(f, W / 2, 46, "middle", 12, " fill=\"#555\"", subtitle);
    char buf[64];
    for (double y = 0; y <= ymax * (1 + 1e-9); y += step) {
        double py = T + ph - y / ymax * ph;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, py, L + pw, py);
        format_value(buf, sizeof buf, y);
        text(f, L - 6, py + 4, "end", 11, "", buf);
    }
    fprintf(f, "<text x=\"18\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\" transform=\"rotate(-90 18 %.1f)\">",
            T + ph / 2, T + ph / 2);
    put_text(f, y_label);
    fputs("</text>\n", f);
    double gw = pw / n_groups, bw = gw * 0.8 / n_series;
    for (int g = 0; g < n_groups; g++) {
        double x0 = L + g * gw + gw * 0.1;
        for (int s = 0; s < n_series; s++) {
            double v = values[g * n_series + s];
            if (!isfinite(v)) continue;
            double x = x0 + s * bw, h = v / ymax * ph, y = T + ph - h;
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n", x + 1, y, bw - 2, h,
                    palette[s % 6]);
            double sp = spreads ? spreads[g * n_series + s] : 0;
            if (sp > 0) {
                double cx = x + bw / 2, y1 = T + ph - (v + sp) / ymax * ph, y2 = T + ph - fmax(v - sp, 0) / ymax * ph;
                fprintf(f, "<path d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f\" stroke=\"#333\"/>\n", cx, y1, y2,
                        cx - 4, y1, cx + 4, cx - 4, y2, cx + 4);
                y = y1;
            }
            format_value(buf, sizeof buf, v);
            text(f, x + bw / 2, y - 4, "middle", 11, "", buf);
        }
        text(f, L + g * gw + gw / 2, T + ph + 20, "middle", 13, "", groups[g]);
    }
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", L, T + ph, L + pw, T + ph);
    for (int s = 0; s < n_series; s++) {
        double x = L + pw - 90.0 * (n_series - s), y = H - 18;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\"/>\n", x, y - 10, palette[s % 6]);
        text(f, x + 16, y, "start", 12, "", series[s]);
    }
    fputs("</svg>\n", f);
}

int svg_bar_chart(const char *path, const char *title, const char *subtitle, const char *y_label,
                  const char *const *groups, int n_groups, const char *const *series, int n_series,
                  const double *values, const double *spreads, char *err, size_t err_size) {
    if (n_groups < 1 || n_series < 1) {
        snprintf(err, err_size, "nothing to draw");
        return -1;
    }
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        snprintf(err, err_size, "path too long");
        return -1;
    }
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, err_size, "cannot create '%s': %s", tmp, strerror(errno));
        return -1;
    }
    draw(f, title, subtitle, y_label, groups, n_groups, series, n_series, values, spreads);
    int bad = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
    int e = errno;
    if (fclose(f) != 0 && !bad) { bad = 1; e = errno; }
    if (!bad && rename(tmp, path) != 0) { bad = 1; e = errno; }
    if (bad) {
        remove(tmp);
        snprintf(err, err_size, "cannot write '%s': %s", path, strerror(e));
        return -1;
    }
    return 0;
}
