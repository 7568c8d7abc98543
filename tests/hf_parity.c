/* hf_parity.c — ragged's side of the transformers parity check (scripts/hf_parity.py):
 * loads a GPT2LMHeadModel checkpoint on a backend (CPU fp32, or CUDA with bf16
 * activations), runs one batch of sequences packed and padded, and writes the
 * logits, the loss and every gradient for the script to compare with transformers.
 *
 * usage: hf_parity DIR [--save-roundtrip DIR2] [--backend cpu|cuda]
 *   DIR holds config.json + model.safetensors (save_pretrained) and batch.txt: one
 *   sequence per line, whitespace-separated token ids. Writes to DIR:
 *     ragged_logits_packed.f32  (n_real, V) raw little-endian float32, real tokens in
 *                               packed order (sequence 0's tokens, then sequence 1's, ...)
 *     ragged_logits_padded.f32  the same tokens taken from a PAD_LONGEST batch
 *     ragged_loss.txt           mean cross-entropy over the targets (next token inside
 *                               each sequence), then the target count
 *     grads/                    every parameter gradient of that mean loss (packed batch)
 *                               as an HF checkpoint: rg_hf_gpt2_save of a second model
 *                               whose parameters are set to the gradients, so names and
 *                               Conv1D layout are exactly those of a saved model
 *   --save-roundtrip DIR2: also saves the loaded model with rg_hf_gpt2_save into DIR2.
 * Errors: a message on stderr, exit status 1. */
#define _POSIX_C_SOURCE 200809L
#include "ragged.h"
#include "hf_util.h"

static int api_fail(const char *what, rg_status s) {
    fprintf(stderr, "hf_parity: %s: %s (%s)\n", what, rg_status_str(s), rg_last_error());
    return 1;
}

static int write_f32(const char *path, const float *x, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(x, sizeof *x, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "hf_parity: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *roundtrip = NULL, *backend = "cpu";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--save-roundtrip") && i + 1 < argc) roundtrip = argv[++i];
        else if (!strcmp(argv[i], "--backend") && i + 1 < argc && (!strcmp(argv[i + 1], "cpu") || !strcmp(argv[i + 1], "cuda")))
            backend = argv[++i];
        else if (!dir && argv[i][0] != '-') dir = argv[i];
        else {
            fprintf(stderr, "usage: hf_parity DIR [--save-roundtrip DIR2] [--backend cpu|cuda]\n");
            return 1;
        }
    }
    if (!dir) {
        fprintf(stderr, "usage: hf_parity DIR [--save-roundtrip DIR2] [--backend cpu|cuda]\n");
        return 1;
    }

    int rc = 1;
    rg_status s;
    rg_backend *be = NULL;
    rg_model *m = NULL, *g = NULL;
    rg_batch packed = {0}, padded = {0};
    float *logits = NULL, *real = NULL, *buf = NULL;
    int32_t *seqs[HF_MAX_SEQS] = {0}, lens[HF_MAX_SEQS], n_seqs = 0;
    char *p_batch = hf_join(dir, "batch.txt"), *p_lpk = hf_join(dir, "ragged_logits_packed.f32"),
         *p_lpd = hf_join(dir, "ragged_logits_padded.f32"), *p_loss = hf_join(dir, "ragged_loss.txt"),
         *p_grads = hf_join(dir, "grads");
    if (!p_batch || !p_lpk || !p_lpd || !p_loss || !p_grads) { fprintf(stderr, "hf_parity: out of memory\n"); goto done; }

    rg_model_config cfg;
    if ((s = rg_backend_init(strcmp(backend, "cuda") ? RG_BACKEND_CPU : RG_BACKEND_CUDA, 0, &be))) {
        api_fail("rg_backend_init", s);
        goto done;
    }
    if ((s = rg_hf_gpt2_config_read(dir, &cfg))) { api_fail("rg_hf_gpt2_config_read", s); goto done; }
    if ((s = rg_model_init(be, &cfg, 1, &m))) { api_fail("rg_model_init", s); goto done; }
    if ((s = rg_hf_gpt2_load(m, dir))) { api_fail("rg_hf_gpt2_load", s); goto done; }
    if (roundtrip && (s = rg_hf_gpt2_save(m, roundtrip))) { api_fail("rg_hf_gpt2_save (round trip)", s); goto done; }

    if (hf_read_batch(p_batch, seqs, lens, &n_seqs)) goto done;
    const int32_t V = cfg.vocab_size;
    rg_batch_opts o = {.layout = RG_LAYOUT_PACKED, .max_len = cfg.max_seq_len, .vocab_size = V, .pad_id = 0};
    if ((s = rg_batch_build(&o, n_seqs, (const int32_t *const *)seqs, lens, &packed))) { api_fail("packed batch", s); goto done; }
    o.layout = RG_LAYOUT_PAD_LONGEST;
    if ((s = rg_batch_build(&o, n_seqs, (const int32_t *const *)seqs, lens, &padded))) { api_fail("padded batch", s); goto done; }
    if (packed.n_targets == 0) { fprintf(stderr, "hf_parity: the batch has no targets (every sequence has length 1)\n"); goto done; }

    /* Packed: slot t is real token t, so the logits are already in packed order. */
    size_t n_real = (size_t)packed.n_real;
    logits = malloc((size_t)padded.n_tokens * (size_t)V * sizeof *logits);
    real = malloc(n_real * (size_t)V * sizeof *real);
    if (!logits || !real) { fprintf(stderr, "hf_parity: out of memory for logits\n"); goto done; }
    if ((s = rg_model_logits(m, &packed, real))) { api_fail("rg_model_logits (packed)", s); goto done; }
    if (write_f32(p_lpk, real, n_real * (size_t)V)) goto done;

    /* Padded: row b holds sequence b's real tokens first; gather them in packed order. */
    if ((s = rg_model_logits(m, &padded, logits))) { api_fail("rg_model_logits (padded)", s); goto done; }
    size_t k = 0;
    for (int32_t b = 0; b < n_seqs; b++)
        for (int32_t i = 0; i < lens[b]; i++, k++)
            memcpy(real + k * (size_t)V, logits + ((size_t)b * (size_t)padded.row_len + (size_t)i) * (size_t)V,
                   (size_t)V * sizeof *real);
    if (write_f32(p_lpd, real, n_real * (size_t)V)) goto done;

    rg_step_result res;
    if ((s = rg_model_grads(m, &packed, 1, &res))) { api_fail("rg_model_grads", s); goto done; }
    FILE *f = fopen(p_loss, "w");
    if (!f || fprintf(f, "%.17g %lld\n", res.loss_sum / (double)res.n_targets, (long long)res.n_targets) < 0 ||
        fclose(f) != 0) {
        fprintf(stderr, "hf_parity: cannot write %s\n", p_loss);
        goto done;
    }

    /* Gradients -> parameters of a twin model -> rg_hf_gpt2_save: the saver's own names and layout. */
    if ((s = rg_model_init(be, &cfg, 2, &g))) { api_fail("rg_model_init (gradient model)", s); goto done; }
    buf = malloc((size_t)rg_model_n_params(m) * sizeof *buf);
    if (!buf) { fprintf(stderr, "hf_parity: out of memory for gradients\n"); goto done; }
    for (int32_t i = 0; i < rg_model_n_tensors(m); i++) {
        if ((s = rg_model_tensor_get(m, RG_MODEL_GRADS, i, buf))) { api_fail("rg_model_tensor_get (grads)", s); goto done; }
        if ((s = rg_model_tensor_set(g, RG_MODEL_PARAMS, i, buf))) { api_fail("rg_model_tensor_set", s); goto done; }
    }
    if ((s = rg_hf_gpt2_save(g, p_grads))) { api_fail("rg_hf_gpt2_save (grads)", s); goto done; }

    printf("hf_parity: %s: %s backend, %d sequences, %zu tokens, %lld targets, loss %.6f\n", dir, rg_backend_name(be),
           (int)n_seqs, n_real, (long long)res.n_targets, res.loss_sum / (double)res.n_targets);
    rc = 0;
done:
    for (int32_t b = 0; b < n_seqs; b++) free(seqs[b]);
    rg_batch_free(&packed);
    rg_batch_free(&padded);
    free(logits);
    free(real);
    free(buf);
    rg_model_free(g);
    rg_model_free(m);
    rg_backend_free(be);
    free(p_batch);
    free(p_lpk);
    free(p_lpd);
    free(p_loss);
    free(p_grads);
    return rc;
}
