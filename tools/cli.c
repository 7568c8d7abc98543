/* cli.c — listing and looking up a table of commands (see cli.h). */
#include "cli.h"
#include <string.h>

void cli_list(FILE *f, const cli_command *cmds, size_t n, int width) {
    for (size_t i = 0; i < n; i++) fprintf(f, "  %-*s %s\n", width, cmds[i].name, cmds[i].help);
}

const cli_command *cli_find(const cli_command *cmds, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(name, cmds[i].name)) return &cmds[i];
    return NULL;
}
