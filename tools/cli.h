/* cli.h — the commands of the `ragged` tool, one file each, and the table
 * lookup that `ragged` and `ragged bench` dispatch through (cli.c). */
#ifndef RG_TOOLS_CLI_H
#define RG_TOOLS_CLI_H
#include <stddef.h>
#include <stdio.h>

int cmd_bench(int argc, char **argv);        /* bench.c: dispatches to the bench subcommands */
int cmd_bench_model(int argc, char **argv);  /* bench_model.c: the default benchmark */
int cmd_bench_attn(int argc, char **argv);   /* bench_attn.c */
int cmd_train(int argc, char **argv);        /* train.c */
int cmd_generate(int argc, char **argv);     /* generate.c */
int cmd_bench_generate(int argc, char **argv); /* bench_gen.c */
int cmd_prepare(int argc, char **argv);      /* prepare.c */
int cmd_eval(int argc, char **argv);         /* eval.c */

/* One entry of a command table: argv[0] of run is the command's name. */
typedef struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} cli_command;

/* Prints "  NAME  HELP" for each of the n commands, names padded to width. */
void cli_list(FILE *f, const cli_command *cmds, size_t n, int width);

/* The command called name, or NULL. */
const cli_command *cli_find(const cli_command *cmds, size_t n, const char *name);

#endif
