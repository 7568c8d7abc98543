/* ragged.c — the command-line tool: `ragged COMMAND [options]`.
 * Built only on include/ragged.h. Each command lives in its own file. */
#include "ragged.h"
#include "cli.h"
#include <stdio.h>
#include <string.h>

static const cli_command commands[] = {
    {"bench", cmd_bench, "benchmark the model under each batching strategy, or attention alone"},
    {"generate", cmd_generate, "generate text from a HuggingFace GPT-2 directory (KV cache, continuous batching)"},
    {"prepare", cmd_prepare, "tokenise text files into llm.c token shards (GPT-2 BPE)"},
    {"train", cmd_train, "train a model on packed batches of token shards or a synthetic dataset; checkpoints, resume"},
    {"eval", cmd_eval, "loss and perplexity of a model on token shards (packed, no padding)"},
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

static void usage(FILE *f) {
    fprintf(f, "usage: ragged COMMAND [options]\n\ncommands:\n");
    cli_list(f, commands, N_COMMANDS, 10);
    fprintf(f, "\n'ragged COMMAND --help' lists a command's options. ragged %s\n", rg_version());
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) { usage(stdout); return 0; }
    if (!strcmp(argv[1], "--version")) { printf("ragged %s\n", rg_version()); return 0; }
    const cli_command *c = cli_find(commands, N_COMMANDS, argv[1]);
    if (c) return c->run(argc - 1, argv + 1);
    fprintf(stderr, "ragged: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
