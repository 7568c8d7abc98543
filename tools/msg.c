/* msg.c — a command's errors and progress lines on stderr (see msg.h). */
#define _POSIX_C_SOURCE 200809L
#include "msg.h"
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

static const char *command = "";
static bool line_open;   /* a progress line without its newline is on the terminal */

void msg_command(const char *cmd) { command = cmd; }

int msg_error(const char *fmt, ...) {
    if (line_open) fputc('\n', stderr);
    line_open = false;
    fprintf(stderr, "ragged: %s: ", command);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int msg_fail(rg_status s, const char *fmt, ...) {
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return msg_error("%s: %s (%s)", what, rg_last_error(), rg_status_str(s));
}

void msg_progress_start(msg_progress *p, bool quiet) {
    p->quiet = quiet;
    p->tty = !quiet && isatty(STDERR_FILENO);
    p->step = p->total = 0;
}

void msg_step(msg_progress *p, const char *fmt, ...) {
    if (p->quiet) return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->step++;
    if (p->tty) {
        fprintf(stderr, "\r\033[K%s [%d/%d] %s", command, p->step, p->total, msg);
        line_open = true;
    } else {
        fprintf(stderr, "%s [%d/%d] %s\n", command, p->step, p->total, msg);
    }
    fflush(stderr);
}

void msg_done(const msg_progress *p, double seconds) {
    if (p->quiet) return;
    if (p->tty) fprintf(stderr, "\r\033[K");
    line_open = false;
    fprintf(stderr, "%s: done in %.1f s\n", command, seconds);
}
