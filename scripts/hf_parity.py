"""Parity of ragged's GPT-2 with transformers' GPT2LMHeadModel (issue 5, section 2).

usage: python3 scripts/hf_parity.py BUILD_DIR OUT_DIR [--configs a,b,...] [--keep WORK_DIR]
                                    [--backend cpu|cuda]
       python3 scripts/hf_parity.py --fixture DIR
       (needs torch, transformers, numpy, safetensors; no downloads: models are random)

For each configuration: builds a randomly initialised GPT2LMHeadModel (float32, eval,
dropout 0, eager attention), save_pretrained()s it with a batch.txt of sequences of
different lengths (1 and n_positions among them), runs BUILD_DIR/hf_parity on it
(tests/hf_parity.c: ragged on the CPU backend) and compares with transformers:
  logits packed   ragged's packed batch vs transformers on each sequence alone
  logits padded   ragged's PAD_LONGEST batch vs transformers on a right-padded batch
                  with attention_mask (real tokens only)
  loss            mean cross-entropy over next-token targets inside each sequence
                  (summed over sequences, divided by the target count: ragged's mean)
  grad NAME       every parameter gradient of that loss (wte includes the tied head)
  roundtrip       GPT2LMHeadModel.from_pretrained() of the checkpoint rg_hf_gpt2_save
                  wrote: its parameters equal the original's and so do its logits
Everything must agree within 1e-4 relative L2 error (roundtrip parameters exactly).
Prints a table, writes OUT_DIR/hf_parity_summary.json, exits 1 on any FAIL.

--backend cuda runs ragged's CUDA backend (bf16 activations and compute weights,
fp32 master weights and gradients) and compares it with the same transformers fp32
reference. The tolerance then comes from bf16 rounding (bf16_tolerance below: set
before the first run from the format alone, never adjusted to make a row pass), and
each row also shows the yardstick: transformers itself in bf16 (model.to(bfloat16),
on the GPU) against its fp32 result, i.e. what the same rounding costs PyTorch.
A row passes when ragged's error is within the bf16 tolerance; a row above it is
still reported as PASS (yardstick) when it is within twice transformers-bf16's own
error on that quantity (the rounding of the format, not ragged, then sets the error),
and FAIL otherwise.
Work files (checkpoints, gradients) go to a temporary directory, removed at the end
unless --keep WORK_DIR names where to put them.

--fixture DIR writes the fixture of tests/test_hf_parity.c (CPU parity in CI without
PyTorch; commit it as tests/data/hf_gpt2_tiny): the 'tiny' configuration saved with
save_pretrained (config.json, model.safetensors), its batch.txt, and expected.safetensors
(float32): logits (n_real, V) from transformers on each sequence alone in packed order,
loss (1) ragged's mean, grad.<parameter name> for every parameter in transformers' layout.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from transformers import GPT2Config, GPT2LMHeadModel
from safetensors import safe_open
from safetensors.torch import load_file, save_file

TOL = 1e-4

# ---- bf16 tolerance (--backend cuda) ----
# bfloat16 keeps 8 significant bits: round-to-nearest changes a value by at most
# u = 2^-8 of itself, and over the values a tensor holds the relative rounding error
# is spread about evenly over [-u, u], so its RMS is u / sqrt(3) per rounding.
# Independent roundings along a computation add in quadrature. Rounded to bf16 in
# the forward: the embedding sum, per block LN_1 out, qkv, attention out, c_proj
# out, the residual sum, LN_2 out, c_fc out, GELU out, mlp c_proj out, the residual
# sum (10), then ln_f out and the logits: 10 * n_layer + 3 roundings. The backward
# rounds its activation gradients at the same places again: gradients see twice as
# many. K = 4 allows for the amplification of errors by LayerNorm and softmax
# (their condition numbers) and for sums over tokens: fixed a priori, not tuned.
BF16_U = 2.0 ** -8
BF16_K = 4.0


def bf16_tolerance(c, quantity):
    n = 10 * c['n_layer'] + 3
    if quantity.startswith('grad'):
        n *= 2
    return BF16_K * BF16_U / np.sqrt(3.0) * np.sqrt(n)


CONFIGS = {
    # small GPT-2, tanh GELU (gelu_new, GPT-2's default)
    'small': dict(n_layer=2, n_embd=64, n_head=4, vocab_size=97, n_positions=32,
                  activation_function='gelu_new', lens=[1, 32, 7, 13, 2], seed=1),
    # the odd one of the issue: 3 layers, 12 heads of 64, GPT-2's vocabulary
    'wide': dict(n_layer=3, n_embd=768, n_head=12, vocab_size=50257, n_positions=64,
                 activation_function='gelu_new', lens=[1, 64, 17, 5], seed=2),
    # exact (erf) GELU, heads of 16, odd vocabulary
    'erf': dict(n_layer=2, n_embd=48, n_head=3, vocab_size=61, n_positions=24,
                activation_function='gelu', lens=[24, 1, 9, 3, 24], seed=3),
    # one layer, heads of 8, many short sequences
    'one_layer': dict(n_layer=1, n_embd=40, n_head=5, vocab_size=33, n_positions=16,
                      activation_function='gelu_pytorch_tanh', lens=[16, 16, 1, 5, 2, 1, 11], seed=4),
}

# the committed fixture (--fixture): small enough to keep in git (about 150 KB)
FIXTURE = dict(n_layer=2, n_embd=24, n_head=3, vocab_size=61, n_positions=16,
               activation_function='gelu_new', lens=[1, 16, 5, 9], seed=5)


def rel_err(got, ref):
    got = np.asarray(got, dtype=np.float64).ravel()
    ref = np.asarray(ref, dtype=np.float64).ravel()
    if got.shape != ref.shape:
        return float('inf')
    num = np.linalg.norm(got - ref)
    den = np.linalg.norm(ref)
    if den == 0.0:
        return 0.0 if num == 0.0 else float('inf')
    if not np.all(np.isfinite(got)):
        return float('inf')
    return float(num / den)


def set_eager(model):
    """Eager attention, so the reference is plain softmax(QK^T)V whatever the defaults."""
    for fn in (lambda: model.set_attn_implementation('eager'),
               lambda: setattr(model.config, '_attn_implementation', 'eager')):
        try:
            fn()
            return
        except Exception:
            pass


def build_model(c):
    kw = dict(n_layer=c['n_layer'], n_embd=c['n_embd'], n_head=c['n_head'], vocab_size=c['vocab_size'],
              n_positions=c['n_positions'], activation_function=c['activation_function'],
              resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
              bos_token_id=c['vocab_size'] - 1, eos_token_id=c['vocab_size'] - 1, tie_word_embeddings=True)
    try:
        cfg = GPT2Config(attn_implementation='eager', **kw)
    except TypeError:
        cfg = GPT2Config(**kw)
    torch.manual_seed(c['seed'])
    model = GPT2LMHeadModel(cfg).float()
    set_eager(model)
    # GPT-2's init leaves biases 0 and LayerNorm weights 1: move them so every term matters.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if '.ln_' in name:
                p.add_(0.1 * torch.randn_like(p))
            elif name.endswith('.bias'):
                p.add_(0.02 * torch.randn_like(p))
    model.eval()
    return model


def save_model(model, d):
    """save_pretrained; if the file lacks a parameter (a transformers version that drops
    wte rather than the tied lm_head), write the tensors ourselves, HF names and layout."""
    try:
        model.save_pretrained(d, safe_serialization=True)
    except TypeError:
        model.save_pretrained(d)
    path = os.path.join(d, 'model.safetensors')
    names = [n for n, _ in model.named_parameters()]
    if os.path.exists(path):
        with safe_open(path, framework='pt') as f:
            keys = set(f.keys())
        if all(n in keys for n in names):
            return 'save_pretrained'
    elif os.path.exists(os.path.join(d, 'model.safetensors.index.json')):
        return 'save_pretrained (sharded)'
    tensors = {n: p.detach().contiguous().clone() for n, p in model.named_parameters()}
    save_file(tensors, path, metadata={'format': 'pt'})
    return 'save_file (save_pretrained missed a parameter)'


def make_batch(c):
    g = torch.Generator().manual_seed(1000 + c['seed'])
    return [torch.randint(0, c['vocab_size'], (L,), generator=g).tolist() for L in c['lens']]


def hf_reference(model, seqs, dev='cpu'):
    """Logits of each sequence alone (concatenated, packed order), the loss, the gradients."""
    model.zero_grad(set_to_none=True)
    logits, total, count = [], None, 0
    for s in seqs:
        ids = torch.tensor([s], dtype=torch.long, device=dev)
        pos = torch.arange(len(s), dtype=torch.long, device=dev)[None]
        out = model(input_ids=ids, position_ids=pos, use_cache=False).logits[0].float()
        logits.append(out.detach().cpu().numpy().copy())
        if len(s) > 1:
            ce = F.cross_entropy(out[:-1], ids[0, 1:], reduction='sum')
            total = ce if total is None else total + ce
            count += len(s) - 1
    loss = total / count
    loss.backward()
    grads = {n: p.grad.detach().float().cpu().numpy().copy() for n, p in model.named_parameters() if p.grad is not None}
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    return np.concatenate(logits, 0), float(loss.item()), count, grads, missing


def hf_padded(model, seqs, dev='cpu'):
    """Logits of the real tokens of a right-padded batch with attention_mask, packed order."""
    L = max(len(s) for s in seqs)
    ids = torch.zeros((len(seqs), L), dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[b, :len(s)] = 1
    pos = torch.arange(L, dtype=torch.long)[None].expand(len(seqs), L)
    with torch.no_grad():
        out = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                    use_cache=False).logits.float().cpu()
    return np.concatenate([out[b, :len(s)].numpy() for b, s in enumerate(seqs)], 0)


def hf_bf16_yardstick(model, seqs):
    """transformers in bf16 (on the GPU when there is one): packed and padded logits,
    loss and gradients, each to be compared with the fp32 reference like ragged's."""
    import copy
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    m = copy.deepcopy(model).to(dev).to(torch.bfloat16)
    set_eager(m)
    m.eval()
    logits, loss, _, grads, _ = hf_reference(m, seqs, dev)
    padded = hf_padded(m, seqs, dev)
    return dict(packed=logits, padded=padded, loss=loss, grads=grads, device=dev)


def hf_logits_alone(model, seqs):
    with torch.no_grad():
        return np.concatenate([model(input_ids=torch.tensor([s], dtype=torch.long),
                                     position_ids=torch.arange(len(s), dtype=torch.long)[None],
                                     use_cache=False).logits[0].float().numpy() for s in seqs], 0)


def load_pretrained(d):
    try:
        m = GPT2LMHeadModel.from_pretrained(d, attn_implementation='eager')
    except TypeError:
        m = GPT2LMHeadModel.from_pretrained(d)
    m = m.float()
    set_eager(m)
    m.eval()
    return m


def save_model_and_batch(c, d):
    """A random model of config c saved in d, with the batch it is checked on (batch.txt)."""
    model = build_model(c)
    how = save_model(model, d)
    seqs = make_batch(c)
    with open(os.path.join(d, 'batch.txt'), 'w') as f:
        for s in seqs:
            f.write(' '.join(str(t) for t in s) + '\n')
    return model, how, seqs


def run_config(name, c, exe, work, rows, backend='cpu'):
    cuda = backend == 'cuda'
    yard = {}

    def row(quantity, err, ok=None, note='', yardstick=None):
        r = dict(config=name, quantity=quantity, rel_err=err, note=note)
        if ok is not None:
            r['ok'] = bool(ok)
        elif not cuda:
            r['ok'] = bool(err <= TOL)
            r['tol'] = TOL
        else:
            tol = bf16_tolerance(c, quantity)
            r.update(tol=tol, yardstick=yardstick)
            r['ok'] = bool(err <= tol or (yardstick is not None and err <= 2.0 * yardstick))
            r['by'] = 'tolerance' if err <= tol else ('yardstick' if r['ok'] else '')
        rows.append(r)

    d = os.path.join(work, name)
    rt = os.path.join(work, name + '_roundtrip')
    shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(rt, ignore_errors=True)
    os.makedirs(d)
    model, how, seqs = save_model_and_batch(c, d)
    print(f'[{name}] saved with {how}; lengths {c["lens"]}; running hf_parity', flush=True)
    t0 = time.time()
    p = subprocess.run([exe, d, '--save-roundtrip', rt, '--backend', backend], capture_output=True, text=True,
                       timeout=1800)
    sys.stdout.write(p.stdout)
    sys.stderr.write(p.stderr)
    if p.returncode != 0:
        row('hf_parity run', float('inf'), False, f'exit {p.returncode}: {p.stderr.strip()[-300:]}')
        return
    print(f'[{name}] hf_parity took {time.time() - t0:.1f} s', flush=True)

    V = c['vocab_size']
    n_real = sum(len(s) for s in seqs)
    ref_logits, ref_loss, n_targets, ref_grads, no_grad = hf_reference(model, seqs)
    ref_padded = hf_padded(model, seqs)
    if cuda:
        y = hf_bf16_yardstick(model, seqs)
        yard['logits packed'] = rel_err(y['packed'], ref_logits)
        yard['logits padded'] = rel_err(y['padded'], ref_padded)
        yard['loss'] = abs(y['loss'] - ref_loss) / abs(ref_loss)
        for n, g in y['grads'].items():
            yard['grad ' + n] = rel_err(g, ref_grads[n]) if n in ref_grads else None
        print(f'[{name}] transformers bf16 yardstick on {y["device"]}', flush=True)
    for tag, fname in (('packed', 'ragged_logits_packed.f32'), ('padded', 'ragged_logits_padded.f32')):
        got = np.fromfile(os.path.join(d, fname), dtype='<f4')
        if got.size != n_real * V:
            row(f'logits {tag}', float('inf'), False, f'{fname} has {got.size} floats, expected {n_real * V}')
            continue
        ref = ref_logits if tag == 'packed' else ref_padded
        note = 'vs transformers, each sequence alone' if tag == 'packed' else 'vs transformers, padded + attention_mask'
        row(f'logits {tag}', rel_err(got.reshape(n_real, V), ref), note=note, yardstick=yard.get(f'logits {tag}'))

    with open(os.path.join(d, 'ragged_loss.txt')) as f:
        parts = f.read().split()
    got_loss = float(parts[0])
    got_count = int(parts[1]) if len(parts) > 1 else -1
    row('loss', abs(got_loss - ref_loss) / abs(ref_loss),
        note=f'ragged {got_loss:.7f} transformers {ref_loss:.7f}, targets {got_count} vs {n_targets}',
        yardstick=yard.get('loss'))
    if got_count != n_targets:
        row('target count', float('inf'), False, f'ragged {got_count} transformers {n_targets}')
    if no_grad:
        row('grads present', float('inf'), False, 'transformers parameters without a gradient: ' + ', '.join(no_grad))

    gpath = os.path.join(d, 'grads', 'model.safetensors')
    saved = load_file(gpath)
    used = set()
    for pname, g in ref_grads.items():
        key = pname if pname in saved else ('transformer.' + pname if 'transformer.' + pname in saved else None)
        if key is None:
            row(f'grad {pname}', float('inf'), False, 'not in ragged_grads')
            continue
        used.add(key)
        got = saved[key].float().numpy()
        note = ''
        if got.shape != g.shape and got.ndim == 2 and got.T.shape == g.shape:
            got, note = got.T, 'transposed (transformers holds this weight as (out, in))'
        if got.shape != g.shape:
            row(f'grad {pname}', float('inf'), False, f'shape ragged {got.shape} transformers {g.shape}')
            continue
        row(f'grad {pname}', rel_err(got, g), note=note, yardstick=yard.get(f'grad {pname}'))
    for key in sorted(set(saved) - used):
        row(f'grad {key}', float('inf'), False, 'in ragged_grads but not a transformers parameter')

    # transformers loads what ragged saved: same parameters, same logits.
    try:
        m2 = load_pretrained(rt)
    except Exception as e:  # noqa: BLE001 - report any loader failure as a FAIL row
        row('roundtrip from_pretrained', float('inf'), False, f'{type(e).__name__}: {e}'[:300])
        return
    p1 = dict(model.named_parameters())
    worst, bad = 0.0, []
    for n2, q in m2.named_parameters():
        if n2 not in p1 or p1[n2].shape != q.shape:
            bad.append(n2)
            continue
        worst = max(worst, float((p1[n2].detach() - q.detach()).abs().max()))
    if set(p1) != set(n for n, _ in m2.named_parameters()):
        bad.append('parameter names differ')
    tied = m2.lm_head.weight.data_ptr() == m2.transformer.wte.weight.data_ptr()
    row('roundtrip params max|diff|', worst, ok=(worst == 0.0 and not bad and tied),
        note=('' if not bad else 'mismatch: ' + ', '.join(bad[:5]) + '; ') + ('lm_head tied to wte' if tied else 'lm_head NOT tied'))
    rt_err = rel_err(hf_logits_alone(m2, seqs), hf_logits_alone(model, seqs))
    row('roundtrip logits', rt_err, ok=rt_err <= TOL, note='from_pretrained(rg_hf_gpt2_save dir) vs original (fp32)')


def write_fixture(d):
    """tests/test_hf_parity.c's fixture: model, batch and transformers' results."""
    c = FIXTURE
    os.makedirs(d, exist_ok=True)
    torch.set_grad_enabled(True)
    model, how, seqs = save_model_and_batch(c, d)
    logits, loss, count, grads, missing = hf_reference(model, seqs)
    if missing:
        sys.exit('hf_parity.py: parameters without a gradient: ' + ', '.join(missing))
    tensors = {'logits': torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32)),
               'loss': torch.tensor([loss], dtype=torch.float32)}
    for n, g in grads.items():
        tensors['grad.' + n] = torch.from_numpy(np.ascontiguousarray(g, dtype=np.float32))
    meta = {'torch': str(torch.__version__), 'transformers': str(transformers.__version__),
            'targets': str(count), 'lens': ' '.join(str(L) for L in c['lens'])}
    save_file(tensors, os.path.join(d, 'expected.safetensors'), metadata=meta)
    print(f'torch {torch.__version__}, transformers {transformers.__version__}; model saved with {how}')
    print(f'logits {tuple(logits.shape)}, loss {loss:.7f} over {count} targets, {len(grads)} gradients')
    total = 0
    for name in sorted(os.listdir(d)):
        size = os.path.getsize(os.path.join(d, name))
        total += size
        print(f'  {os.path.join(d, name)}  {size} bytes')
    print(f'  total {total} bytes')


def main():
    if '--fixture' in sys.argv[1:]:
        ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
        ap.add_argument('--fixture', required=True, metavar='DIR')
        write_fixture(ap.parse_args().fixture)
        return
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('build_dir')
    ap.add_argument('out_dir')
    ap.add_argument('--configs', default=','.join(CONFIGS), help='comma-separated: ' + ', '.join(CONFIGS))
    ap.add_argument('--keep', default=None, help='keep the work files in this directory')
    ap.add_argument('--backend', default='cpu', choices=['cpu', 'cuda'],
                    help='ragged backend: cpu (fp32, 1e-4) or cuda (bf16 activations, bf16 tolerance)')
    a = ap.parse_args()

    exe = os.path.join(a.build_dir, 'hf_parity')
    if not os.access(exe, os.X_OK):
        sys.exit(f'hf_parity.py: {exe} not found: build it first (make build)')
    names = [n for n in a.configs.replace(' ', ',').split(',') if n]
    for n in names:
        if n not in CONFIGS:
            sys.exit(f'hf_parity.py: unknown config {n!r}; known: {", ".join(CONFIGS)}')
    os.makedirs(a.out_dir, exist_ok=True)
    torch.set_grad_enabled(True)
    print(f'torch {torch.__version__}, transformers {transformers.__version__}, numpy {np.__version__}', flush=True)

    work = a.keep or tempfile.mkdtemp(prefix='hf_parity_')
    os.makedirs(work, exist_ok=True)
    rows = []
    try:
        for n in names:
            try:
                run_config(n, CONFIGS[n], exe, work, rows, a.backend)
            except Exception as e:  # noqa: BLE001 - one broken config must not hide the others
                import traceback
                traceback.print_exc()
                rows.append(dict(config=n, quantity='script', rel_err=float('inf'), ok=False,
                                 note=f'{type(e).__name__}: {e}'[:300]))
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)

    w = max([len(r['quantity']) for r in rows] + [8])
    cuda = a.backend == 'cuda'

    def fmt(x):
        return f'{x:9.2e}' if x is not None and np.isfinite(x) else f'{"-":>9}'
    extra = f' | {"tol":>9} | {"tf bf16":>9}' if cuda else ''
    print(f'\n| {"config":<10} | {"quantity":<{w}} | {"rel err":>9}{extra} | result | note')
    print(f'|{"-" * 12}|{"-" * (w + 2)}|{"-" * 11}{"|" + "-" * 11 + "|" + "-" * 11 if cuda else ""}|--------|------')
    for r in rows:
        res = ('PASS' if r['ok'] else 'FAIL') + (' (yardstick)' if r.get('by') == 'yardstick' else '')
        extra = f' | {fmt(r.get("tol"))} | {fmt(r.get("yardstick"))}' if cuda else ''
        print(f'| {r["config"]:<10} | {r["quantity"]:<{w}} | {fmt(r["rel_err"])}{extra} | {res:<6} | {r["note"]}')
    n_fail = sum(not r['ok'] for r in rows)
    n_yard = sum(r.get('by') == 'yardstick' for r in rows)
    if cuda:
        print(f'\n{len(rows) - n_fail} PASS ({n_yard} of them by the yardstick), {n_fail} FAIL (ragged CUDA bf16 vs '
              f'transformers fp32; tolerance from bf16 rounding: {BF16_K:g} * 2^-8/sqrt(3) * sqrt(roundings); '
              f'tf bf16 = transformers bf16 vs fp32; roundtrip exact)')
    else:
        print(f'\n{len(rows) - n_fail} PASS, {n_fail} FAIL (tolerance {TOL:g} relative L2; roundtrip parameters exact)')

    def clean(r):
        return {k: (v if not isinstance(v, float) or np.isfinite(v) else None) for k, v in r.items()}
    summary = dict(torch=torch.__version__, transformers=transformers.__version__, backend=a.backend,
                   tolerance=(TOL if not cuda else f'{BF16_K:g} * 2^-8/sqrt(3) * sqrt(10 n_layer + 3) (x2 roundings for grads)'),
                   configs={n: {k: v for k, v in CONFIGS[n].items()} for n in names},
                   rows=[clean(r) for r in rows], n_pass=len(rows) - n_fail, n_fail=n_fail, n_pass_by_yardstick=n_yard)
    with open(os.path.join(a.out_dir, 'hf_parity_summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    sys.exit(1 if n_fail or not rows else 0)


if __name__ == '__main__':
    main()
