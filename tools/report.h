/* report.h — benchmark result tables, printed as markdown (llama-bench style:
 * aligned columns, "median ± spread" cells, a footer with build info and
 * notes), JSON (meta, notes, rows) or CSV (one header line; the build info is
 * repeated as trailing columns so each line stands alone).
 * Columns are declared once; rows are filled by key. Allocation failures are
 * sticky: the setters do nothing after one and report_print returns false. */
#ifndef RG_TOOLS_REPORT_H
#define RG_TOOLS_REPORT_H
#include "ragged.h"
#include <stdbool.h>
#include <stdio.h>

typedef enum report_format { REPORT_MD = 0, REPORT_JSON, REPORT_CSV } report_format;

typedef enum report_kind { REPORT_STR = 0, REPORT_NUM } report_kind;

enum {
    REPORT_MD_HIDE = 1,  /* json/csv only */
    REPORT_MD_PM = 2,    /* markdown: appended to the previous column as " ± value" */
};

typedef struct report_col {
    const char *key;     /* json/csv name, e.g. "ms_median" */
    const char *title;   /* markdown header, e.g. "ms/batch" */
    report_kind kind;
    unsigned flags;
    int decimals;        /* markdown digits after the point; < 0 picks by magnitude */
    const char *suffix;  /* markdown only, e.g. "x" or "%" */
} report_col;

typedef struct report_cell { bool set; double num; char *str; } report_cell;
typedef struct report_kv { char *key, *value; } report_kv;

typedef struct report {
    const report_col *cols;
    int n_cols;
    report_cell *cells;     /* (n_rows, n_cols) */
    int n_rows, cap_cells;
    report_kv *meta;        /* build info: version, backend, threads, cpu, date, ... */
    int n_meta, cap_meta;
    report_kv *params;      /* the run's parameters (json/csv only; markdown says them in notes) */
    int n_params, cap_params;
    char **notes;           /* free-text footer lines */
    int n_notes, cap_notes;
    bool oom;
} report;

void report_init(report *r, const report_col *cols, int n_cols);
void report_free(report *r);

/* Appends an empty row and returns its index (-1 after an allocation failure). */
int report_add_row(report *r);
/* Sets a cell of row `row` by column key (an unknown key is a programming
 * error and sets oom so that it cannot go unnoticed). */
void report_set_num(report *r, int row, const char *key, double v);
void report_set_str(report *r, int row, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
/* Adds (or replaces) a build-info entry, a parameter, and a footer note. */
void report_meta(report *r, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void report_param(report *r, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void report_note(report *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Fills the build info every benchmark prints: ragged version, backend and its
 * activation dtype, threads, CPU model (from /proc/cpuinfo when readable) and
 * the UTC date. */
void report_build_info(report *r, const rg_backend *be);

/* Parses "md", "json" or "csv"; false for anything else. */
bool report_parse_format(const char *s, report_format *out);

/* Writes the report; false if an allocation failed earlier or writing failed. */
bool report_print(const report *r, FILE *f, report_format fmt);

/* Formats x with `decimals` digits (< 0: by magnitude, 3 significant digits
 * at least, no exponent). buf must hold 48 bytes; returns buf. */
char *report_format_num(char *buf, double x, int decimals);

#endif
