/* bench.c — `ragged bench [SUBCOMMAND] [options]`: the benchmarks. With no
 * subcommand (or options first) it runs the model benchmark (bench_model.c);
 * `ragged bench attn` times attention alone (bench_attn.c), `ragged bench
 * generate` the generation engine (bench_gen.c). */
#include "bench_attn.h"
#include "bench_model.h"
#include "cli.h"
#include <stdio.h>
#include <string.h>

static const cli_command subcommands[] = {
    {"model", cmd_bench_model, "the default: the model under each batching strategy, eval and train"},
    {"attn", cmd_bench_attn, "varlen attention alone: flash vs reference vs pad-to-max, fwd and fwd+bwd"},
    {"generate", cmd_bench_generate, "generation: prefill and decode tokens/s for batches of mixed-length prompts"},
};
enum { N_SUB = sizeof subcommands / sizeof subcommands[0] };

static void usage(FILE *f) {
    fprintf(f, "usage: ragged bench [SUBCOMMAND] [options]\n\nsubcommands:\n");
    cli_list(f, subcommands, N_SUB, 8);
    fprintf(f, "\nWith no subcommand, 'ragged bench' runs 'ragged bench model' with the options given.\n"
               "'ragged bench SUBCOMMAND --help' lists a subcommand's options.\n");
}

int cmd_bench(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        printf("\n");
        return cmd_bench_model(argc, argv);
    }
    if (argc < 2 || argv[1][0] == '-') return cmd_bench_model(argc, argv);
    const cli_command *c = cli_find(subcommands, N_SUB, argv[1]);
    if (c) return c->run(argc - 1, argv + 1);
    fprintf(stderr, "ragged: bench: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
