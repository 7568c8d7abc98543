/* embedding.cu — token + position embedding: forward out (T,C) = wte[tokens]
 * + wpe[pos] (bf16), backward into fp32 dwte (V,C) and dwpe (L,C).
 * The backward is deterministic: the ids are sorted (CUB radix sort, stable,
 * so equal ids keep token order) and one block per run of equal ids sums its
 * rows in a fixed order and adds the sum to the table row, which no other
 * block touches. When the sort buffers do not fit in the backend's scratch
 * (T above about two million tokens) it falls back to fp32 atomics, whose
 * result can differ in the last bits between runs. */
#include "cuda/ops.cuh"
#include <cub/device/device_radix_sort.cuh>

#define THREADS 256
#define RUN_TX 128 /* column lanes of a run block */
#define RUN_TY 4   /* row groups of a run block */
#define RUN_POS 16 /* sorted positions per run block */

template <int VEC>
__global__ void embedding_forward_kernel(bf16 *out, const int32_t *tokens, const int32_t *pos, const bf16 *wte,
                                         const bf16 *wpe, int64_t T, int C) {
    int64_t nv = T * C / VEC, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < nv; i += stride) {
        int64_t t = i * VEC / C;
        int c = (int)(i * VEC - t * C);
        float a[VEC], b[VEC];
        rg_load_bf16<VEC>(a, wte + (int64_t)tokens[t] * C + c);
        if (wpe) {
            rg_load_bf16<VEC>(b, wpe + (int64_t)pos[t] * C + c);
#pragma unroll
            for (int j = 0; j < VEC; j++) a[j] += b[j];
        }
        rg_store_bf16<VEC>(out + i * VEC, a);
    }
}

rg_status rg_cuda_embedding_forward(rg_backend *be, void *out, const int32_t *tokens, const int32_t *pos,
                                    const void *wte, const void *wpe, int64_t T, int C) {
    rg_cuda_state *st = rg_cuda(be);
    if (T <= 0 || C <= 0) return RG_OK;
    bf16 *o = (bf16 *)out;
    const bf16 *a = (const bf16 *)wte, *b = (const bf16 *)wpe;
    if (C % 8 == 0 && rg_aligned16(out) && rg_aligned16(wte) && (!wpe || rg_aligned16(wpe)))
        embedding_forward_kernel<8><<<rg_cuda_blocks(st, T * C / 8, THREADS, 8), THREADS, 0, st->stream>>>(
            o, tokens, pos, a, b, T, C);
    else
        embedding_forward_kernel<1><<<rg_cuda_blocks(st, T * C, THREADS, 8), THREADS, 0, st->stream>>>(
            o, tokens, pos, a, b, T, C);
    RG_CUDA_CHECK_LAUNCH("embedding_forward_kernel");
    return RG_OK;
}

__global__ void iota_kernel(int32_t *p, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) p[i] = i;
}

/* Block b looks at sorted positions [b * RUN_POS, (b + 1) * RUN_POS); for
 * each that starts a run of equal ids, table[id] += the run's dout rows
 * (a run may extend past the block's range), summed by RUN_TY row groups and
 * then across groups in order. */
template <int VEC>
__global__ void scatter_runs_kernel(float *table, const bf16 *dout, const int32_t *keys, const int32_t *rows, int n,
                                    int C) {
    __shared__ int s_end;
    __shared__ float part[RUN_TY][RUN_TX * VEC];
    int tid = threadIdx.y * RUN_TX + threadIdx.x, nthreads = RUN_TX * RUN_TY;
    int first = blockIdx.x * RUN_POS, last = min(first + RUN_POS, n);
    for (int i = first; i < last; i++) {
        int key = keys[i];
        if (i > 0 && keys[i - 1] == key) continue; /* uniform across the block */
        if (tid == 0) s_end = n;
        __syncthreads();
        /* the run ends at the first j > i with another key (keys are sorted) */
        for (int base = i + 1; base < n; base += nthreads) {
            int j = base + tid;
            if (j < n && keys[j] != key) atomicMin(&s_end, j);
            __syncthreads();
            int e = s_end;
            __syncthreads(); /* everyone has read s_end before the next round lowers it */
            if (e < base + nthreads) break;
        }
        int end = s_end;
        for (int c0 = 0; c0 < C; c0 += RUN_TX * VEC) {
            int c = c0 + threadIdx.x * VEC;
            float acc[VEC];
#pragma unroll
            for (int j = 0; j < VEC; j++) acc[j] = 0.0f;
            if (c < C) {
#pragma unroll 4
                for (int r = i + threadIdx.y; r < end; r += RUN_TY) {
                    float d[VEC];
                    rg_load_bf16<VEC>(d, dout + (int64_t)rows[r] * C + c);
#pragma unroll
                    for (int j = 0; j < VEC; j++) acc[j] += d[j];
                }
            }
#pragma unroll
            for (int j = 0; j < VEC; j++) part[threadIdx.y][threadIdx.x * VEC + j] = acc[j];
            __syncthreads();
            if (threadIdx.y == 0 && c < C) {
                float *dst = table + (int64_t)key * C + c;
#pragma unroll
                for (int j = 0; j < VEC; j++) {
                    float sum = 0.0f;
#pragma unroll
                    for (int y = 0; y < RUN_TY; y++) sum += part[y][threadIdx.x * VEC + j];
                    dst[j] += sum;
                }
            }
            __syncthreads(); /* part and s_end are reused */
        }
    }
}

__global__ void scatter_atomic_kernel(float *table, const bf16 *dout, const int32_t *ids, int64_t T, int C) {
    int64_t n = T * C, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        int64_t t = i / C;
        atomicAdd(table + (int64_t)ids[t] * C + (i - t * C), __bfloat162float(dout[i]));
    }
}

/* table[ids[t]] += dout[t] for t < T. */
static rg_status scatter_add(rg_cuda_state *st, float *table, const bf16 *dout, const int32_t *ids, int64_t T, int C) {
    size_t ids_bytes = ((size_t)T * sizeof(int32_t) + 255) & ~(size_t)255, temp_bytes = 0;
    bool sorted = T < INT32_MAX / 2;
    int n = (int)T;
    char *base = (char *)st->scratch;
    int32_t *rows_in = (int32_t *)base, *keys_out = (int32_t *)(base + ids_bytes),
            *rows_out = (int32_t *)(base + 2 * ids_bytes);
    if (sorted) {
        RG_CUDA_TRY(cub::DeviceRadixSort::SortPairs(NULL, temp_bytes, ids, keys_out, rows_in, rows_out, n, 0, 32,
                                                    st->stream));
        sorted = 3 * ids_bytes + temp_bytes <= st->scratch_bytes;
    }
    if (!sorted) {
        scatter_atomic_kernel<<<rg_cuda_blocks(st, T * C, THREADS, 8), THREADS, 0, st->stream>>>(table, dout, ids, T, C);
        RG_CUDA_CHECK_LAUNCH("scatter_atomic_kernel");
        return RG_OK;
    }
    iota_kernel<<<rg_cuda_blocks(st, n, THREADS, 4), THREADS, 0, st->stream>>>(rows_in, n);
    RG_CUDA_CHECK_LAUNCH("iota_kernel");
    RG_CUDA_TRY(cub::DeviceRadixSort::SortPairs(base + 3 * ids_bytes, temp_bytes, ids, keys_out, rows_in, rows_out, n,
                                                0, 32, st->stream));
    if (C % 8 == 0 && rg_aligned16(dout) && rg_aligned16(table))
        scatter_runs_kernel<8><<<(n + RUN_POS - 1) / RUN_POS, dim3(RUN_TX, RUN_TY), 0, st->stream>>>(
            table, dout, keys_out, rows_out, n, C);
    else
        scatter_runs_kernel<1><<<(n + RUN_POS - 1) / RUN_POS, dim3(RUN_TX, RUN_TY), 0, st->stream>>>(
            table, dout, keys_out, rows_out, n, C);
    RG_CUDA_CHECK_LAUNCH("scatter_runs_kernel");
    return RG_OK;
}

rg_status rg_cuda_embedding_backward(rg_backend *be, float *dwte, float *dwpe, const void *dout,
                                     const int32_t *tokens, const int32_t *pos, int64_t T, int C) {
    rg_cuda_state *st = rg_cuda(be);
    if (T <= 0 || C <= 0) return RG_OK;
    if (dwte) RG_TRY(scatter_add(st, dwte, (const bf16 *)dout, tokens, T, C));
    if (dwpe) RG_TRY(scatter_add(st, dwpe, (const bf16 *)dout, pos, T, C));
    return RG_OK;
}
