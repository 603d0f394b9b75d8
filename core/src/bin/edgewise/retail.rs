//! `edgewise recommend` and `edgewise search`: the retail recommender over a catalog file, for one
//! shopper's events, with the on-device embedding model.
//!
//! The catalog (`{"id","title","description","attributes":{...}}` lines) is embedded in memory on
//! each run (MiniLM: a few seconds for a few hundred items on 2 cores); nothing is written and
//! nothing leaves the machine. With `--json` the last stdout line is
//! `{"items":[{"id","score","reason","why"},...]}`; without it, one `rank  score  id  reason  why`
//! line per item (`why`: the "why this pick" line for people). Errors name files and line numbers, never an event, a query or item text.
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use clap::Args;
use edgewise_core::embed::{EmbedOptions, Embedder, DEFAULT_EMBEDDING_MODEL};
use edgewise_core::retail::{read_catalog, read_events, to_output_json, Filter, Item, Recommendation, Recommender};

/// Options both commands share.
#[derive(Args)]
pub struct CatalogArgs {
    /// Catalog: JSON lines `{"id","title","description","attributes":{"category","price","in_stock",...}}`.
    #[arg(long)]
    catalog: PathBuf,
    /// How many items (1..=10000).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    k: u32,
    /// Print `{"items":[{"id","score","reason","why"},...]}` as the last line.
    #[arg(long)]
    json: bool,
    /// Embedding model: a catalog id, a sentence-transformers folder or a `bert` GGUF file.
    #[arg(long, default_value = DEFAULT_EMBEDDING_MODEL)]
    embedding_model: String,
    /// Only this category.
    #[arg(long)]
    category: Option<String>,
    /// Only items priced at least this.
    #[arg(long)]
    min_price: Option<f64>,
    /// Only items priced at most this.
    #[arg(long)]
    max_price: Option<f64>,
}

/// Arguments of `edgewise recommend`.
#[derive(Args)]
pub struct RecommendArgs {
    #[command(flatten)]
    common: CatalogArgs,
    /// The shopper's events: JSON lines `{"item_id","kind","ts"}` (kind view, add_to_cart,
    /// purchase, dismiss) or `{"kind":"search","query","ts"}`.
    #[arg(long)]
    events: PathBuf,
}

/// Arguments of `edgewise search`.
#[derive(Args)]
pub struct SearchArgs {
    #[command(flatten)]
    common: CatalogArgs,
    /// What to look for.
    query: String,
}

fn open(path: &Path) -> Result<BufReader<File>, Box<dyn std::error::Error>> {
    File::open(path).map(BufReader::new).map_err(|e| format!("{}: {e}", path.display()).into())
}

fn recommender(a: &CatalogArgs) -> Result<Recommender, Box<dyn std::error::Error>> {
    let items: Vec<Item> = read_catalog(open(&a.catalog)?)?;
    let embedder = Embedder::load(&a.embedding_model, EmbedOptions::default())?;
    let t0 = std::time::Instant::now();
    let rec = Recommender::in_memory(Box::new(embedder), items)?;
    log::info!("catalog of {} items embedded in {:.2?}", rec.catalog_len(), t0.elapsed());
    Ok(rec)
}

fn filter(a: &CatalogArgs) -> Filter {
    Filter { category: a.category.clone(), min_price: a.min_price, max_price: a.max_price, ..Filter::none() }
}

fn print(a: &CatalogArgs, items: &[Recommendation]) {
    if a.json {
        println!("{}", to_output_json(items));
    } else {
        for (i, r) in items.iter().enumerate() {
            println!("{:>3}  {:.4}  {}  {}  {}", i + 1, r.score, r.id, r.reason, r.why);
        }
    }
}

/// Runs `edgewise recommend`.
pub fn recommend(a: RecommendArgs) -> crate::CliResult {
    let events = read_events(open(&a.events)?)?;
    let f = filter(&a.common);
    f.validate()?;
    let mut rec = recommender(&a.common)?;
    rec.record_all(events)?;
    let out = rec.recommend(a.common.k as usize, &f)?;
    print(&a.common, &out);
    Ok(())
}

/// Runs `edgewise search`.
pub fn search(a: SearchArgs) -> crate::CliResult {
    let f = filter(&a.common);
    f.validate()?;
    let mut rec = recommender(&a.common)?;
    let out = rec.search(&a.query, a.common.k as usize, &f)?;
    print(&a.common, &out);
    Ok(())
}
