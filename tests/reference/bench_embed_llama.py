"""llama.cpp's side of `edgewise embed --bench`: texts/s for 16- and 128-token texts and peak RSS,
with the same texts (the same word sequence, cut at the same token counts) and batch size.

    /opt/refenv/bin/python tests/reference/bench_embed_llama.py --model MINILM.gguf --threads 2 --batch 32
Prints one JSON line.
"""
import argparse, json, resource, time
from llama_cpp import Llama, LLAMA_POOLING_TYPE_MEAN

WORDS = ["red", "shoe", "light", "water", "bottle", "with", "soft", "warm", "jacket", "for", "the", "and", "a", "lamp", "desk", "blue", "small", "chair", "wood", "steel"]


def text_of(m, tokens, seed):
    # Same construction as core/src/bin/edgewise/embed.rs `text_of`.
    words, i = [], seed
    while True:
        t = " ".join(words)
        if len(m.tokenize(t.encode())) >= tokens:
            return t
        words.append(WORDS[i % len(WORDS)])
        i = (i * 7 + 3) % (1 << 64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--ubatch", type=int, default=512, help="n_ctx = n_batch = n_ubatch")
    a = ap.parse_args()
    t0 = time.time()
    # llama.cpp attends over its whole micro-batch (masked): a 4096-token ubatch took 1.5 GB and
    # ran 128-token texts at 0.56 texts/s here; its defaults (512 = n_ctx_train) are far better.
    n = a.ubatch
    m = Llama(a.model, embedding=True, n_threads=a.threads, n_threads_batch=a.threads, n_ctx=n, n_batch=n, n_ubatch=n,
              pooling_type=LLAMA_POOLING_TYPE_MEAN, verbose=False)
    load_ms = (time.time() - t0) * 1e3
    results = []
    for length in (16, 128):
        texts = [text_of(m, length, s) for s in range(a.batch)]
        m.embed(texts, normalize=True)  # warm-up
        done, t0 = 0, time.time()
        while time.time() - t0 < a.seconds or done == 0:
            m.embed(texts, normalize=True)
            done += len(texts)
        secs = time.time() - t0
        # One text alone: the median of 21 calls back to back, as `edgewise embed --bench`.
        singles = []
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(21):
            t1 = time.time()
            m.embed(texts[0], normalize=True)
            singles.append((time.time() - t1) * 1e3)
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        # CPU time of the process per single text (all threads), as `edgewise embed --bench`.
        cpu_ms = ((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)) * 1e3 / 21
        results.append({"tokens": len(m.tokenize(texts[0].encode())), "texts_per_s": done / secs, "texts": done, "seconds": secs,
                        "single_text_ms": sorted(singles)[len(singles) // 2], "single_text_cpu_ms": cpu_ms})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"engine": "llama.cpp", "threads": a.threads, "batch": a.batch, "ubatch": a.ubatch, "load_ms": load_ms, "results": results, "peak_rss_mb": peak}))


if __name__ == "__main__":
    main()
