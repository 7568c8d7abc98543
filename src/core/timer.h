/* timer.h — monotonic wall clock. */
#ifndef RG_CORE_TIMER_H
#define RG_CORE_TIMER_H
/* Seconds from an arbitrary fixed origin (CLOCK_MONOTONIC). */
double rg_now(void);
#endif
