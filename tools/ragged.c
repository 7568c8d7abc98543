/* ragged.c — the command-line tool: `ragged COMMAND [options]`.
 * Built only on include/ragged.h. Each command lives in its own file. */
#include "ragged.h"
#include "cli.h"
#include <stdio.h>
#include <string.h>

static const struct { const char *name; int (*run)(int argc, char **argv); const char *help; } commands[] = {
    {"bench", cmd_bench, "benchmark the model under each batching strategy, or attention alone"},
    {"train", cmd_train, "train a model on packed batches of a synthetic dataset; checkpoints, resume"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: ragged COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n'ragged COMMAND --help' lists a command's options. ragged %s\n", rg_version());
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) { usage(stdout); return 0; }
    if (!strcmp(argv[1], "--version")) { printf("ragged %s\n", rg_version()); return 0; }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "ragged: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
