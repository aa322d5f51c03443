#!/usr/bin/env python3
"""The same sampling step as `meshsample bench`, done the way vLLM's (v1) PyTorch sampler does it.

Penalties via bincount-style scatter of the output history (recomputed each step, as vLLM
does), repetition over prompt and outputs, then temperature, min-p, sort-based top-k/top-p
(vLLM's `apply_top_k_top_p`), softmax and an exponential race (`probs / Exp(1)`, vLLM's
`random_sample`) or torch.multinomial, and log_softmax for log-probs (raw mode: top-N, the
sampled token's log-prob and rank). Timed like the C bench: rotating input buffers totalling
more than 64 MiB, a few warm-up steps, then the median of --steps steps; the floor is
`torch.amax` over the same buffers, so `ratio` compares like with like.

Prints the bench's JSON shape with --json:
  {"median_ms":..,"p10_ms":..,"p90_ms":..,"floor_ms":..,"ratio":..,"config":{..}}

Needs PyTorch (Debian: python3-torch); without it, says so on stderr and exits 77 (the
conventional "skipped" status). The build never installs it.
"""
import argparse
import json
import sys
import time

try:
    import torch
except ImportError:
    print("peer_torch.py: PyTorch is not importable (Debian package python3-torch); "
          "the torch peer is skipped", file=sys.stderr)
    sys.exit(77)

ROTATE_BYTES = 64 << 20
WARMUP_STEPS = 5
PROMPT_LEN = 64


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--vocab", type=int, default=128256)
    p.add_argument("--dtype", choices=["f32", "bf16", "f16"], default="f32")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--min-p", type=float, default=0.0)
    p.add_argument("--penalties", action="store_true")
    p.add_argument("--logprobs", type=int, default=-1)
    p.add_argument("--greedy", action="store_true")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--draw", choices=["exponential", "multinomial"], default="exponential")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.batch < 1 or a.vocab < 1 or a.steps < 1 or a.threads < 1:
        p.error("--batch, --vocab, --steps and --threads must be >= 1")
    return a


def make_logits(batch, vocab, dtype, gen):
    """normal(0, 2.5) background plus a few dozen hot tokens per row, as the C bench."""
    x = torch.randn(batch, vocab, generator=gen) * 2.5
    hot = 32 if vocab >= 48 else max(1, vocab // 4)
    idx = torch.randint(0, vocab, (batch, hot), generator=gen)
    x.scatter_(1, idx, 8.0 + 8.0 * torch.rand(batch, hot, generator=gen))
    return x.to(dtype).contiguous()


def bin_counts(tokens, vocab):
    """vLLM's _get_bin_counts_and_mask: counts over [B, V+1] with id V as padding."""
    b = tokens.shape[0]
    counts = torch.zeros(b, vocab + 1, dtype=torch.long)
    counts.scatter_add_(1, tokens, torch.ones_like(tokens))
    counts = counts[:, :vocab]
    return counts, counts > 0


def apply_penalties(logits, prompt, output, presence, frequency, repetition):
    vocab = logits.shape[1]
    _, prompt_mask = bin_counts(prompt, vocab)
    out_counts, out_mask = bin_counts(output, vocab)
    rep = repetition.unsqueeze(dim=1).repeat(1, vocab)
    rep[~(prompt_mask | out_mask)] = 1.0
    logits = torch.where(logits > 0, logits / rep, logits * rep)
    logits = logits - frequency.unsqueeze(1) * out_counts
    logits = logits - presence.unsqueeze(1) * out_mask
    return logits


def apply_top_k_top_p(logits, k, p):
    """vLLM's sort-based apply_top_k_top_p (ascending sort)."""
    logits_sort, logits_idx = logits.sort(dim=-1, descending=False)
    if k is not None:
        top_k_mask = logits_sort.size(1) - k.to(torch.long)
        top_k_mask = logits_sort.gather(1, top_k_mask.unsqueeze(dim=1))
        logits_sort.masked_fill_(logits_sort < top_k_mask, -float("inf"))
    if p is not None:
        probs_sort = logits_sort.softmax(dim=-1)
        probs_sum = probs_sort.cumsum(dim=-1)
        top_p_mask = probs_sum <= 1 - p.unsqueeze(dim=1)
        top_p_mask[:, -1] = False
        logits_sort.masked_fill_(top_p_mask, -float("inf"))
    return logits_sort.scatter(dim=-1, index=logits_idx, src=logits_sort)


class Sampler:
    def __init__(self, a):
        b, v = a.batch, a.vocab
        gen = torch.Generator().manual_seed(777)
        self.a = a
        self.temperature = torch.full((b,), 0.0 if a.greedy else a.temperature)
        k = min(a.top_k, v)
        self.top_k = torch.full((b,), k, dtype=torch.long) if 0 < k < v else None
        self.top_p = torch.full((b,), a.top_p) if a.top_p < 1.0 else None
        self.min_p = torch.full((b,), a.min_p) if a.min_p > 0.0 else None
        self.presence = torch.full((b,), 0.5)
        self.frequency = torch.full((b,), 0.5)
        self.repetition = torch.full((b,), 1.2)
        self.prompt = torch.randint(0, v, (b, PROMPT_LEN), generator=gen)
        self.output = torch.full((b, 0), v, dtype=torch.long)  # grows as we sample
        self.gen = torch.Generator().manual_seed(1234)

    def step(self, raw):
        a = self.a
        logits = raw.to(torch.float32)
        raw_logprobs = logits.log_softmax(dim=-1) if a.logprobs >= 0 else None
        if a.penalties:
            logits = apply_penalties(logits, self.prompt, self.output, self.presence,
                                     self.frequency, self.repetition)
        if a.greedy:
            tokens = logits.argmax(dim=-1)
        else:
            logits = logits.div(self.temperature.unsqueeze(1))
            if self.min_p is not None:
                probs = logits.softmax(dim=-1)
                top = probs.amax(dim=-1, keepdim=True)
                logits = logits.masked_fill(probs < self.min_p.unsqueeze(1) * top, -float("inf"))
            if self.top_k is not None or self.top_p is not None:
                logits = apply_top_k_top_p(logits, self.top_k, self.top_p)
            probs = logits.softmax(dim=-1, dtype=torch.float32)
            if a.draw == "multinomial":
                tokens = torch.multinomial(probs, 1, generator=self.gen).view(-1)
            else:
                q = torch.empty_like(probs).exponential_(generator=self.gen)
                tokens = probs.div_(q).argmax(dim=-1)
        result = tokens
        if raw_logprobs is not None:
            sampled = raw_logprobs.gather(1, tokens.unsqueeze(1))
            rank = (raw_logprobs >= sampled).sum(dim=-1)
            top = raw_logprobs.topk(a.logprobs, dim=-1) if a.logprobs > 0 else None
            result = (tokens, sampled, rank, top)
        if a.penalties:
            self.output = torch.cat([self.output, tokens.unsqueeze(1)], dim=1)
        return result


def quantile(sorted_vals, q):
    i = int(q * (len(sorted_vals) - 1) + 0.5)
    return sorted_vals[max(0, min(len(sorted_vals) - 1, i))]


def main(argv):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[a.dtype]
    step_bytes = a.batch * a.vocab * (4 if a.dtype == "f32" else 2)
    nbuf = max(2, min(4096, ROTATE_BYTES // step_bytes + 1))
    gen = torch.Generator().manual_seed(99)
    bufs = [make_logits(a.batch, a.vocab, dtype, gen) for _ in range(nbuf)]
    sampler = Sampler(a)

    def timed(fn, n):
        times, k = [], 0
        for i in range(WARMUP_STEPS + n):
            t0 = time.perf_counter_ns()
            fn(bufs[k])
            t1 = time.perf_counter_ns()
            k = (k + 1) % nbuf
            if i >= WARMUP_STEPS:
                times.append((t1 - t0) / 1e6)
            if sys.stderr.isatty() and i % 4 == 0:
                print(f"\rstep {i + 1}/{WARMUP_STEPS + n}", end="", file=sys.stderr, flush=True)
        if sys.stderr.isatty():
            print("\r\033[K", end="", file=sys.stderr, flush=True)
        return sorted(times)

    with torch.inference_mode():
        t_step = timed(sampler.step, a.steps)
        t_floor = timed(lambda x: torch.amax(x), a.steps)
    med, fl = quantile(t_step, 0.5), quantile(t_floor, 0.5)
    out = {
        "median_ms": med, "p10_ms": quantile(t_step, 0.1), "p90_ms": quantile(t_step, 0.9),
        "floor_ms": fl, "ratio": med / fl if fl > 0 else 0.0,
        "config": {
            "peer": "torch", "torch": torch.__version__, "batch": a.batch, "vocab": a.vocab,
            "dtype": a.dtype, "mesh": "1x1", "threads": a.threads,
            "temperature": 0.0 if a.greedy else a.temperature, "top_k": a.top_k,
            "top_p": a.top_p, "min_p": a.min_p, "penalties": a.penalties,
            "logprobs": a.logprobs if a.logprobs >= 0 else None, "greedy": a.greedy,
            "steps": a.steps, "buffers": nbuf, "buffer_mib": step_bytes / 1048576.0,
            "draw": a.draw, "floor": "torch.amax",
        },
    }
    if a.json:
        print(json.dumps(out, separators=(",", ":")))
    else:
        c = out["config"]
        print(f"peer_torch (torch {c['torch']}): B={a.batch} V={a.vocab} {a.dtype} threads {a.threads}"
              f"  T={c['temperature']:g} k={a.top_k} p={a.top_p:g} min-p {a.min_p:g}"
              f"{' +penalties' if a.penalties else ''}{' +logprobs' if a.logprobs >= 0 else ''}")
        print(f"  {a.steps} steps over {nbuf} rotating buffers of {c['buffer_mib']:.1f} MiB")
        print(f"  {'':22} {'median':>10} {'p10':>10} {'p90':>10}")
        print(f"  {'sample step (ms)':22} {med:10.3f} {out['p10_ms']:10.3f} {out['p90_ms']:10.3f}")
        print(f"  {'floor: torch.amax (ms)':22} {fl:10.3f} {quantile(t_floor, 0.1):10.3f} "
              f"{quantile(t_floor, 0.9):10.3f}")
        print(f"  {'ratio':22} {out['ratio']:10.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
