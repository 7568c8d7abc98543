/* bench_model_prof.c — `ragged bench` with RG_PROFILE=1: the per-op profile
 * of each mode's timed steps as a markdown table (device ms per step, share
 * of the measured step, achieved TFLOP/s or GB/s, host time per call),
 * longest op first, and what the ops leave unexplained (the device idle:
 * host work, launch gaps, synchronisation). */
#include "bench_model.h"

static void print_mode(const mbench_run *run, int mode, FILE *f) {
    const rg_profile_entry *e = run->prof[mode];
    int n = run->n_prof[mode], steps = run->prof_steps[mode];
    if (steps < 1) return;
    double step_ms = run->prof_ms[mode] / steps, sum = 0, calls = 0, host = 0;
    fprintf(f, "\n### Per-op profile: %s, %d timed steps (RG_PROFILE=1), mean step %.2f ms\n\n", mode_names[mode],
            steps, step_ms);
    fprintf(f, "| op | shape | calls/step | ms/step | %% of step | TFLOP/s | GB/s | host us/call |\n");
    fprintf(f, "|---|---|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < n; i++) {
        double ms = e[i].ms / steps, s = e[i].ms * 1e-3;
        sum += ms;
        calls += (double)e[i].calls / steps;
        fprintf(f, "| %s | %s | %.1f | %.3f | %.1f |", e[i].op, e[i].shape, (double)e[i].calls / steps, ms,
                100.0 * ms / step_ms);
        if (e[i].flops > 0 && s > 0) fprintf(f, " %.0f |", e[i].flops / s / 1e12);
        else fprintf(f, " |");
        if (e[i].bytes > 0 && s > 0) fprintf(f, " %.0f |", e[i].bytes / s / 1e9);
        else fprintf(f, " |");
        fprintf(f, " %.1f |\n", e[i].calls ? 1e3 * e[i].host_ms / (double)e[i].calls : 0.0);
        host += e[i].host_ms / steps;
    }
    fprintf(f, "| **all ops** | | %.1f | %.3f | %.1f | | | %.3f ms/step |\n", calls, sum, 100.0 * sum / step_ms,
            host);
    fprintf(f, "| **rest of the step** (device idle: host work, launch gaps, syncs) | | | %.3f | %.1f | | | |\n",
            step_ms - sum, 100.0 * (step_ms - sum) / step_ms);
    int n_strat = 0;
    for (int s = 0; s < N_STRAT; s++) n_strat += run->strat[s].done[mode];
    if (n_strat > 1)
        fprintf(f, "\n(%d strategies' steps together: run one --strategies for a clean profile)\n", n_strat);
}

void mbench_print_profile(const mbench_opts *o, const mbench_run *run, FILE *f) {
    (void)o;
    for (int m = 0; m < N_MODE; m++)
        if (run->prof[m]) print_mode(run, m, f);
}
