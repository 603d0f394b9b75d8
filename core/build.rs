//! Link options for the `edgewise` command-line binary only (the library crates are untouched).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    // Pack the binary's ~200k relative relocations as DT_RELR (glibc >= 2.36, GNU ld >= 2.38):
    // the loader then reads a ~100 KB table instead of the 4.8 MB `.rela.dyn`, which otherwise
    // stays resident for the life of the process.
    if target.ends_with("-linux-gnu") && std::env::var_os("EDGEWISE_NO_RELR").is_none() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-env-changed=EDGEWISE_NO_RELR");
}
