/* attention_sched.cu — what the CUDA attention kernels share on the host side:
 * the lazily grown workspace, the tile schedule (built on the device from
 * cu_seqlens: one item per (sequence, tile), heaviest first, so that a batch
 * of many short sequences wastes no blocks and the long causal tiles do not
 * trail at the end), alignment checks and the kernel lab's hooks. */
#include "cuda/attention_common.cuh"
#include <stdlib.h>
#include <string.h>

/* ---- workspace ---------------------------------------------------------- */

rg_status rg_cuda_attn_ws_get(rg_backend *be, rg_cuda_attn_ws **out) {
    rg_cuda_state *st = rg_cuda(be);
    if (!st->attn) {
        rg_cuda_attn_ws *ws = (rg_cuda_attn_ws *)calloc(1, sizeof *ws);
        if (!ws) return rg_fail(RG_ERR_OUT_OF_MEMORY, "cuda attention: cannot allocate the workspace header");
        ws->fwd_variant = ws->bwd_variant = -1;
        st->attn = ws;
    }
    *out = st->attn;
    return RG_OK;
}

/* Grows the device buffer to at least `bytes` (by 1.25x to avoid creeping
 * regrowth); freeing the old one synchronises, which happens only on growth. */
rg_status rg_cuda_attn_ws_reserve(rg_backend *be, size_t bytes, void **buf) {
    rg_cuda_attn_ws *ws = NULL;
    RG_TRY(rg_cuda_attn_ws_get(be, &ws));
    if (bytes > ws->size) {
        size_t want = bytes + bytes / 4;
        if (ws->buf) RG_CUDA_TRY(cudaFree(ws->buf));
        ws->buf = NULL;
        ws->size = 0;
        cudaError_t e = cudaMalloc(&ws->buf, want);
        if (e != cudaSuccess) {
            cudaGetLastError();
            ws->buf = NULL;
            return rg_fail(e == cudaErrorMemoryAllocation ? RG_ERR_OUT_OF_MEMORY : RG_ERR_BACKEND,
                           "cuda attention: cannot allocate a %zu-byte workspace: %s", want,
                           cudaGetErrorString(e));
        }
        ws->size = want;
    }
    *buf = ws->buf;
    return RG_OK;
}

void rg_cuda_attn_ws_free(rg_cuda_attn_ws *ws) {
    if (!ws) return;
    cudaFree(ws->buf);
    for (int i = 0; i < 2; i++) {
        cudaFree(ws->sched[i].items);
        free(ws->sched[i].key_cu);
    }
    free(ws);
}

/* ---- schedule ------------------------------------------------------------ */

#define RG_SCHED_BUCKETS 2048
#define RG_SCHED_THREADS 1024

/* Cost of tile t of a sequence with lq queries and lk keys, in blocks of
 * `unit` rows of the other side (+1 for the tile's fixed work). mode FWD:
 * query tiles, cost = key blocks visited; BWD: key tiles, cost = query blocks. */
__device__ __forceinline__ int sched_cost(int mode, int causal, int tile, int unit, int t, int lq, int lk) {
    int n;
    if (mode == RG_SCHED_FWD) {
        n = lk;
        if (causal) {
            int last = min(lq, (t + 1) * tile) - 1;
            n = max(0, min(lk, last + lk - lq + 1));
        }
    } else {
        n = lq;
        if (causal) n = max(0, lq - max(0, t * tile - (lk - lq)));
    }
    int c = (n + unit - 1) / unit + 1;
    return min(c, RG_SCHED_BUCKETS - 1);
}

/* One block: counting sort of all tiles by decreasing cost (a histogram, an
 * exclusive scan over buckets, then a scatter). Order inside a bucket is
 * arbitrary, which changes nothing in the results of the forward and only the
 * order of fp32 atomic additions in the backward. */
__global__ void __launch_bounds__(RG_SCHED_THREADS)
rg_sched_kernel(const int32_t *cu_q, const int32_t *cu_k, int batch, int mode, int causal, int tile, int unit,
                int2 *items, int64_t n_items) {
    __shared__ int hist[RG_SCHED_BUCKETS];
    __shared__ int warp_sum[RG_SCHED_THREADS / 32];
    const int tid = threadIdx.x;
    for (int i = tid; i < RG_SCHED_BUCKETS; i += RG_SCHED_THREADS) hist[i] = 0;
    __syncthreads();
    for (int b = tid; b < batch; b += RG_SCHED_THREADS) {
        int lq = cu_q[b + 1] - cu_q[b], lk = cu_k[b + 1] - cu_k[b];
        int L = mode == RG_SCHED_FWD ? lq : lk;
        for (int t = 0; t * tile < L; t++)
            atomicAdd(&hist[RG_SCHED_BUCKETS - 1 - sched_cost(mode, causal, tile, unit, t, lq, lk)], 1);
    }
    __syncthreads();
    /* exclusive scan: each thread owns RG_SCHED_BUCKETS / RG_SCHED_THREADS consecutive buckets */
    constexpr int PER = RG_SCHED_BUCKETS / RG_SCHED_THREADS;
    int local[PER], sum = 0;
#pragma unroll
    for (int i = 0; i < PER; i++) { local[i] = hist[tid * PER + i]; sum += local[i]; }
    int incl = sum;
    const int lane = tid & 31, warp = tid >> 5;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        int v = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += v;
    }
    if (lane == 31) warp_sum[warp] = incl;
    __syncthreads();
    if (warp == 0) {
        int w = warp_sum[lane], wi = w;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            int v = __shfl_up_sync(0xffffffffu, wi, o);
            if (lane >= o) wi += v;
        }
        warp_sum[lane] = wi - w;
    }
    __syncthreads();
    int run = warp_sum[warp] + incl - sum;
#pragma unroll
    for (int i = 0; i < PER; i++) { hist[tid * PER + i] = run; run += local[i]; }
    __syncthreads();
    for (int b = tid; b < batch; b += RG_SCHED_THREADS) {
        int lq = cu_q[b + 1] - cu_q[b], lk = cu_k[b + 1] - cu_k[b];
        int L = mode == RG_SCHED_FWD ? lq : lk;
        for (int t = 0; t * tile < L; t++) {
            int pos = atomicAdd(&hist[RG_SCHED_BUCKETS - 1 - sched_cost(mode, causal, tile, unit, t, lq, lk)], 1);
            if (pos < n_items) items[pos] = make_int2(b, t);
        }
    }
}

rg_status rg_cuda_attn_schedule(rg_backend *be, const rg_attn_args *a, int mode, int tile, int unit,
                                const int2 **items, int64_t *n_items) {
    rg_cuda_attn_ws *ws = NULL;
    RG_TRY(rg_cuda_attn_ws_get(be, &ws));
    rg_attn_sched *s = &ws->sched[mode];
    const int B = a->desc.batch;
    const int32_t *cq = a->desc.cu_seqlens_q, *ck = a->desc.cu_seqlens_k;
    const int64_t ncu = 2 * ((int64_t)B + 1);
    const int causal = a->desc.causal ? 1 : 0;
    if (s->key_valid && s->key_mode == mode && s->key_tile == tile && s->key_unit == unit &&
        s->key_causal == causal && s->key_batch == B &&
        memcmp(s->key_cu, cq, (size_t)(B + 1) * sizeof(int32_t)) == 0 &&
        memcmp(s->key_cu + B + 1, ck, (size_t)(B + 1) * sizeof(int32_t)) == 0) {
        *items = s->items;
        *n_items = s->n_items;
        return RG_OK;
    }
    s->key_valid = 0;
    int64_t n = 0;
    for (int b = 0; b < B; b++) {
        int64_t L = mode == RG_SCHED_FWD ? cq[b + 1] - cq[b] : ck[b + 1] - ck[b];
        n += (L + tile - 1) / tile;
    }
    if (n > INT32_MAX / 8)
        return rg_fail(RG_ERR_OVERFLOW, "cuda attention: %lld tiles do not fit one grid", (long long)n);
    if (n > s->cap) {
        int64_t want = n + n / 4 + 64;
        if (s->items) RG_CUDA_TRY(cudaFree(s->items));
        s->items = NULL;
        s->cap = 0;
        cudaError_t e = cudaMalloc(&s->items, (size_t)want * sizeof(int2));
        if (e != cudaSuccess) {
            cudaGetLastError();
            s->items = NULL;
            return rg_fail(e == cudaErrorMemoryAllocation ? RG_ERR_OUT_OF_MEMORY : RG_ERR_BACKEND,
                           "cuda attention: cannot allocate a schedule of %lld tiles: %s", (long long)want,
                           cudaGetErrorString(e));
        }
        s->cap = want;
    }
    if (ncu > s->key_cap) {
        int32_t *k2 = (int32_t *)realloc(s->key_cu, (size_t)ncu * sizeof(int32_t));
        if (!k2) return rg_fail(RG_ERR_OUT_OF_MEMORY, "cuda attention: cannot allocate the schedule key");
        s->key_cu = k2;
        s->key_cap = ncu;
    }
    if (n > 0) {
        rg_sched_kernel<<<1, RG_SCHED_THREADS, 0, rg_cuda(be)->stream>>>(
            a->cu_seqlens_q_dev, a->cu_seqlens_k_dev, B, mode, causal, tile, unit, s->items, n);
        RG_CUDA_CHECK_LAUNCH("attention schedule");
    }
    memcpy(s->key_cu, cq, (size_t)(B + 1) * sizeof(int32_t));
    memcpy(s->key_cu + B + 1, ck, (size_t)(B + 1) * sizeof(int32_t));
    s->key_mode = mode;
    s->key_tile = tile;
    s->key_unit = unit;
    s->key_causal = causal;
    s->key_batch = B;
    s->n_items = n;
    s->key_valid = 1;
    *items = s->items;
    *n_items = n;
    return RG_OK;
}

/* ---- checks and lab hooks -------------------------------------------------- */

rg_status rg_cuda_attn_check_align(const char *fn, const rg_attn_args *a, const void *q, const void *k,
                                   const void *v, const void *o) {
    const rg_attn_desc *d = &a->desc;
    if (((uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (uintptr_t)o) & 15)
        return rg_fail(RG_ERR_UNSUPPORTED, "%s: q, k, v, o (and their gradients) must be 16-byte aligned "
                       "on the CUDA backend", fn);
    if ((d->stride_q | d->stride_k | d->stride_v) & 7)
        return rg_fail(RG_ERR_UNSUPPORTED, "%s: strides (%d, %d, %d) must be multiples of 8 elements on the "
                       "CUDA backend", fn, d->stride_q, d->stride_k, d->stride_v);
    return RG_OK;
}

extern "C" int rg_cuda_attn_set_variant(rg_backend *be, int fwd, int bwd) {
    rg_cuda_attn_ws *ws = NULL;
    if (!be || be->kind != RG_BACKEND_CUDA || rg_cuda_attn_ws_get(be, &ws) != RG_OK) return -1;
    ws->fwd_variant = fwd;
    ws->bwd_variant = bwd;
    return 0;
}

extern "C" void *rg_cuda_stream_of(rg_backend *be) {
    return be && be->kind == RG_BACKEND_CUDA ? (void *)rg_cuda(be)->stream : NULL;
}
