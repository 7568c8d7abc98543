/* bench.c — `ragged bench [SUBCOMMAND] [options]`: the benchmarks. With no
 * subcommand (or options first) it runs the attention benchmark for now; the
 * model benchmark will take that place when it exists. */
#include "bench_attn.h"
#include "cli.h"
#include <stdio.h>
#include <string.h>

static const struct { const char *name; int (*run)(int argc, char **argv); const char *help; } subcommands[] = {
    {"attn", cmd_bench_attn, "varlen attention: flash vs reference vs pad-to-max, fwd and fwd+bwd"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: ragged bench [SUBCOMMAND] [options]\n\nsubcommands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        fprintf(f, "  %-8s %s\n", subcommands[i].name, subcommands[i].help);
    fprintf(f, "\nWith no subcommand, 'ragged bench' runs 'ragged bench attn' with the options given.\n"
               "'ragged bench SUBCOMMAND --help' lists a subcommand's options.\n");
}

int cmd_bench(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        printf("\n");
        return cmd_bench_attn(argc, argv);
    }
    if (argc < 2 || argv[1][0] == '-') return cmd_bench_attn(argc, argv);
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        if (!strcmp(argv[1], subcommands[i].name)) return subcommands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "ragged: bench: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
