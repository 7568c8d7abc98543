/* cuda_barrier_bench.cu — what one grid-wide handoff costs on this GPU: one
 * CTA per multiprocessor (a persistent decode pass's grid), a kernel that does
 * nothing but N barriers, timed with CUDA events; the time per barrier is
 * (kernel with N - kernel with 0) / N. Session 5's persistent decode pass
 * (branch decode-fused) spent ~1.9 us in each of its 60 barriers; this is the
 * microbenchmark to pick a cheaper handoff from before writing model code.
 *
 *   counter   every CTA's thread 0: fence, atomicAdd on one counter, poll it
 *             with ld.acquire until it reaches (k + 1) G (that pass's barrier)
 *   counter+sleep  the same, polling with __nanosleep(32) between loads
 *   flags     every CTA stores its own flag (st.release); CTA 0's first warp
 *             polls all G flags, then releases a generation word the others poll
 *   cluster8  clusters of 8 CTAs (the largest multiple of 8 that fits): a hardware cluster barrier, one atomic per
 *             cluster, the leader polls, a second cluster barrier (sm_90)
 *   handoff   not a barrier: CTA 0 stores a flag, CTA G-1 waits for it and
 *             answers; half the round trip is the latency of one producer ->
 *             consumer readiness flag
 * Usage: cuda_barrier_bench [N = 1000]. Prints one line per variant. */
#include <cooperative_groups.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

namespace cg = cooperative_groups;

#define CHECK(call)                                                                          \
    do {                                                                                     \
        cudaError_t e_ = (call);                                                             \
        if (e_ != cudaSuccess) {                                                             \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

enum { V_COUNTER, V_SLEEP, V_FLAGS, V_HANDOFF, V_CLUSTER, V_N };
static const char *names[V_N] = {"counter", "counter+sleep", "flags", "handoff", "cluster8"};

__device__ __forceinline__ unsigned ld_acquire(const unsigned *p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ void st_release(unsigned *p, unsigned v) {
    asm volatile("st.release.gpu.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

/* mem: [0] counter, [1] generation, [32..32+G) flags; zero at launch. */
__global__ void __launch_bounds__(256) barriers(int variant, int n, unsigned *mem) {
    const unsigned G = gridDim.x, c = blockIdx.x;
    unsigned *cnt = mem, *gen = mem + 1, *flag = mem + 32;
    for (int k = 0; k < n; k++) {
        const unsigned target = (unsigned)(k + 1);
        if (variant == V_HANDOFF) {
            /* CTA 0 -> CTA G-1 -> CTA 0: two flag latencies per k */
            if (threadIdx.x == 0 && c == 0) {
                st_release(flag, target);
                while (ld_acquire(flag + 1) < target) {}
            } else if (threadIdx.x == 0 && c == G - 1) {
                while (ld_acquire(flag) < target) {}
                st_release(flag + 1, target);
            }
            continue;
        }
        if (variant == V_CLUSTER) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
            cg::cluster_group cl = cg::this_cluster();
            cl.sync();
            if (cl.block_rank() == 0 && threadIdx.x == 0) {
                __threadfence();
                atomicAdd(cnt, 1u);
                unsigned per = G / cl.num_blocks();
                while (ld_acquire(cnt) < target * per) {}
            }
            cl.sync();
#endif
            continue;
        }
        __syncthreads();
        if (variant == V_FLAGS) {
            if (threadIdx.x == 0) st_release(flag + c, target);
            if (c == 0 && threadIdx.x < 32) {
                for (unsigned i = threadIdx.x; i < G; i += 32)
                    while (ld_acquire(flag + i) < target) {}
                __syncwarp();
                if (threadIdx.x == 0) st_release(gen, target);
            }
            if (threadIdx.x == 0)
                while (ld_acquire(gen) < target) {}
        } else if (threadIdx.x == 0) {
            __threadfence();
            atomicAdd(cnt, 1u);
            while (ld_acquire(cnt) < target * G)
                if (variant == V_SLEEP) __nanosleep(32);
        }
        __syncthreads();
    }
}

static float run(int variant, int n, unsigned *mem, int G) {
    CHECK(cudaMemset(mem, 0, 4096));
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr[2];
    cfg.gridDim = dim3(G);
    cfg.blockDim = dim3(256);
    cfg.attrs = attr;
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1;
    cfg.numAttrs = 1;
    if (variant == V_CLUSTER) {
        attr[1].id = cudaLaunchAttributeClusterDimension;
        attr[1].val.clusterDim.x = 8;
        attr[1].val.clusterDim.y = 1;
        attr[1].val.clusterDim.z = 1;
        cfg.numAttrs = 2;
    }
    cudaEvent_t a, b;
    CHECK(cudaEventCreate(&a));
    CHECK(cudaEventCreate(&b));
    CHECK(cudaEventRecord(a));
    cudaError_t e = cudaLaunchKernelEx(&cfg, barriers, variant, n, mem);
    if (e != cudaSuccess) {
        printf("%s: launch failed: %s\n", names[variant], cudaGetErrorString(e));
        cudaGetLastError();
        return -1.0f;
    }
    CHECK(cudaEventRecord(b));
    CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    CHECK(cudaEventDestroy(a));
    CHECK(cudaEventDestroy(b));
    return ms;
}

static int cmp(const void *x, const void *y) {
    float a = *(const float *)x, b = *(const float *)y;
    return (a > b) - (a < b);
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    if (n < 1) {
        fprintf(stderr, "usage: cuda_barrier_bench [N >= 1]\n");
        return 2;
    }
    int dev_count = 0;
    if (cudaGetDeviceCount(&dev_count) != cudaSuccess || dev_count == 0) {
        printf("cuda_barrier_bench: no CUDA device\n");
        return 0;
    }
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0));
    int G = prop.multiProcessorCount;
    unsigned *mem;
    CHECK(cudaMalloc(&mem, 4096));
    printf("%s, %d CTAs of 256 threads, %d barriers per kernel, median of 7 (us per barrier)\n", prop.name, G, n);
    for (int v = 0; v < V_N; v++) {
        if (v == V_CLUSTER && (prop.major < 9 || G < 8)) {
            printf("%-14s  (needs sm_90 and 8 CTAs)\n", names[v]);
            continue;
        }
        int g = v == V_CLUSTER ? G / 8 * 8 : G;
        float t[7], t0[7];
        if (run(v, n, mem, g) < 0) continue; /* warm-up */
        for (int r = 0; r < 7; r++) {
            t0[r] = run(v, 0, mem, g);
            t[r] = run(v, n, mem, g);
        }
        qsort(t, 7, sizeof t[0], cmp);
        qsort(t0, 7, sizeof t0[0], cmp);
        printf("%-14s  %.3f us (kernel %.3f ms, empty %.3f ms)\n", names[v], (t[3] - t0[3]) * 1e3 / n, t[3], t0[3]);
    }
    CHECK(cudaFree(mem));
    return 0;
}
