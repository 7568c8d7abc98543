/* threads.h — the OpenMP thread index and team size, also in builds without OpenMP. */
#ifndef RG_CORE_THREADS_H
#define RG_CORE_THREADS_H
#ifdef _OPENMP
#include <omp.h>
#endif

/* This thread's index inside the current parallel region (0 outside one). */
static inline int rg_thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* The most threads a parallel region may use (per-thread scratch is sized by it). */
static inline int rg_thread_count(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

#endif
