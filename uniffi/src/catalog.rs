//! The built-in model catalog and `ModelDownload` (fetch with progress, cancel, verify).
//!
//! Phones have no `HOME`: apps pass their own files directory as `home_dir`; models then live in
//! `<home_dir>/models/<file>`. The downloader resumes, checks free space, verifies the sha256
//! before the file is used and writes atomically (core/src/download.rs).

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

use edgewise_core::catalog::{self as ccat, Catalog};
use edgewise_core::download::{self as cdl, CancelToken};

use crate::error::{guard, EdgewiseError, EdgewiseResult};
use crate::types::{ArtifactSpec, DownloadProgress, FetchConfig, ModelInfo};

/// Receives download progress on the fetching thread. Implemented in Kotlin or Swift.
#[uniffi::export(foreign)]
pub trait DownloadListener: Send + Sync {
    /// Called at least every 256 KiB and at the end of each phase. Throwing cancels the fetch,
    /// which then fails with the thrown error.
    fn on_progress(&self, progress: DownloadProgress) -> Result<(), EdgewiseError>;
}

/// Every model of the built-in catalog; the first is the default.
#[uniffi::export]
pub fn list_models() -> EdgewiseResult<Vec<ModelInfo>> {
    Ok(Catalog::builtin()?.models().iter().cloned().map(Into::into).collect())
}

/// The catalog's default model.
#[uniffi::export]
pub fn default_model() -> EdgewiseResult<ModelInfo> {
    Ok(Catalog::builtin()?.default_model().clone().into())
}

/// The catalog's default assistant model: an instruction-tuned chat model with a pinned sha256
/// (the default model is a base model that continues text).
#[uniffi::export]
pub fn default_assistant_model() -> EdgewiseResult<ModelInfo> {
    Ok(Catalog::builtin()?.default_assistant_model().clone().into())
}

/// Where model `model_id` lives under `home_dir` (`<home_dir>/models/<file>`), fetched or not.
#[uniffi::export]
pub fn model_path(model_id: String, home_dir: String) -> EdgewiseResult<String> {
    Ok(Catalog::builtin()?.get(&model_id)?.path_in(Path::new(&home_dir)).to_string_lossy().into_owned())
}

/// The desktop default for `home_dir`: `$EDGEWISE_HOME`, else `~/.cache/edgewise` (an
/// `InvalidParameter` error where neither is set, as on a phone: pass the app's files directory).
#[uniffi::export]
pub fn edgewise_home() -> EdgewiseResult<String> {
    Ok(ccat::edgewise_home()?.to_string_lossy().into_owned())
}

/// Core's default fetch settings (4 retries, 60 s timeout, catalog source order).
#[uniffi::export]
pub fn default_fetch_config() -> FetchConfig {
    cdl::FetchOptions::default().into()
}

/// One model file to fetch: a catalog model or an [`ArtifactSpec`]. `cancel()` stops a running
/// `fetch()` (it then fails with `Cancelled`, keeping partial data for a resume); a cancelled
/// download stays cancelled, so create a new one to resume.
///
/// A *derived* catalog entry (a file no one publishes, such as `all-minilm-l6-v2-gguf-q8_0`: its
/// source entry converted here) is made offline from its source entry, which is fetched first if
/// needed, and checked against the entry's size and sha256, as `edgewise models fetch` does.
#[derive(uniffi::Object)]
pub struct ModelDownload {
    artifact: cdl::Artifact,
    config: FetchConfig,
    cancel: CancelToken,
    /// For a derived entry: the catalog, the entry and the home it is made under.
    derived: Option<(Catalog, ccat::ModelEntry, std::path::PathBuf)>,
}

#[uniffi::export]
impl ModelDownload {
    /// The catalog model `model_id`, to be stored under `home_dir`.
    #[uniffi::constructor]
    pub fn new(model_id: String, home_dir: String, config: FetchConfig) -> EdgewiseResult<Arc<Self>> {
        let catalog = Catalog::builtin()?;
        let entry = catalog.get(&model_id)?.clone();
        let home = Path::new(&home_dir).to_path_buf();
        let artifact = entry.artifact_in(&home);
        let derived = entry.derived.is_some().then(|| (catalog, entry, home));
        Ok(Arc::new(Self { artifact, config, cancel: CancelToken::new(), derived }))
    }

    /// A file that is not in the catalog.
    #[uniffi::constructor]
    pub fn custom(artifact: ArtifactSpec, config: FetchConfig) -> EdgewiseResult<Arc<Self>> {
        Ok(Arc::new(Self { artifact: artifact.into(), config, cancel: CancelToken::new(), derived: None }))
    }

    /// The final path of the file.
    pub fn destination(&self) -> EdgewiseResult<String> {
        Ok(self.artifact.dest.to_string_lossy().into_owned())
    }

    /// Cheap check (no hashing): the file was verified by Edgewise and has not changed since.
    pub fn is_verified(&self) -> EdgewiseResult<bool> {
        Ok(cdl::is_verified_cached(&self.artifact))
    }

    /// Re-hashes the file and checks size and sha256 (`Download` error on a mismatch, `Io` if
    /// missing). Blocking.
    pub fn verify(&self) -> EdgewiseResult<()> {
        guard("ModelDownload.verify", || Ok(cdl::verify(&self.artifact)?))
    }

    /// Fetches the file unless a verified copy is already there (a derived entry: makes it from
    /// its source entry, fetching that first if needed), reporting progress to `listener`;
    /// returns the path. Blocking: call it from a background thread.
    pub fn fetch(&self, listener: Arc<dyn DownloadListener>) -> EdgewiseResult<String> {
        guard("ModelDownload.fetch", || {
            let failure: RefCell<Option<EdgewiseError>> = RefCell::new(None);
            let on_progress = |p: cdl::Progress| {
                if let Err(e) = listener.on_progress(p.into()) {
                    failure.borrow_mut().get_or_insert(e);
                    self.cancel.cancel();
                }
            };
            let options = self.config.clone().into_options(self.cancel.clone());
            let result = match &self.derived {
                Some((catalog, entry, home)) => entry.derive_in(catalog, home, &options, &on_progress),
                None => cdl::fetch(&self.artifact, &options, &on_progress),
            };
            match failure.into_inner() {
                Some(e) => Err(e),
                None => Ok(result?.to_string_lossy().into_owned()),
            }
        })
    }

    /// Stops a running `fetch()` soon after (safe from any thread).
    pub fn cancel(&self) -> EdgewiseResult<()> {
        self.cancel.cancel();
        Ok(())
    }
}
