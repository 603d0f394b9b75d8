//! Microbenchmark of the quantized CPU matmul kernels on the shapes of Gemma 3 270M Q4_K_M.
//!
//! `cargo run --release -p edgewise-core --example kernel_bench -- [threads] [filter]`
//!
//! `EDGEWISE_BENCH_HUGE=1` puts the weights in 2 MiB pages (as the engine maps a model file where
//! the kernel can): the streaming products (the LM head) then run at the memory's speed.
//!
//! Prints, per (type, rows x cols, tokens): microseconds per product, weight GB/s and
//! activation-token GMAC/s. Weights are random blocks with sane f16 scales.

use std::time::Instant;

use edgewise_core::quant::{cpu, random_blocks, GgmlType};

/// CPU time of the calling thread, in seconds (what a product costs even on a busy machine,
/// when the pool has one thread and the product runs on the caller).
fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The weights, in a plain `Vec` or in an anonymous map advised `MADV_HUGEPAGE`.
enum HugeOr {
    Vec(Vec<u8>),
    Map(memmap2::MmapMut),
}

impl std::ops::Deref for HugeOr {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Vec(v) => v,
            Self::Map(m) => m,
        }
    }
}

fn huge_copy(w: &[u8]) -> HugeOr {
    let Ok(mut m) = memmap2::MmapMut::map_anon(w.len()) else { return HugeOr::Vec(w.to_vec()) };
    #[cfg(target_os = "linux")]
    let _ = m.advise(memmap2::Advice::HugePage);
    m.copy_from_slice(w);
    HugeOr::Map(m)
}

/// Sums `w` as u64 words on `threads` threads (a plain streaming read: the bandwidth roof).
fn read_all(w: &[u8], threads: usize) -> u64 {
    let per = w.len().div_ceil(threads.max(1)).next_multiple_of(64);
    std::thread::scope(|sc| {
        let hs: Vec<_> = w
            .chunks(per)
            .map(|c| {
                sc.spawn(move || {
                    let mut acc = [0u64; 8];
                    for line in c.chunks_exact(64) {
                        for (a, b) in acc.iter_mut().zip(line.chunks_exact(8)) {
                            *a = a.wrapping_add(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
                        }
                    }
                    acc.iter().fold(0u64, |x, y| x.wrapping_add(*y))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0)).fold(0u64, |x, y| x.wrapping_add(y))
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let filter = args.get(2).cloned().unwrap_or_default();
    edgewise_core::backend::set_cpu_threads(threads);
    let cases: &[(GgmlType, usize, usize, &[usize])] = &[
        (GgmlType::Q8_0, 262_144, 640, &[1]),
        (GgmlType::Q5_0, 2048, 640, &[1, 8, 12, 64, 512]),
        (GgmlType::Q5_0, 1024, 640, &[1, 64]),
        (GgmlType::Q5_0, 256, 640, &[1, 64]),
        (GgmlType::Q4_K, 640, 2048, &[1, 8, 12, 64, 512]),
        (GgmlType::Q4_K, 640, 1024, &[1, 64]),
        (GgmlType::Q6_K, 640, 2048, &[1, 8, 12, 64, 512]),
        (GgmlType::Q8_0, 256, 640, &[1, 64]),
        (GgmlType::Q8_0, 2048, 640, &[1, 64]),
        (GgmlType::Q4_0, 2048, 640, &[1, 64]),
        (GgmlType::Q5_K, 640, 2048, &[1, 64]),
        // Llama 3.2 1B Q4_K_M decode: the tied Q6_K head, the FFN and attention shapes.
        (GgmlType::Q6_K, 128_256, 2048, &[1]),
        (GgmlType::Q4_K, 8192, 2048, &[1]),
        (GgmlType::Q4_K, 2048, 8192, &[1]),
        (GgmlType::Q6_K, 2048, 8192, &[1]),
        (GgmlType::Q4_K, 2048, 2048, &[1]),
        (GgmlType::Q4_K, 512, 2048, &[1]),
        (GgmlType::Q4_1, 1536, 576, &[1, 64]),
        (GgmlType::Q4_1, 576, 1536, &[1, 64]),
    ];
    println!("threads {threads}");
    for &(ty, rows, cols, ns) in cases {
        let name = format!("{ty} {rows}x{cols}");
        if !name.contains(&filter) {
            continue;
        }
        let nb = rows * cols / ty.block_size() as usize;
        let w = random_blocks(ty, nb, 0x1234_5678 + ty.id() as u64);
        // `EDGEWISE_BENCH_HUGE=1`: the weights in 2 MiB pages, as the engine maps a model file
        // where the kernel can (`gguf::large_pages`); a fresh copy so the pages are new.
        let w =
            if std::env::var("EDGEWISE_BENCH_HUGE").is_ok_and(|v| v == "1") { huge_copy(&w) } else { HugeOr::Vec(w) };
        if std::env::var("EDGEWISE_BENCH_ROOF").is_ok_and(|v| v == "1") {
            // The memory's roof: the same bytes summed by `threads` threads, no decoding.
            let reps = 20;
            let t0 = Instant::now();
            let mut s = 0u64;
            for _ in 0..reps {
                s = s.wrapping_add(read_all(&w, threads));
            }
            let dt = t0.elapsed().as_secs_f64() / reps as f64;
            println!(
                "{name:<18} read  {:>10.1} us  {:>7.2} GB/s  (sum {})",
                dt * 1e6,
                w.len() as f64 / dt / 1e9,
                s % 7
            );
        }
        for &n in ns {
            let x: Vec<f32> = (0..n * cols).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.7).collect();
            // Enough repetitions for ~0.3 s.
            let t0 = Instant::now();
            let mut y = cpu::matmul(ty, &w, rows, cols, &x, n).expect("matmul");
            let once = t0.elapsed().as_secs_f64();
            let reps = ((0.3 / once.max(1e-6)) as usize).clamp(3, 20_000);
            let t0 = Instant::now();
            let c0 = thread_cpu_s();
            for _ in 0..reps {
                y = cpu::matmul(ty, &w, rows, cols, &x, n).expect("matmul");
            }
            let dt = t0.elapsed().as_secs_f64() / reps as f64;
            let cpu = (thread_cpu_s() - c0) / reps as f64;
            let gbs = w.len() as f64 / dt / 1e9;
            let gmac = (rows * cols * n) as f64 / dt / 1e9;
            println!(
                "{name:<18} n={n:<4} {:>10.1} us  {:>7.2} GB/s  {:>7.2} GMAC/s  caller cpu {:>10.1} us  (y0 {:.3})",
                dt * 1e6,
                gbs,
                gmac,
                cpu * 1e6,
                y[0]
            );
        }
    }
}
