/* ops_ref.h — plain double-precision references for the model ops of
 * rg_backend_ops (the definition of right that test_backend_ops compares
 * every backend with). Simple loops, no tiling, no threads; shapes as in
 * src/backend.h. Gradient references ACCUMULATE (+=) exactly where the op
 * does, so a test can start them from the op's initial values. */
#ifndef RG_TEST_OPS_REF_H
#define RG_TEST_OPS_REF_H
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define REF_PI 3.14159265358979323846

/* out (T,C) = wte[tokens[t]] + wpe[pos[t]] */
static inline void ref_embedding_forward(double *out, const int32_t *tokens, const int32_t *pos,
                                         const double *wte, const double *wpe, int64_t T, int C) {
    for (int64_t t = 0; t < T; t++)
        for (int c = 0; c < C; c++) out[t * C + c] = wte[(int64_t)tokens[t] * C + c] + wpe[(int64_t)pos[t] * C + c];
}

/* dwte[tokens[t]] += dout[t]; dwpe[pos[t]] += dout[t] */
static inline void ref_embedding_backward(double *dwte, double *dwpe, const double *dout, const int32_t *tokens,
                                          const int32_t *pos, int64_t T, int C) {
    for (int64_t t = 0; t < T; t++)
        for (int c = 0; c < C; c++) {
            dwte[(int64_t)tokens[t] * C + c] += dout[t * C + c];
            dwpe[(int64_t)pos[t] * C + c] += dout[t * C + c];
        }
}

/* out (T,C) = (x - mean) / sqrt(var + eps) * w + b (biased variance); b may be NULL;
 * mean, rstd (T) may be NULL. */
static inline void ref_layernorm_forward(double *out, double *mean, double *rstd, const double *inp,
                                         const double *w, const double *b, double eps, int64_t T, int C) {
    for (int64_t t = 0; t < T; t++) {
        const double *x = inp + t * C;
        double m = 0, v = 0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        v /= C;
        double r = 1.0 / sqrt(v + eps);
        for (int c = 0; c < C; c++) out[t * C + c] = (x[c] - m) * r * w[c] + (b ? b[c] : 0.0);
        if (mean) mean[t] = m;
        if (rstd) rstd[t] = r;
    }
}

/* dinp += (LayerNorm's Jacobian)^T dout; dw += sum_t dout * xhat; db += sum_t dout (db may be NULL).
 * Written from d xhat_c / d x_i = rstd * (delta_ci - 1/C - xhat_c xhat_i / C). */
static inline void ref_layernorm_backward(double *dinp, double *dw, double *db, const double *dout,
                                          const double *inp, const double *w, double eps, int64_t T, int C) {
    for (int64_t t = 0; t < T; t++) {
        const double *x = inp + t * C, *d = dout + t * C;
        double m = 0, v = 0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        double r = 1.0 / sqrt(v / C + eps);
        double sum_g = 0, sum_gx = 0;   /* sum_c g_c, sum_c g_c xhat_c with g = dout * w */
        for (int c = 0; c < C; c++) {
            double g = d[c] * w[c], xh = (x[c] - m) * r;
            sum_g += g;
            sum_gx += g * xh;
            dw[c] += d[c] * xh;
            if (db) db[c] += d[c];
        }
        for (int i = 0; i < C; i++) {
            double xi = (x[i] - m) * r;
            dinp[t * C + i] += r * (d[i] * w[i] - sum_g / C - xi * sum_gx / C);
        }
    }
}

static inline double ref_gelu(double x, int tanh_variant) {
    if (tanh_variant) return 0.5 * x * (1.0 + tanh(sqrt(2.0 / REF_PI) * (x + 0.044715 * x * x * x)));
    return 0.5 * x * erfc(-x / sqrt(2.0)); /* = 0.5 x (1 + erf(x / sqrt 2)), without the cancellation for x << 0 */
}

static inline double ref_gelu_grad(double x, int tanh_variant) {
    if (tanh_variant) {
        double k = sqrt(2.0 / REF_PI), u = k * (x + 0.044715 * x * x * x), th = tanh(u);
        return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * k * (1.0 + 3.0 * 0.044715 * x * x);
    }
    return 0.5 * erfc(-x / sqrt(2.0)) + x * exp(-0.5 * x * x) / sqrt(2.0 * REF_PI);
}

/* pre (T,OC) = inp (T,C) @ w^T (OC,C) + b; out = gelu(pre) when gelu (0 none,
 * 1 erf, 2 tanh), else out = pre. b and pre may be NULL. */
static inline void ref_matmul_forward(double *out, double *pre, const double *inp, const double *w,
                                      const double *b, int64_t T, int C, int OC, int gelu) {
    for (int64_t t = 0; t < T; t++)
        for (int o = 0; o < OC; o++) {
            double s = b ? b[o] : 0.0;
            for (int c = 0; c < C; c++) s += inp[t * C + c] * w[(int64_t)o * C + c];
            if (pre) pre[t * OC + o] = s;
            out[t * OC + o] = gelu ? ref_gelu(s, gelu == 2) : s;
        }
}

/* dinp (T,C) = dout @ w (overwritten; may be NULL); dw (OC,C) += dout^T inp; db += sum_t dout (may be NULL). */
static inline void ref_matmul_backward(double *dinp, double *dw, double *db, const double *dout,
                                       const double *inp, const double *w, int64_t T, int C, int OC) {
    for (int64_t t = 0; t < T; t++) {
        if (dinp)
            for (int c = 0; c < C; c++) {
                double s = 0;
                for (int o = 0; o < OC; o++) s += dout[t * OC + o] * w[(int64_t)o * C + c];
                dinp[t * C + c] = s;
            }
        for (int o = 0; o < OC; o++) {
            for (int c = 0; c < C; c++) dw[(int64_t)o * C + c] += dout[t * OC + o] * inp[t * C + c];
            if (db) db[o] += dout[t * OC + o];
        }
    }
}

/* losses (T) = logsumexp(logits[t]) - logits[t][y]; dlogits (may be NULL) =
 * (softmax - onehot) * dloss; both 0 on ignored rows. */
static inline void ref_xent(double *losses, double *dlogits, const double *logits, const int32_t *targets,
                            int32_t ignore, double dloss, int64_t T, int V) {
    for (int64_t t = 0; t < T; t++) {
        const double *x = logits + t * V;
        if (targets[t] == ignore) {
            losses[t] = 0;
            if (dlogits)
                for (int i = 0; i < V; i++) dlogits[t * V + i] = 0;
            continue;
        }
        double mx = x[0], s = 0;
        for (int i = 1; i < V; i++) mx = fmax(mx, x[i]);
        for (int i = 0; i < V; i++) s += exp(x[i] - mx);
        double lse = mx + log(s);
        losses[t] = lse - x[targets[t]];
        if (dlogits)
            for (int i = 0; i < V; i++)
                dlogits[t * V + i] = (exp(x[i] - lse) - (i == targets[t] ? 1.0 : 0.0)) * dloss;
    }
}

/* torch.optim.SGD, dampening 0, no Nesterov; buf starts at 0 (torch: buf = g at step 1). */
static inline void ref_sgd(double *p, double *buf, const double *grad, int64_t n, double lr, double momentum,
                           double wd, double grad_scale) {
    for (int64_t i = 0; i < n; i++) {
        double g = grad[i] * grad_scale + wd * p[i];
        if (momentum != 0) {
            buf[i] = momentum * buf[i] + g;
            g = buf[i];
        }
        p[i] -= lr * g;
    }
}

/* torch.optim.AdamW at step t >= 1, as its documentation writes it. */
static inline void ref_adamw(double *p, double *m, double *v, const double *grad, int64_t n, double lr,
                             double b1, double b2, double eps, double wd, double grad_scale, int64_t t) {
    for (int64_t i = 0; i < n; i++) {
        double g = grad[i] * grad_scale;
        p[i] *= 1.0 - lr * wd;
        m[i] = b1 * m[i] + (1.0 - b1) * g;
        v[i] = b2 * v[i] + (1.0 - b2) * g * g;
        double mhat = m[i] / (1.0 - pow(b1, (double)t)), vhat = v[i] / (1.0 - pow(b2, (double)t));
        p[i] -= lr * mhat / (sqrt(vhat) + eps);
    }
}

/* Decode attention: o (n, h, d) = for each sequence b, its query (h, d) at
 * q + b*sq attending over rows koff[b] .. koff[b] + lens[b] of k, v (rows of
 * (hkv, d)); query head i reads kv head i / (h / hkv); length 0 gives zeros. */
static inline void ref_attn_decode(double *o, const float *q, int64_t sq, const float *k, const float *v,
                                   const int32_t *lens, const int32_t *koff, int32_t n, int32_t h, int32_t hkv,
                                   int32_t d, double scale) {
    const int32_t g = h / hkv;
    for (int32_t b = 0; b < n; b++)
        for (int32_t hh = 0; hh < h; hh++) {
            const float *qr = q + (int64_t)b * sq + (int64_t)hh * d;
            double *out = o + ((int64_t)b * h + hh) * d, mx = -INFINITY, sum = 0;
            double *s = malloc(sizeof(double) * (size_t)(lens[b] ? lens[b] : 1));
            if (!s) abort();  /* test code: a reference without memory cannot answer */
            for (int32_t j = 0; j < lens[b]; j++) {
                const float *kr = k + ((int64_t)(koff[b] + j) * hkv + hh / g) * d;
                double dot = 0;
                for (int32_t c = 0; c < d; c++) dot += (double)qr[c] * kr[c];
                s[j] = dot * scale;
                mx = s[j] > mx ? s[j] : mx;
            }
            for (int32_t j = 0; j < lens[b]; j++) sum += s[j] = exp(s[j] - mx);
            for (int32_t c = 0; c < d; c++) {
                double acc = 0;
                for (int32_t j = 0; j < lens[b]; j++) acc += s[j] * v[((int64_t)(koff[b] + j) * hkv + hh / g) * d + c];
                out[c] = lens[b] ? acc / sum : 0.0;
            }
            free(s);
        }
}

#endif
