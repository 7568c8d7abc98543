/* report.c — benchmark tables as markdown, JSON or CSV (see report.h). */
#define _POSIX_C_SOURCE 200809L
#include "report.h"
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void report_init(report *r, const report_col *cols, int n_cols) {
    memset(r, 0, sizeof *r);
    r->cols = cols;
    r->n_cols = n_cols;
}

void report_free(report *r) {
    for (int i = 0; i < r->n_rows * r->n_cols; i++) free(r->cells[i].str);
    for (int i = 0; i < r->n_meta; i++) { free(r->meta[i].key); free(r->meta[i].value); }
    for (int i = 0; i < r->n_params; i++) { free(r->params[i].key); free(r->params[i].value); }
    for (int i = 0; i < r->n_notes; i++) free(r->notes[i]);
    free(r->cells);
    free(r->meta);
    free(r->params);
    free(r->notes);
    memset(r, 0, sizeof *r);
}

/* Grows *arr (of *cap elements of size sz) to hold need elements. */
static bool grow(report *r, void **arr, int *cap, int need, size_t sz) {
    if (r->oom) return false;
    if (need <= *cap) return true;
    int nc = *cap ? *cap * 2 : 8;
    while (nc < need) nc *= 2;
    void *p = realloc(*arr, (size_t)nc * sz);
    if (!p) { r->oom = true; return false; }
    *arr = p;
    *cap = nc;
    return true;
}

static char *vformat(const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (s) vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

int report_add_row(report *r) {
    if (!grow(r, (void **)&r->cells, &r->cap_cells, (r->n_rows + 1) * r->n_cols, sizeof *r->cells)) return -1;
    memset(&r->cells[r->n_rows * r->n_cols], 0, (size_t)r->n_cols * sizeof *r->cells);
    return r->n_rows++;
}

static report_cell *cell(report *r, int row, const char *key) {
    if (r->oom || row < 0 || row >= r->n_rows) { r->oom = true; return NULL; }
    for (int c = 0; c < r->n_cols; c++)
        if (!strcmp(r->cols[c].key, key)) return &r->cells[row * r->n_cols + c];
    r->oom = true;   /* unknown key: a bug in the caller, surfaced by report_print */
    return NULL;
}

void report_set_num(report *r, int row, const char *key, double v) {
    report_cell *c = cell(r, row, key);
    if (!c) return;
    c->set = true;
    c->num = v;
}

void report_set_str(report *r, int row, const char *key, const char *fmt, ...) {
    report_cell *c = cell(r, row, key);
    if (!c) return;
    va_list ap;
    va_start(ap, fmt);
    char *s = vformat(fmt, ap);
    va_end(ap);
    if (!s) { r->oom = true; return; }
    free(c->str);
    c->str = s;
    c->set = true;
}

/* Adds or replaces key in the list (*kv, *n, *cap). */
static void set_kv(report *r, report_kv **kv, int *n, int *cap, const char *key, const char *fmt, va_list ap) {
    if (r->oom) return;
    char *v = vformat(fmt, ap);
    if (!v) { r->oom = true; return; }
    for (int i = 0; i < *n; i++)
        if (!strcmp((*kv)[i].key, key)) { free((*kv)[i].value); (*kv)[i].value = v; return; }
    char *k = dup_str(key);
    if (!k || !grow(r, (void **)kv, cap, *n + 1, sizeof **kv)) {
        free(k); free(v); r->oom = true;
        return;
    }
    (*kv)[*n].key = k;
    (*kv)[*n].value = v;
    (*n)++;
}

void report_meta(report *r, const char *key, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_kv(r, &r->meta, &r->n_meta, &r->cap_meta, key, fmt, ap);
    va_end(ap);
}

void report_param(report *r, const char *key, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_kv(r, &r->params, &r->n_params, &r->cap_params, key, fmt, ap);
    va_end(ap);
}

void report_note(report *r, const char *fmt, ...) {
    if (r->oom) return;
    va_list ap;
    va_start(ap, fmt);
    char *s = vformat(fmt, ap);
    va_end(ap);
    if (!s || !grow(r, (void **)&r->notes, &r->cap_notes, r->n_notes + 1, sizeof *r->notes)) {
        free(s); r->oom = true;
        return;
    }
    r->notes[r->n_notes++] = s;
}

/* "AMD EPYC 9454 48-Core Processor" from /proc/cpuinfo, or "unknown". */
static void cpu_model(char *buf, size_t size) {
    snprintf(buf, size, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10)) continue;
        const char *p = strchr(line, ':');
        if (!p) break;
        p++;
        while (*p == ' ' || *p == '\t') p++;
        size_t n = strcspn(p, "\n");
        snprintf(buf, size, "%.*s", (int)n, p);
        break;
    }
    fclose(f);
}

void report_build_info(report *r, const rg_backend *be) {
    char cpu[256], date[32];
    cpu_model(cpu, sizeof cpu);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    report_meta(r, "version", "%s", rg_version());
    report_meta(r, "backend", "%s", rg_backend_name(be));
    report_meta(r, "dtype", "%s", rg_dtype_name(rg_backend_act_dtype(be)));
    report_meta(r, "threads", "%d", rg_backend_n_threads(be));
    report_meta(r, "cpu", "%s", cpu);
    report_meta(r, "date", "%s", date);
}

bool report_parse_format(const char *s, report_format *out) {
    static const char *names[] = {"md", "json", "csv"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, names[i])) { *out = (report_format)i; return true; }
    return false;
}

static int auto_decimals(double x) {
    double a = fabs(x);
    if (!isfinite(a) || a == 0) return 2;
    int d = 2 - (int)floor(log10(a));
    return d < 0 ? 0 : d > 6 ? 6 : d;
}

char *report_format_num(char *buf, double x, int decimals) {
    if (!isfinite(x)) { snprintf(buf, 48, "%s", isnan(x) ? "nan" : x > 0 ? "inf" : "-inf"); return buf; }
    snprintf(buf, 48, "%.*f", decimals < 0 ? auto_decimals(x) : decimals, x);
    return buf;
}

/* The markdown text of cell (row, c), with any ± column that follows it. */
static void md_cell(const report *r, int row, int c, char *out, size_t size) {
    const report_col *col = &r->cols[c];
    const report_cell *v = &r->cells[row * r->n_cols + c];
    char a[48], b[48];
    if (!v->set) { snprintf(out, size, "-"); return; }
    if (col->kind == REPORT_STR) { snprintf(out, size, "%s", v->str ? v->str : ""); return; }
    int dec = col->decimals >= 0 ? col->decimals : auto_decimals(v->num);
    report_format_num(a, v->num, dec);
    const report_cell *pm = c + 1 < r->n_cols && (r->cols[c + 1].flags & REPORT_MD_PM) ? v + 1 : NULL;
    if (pm && pm->set) snprintf(out, size, "%s ± %s%s", a, report_format_num(b, pm->num, dec), col->suffix ? col->suffix : "");
    else snprintf(out, size, "%s%s", a, col->suffix ? col->suffix : "");
}

static bool md_visible(const report_col *c) { return !(c->flags & (REPORT_MD_HIDE | REPORT_MD_PM)); }

static void print_md(const report *r, FILE *f) {
    enum { W = 256 };
    int width[64] = {0};
    int nc = r->n_cols < 64 ? r->n_cols : 64;
    char buf[W];
    for (int c = 0; c < nc; c++) {
        if (!md_visible(&r->cols[c])) continue;
        width[c] = (int)strlen(r->cols[c].title);
        for (int i = 0; i < r->n_rows; i++) {
            md_cell(r, i, c, buf, W);
            int w = (int)strlen(buf) - (strstr(buf, "±") ? 1 : 0);   /* ± is 2 bytes, 1 column */
            if (w > width[c]) width[c] = w;
        }
    }
    fputc('|', f);
    for (int c = 0; c < nc; c++)
        if (md_visible(&r->cols[c])) fprintf(f, " %*s |", r->cols[c].kind == REPORT_NUM ? width[c] : -width[c], r->cols[c].title);
    fputs("\n|", f);
    for (int c = 0; c < nc; c++) {
        if (!md_visible(&r->cols[c])) continue;
        fputc(' ', f);
        for (int k = 0; k < width[c] - 1; k++) fputc('-', f);
        fputs(r->cols[c].kind == REPORT_NUM ? ": |" : "- |", f);
    }
    fputc('\n', f);
    for (int i = 0; i < r->n_rows; i++) {
        fputc('|', f);
        for (int c = 0; c < nc; c++) {
            if (!md_visible(&r->cols[c])) continue;
            md_cell(r, i, c, buf, W);
            int pad = width[c] - ((int)strlen(buf) - (strstr(buf, "±") ? 1 : 0));
            if (r->cols[c].kind == REPORT_NUM) fprintf(f, " %*s%s |", pad, "", buf);
            else fprintf(f, " %s%*s |", buf, pad, "");
        }
        fputc('\n', f);
    }
    fputc('\n', f);
    for (int i = 0; i < r->n_meta; i++)
        fprintf(f, "%s%s: %s", i ? " | " : "", r->meta[i].key, r->meta[i].value);
    if (r->n_meta) fputc('\n', f);
    for (int i = 0; i < r->n_notes; i++) fprintf(f, "- %s\n", r->notes[i]);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static void json_value(FILE *f, const report_col *col, const report_cell *v) {
    if (!v->set) fputs("null", f);
    else if (col->kind == REPORT_STR) json_str(f, v->str ? v->str : "");
    else if (!isfinite(v->num)) fputs("null", f);
    else fprintf(f, "%.9g", v->num);
}

static void json_object(FILE *f, const report_kv *kv, int n) {
    fputc('{', f);
    for (int i = 0; i < n; i++) {
        fputs(i ? ", " : "", f);
        json_str(f, kv[i].key);
        fputs(": ", f);
        json_str(f, kv[i].value);
    }
    fputc('}', f);
}

static void print_json(const report *r, FILE *f) {
    fputs("{\n  \"meta\": ", f);
    json_object(f, r->meta, r->n_meta);
    fputs(",\n  \"params\": ", f);
    json_object(f, r->params, r->n_params);
    fputs(",\n  \"notes\": [", f);
    for (int i = 0; i < r->n_notes; i++) {
        fputs(i ? ",\n    " : "\n    ", f);
        json_str(f, r->notes[i]);
    }
    fputs(r->n_notes ? "\n  ],\n  \"rows\": [" : "],\n  \"rows\": [", f);
    for (int i = 0; i < r->n_rows; i++) {
        fputs(i ? ",\n    {" : "\n    {", f);
        for (int c = 0; c < r->n_cols; c++) {
            fputs(c ? ", " : "", f);
            json_str(f, r->cols[c].key);
            fputs(": ", f);
            json_value(f, &r->cols[c], &r->cells[i * r->n_cols + c]);
        }
        fputc('}', f);
    }
    fputs(r->n_rows ? "\n  ]\n}\n" : "]\n}\n", f);
}

static void csv_str(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n")) { fputs(s, f); return; }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void print_csv(const report *r, FILE *f) {
    for (int c = 0; c < r->n_cols; c++) { fputs(c ? "," : "", f); csv_str(f, r->cols[c].key); }
    for (int i = 0; i < r->n_meta; i++) { fputc(',', f); csv_str(f, r->meta[i].key); }
    for (int i = 0; i < r->n_params; i++) { fputc(',', f); csv_str(f, r->params[i].key); }
    fputc('\n', f);
    for (int i = 0; i < r->n_rows; i++) {
        for (int c = 0; c < r->n_cols; c++) {
            const report_cell *v = &r->cells[i * r->n_cols + c];
            if (c) fputc(',', f);
            if (!v->set) continue;
            if (r->cols[c].kind == REPORT_STR) csv_str(f, v->str ? v->str : "");
            else if (isfinite(v->num)) fprintf(f, "%.9g", v->num);
        }
        for (int m = 0; m < r->n_meta; m++) { fputc(',', f); csv_str(f, r->meta[m].value); }
        for (int m = 0; m < r->n_params; m++) { fputc(',', f); csv_str(f, r->params[m].value); }
        fputc('\n', f);
    }
}

bool report_print(const report *r, FILE *f, report_format fmt) {
    if (r->oom) return false;
    switch (fmt) {
    case REPORT_MD: print_md(r, f); break;
    case REPORT_JSON: print_json(r, f); break;
    case REPORT_CSV: print_csv(r, f); break;
    }
    return fflush(f) == 0 && !ferror(f);
}
