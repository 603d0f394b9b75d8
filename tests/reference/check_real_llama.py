# Real-weights check of the llama architecture: SmolLM2 135M Instruct Q4_1 (the catalog's default
# assistant), our CLI's greedy ids vs llama.cpp's (llama-cpp-python), near-tie rule 0.25.
import json, subprocess, sys
import numpy as np
from llama_cpp import Llama
M = sys.argv[1]; EW = sys.argv[2]; N = 32
prompts = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,",
           "Die Hauptstadt von Deutschland ist", "The three primary colors are",
           "Water boils at a temperature of", "import numpy as np\n\n# compute the mean of",
           "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"]
llm = Llama(model_path=M, n_ctx=512, n_threads=2, logits_all=True, verbose=False, seed=0)
bad = 0; exact = 0
for p in prompts:
    toks = llm.tokenize(p.encode(), add_bos=True, special=True)
    llm.reset(); llm.eval(toks)
    ref, gaps = [], []
    for _ in range(N):
        lg = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        order = np.argsort(-lg)
        t = int(order[0]); ref.append(t); gaps.append(lg)
        if t == llm.token_eos(): break
        llm.eval([t])
    out = subprocess.run([EW, "run", "--model", M, "--backend", "cpu", "--threads", "2", "--raw", "--temperature", "0",
                          "--max-tokens", str(len(ref)), "--format", "json", p], capture_output=True, text=True)
    line = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not line:
        print("FAIL to run:", out.stderr[-500:]); bad += 1; continue
    got = json.loads(line[-1])["token_ids"]
    k = next((i for i in range(min(len(ref), len(got))) if ref[i] != got[i]), None)
    if k is None:
        exact += 1; print(f"exact   {len(got)} tokens  {p[:30]!r}")
    else:
        lg = gaps[k]; gap = lg[ref[k]] - lg[got[k]]
        ok = gap <= 0.25; bad += not ok
        print(f"{'near-tie' if ok else 'DEPART'} at step {k}, gap {gap:.3f}  {p[:30]!r}")
print(f"{exact}/{len(prompts)} exact, {bad} departures beyond near-ties")
sys.exit(1 if bad else 0)
