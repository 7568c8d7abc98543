/* file.h — reading a whole file into memory (text formats: lengths, vocab, merges). */
#ifndef RG_CORE_FILE_H
#define RG_CORE_FILE_H
#include <stddef.h>
#include "ragged.h"

/* *out = the file's bytes plus a terminating NUL (free with rg_free), *len =
 * the byte count. Errors (RG_ERR_IO, RG_ERR_OVERFLOW, RG_ERR_OUT_OF_MEMORY)
 * name `who` and the path; on failure *out is NULL. */
rg_status rg_read_file(const char *who, const char *path, char **out, size_t *len);

#endif
