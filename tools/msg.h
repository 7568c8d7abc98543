/* msg.h — a command's messages on stderr: errors "ragged: CMD: ..." and
 * numbered progress lines "CMD [i/n] ...". On a terminal the progress lines
 * redraw one line; an error first ends that line so it stands on its own.
 * One command runs per process, so the command's name and whether a progress
 * line is open are this module's state. */
#ifndef RG_TOOLS_MSG_H
#define RG_TOOLS_MSG_H
#include "ragged.h"
#include <stdbool.h>

/* A run's progress count: step of total, printed unless quiet, redrawn in place on a tty. */
typedef struct msg_progress { bool quiet, tty; int step, total; } msg_progress;

/* Names the command in every message that follows ("bench attn"). */
void msg_command(const char *cmd);

/* Prints "ragged: CMD: MESSAGE" on a line of its own; returns 1. */
int msg_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* The same for a failed library call: "ragged: CMD: WHAT: last error (status)"; returns 1. */
int msg_fail(rg_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Starts a count: quiet prints nothing, otherwise a terminal stderr gets redrawn lines. */
void msg_progress_start(msg_progress *p, bool quiet);

/* Counts one step and prints "CMD [step/total] MESSAGE". */
void msg_step(msg_progress *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Clears the progress line and prints "CMD: done in S s" (nothing when quiet). */
void msg_done(const msg_progress *p, double seconds);

#endif
