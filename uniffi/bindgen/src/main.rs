//! `uniffi-bindgen`: generates Kotlin (and Swift) from the built `edgewise` library, e.g.
//! `cargo run --release -p uniffi-bindgen -- generate target/release/libedgewise.so --language kotlin --out-dir out`.
//! Kept out of the SDK crate so mobile cross-builds never compile clap and friends (pitfall 29).
fn main() {
    uniffi::uniffi_bindgen_main()
}
