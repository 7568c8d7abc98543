/* status.c — status names and the per-thread last-error message. */
#include "core/status.h"
#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[1024];

const char *rg_status_str(rg_status s) {
    switch (s) {
    case RG_OK: return "ok";
    case RG_ERR_INVALID_ARG: return "invalid argument";
    case RG_ERR_OUT_OF_MEMORY: return "out of memory";
    case RG_ERR_OVERFLOW: return "size overflow";
    case RG_ERR_IO: return "i/o error";
    case RG_ERR_FORMAT: return "malformed file";
    case RG_ERR_UNSUPPORTED: return "unsupported";
    case RG_ERR_BACKEND: return "backend failure";
    case RG_ERR_EXHAUSTED: return "pool exhausted";
    }
    return "unknown status";
}

const char *rg_last_error(void) { return last_error; }

const char *rg_version(void) { return "0.1.0"; }

rg_status rg_fail(rg_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}

void rg_clear_error(void) { last_error[0] = '\0'; }
