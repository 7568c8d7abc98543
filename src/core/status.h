/* status.h — setting the per-thread last error. Every failing path in the
 * library goes through rg_fail so that the caller gets a status and a message. */
#ifndef RG_CORE_STATUS_H
#define RG_CORE_STATUS_H
#include "ragged.h"

#if defined(__GNUC__)
#define RG_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define RG_PRINTF(a, b)
#endif

/* Records "fmt..." as this thread's last error and returns s. */
rg_status rg_fail(rg_status s, const char *fmt, ...) RG_PRINTF(2, 3);
/* Clears the last error (called on entry of public functions that succeed). */
void rg_clear_error(void);

/* Propagate a failing status: RG_TRY(f(x)); */
#define RG_TRY(expr) do { rg_status rg_try_s_ = (expr); if (rg_try_s_ != RG_OK) return rg_try_s_; } while (0)

#endif
