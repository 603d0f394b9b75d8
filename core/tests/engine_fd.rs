//! `Engine::load_fd` on the real model (CPU): a model loaded from an open descriptor — the whole
//! file, or a region inside a larger file at an offset that is not page-aligned (how an Android
//! asset sits in an APK) — answers like the one loaded by path and has the same model id; bad
//! descriptors and regions are typed errors.

#![cfg(unix)]

mod common_model;

use std::io::Write;
use std::os::fd::AsRawFd;

use edgewise_core::backend::BackendPreference;
use edgewise_core::engine::{Engine, EngineConfig};
use edgewise_core::session::{GenerationParams, SessionConfig};
use edgewise_core::Error;

fn cfg() -> EngineConfig {
    EngineConfig { backend: BackendPreference::Cpu, threads: Some(2), gpu_self_test: false }
}

fn tokens(engine: &Engine) -> Vec<u32> {
    let mut s = engine.new_session(SessionConfig { max_context: 64, ..Default::default() }).unwrap();
    s.complete(
        "The capital of France is",
        &GenerationParams { ignore_eos: true, ..GenerationParams::greedy(6) },
        &mut |_| true,
    )
    .unwrap()
    .token_ids
}

#[test]
fn model_from_a_descriptor_answers_like_the_path() {
    let Some(path) = common_model::model_path() else { return };
    let by_path = Engine::load(&path, cfg()).unwrap();
    let want = tokens(&by_path);

    // The whole file.
    let f = std::fs::File::open(&path).unwrap();
    let by_fd = Engine::load_fd(f.as_raw_fd(), 0, None, cfg()).unwrap();
    drop(f); // the engine holds its own duplicate
    assert_eq!(tokens(&by_fd), want);
    assert_eq!(by_fd.model_id(), by_path.model_id(), "session files move between load methods");
    drop(by_fd);

    // A region at an offset that is 4-byte aligned only (zipalign's alignment for assets).
    let model = std::fs::read(&path).unwrap();
    let dir = std::env::temp_dir().join(format!("edgewise-fd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pack = dir.join("pack.bin");
    let offset = 4100u64;
    {
        let mut w = std::fs::File::create(&pack).unwrap();
        w.write_all(&vec![0x5a; offset as usize]).unwrap();
        w.write_all(&model).unwrap();
        w.write_all(b"trailing bytes of the next asset").unwrap();
    }
    drop(model);
    let f = std::fs::File::open(&pack).unwrap();
    let fd = f.as_raw_fd();
    let len = std::fs::metadata(&path).unwrap().len();
    let in_pack = Engine::load_fd(fd, offset, Some(len), cfg()).unwrap();
    assert_eq!(tokens(&in_pack), want);
    assert_eq!(in_pack.model_id(), by_path.model_id());
    drop(in_pack);

    // Typed errors, never a panic.
    let is_fd_param = |r: edgewise_core::Result<Engine>| matches!(r, Err(Error::InvalidParameter { name: "fd", .. }));
    assert!(is_fd_param(Engine::load_fd(-1, 0, None, cfg())));
    assert!(is_fd_param(Engine::load_fd(1_000_000, 0, None, cfg())), "a descriptor that is not open");
    let is_gguf_err = |r: edgewise_core::Result<Engine>| matches!(r, Err(Error::InvalidGguf { .. }));
    assert!(is_gguf_err(Engine::load_fd(fd, offset, Some(len + 1_000_000), cfg())), "region past the end");
    assert!(is_gguf_err(Engine::load_fd(fd, u64::MAX - 10, Some(100), cfg())), "offset overflow");
    assert!(is_gguf_err(Engine::load_fd(fd, 0, Some(len), cfg())), "the junk before the model is not a GGUF");
    assert!(is_gguf_err(Engine::load_fd(fd, offset, Some(10), cfg())), "too short");
    let d = std::fs::File::open(&dir).unwrap();
    assert!(is_gguf_err(Engine::load_fd(d.as_raw_fd(), 0, None, cfg())), "a directory");
    drop(f);
    let _ = std::fs::remove_dir_all(&dir);
}
