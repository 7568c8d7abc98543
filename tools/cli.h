/* cli.h — the commands of the `ragged` tool, one file each. */
#ifndef RG_TOOLS_CLI_H
#define RG_TOOLS_CLI_H

int cmd_bench(int argc, char **argv);        /* bench.c: dispatches to the bench subcommands */
int cmd_bench_attn(int argc, char **argv);   /* bench_attn.c */

#endif
