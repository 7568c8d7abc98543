/* args.h — the small table-driven flag parser every `ragged` command uses:
 * `--name VALUE`, `--name=VALUE`, `-x VALUE`, `--flag` / `--no-flag`, `-h/--help`.
 * The help text prints each flag's current value as its default, so defaults
 * are written once (where the option struct is initialised) and never go stale.
 * Errors read "ragged: CMD: --flag: what was expected, got 'value'". */
#ifndef RG_TOOLS_ARGS_H
#define RG_TOOLS_ARGS_H
#include <stdbool.h>

typedef enum arg_kind {
    ARG_INT,      /* int *, within [min, max] */
    ARG_DOUBLE,   /* double *, within [min, max] */
    ARG_STRING,   /* const char **, NULL prints as "none" */
    ARG_BOOL,     /* bool *: --name sets, --no-name clears */
    ARG_CHOICE,   /* const char ** pointing at one of the '|'-separated choices */
} arg_kind;

typedef struct arg_spec {
    const char *section;  /* when not NULL, a help heading printed before this flag */
    const char *name;     /* long name without dashes: "heads" */
    char short_name;      /* 't' for -t, or 0 */
    arg_kind kind;
    void *value;          /* where the parsed value goes; holds the default beforehand */
    const char *meta;     /* placeholder in the help ("N", "FILE"); choices for ARG_CHOICE */
    double min, max;      /* inclusive range for ARG_INT / ARG_DOUBLE (min > max: unchecked) */
    const char *help;
    const char *default_text; /* shown instead of the value when not NULL ("all cores") */
} arg_spec;

enum { ARGS_OK = 0, ARGS_HELP = 1, ARGS_ERROR = 2 };

/* Parses argv[1..argc) (argv[0] is the command's name) against n specs.
 * cmd names the command in messages ("bench attn"); usage is the help's first
 * line and about a paragraph after it. Returns ARGS_OK, ARGS_HELP (help was
 * printed to stdout) or ARGS_ERROR (a message was printed to stderr). */
int args_parse(const char *cmd, const char *usage, const char *about, const arg_spec *specs, int n,
               int argc, char **argv);

/* Prints the help (usage, about, every flag with its default) to stdout. */
void args_help(const char *usage, const char *about, const arg_spec *specs, int n);

/* Prints "ragged: CMD: --flag: MESSAGE" to stderr (a usage error found after
 * parsing, e.g. two flags that disagree) and returns ARGS_ERROR. flag may be NULL. */
int args_error(const char *cmd, const char *flag, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#endif
