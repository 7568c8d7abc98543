/* checkpoint.h — a model (and its training state) to and from a safetensors
 * file through ragged.h section 7. Tensors: every parameter under the model's
 * table name (F32), and the optimizer state as "optim.m.NAME" / "optim.v.NAME"
 * when the optimizer keeps it. Metadata (strings): "format" =
 * CKPT_FORMAT, "step", the model config ("model.n_layers", ...), the optimizer
 * config ("optim.kind", "optim.lr", ...) and any extra pairs the caller adds
 * (the trainer's options, "train.*"). Floats are written with 9 significant
 * digits, so they read back bit for bit. */
#ifndef RG_TOOLS_CHECKPOINT_H
#define RG_TOOLS_CHECKPOINT_H
#include "ragged.h"
#include <stdbool.h>
#include <stddef.h>

#define CKPT_FORMAT "ragged.checkpoint.v1"

/* Writes m's parameters, optimizer state and step with the extra metadata
 * pairs (extra_kv[2i] key, [2i+1] value) to path, atomically. Returns 0, or -1
 * with a message in err. *bytes (may be NULL) receives the tensors' size. */
int ckpt_save(const char *path, rg_model *m, const char *const *extra_kv, size_t n_extra, size_t *bytes,
              char *err, size_t err_size);

/* Opens a checkpoint and reads its model config, optimizer config and step.
 * Returns 0 (the caller closes *st), or -1 with a message in err. */
int ckpt_open(const char *path, rg_safetensors **st, rg_model_config *cfg, rg_optim_config *opt, int64_t *step,
              char *err, size_t err_size);

/* Copies the parameters and, when the model's optimizer keeps state, that
 * state from st into m (created from the config ckpt_open read, with the
 * optimizer already set), then sets the optimizer step. Every tensor's shape
 * is checked first. Returns 0, or -1 with a message in err. */
int ckpt_restore(const rg_safetensors *st, const char *path, rg_model *m, int64_t step, char *err, size_t err_size);

/* A model to evaluate or train from: a HuggingFace GPT-2 directory (config.json
 * + safetensors; *hf = true) or a ragged checkpoint file (parameters and
 * optimizer state). Returns 0, or -1 with a message in err. */
int ckpt_load_model(const char *path, rg_backend *be, rg_model **out, bool *hf, char *err, size_t err_size);

#endif
