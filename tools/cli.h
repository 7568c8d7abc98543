/* cli.h — the commands of the `ragged` tool, one file each. */
#ifndef RG_TOOLS_CLI_H
#define RG_TOOLS_CLI_H

int cmd_bench(int argc, char **argv);   /* bench.c */

#endif
