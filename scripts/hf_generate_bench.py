#!/usr/bin/env python3
"""hf_generate_bench.py — the HF transformers `generate` baseline for issue 6.

GPT2LMHeadModel built from GPT2Config() (the 124M shape, random weights, no
downloads) on CUDA, greedy, exactly --new-tokens new tokens per prompt
(min_new_tokens = max_new_tokens, so no early stop), batches of 1, 16 and 64
prompts with left padding and an attention mask. Prompts come from a file (one
per line, token ids separated by spaces: the format `ragged bench generate
--prompts-out FILE` writes) or are drawn here (lengths uniform in [16, 512],
token ids uniform over the vocabulary, --seed). A batch of b takes the first b
prompts.

Per (dtype, batch) it reports, as medians of --runs runs after one warm-up:
  prefill_ms   time to first token: generate() with one new token
  total_ms     generate() with all new tokens
  decode_ms_per_step = (total - prefill) / (new_tokens - 1)
  decode_tok_s = batch * (new_tokens - 1) / (total - prefill)
dtypes: bf16 and fp32 by default (--dtypes bf16,fp16,fp32 to choose), the
whole model cast to that dtype. --compile adds torch's best effort for the
same work as transformers ships it: a static KV cache, with which generate()
compiles the decoding forward itself (the JSON row records how many graphs
dynamo compiled; a failure is recorded, not fatal).

  python3 scripts/hf_generate_bench.py [--prompts FILE] [--json FILE]
"""
import argparse
import json
import statistics
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prompts", help="file of prompts: token ids separated by spaces, one prompt per line")
    p.add_argument("--seed", type=int, default=0, help="seed for drawn prompts (default 0)")
    p.add_argument("--min-len", type=int, default=16, help="shortest drawn prompt (default 16)")
    p.add_argument("--max-len", type=int, default=512, help="longest drawn prompt (default 512)")
    p.add_argument("--batches", default="1,16,64", help="batch sizes (default 1,16,64)")
    p.add_argument("--dtypes", default="bf16,fp32", help="model dtypes among bf16, fp16, fp32 (default bf16,fp32)")
    p.add_argument("--new-tokens", type=int, default=128, help="new tokens per prompt (default 128)")
    p.add_argument("--runs", type=int, default=3, help="timed runs per figure, median taken (default 3)")
    p.add_argument("--compile", action="store_true", help="also time static cache + torch.compile")
    p.add_argument("--json", help="write the results to this file")
    return p.parse_args()


def load_prompts(args, vocab, need):
    import random
    if args.prompts:
        with open(args.prompts) as f:
            prompts = [[int(t) for t in line.split()] for line in f if line.strip()]
        if len(prompts) < need:
            sys.exit(f"hf_generate_bench: {args.prompts} has {len(prompts)} prompts, need {need}")
        bad = [i for i, p in enumerate(prompts) if not p or min(p) < 0 or max(p) >= vocab]
        if bad:
            sys.exit(f"hf_generate_bench: prompt {bad[0]} is empty or has a token outside [0, {vocab})")
        return prompts
    rng = random.Random(args.seed)
    return [[rng.randrange(vocab) for _ in range(rng.randint(args.min_len, args.max_len))] for _ in range(need)]


def left_pad(prompts, pad_id, device):
    import torch
    L = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), L), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, L - len(p):] = torch.tensor(p)
        mask[i, L - len(p):] = 1
    return ids.to(device), mask.to(device)


def timed_generate(model, ids, mask, n_new, pad_id):
    import torch
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=n_new,
                         min_new_tokens=n_new, pad_token_id=pad_id)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    if out.shape[1] != ids.shape[1] + n_new:
        raise RuntimeError(f"generate gave {out.shape[1] - ids.shape[1]} new tokens, expected {n_new}")
    return dt


def measure(model, prompts, n_new, runs, pad_id):
    ids, mask = left_pad(prompts, pad_id, "cuda")
    timed_generate(model, ids, mask, 1, pad_id)        # warm-up (allocator, kernels, compilation)
    timed_generate(model, ids, mask, n_new, pad_id)
    pre = statistics.median(timed_generate(model, ids, mask, 1, pad_id) for _ in range(runs))
    tot = statistics.median(timed_generate(model, ids, mask, n_new, pad_id) for _ in range(runs))
    dec = max(tot - pre, 1e-9)
    b = len(prompts)
    return {"batch": b, "prompt_tokens": sum(len(p) for p in prompts), "padded_len": ids.shape[1],
            "prefill_ms": pre * 1e3, "total_ms": tot * 1e3, "decode_ms_per_step": dec * 1e3 / (n_new - 1),
            "decode_tok_s": b * (n_new - 1) / dec, "prefill_tok_s": sum(len(p) for p in prompts) / pre}


def save(path, res):
    if path:
        with open(path, "w") as f:
            json.dump(res, f, indent=1)


def main():
    args = parse_args()
    import torch
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel

    batches = [int(x) for x in args.batches.split(",")]
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    cfg = GPT2Config()
    prompts = load_prompts(args, cfg.vocab_size, max(batches))
    if max(len(p) for p in prompts[:max(batches)]) + args.new_tokens > cfg.n_positions:
        sys.exit(f"hf_generate_bench: prompt + {args.new_tokens} new tokens exceeds n_positions = {cfg.n_positions}")
    pad_id = cfg.eos_token_id
    res = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "transformers": transformers.__version__, "date": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
           "model": "GPT2LMHeadModel(GPT2Config()), random weights", "new_tokens": args.new_tokens,
           "prompts": args.prompts or f"drawn: lengths uniform in [{args.min_len}, {args.max_len}], seed {args.seed}",
           "runs": args.runs, "rows": []}
    print(f"# HF generate baseline: {res['gpu']}, torch {res['torch']}, transformers {res['transformers']}, "
          f"{args.new_tokens} new tokens, greedy, medians of {args.runs}")
    print("| mode | dtype | batch | prompt tokens | prefill ms | decode ms/step | decode tok/s | total ms |")
    print("|---|---|---|---|---|---|---|---|")
    modes = ["eager"] + (["static+compile"] if args.compile else [])
    for name in args.dtypes.split(","):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(cfg).to("cuda", dtypes[name]).eval()
        attn = getattr(model.config, "_attn_implementation", "?")
        for mode in modes:
            if mode == "static+compile":
                # transformers compiles the decoding forward itself when the cache is
                # static (its CompileConfig: fullgraph, CUDA graphs); wrapping forward in
                # torch.compile(mode="reduce-overhead") by hand failed here with
                # "accessing tensor output of CUDAGraphs that has been overwritten".
                model.generation_config.cache_implementation = "static"
            for b in batches:
                try:
                    with torch.inference_mode():
                        r = measure(model, prompts[:b], args.new_tokens, args.runs, pad_id)
                except Exception as e:
                    res["rows"].append({"mode": mode, "dtype": name, "batch": b, "error": repr(e)[:300]})
                    save(args.json, res)
                    print(f"| {mode} | {name} | {b} | failed: {repr(e)[:120]} |")
                    continue
                r.update({"mode": mode, "dtype": name, "attn_implementation": attn})
                if mode == "static+compile":
                    from torch._dynamo.utils import counters
                    r["dynamo_unique_graphs"] = counters["stats"]["unique_graphs"]  # 0: nothing was compiled
                res["rows"].append(r)
                print(f"| {mode} | {name} | {b} | {r['prompt_tokens']} | {r['prefill_ms']:.1f} | "
                      f"{r['decode_ms_per_step']:.2f} | {r['decode_tok_s']:.0f} | {r['total_ms']:.0f} |", flush=True)
                save(args.json, res)  # after every row: a run cut short keeps what it measured
        del model
        torch.cuda.empty_cache()
    save(args.json, res)


if __name__ == "__main__":
    main()
