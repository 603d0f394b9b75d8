//! `uniffi-bindgen-swift`: Swift sources, headers and a modulemap for an XCFramework
//! (ENGINEERING.md F.5). Same uniffi version as the scaffolding, through the workspace lock.
fn main() {
    uniffi::uniffi_bindgen_swift()
}
