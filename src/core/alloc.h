/* alloc.h — host allocation with overflow-checked sizes and 64-byte alignment
 * (so that vector loads of any width are aligned). Failures set the last error. */
#ifndef RG_CORE_ALLOC_H
#define RG_CORE_ALLOC_H
#include <stddef.h>
#include <stdbool.h>
#include "ragged.h"

/* *out = n * size bytes (uninitialised), or a status naming `what`. */
rg_status rg_alloc(void **out, size_t n, size_t size, const char *what);
/* Same, zero-filled. */
rg_status rg_calloc(void **out, size_t n, size_t size, const char *what);
void rg_free(void *p);
/* a * b without overflow; false if it would overflow. */
bool rg_mul_ok(size_t a, size_t b, size_t *out);

#endif
