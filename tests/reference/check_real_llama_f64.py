# Who is right where our greedy tokens part from llama.cpp's on real weights (SmolLM2 135M Instruct
# Q4_1, tests/reference/check_real_llama.py)? The same sequences through an exact reference: numpy
# in f64 over the file's dequantized weights (gguf-py), no activation rounding, f64 KV. Also: the
# same with llama.cpp's 8-bit activations emulated (Q8_1 for Q4_1 weights, Q8_0 for the Q8_0 head),
# and llama.cpp itself with an f32 KV cache. Our logits come from `dump_logits`
# (`cargo build --release --workspace --example dump_logits`).
#   /opt/refenv/bin/python tests/reference/check_real_llama_f64.py MODEL target/release/examples/dump_logits [0,7]
import sys, json, subprocess
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from llama_cpp import Llama

F16 = lambda a: a.astype(np.float16).astype(np.float64)
class Model:
    def __init__(s, path):
        r = GGUFReader(path); s.t = {}; s.ty = {}
        for t in r.tensors:
            s.t[t.name] = (t.data, t.tensor_type); 
        f = {k: v.contents() for k, v in r.fields.items() if k.startswith('llama.')}
        s.L = f['llama.block_count']; s.D = f['llama.embedding_length']; s.H = f['llama.attention.head_count']
        s.KV = f['llama.attention.head_count_kv']; s.base = f['llama.rope.freq_base']; s.eps = f['llama.attention.layer_norm_rms_epsilon']
        s.hd = s.D // s.H; s.cache = {}
    def w(s, name):
        if name not in s.cache:
            data, ty = s.t[name]; s.cache[name] = (dequantize(data, ty).astype(np.float64), ty, data)
        return s.cache[name]

def q8_blocks(x):  # x [n, cols] -> (d16 [n,nb], q [n,nb,32])
    n, c = x.shape; xb = x.reshape(n, c // 32, 32).astype(np.float32)
    amax = np.abs(xb).max(-1); d = amax / np.float32(127); idd = np.where(d > 0, 1 / np.where(d > 0, d, 1), 0).astype(np.float32)
    q = np.round(xb * idd[..., None])  # ggml: roundf (half away from zero); np.round is half-even: tiny
    return d, q

def matmul(m, name, x, emu):
    W, ty, raw = m.w(name)
    if not emu or ty.name in ('F32', 'F16'):
        return x @ W.T
    d, q = q8_blocks(x)
    xq = F16(d)[..., None] * q  # x as llama.cpp's Q8 sees it
    y = xq.reshape(x.shape) @ W.T
    if ty.name == 'Q4_1':  # the min term uses s = fp16(d*sum q) rather than d16*sum q
        rows = W.shape[0]; nb = x.shape[1] // 32
        blk = np.frombuffer(raw.tobytes(), dtype=np.uint8).reshape(rows, nb, 20)
        mm = blk[:, :, 2:4].copy().view(np.float16).reshape(rows, nb).astype(np.float64)
        sq = q.sum(-1)
        s16 = F16(d.astype(np.float64) * sq); y += (s16 - F16(d) * sq) @ mm.T
    return y

def rms(x, w, eps):
    x32 = x
    return x32 / np.sqrt((x32 * x32).mean(-1, keepdims=True) + eps) * w

def rope(x, pos, base, hd):  # x [n, h, hd], llama.cpp NORM layout (adjacent pairs)
    i = np.arange(hd // 2); th = pos[:, None] * base ** (-2 * i / hd)
    c, s = np.cos(th)[:, None, :], np.sin(th)[:, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]; o = np.empty_like(x)
    o[..., 0::2] = x0 * c - x1 * s; o[..., 1::2] = x0 * s + x1 * c
    return o

def attn(q, k, v, emu_kv, fa):  # q [n,H,hd], k,v [n,KV,hd]
    n, H, hd = q.shape; KV = k.shape[1]; g = H // KV; sc = 1 / np.sqrt(hd)
    k = np.repeat(k, g, 1); v = np.repeat(v, g, 1)
    if emu_kv: k, v = F16(k), F16(v)
    if not fa:
        if emu_kv: q = F16(q)
        s = np.einsum('nhd,mhd->hnm', q, k) * sc
        s = s + np.triu(np.full((n, n), -np.inf), 1)[None]
        p = np.exp(s - s.max(-1, keepdims=True)); p /= p.sum(-1, keepdims=True)
        return np.einsum('hnm,mhd->nhd', p, v)
    # ggml CPU flash attention, f16 K/V: q rounded to f16, f16 accumulator for V
    q = F16(q); out = np.zeros_like(q)
    for i in range(n):
        M = np.full(H, -np.inf); S = np.zeros(H); acc = np.zeros((H, hd))
        for j in range(i + 1):
            s = (q[i] * k[j]).sum(-1) * sc
            Mold = M; M = np.maximum(M, s)
            ms = np.exp(Mold - M); vs = np.exp(s - M)
            acc = F16(acc * ms[:, None]); acc = F16(acc + v[j] * vs[:, None])
            S = S * ms + vs
        out[i] = acc / S[:, None]
    return out

def forward(m, ids, emu=False, emu_kv=False, fa=False):
    E = m.w('token_embd.weight')[0]
    x = E[ids].copy(); n = len(ids); pos = np.arange(n, dtype=np.float64)
    for l in range(m.L):
        p = f'blk.{l}.'
        h = rms(x, m.w(p + 'attn_norm.weight')[0], m.eps)
        q = matmul(m, p + 'attn_q.weight', h, emu).reshape(n, m.H, m.hd)
        k = matmul(m, p + 'attn_k.weight', h, emu).reshape(n, m.KV, m.hd)
        v = matmul(m, p + 'attn_v.weight', h, emu).reshape(n, m.KV, m.hd)
        q, k = rope(q, pos, m.base, m.hd), rope(k, pos, m.base, m.hd)
        o = attn(q, k, v, emu_kv, fa).reshape(n, m.D)
        x = x + matmul(m, p + 'attn_output.weight', o, emu)
        h = rms(x, m.w(p + 'ffn_norm.weight')[0], m.eps)
        gt = matmul(m, p + 'ffn_gate.weight', h, emu); up = matmul(m, p + 'ffn_up.weight', h, emu)
        a = gt / (1 + np.exp(-gt)) * up
        x = x + matmul(m, p + 'ffn_down.weight', a, emu)
    h = rms(x, m.w('output_norm.weight')[0], m.eps)
    head = 'output.weight' if 'output.weight' in m.t else 'token_embd.weight'
    return matmul(m, head, h, emu)


PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,",
           "Die Hauptstadt von Deutschland ist", "The three primary colors are",
           "Water boils at a temperature of", "import numpy as np\n\n# compute the mean of",
           "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"]


def main():
    M, DUMP = sys.argv[1], sys.argv[2]; N = 32
    sel = [int(a) for a in sys.argv[3].split(',')] if len(sys.argv) > 3 else range(len(PROMPTS))
    llm = Llama(model_path=M, n_ctx=512, n_threads=2, logits_all=True, verbose=False, seed=0)
    llm32 = Llama(model_path=M, n_ctx=512, n_threads=2, logits_all=True, verbose=False, seed=0, type_k=0, type_v=0)
    m = Model(M); seqs = []
    for pi in sel:
        toks = llm.tokenize(PROMPTS[pi].encode(), add_bos=True, special=True)
        llm.reset(); llm.eval(toks); ref = []
        for _ in range(N):
            t = int(np.argmax(llm.scores[llm.n_tokens - 1])); ref.append(t)
            if t == llm.token_eos(): break
            llm.eval([t])
        seq = toks + ref[:-1]
        llm.reset(); llm.eval(seq); L = np.array(llm.scores[:len(seq)], dtype=np.float64)
        llm32.reset(); llm32.eval(seq); L32 = np.array(llm32.scores[:len(seq)], dtype=np.float64)
        seqs.append((pi, toks, ref, seq, L, L32))
    out = subprocess.run([DUMP, M, "cpu"], input="".join(json.dumps({"ids": s[3]}) + "\n" for s in seqs),
                         capture_output=True, text=True)
    ours = [np.array(json.loads(l)["logits"], dtype=np.float64) for l in out.stdout.splitlines() if l.startswith("{")]
    assert len(ours) == len(seqs), out.stderr[-2000:]

    def gaps(A, n0, ref):  # per step: logit of llama.cpp's greedy token minus the best other
        g = []
        for i, t in enumerate(ref):
            row = A[n0 - 1 + i].copy(); v = row[t]; row[t] = -np.inf; g.append(v - row.max())
        return np.array(g)
    for (pi, toks, ref, seq, L, L32), O in zip(seqs, ours):
        F = forward(m, seq); Q = forward(m, seq, emu=True)
        n0 = len(toks); gen = slice(n0 - 1, len(seq))
        d = lambda A, B: np.abs(A[gen] - B[gen]).max()
        print(f"prompt {pi} ({len(seq)} positions), max |dlogit| over the generated positions: ours-f64 {d(O, F):.3f}, "
              f"llama.cpp-f64 {d(L, F):.3f}, ours-llama.cpp {d(O, L):.3f}, llama.cpp f32 KV-f64 {d(L32, F):.3f}, "
              f"f64 with llama.cpp's 8-bit activations-llama.cpp {d(Q, L):.3f}")
        G = {name: gaps(A, n0, ref) for name, A in [("llama.cpp", L), ("llama.cpp f32 KV", L32), ("ours", O), ("f64", F), ("f64 + 8-bit acts", Q)]}
        k = next((i for i in range(len(ref)) if G["ours"][i] <= 0), None)
        if k is None:
            print("  ours picks llama.cpp's greedy token at every step")
            continue
        print(f"  ours first differs from llama.cpp's greedy token at step {k}; the margin of llama.cpp's token there "
              "(negative: another token wins) in each engine: " + ", ".join(f"{n} {g[k]:+.3f}" for n, g in G.items()))


if __name__ == "__main__":
    main()
