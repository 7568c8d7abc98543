/* safetensors.h — internals of the safetensors reader/writer shared with the
 * tests (the public API is ragged.h section 7). */
#ifndef RG_IO_SAFETENSORS_H
#define RG_IO_SAFETENSORS_H
#include "ragged.h"

/* The format's limit on the JSON header (the Python library refuses more). */
#define RG_SAFETENSORS_MAX_HEADER 100000000u

/* Fault injection for tests, per thread: when set to k > 0, the k-th file
 * operation of the next rg_safetensors_write calls (open, each write, fsync,
 * close, rename) fails with EIO as if the system had refused it; 0 = off.
 * Lets the tests prove that every failure path removes the temporary file and
 * leaves the previous checkpoint intact. */
extern _Thread_local int rg_safetensors_fault_at_;

#endif
