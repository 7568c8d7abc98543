/* args.c — the table-driven flag parser shared by the `ragged` commands (see args.h). */
#include "args.h"
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int args_error(const char *cmd, const char *flag, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "ragged: %s: ", cmd);
    if (flag) fprintf(stderr, "%s: ", flag);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return ARGS_ERROR;
}

/* True when s is one of the '|'-separated words of list. */
static bool in_choices(const char *list, const char *s) {
    size_t n = strlen(s);
    for (const char *p = list; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, s, n)) return true;
        if (!bar) break;
        p = bar + 1;
    }
    return false;
}

/* "a positive integer", "an integer in [8, 256]", ... */
static void describe_range(char *buf, size_t size, const arg_spec *s) {
    const char *what = s->kind == ARG_INT ? "integer" : "number";
    bool has_max = s->min <= s->max && s->max < (s->kind == ARG_INT ? INT_MAX : HUGE_VAL);
    if (s->min > s->max) snprintf(buf, size, "%s %s", s->kind == ARG_INT ? "an" : "a", what);
    else if (has_max) snprintf(buf, size, "%s %s in [%.15g, %.15g]", s->kind == ARG_INT ? "an" : "a", what, s->min, s->max);
    else if (s->min == 1 && s->kind == ARG_INT) snprintf(buf, size, "a positive integer");
    else if (s->min == 0) snprintf(buf, size, "a non-negative %s", what);
    else snprintf(buf, size, "%s %s >= %.15g", s->kind == ARG_INT ? "an" : "a", what, s->min);
}

static bool parse_bool_word(const char *v, bool *out) {
    static const char *yes[] = {"1", "true", "yes", "on"}, *no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (!strcmp(v, yes[i])) { *out = true; return true; }
        if (!strcmp(v, no[i])) { *out = false; return true; }
    }
    return false;
}

/* Stores text into the spec's value; flag is the spelling the user typed. */
static int set_value(const char *cmd, const char *flag, const arg_spec *s, const char *v) {
    char range[96];
    switch (s->kind) {
    case ARG_INT: {
        char *end;
        errno = 0;
        long x = strtol(v, &end, 10);
        bool ok = *v && !*end && errno == 0 && x >= INT_MIN && x <= INT_MAX;
        if (ok && s->min <= s->max) ok = x >= s->min && x <= s->max;
        else if (ok && s->min > s->max) ok = true;
        if (!ok) {
            describe_range(range, sizeof range, s);
            return args_error(cmd, flag, "expected %s, got '%s'", range, v);
        }
        *(int *)s->value = (int)x;
        return ARGS_OK;
    }
    case ARG_DOUBLE: {
        char *end;
        errno = 0;
        double x = strtod(v, &end);
        bool ok = *v && !*end && errno == 0 && isfinite(x);
        if (ok && s->min <= s->max) ok = x >= s->min && x <= s->max;
        if (!ok) {
            describe_range(range, sizeof range, s);
            return args_error(cmd, flag, "expected %s, got '%s'", range, v);
        }
        *(double *)s->value = x;
        return ARGS_OK;
    }
    case ARG_STRING:
        if (!*v) return args_error(cmd, flag, "expected a non-empty value");
        *(const char **)s->value = v;
        return ARGS_OK;
    case ARG_CHOICE:
        if (!in_choices(s->meta, v)) return args_error(cmd, flag, "expected one of %s, got '%s'", s->meta, v);
        *(const char **)s->value = v;
        return ARGS_OK;
    case ARG_BOOL: {
        bool b;
        if (!parse_bool_word(v, &b)) return args_error(cmd, flag, "expected true or false, got '%s'", v);
        *(bool *)s->value = b;
        return ARGS_OK;
    }
    }
    return args_error(cmd, flag, "internal error: unknown flag kind");
}

static const arg_spec *find_long(const arg_spec *specs, int n, const char *name, size_t len, bool *negated) {
    *negated = false;
    for (int i = 0; i < n; i++)
        if (strlen(specs[i].name) == len && !strncmp(specs[i].name, name, len)) return &specs[i];
    if (len > 3 && !strncmp(name, "no-", 3))
        for (int i = 0; i < n; i++)
            if (specs[i].kind == ARG_BOOL && strlen(specs[i].name) == len - 3 &&
                !strncmp(specs[i].name, name + 3, len - 3)) {
                *negated = true;
                return &specs[i];
            }
    return NULL;
}

int args_parse(const char *cmd, const char *usage, const char *about, const arg_spec *specs, int n,
               int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            args_help(usage, about, specs, n);
            return ARGS_HELP;
        }
        const arg_spec *s = NULL;
        const char *inline_value = NULL;
        bool negated = false;
        char flag[64];
        if (a[0] == '-' && a[1] == '-' && a[2]) {
            const char *eq = strchr(a + 2, '=');
            size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            s = find_long(specs, n, a + 2, len, &negated);
            if (eq) inline_value = eq + 1;
            snprintf(flag, sizeof flag, "--%.*s", (int)(len < 48 ? len : 48), a + 2);
        } else if (a[0] == '-' && a[1] && a[1] != '-') {
            for (int j = 0; j < n; j++)
                if (specs[j].short_name && specs[j].short_name == a[1]) s = &specs[j];
            if (a[2]) inline_value = a + 2;
            snprintf(flag, sizeof flag, "-%c", a[1]);
        } else {
            return args_error(cmd, NULL, "unexpected argument '%s' (see 'ragged %s --help')", a, cmd);
        }
        if (!s) return args_error(cmd, NULL, "unknown option '%s' (see 'ragged %s --help')", a, cmd);
        if (s->kind == ARG_BOOL && !inline_value) {
            *(bool *)s->value = !negated;
            continue;
        }
        if (s->kind == ARG_BOOL && negated) return args_error(cmd, flag, "takes no value");
        const char *v = inline_value;
        if (!v) {
            if (i + 1 >= argc) return args_error(cmd, flag, "missing value (%s)", s->meta ? s->meta : "VALUE");
            v = argv[++i];
        }
        int r = set_value(cmd, flag, s, v);
        if (r != ARGS_OK) return r;
    }
    return ARGS_OK;
}

static void print_default(const arg_spec *s) {
    if (s->default_text) { printf(" (default: %s)", s->default_text); return; }
    switch (s->kind) {
    case ARG_INT: printf(" (default: %d)", *(const int *)s->value); break;
    case ARG_DOUBLE: printf(" (default: %g)", *(const double *)s->value); break;
    case ARG_STRING:
    case ARG_CHOICE: {
        const char *v = *(const char *const *)s->value;
        printf(" (default: %s)", v ? v : "none");
        break;
    }
    case ARG_BOOL: printf(" (default: %s)", *(const bool *)s->value ? "on" : "off"); break;
    }
}

void args_help(const char *usage, const char *about, const arg_spec *specs, int n) {
    printf("usage: %s\n", usage);
    if (about && *about) printf("\n%s\n", about);
    for (int i = 0; i < n; i++) {
        const arg_spec *s = &specs[i];
        if (s->section) printf("\n%s:\n", s->section);
        char left[80];
        int k = 0;
        if (s->short_name) k += snprintf(left + k, sizeof left - k, "-%c, ", s->short_name);
        if (s->kind == ARG_BOOL) k += snprintf(left + k, sizeof left - k, "--[no-]%s", s->name);
        else k += snprintf(left + k, sizeof left - k, "--%s %s", s->name, s->meta ? s->meta : "VALUE");
        if (k < 26) printf("  %-26s %s", left, s->help);
        else printf("  %s\n  %-26s %s", left, "", s->help);
        print_default(s);
        putchar('\n');
    }
    printf("\n  %-26s %s\n", "-h, --help", "show this help and exit");
}
