/* bench.c — placeholder, replaced by the attention benchmark. */
#include "cli.h"
#include <stdio.h>
int cmd_bench(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "ragged bench: not built yet\n"); return 1; }
