/* model_cli.h — the model flags `ragged bench` and `ragged train` share: a
 * preset (ragged.h section 6) and overrides of its fields, turned into a
 * validated rg_model_config; and a one-line description of a config. */
#ifndef RG_TOOLS_MODEL_CLI_H
#define RG_TOOLS_MODEL_CLI_H
#include "ragged.h"
#include "args.h"
#include <stddef.h>

typedef struct model_flags {
    const char *preset;
    /* 0 keeps the preset's value */
    int layers, d_model, heads, kv_heads, vocab, max_seq_len, mlp_ratio;
} model_flags;

enum { MODEL_FLAG_SPECS = 8 };

/* Writes the MODEL_FLAG_SPECS specs of the model flags into specs (section
 * heading `section`), pointing at f, whose preset must already hold the default. */
void model_flag_specs(model_flags *f, const char *section, arg_spec *specs);

/* The preset with the overrides applied, validated. On a bad combination
 * prints "ragged: CMD: model: MESSAGE" and returns ARGS_ERROR; else ARGS_OK. */
int model_flags_config(const model_flags *f, const char *cmd, rg_model_config *cfg);

/* True when any override field is set. */
bool model_flags_overridden(const model_flags *f);

/* "4 layers, d_model 256, 4 heads of 64 (4 kv), vocab 1024, max_seq_len 256, mlp x4, 3.42M params". */
void model_config_describe(const rg_model_config *c, char *buf, size_t size);

/* Parameters of a config, counted as the model's table does (ragged.h section 6). */
double model_config_params(const rg_model_config *c);

#endif
