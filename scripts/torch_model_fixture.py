"""PyTorch reference fixtures for tests/test_model_torch.c (ragged's GPT model).

usage: python3 scripts/torch_model_fixture.py OUTDIR      (needs torch + numpy; CPU is enough)

For each tiny configuration below, builds the model of include/ragged.h section 6
with plain torch ops in float64 from fixed float32 weights, runs forward + backward
on one packed batch (documents isolated by a block-diagonal causal mask, positions
restarting in each document, the last token of each document without a target) and
writes OUTDIR/model_torch_<name>.bin holding the config, the batch, every parameter,
the logits, the mean loss and every parameter gradient.

File format (little-endian): b"RGFX0001", uint32 record count, then per record:
uint32 name length, name (utf-8), uint32 dtype (0 = float32, 1 = int32),
uint32 ndim, int64 dims[ndim], the data row-major.
"""
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

GELU_ERF, GELU_TANH = 1, 2

CONFIGS = {
    # the seed article's architecture: LayerNorm without bias, untied head with bias, exact GELU
    'seed': dict(n_layers=2, n_heads=2, n_kv_heads=2, head_dim=8, vocab=24, max_seq_len=16, mlp_ratio=4,
                 ln_bias=False, linear_bias=True, final_ln=False, tied=False, lm_head_bias=True,
                 gelu=GELU_ERF, ln_eps=1e-5, lens=[5, 1, 16, 7], seed=1),
    # GPT-2's architecture (LN bias, final LN, tied, tanh GELU) with grouped-query attention
    'gpt2': dict(n_layers=2, n_heads=2, n_kv_heads=1, head_dim=8, vocab=20, max_seq_len=12, mlp_ratio=4,
                 ln_bias=True, linear_bias=True, final_ln=True, tied=True, lm_head_bias=False,
                 gelu=GELU_TANH, ln_eps=1e-5, lens=[3, 12, 1, 9, 2], seed=2),
}


def param_shapes(c):
    """(name, shape) in ragged's table order, torch.nn.Linear (out, in) layout."""
    C = c['n_heads'] * c['head_dim']
    Q = (c['n_heads'] + 2 * c['n_kv_heads']) * c['head_dim']
    H = c['mlp_ratio'] * C
    out = [('wte', (c['vocab'], C)), ('wpe', (c['max_seq_len'], C))]
    for l in range(c['n_layers']):
        p = f'h.{l}.'
        out.append((p + 'ln_1.weight', (C,)))
        if c['ln_bias']:
            out.append((p + 'ln_1.bias', (C,)))
        for name, o, i in (('attn.c_attn', Q, C), ('attn.c_proj', C, C)):
            out.append((p + name + '.weight', (o, i)))
            if c['linear_bias']:
                out.append((p + name + '.bias', (o,)))
        out.append((p + 'ln_2.weight', (C,)))
        if c['ln_bias']:
            out.append((p + 'ln_2.bias', (C,)))
        for name, o, i in (('mlp.c_fc', H, C), ('mlp.c_proj', C, H)):
            out.append((p + name + '.weight', (o, i)))
            if c['linear_bias']:
                out.append((p + name + '.bias', (o,)))
    if c['final_ln']:
        out.append(('ln_f.weight', (C,)))
        if c['ln_bias']:
            out.append(('ln_f.bias', (C,)))
    if not c['tied']:
        out.append(('lm_head.weight', (c['vocab'], C)))
    if c['lm_head_bias']:
        out.append(('lm_head.bias', (c['vocab'],)))
    return out


def make_params(c, g):
    """float32 weights large enough that every path of the gradient matters."""
    P = {}
    for name, shape in param_shapes(c):
        z = torch.randn(shape, generator=g, dtype=torch.float32)
        if '.ln_' in '.' + name:
            z = (0.2 * z) if name.endswith('.bias') else (1.0 + 0.2 * z)
        else:
            z = 0.15 * z if name.endswith('.bias') else 0.3 * z
        P[name] = z
    return P


def forward(c, P, tokens, pos, doc):
    """logits (T, V) in float64; doc (T,) is each token's document index."""
    T = tokens.shape[0]
    h, hkv, hd = c['n_heads'], c['n_kv_heads'], c['head_dim']
    C = h * hd
    eps = c['ln_eps']
    gelu = 'tanh' if c['gelu'] == GELU_TANH else 'none'
    idx = torch.arange(T)
    mask = (doc[:, None] == doc[None, :]) & (idx[None, :] <= idx[:, None])  # block-diagonal causal
    x = P['wte'][tokens] + P['wpe'][pos]
    for l in range(c['n_layers']):
        p = f'h.{l}.'
        a = F.layer_norm(x, (C,), P[p + 'ln_1.weight'], P.get(p + 'ln_1.bias'), eps)
        qkv = F.linear(a, P[p + 'attn.c_attn.weight'], P.get(p + 'attn.c_attn.bias'))
        q = qkv[:, :h * hd].reshape(T, h, hd).transpose(0, 1)
        k = qkv[:, h * hd:(h + hkv) * hd].reshape(T, hkv, hd).transpose(0, 1)
        v = qkv[:, (h + hkv) * hd:].reshape(T, hkv, hd).transpose(0, 1)
        # query head i reads kv head i // (h // hkv)
        k = k.repeat_interleave(h // hkv, dim=0)
        v = v.repeat_interleave(h // hkv, dim=0)
        s = (q @ k.transpose(1, 2)) / math.sqrt(hd)
        s = s.masked_fill(~mask, float('-inf'))
        y = (torch.softmax(s, dim=-1) @ v).transpose(0, 1).reshape(T, C)
        x = x + F.linear(y, P[p + 'attn.c_proj.weight'], P.get(p + 'attn.c_proj.bias'))
        a = F.layer_norm(x, (C,), P[p + 'ln_2.weight'], P.get(p + 'ln_2.bias'), eps)
        m = F.gelu(F.linear(a, P[p + 'mlp.c_fc.weight'], P.get(p + 'mlp.c_fc.bias')), approximate=gelu)
        x = x + F.linear(m, P[p + 'mlp.c_proj.weight'], P.get(p + 'mlp.c_proj.bias'))
    if c['final_ln']:
        x = F.layer_norm(x, (C,), P['ln_f.weight'], P.get('ln_f.bias'), eps)
    head = P['wte'] if c['tied'] else P['lm_head.weight']
    return F.linear(x, head, P.get('lm_head.bias'))


class Writer:
    def __init__(self):
        self.records = []

    def add(self, name, arr):
        arr = np.ascontiguousarray(arr)
        if arr.dtype.kind == 'f':
            arr, code = arr.astype('<f4'), 0
        else:
            arr, code = arr.astype('<i4'), 1
        head = name.encode()
        b = struct.pack('<I', len(head)) + head + struct.pack('<II', code, arr.ndim)
        b += b''.join(struct.pack('<q', d) for d in arr.shape) + arr.tobytes()
        self.records.append(b)

    def save(self, path):
        with open(path, 'wb') as f:
            f.write(b'RGFX0001' + struct.pack('<I', len(self.records)))
            for r in self.records:
                f.write(r)


def make_fixture(name, c, outdir):
    g = torch.Generator().manual_seed(c['seed'])
    P32 = make_params(c, g)
    lens = c['lens']
    seqs = [torch.randint(0, c['vocab'], (n,), generator=g) for n in lens]
    tokens = torch.cat(seqs)
    pos = torch.cat([torch.arange(n) for n in lens])
    doc = torch.cat([torch.full((n,), i) for i, n in enumerate(lens)])
    targets = torch.cat([torch.cat([s[1:], torch.tensor([-100])]) for s in seqs])

    P = {k: v.double().requires_grad_(True) for k, v in P32.items()}
    logits = forward(c, P, tokens, pos, doc)
    loss = F.cross_entropy(logits, targets, ignore_index=-100)  # mean over targets
    loss.backward()

    w = Writer()
    w.add('config', np.array([c['n_layers'], c['n_heads'] * c['head_dim'], c['n_heads'], c['n_kv_heads'],
                              c['vocab'], c['max_seq_len'], c['mlp_ratio'], c['ln_bias'], c['linear_bias'],
                              c['final_ln'], c['tied'], c['lm_head_bias'], c['gelu']], dtype=np.int32))
    w.add('ln_eps', np.array([c['ln_eps']], dtype=np.float32))
    w.add('seqlens', np.array(lens, dtype=np.int32))
    w.add('tokens', tokens.numpy().astype(np.int32))
    for k, v in P32.items():
        w.add('param.' + k, v.numpy())
    w.add('logits', logits.detach().numpy())
    w.add('loss', np.array([loss.item()], dtype=np.float32))
    for k, v in P.items():
        w.add('grad.' + k, v.grad.numpy())
    path = os.path.join(outdir, f'model_torch_{name}.bin')
    w.save(path)
    print(f'{path}: {len(P)} tensors, {tokens.shape[0]} tokens, loss {loss.item():.6f}, '
          f'{os.path.getsize(path)} bytes')


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        sys.exit(2)
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    for name, c in CONFIGS.items():
        make_fixture(name, c, outdir)


if __name__ == '__main__':
    main()
