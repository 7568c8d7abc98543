/* graph.cu — the CUDA backend's replayable op sequences (backend.h,
 * graph_begin .. graph_free): stream capture into a CUDA graph, instantiated
 * once and launched as one unit, so that a decode step of ~100 small kernels
 * costs one host launch instead of one per kernel. */
#include "cuda/ops.cuh"
#include <stdlib.h>

struct rg_cuda_graph {
    cudaGraphExec_t exec;
    uint64_t ws_gen;     /* st->ws_gen when recorded: the workspaces it baked in */
};

rg_status rg_cuda_graph_begin(rg_backend *be) {
    /* Thread-local mode: a call of this thread that is unsafe while recording
     * (a synchronous copy, an allocation) fails instead of running. */
    RG_CUDA_TRY(cudaStreamBeginCapture(rg_cuda(be)->stream, cudaStreamCaptureModeThreadLocal));
    return RG_OK;
}

rg_status rg_cuda_graph_end(rg_backend *be, bool failed, void **out) {
    const char *fn = "graph_end (cuda)";
    rg_cuda_state *st = rg_cuda(be);
    *out = NULL;
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(st->stream, &graph);
    if (failed || e != cudaSuccess) {
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();  /* an op's failure may have invalidated the capture */
        if (failed) return RG_OK;
        return rg_fail(RG_ERR_BACKEND, "%s: cudaStreamEndCapture: %s", fn, cudaGetErrorString(e));
    }
    cudaGraphExec_t exec = NULL;
    e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return rg_fail(e == cudaErrorMemoryAllocation ? RG_ERR_OUT_OF_MEMORY : RG_ERR_BACKEND,
                       "%s: cudaGraphInstantiate: %s", fn, cudaGetErrorString(e));
    }
    rg_cuda_graph *g = (rg_cuda_graph *)malloc(sizeof *g);
    if (!g) {
        cudaGraphExecDestroy(exec);
        return rg_fail(RG_ERR_OUT_OF_MEMORY, "%s: cannot allocate the graph handle", fn);
    }
    g->exec = exec;
    g->ws_gen = st->ws_gen;
    *out = g;
    return RG_OK;
}

rg_status rg_cuda_graph_launch(rg_backend *be, void *graph, bool *stale) {
    rg_cuda_state *st = rg_cuda(be);
    rg_cuda_graph *g = (rg_cuda_graph *)graph;
    *stale = g->ws_gen != st->ws_gen;
    if (*stale) return RG_OK;
    RG_CUDA_TRY(cudaGraphLaunch(g->exec, st->stream));
    return RG_OK;
}

void rg_cuda_graph_free(rg_backend *be, void *graph) {
    (void)be;
    rg_cuda_graph *g = (rg_cuda_graph *)graph;
    if (!g) return;
    cudaGraphExecDestroy(g->exec);
    free(g);
}
