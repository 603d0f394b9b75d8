//! On-device sensitivity (PII) detection: decides whether a request carries personal data or
//! secrets before the router may send it off the device.
//!
//! ```
//! use edgewise_pii::{detector, Category};
//!
//! let report = detector().scan("Call me on +44 7700 900123 after five.");
//! assert!(report.sensitive);
//! assert_eq!(report.categories, vec![Category::Phone]);
//! let span = &report.spans[0];
//! assert_eq!(&"Call me on +44 7700 900123 after five."[span.start..span.end], "+44 7700 900123");
//! assert!(!detector().scan("What are the early symptoms of measles?").sensitive);
//! ```
//!
//! # How it works
//! 1. **Normalize**: full-width and Devanagari digits, zero-width characters and
//!    spelled-out digit runs ("four one one one...", "nau aath...") are undone, keeping a byte map
//!    back to the original so spans stay exact.
//! 2. **Keywords**: multilingual keyword lists (English, Spanish, German, French, Chinese, Hindi in
//!    Latin script) are matched once; detectors ask "is there a card word within 50 bytes?".
//! 3. **Detectors**: digit runs classified by checksum (Luhn, ABA, Verhoeff, mod 11-2, ...),
//!    grouping and keywords; regexes for emails (plain and "at/dot"), IBANs (mod-97), national IDs
//!    (UK NINO, ES DNI/NIE, IT codice fiscale, FR NIR, CN resident ID, IN PAN, DE ID card),
//!    labelled passports/licences/IDs, credentials (known key prefixes, JWTs, PEM keys, connection
//!    strings, passwords in context), coordinates, postal addresses and dates of birth; and people:
//!    names (cued by honorifics, relation words, labels, known given names), health terms about
//!    the writer or a specific person, and named private people with personal attributes.
//! 4. **Decision**: any finding makes the text sensitive. Hard negatives are handled by
//!    suppression rules (documentation test cards, order/version/ISBN numbers, arithmetic, public
//!    figures, placeholders, reserved example domains), which lower the reported confidence.
//!
//! Published documentation test card numbers (e.g. `4242 4242 4242 4242`) and example IBANs are
//! treated as non-sensitive only when a test/documentation word ("test", "sandbox", "example",
//! "docs", "Stripe", "prueba", "Testkarte", "测试", ...) appears near them; on their own they are
//! flagged like any other card (fail closed).
//!
//! Privacy: nothing here logs or stores the scanned text or matched values.

#![deny(missing_docs)]

mod checksum;
pub mod classifier;
mod context;
mod gate;
mod gazetteer;
mod lexicon;
mod names;
mod normalize;
mod numbers;
mod patterns;

use std::sync::OnceLock;

pub use gate::{gate, GateReport, PrivacyGate, SecondStage, SecondStageFailure, Stage, DEFAULT_CLASSIFIER_BUDGET};

use context::{sentence_of, sentences, Hits, Lex};
use normalize::Normalized;

/// A kind of sensitive data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// A private person's name together with other personal data.
    PersonName,
    /// An email address (also "name at domain dot com").
    Email,
    /// A phone number (international and national formats).
    Phone,
    /// A postal address.
    PostalAddress,
    /// A government identifier: SSN, NINO, passport, driver licence, national ID and tax numbers.
    GovernmentId,
    /// A payment card number.
    PaymentCard,
    /// An IBAN.
    Iban,
    /// A bank account, routing or sort-code number.
    BankAccount,
    /// A date of birth.
    DateOfBirth,
    /// Health information about the writer or a specific person.
    Health,
    /// A credential or secret: API key, token, password, private key, connection string.
    Credential,
    /// A precise location (GPS coordinates, plus codes).
    Location,
}

impl Category {
    /// Every category, in report order.
    pub const ALL: [Category; 12] = [
        Category::PersonName,
        Category::Email,
        Category::Phone,
        Category::PostalAddress,
        Category::GovernmentId,
        Category::PaymentCard,
        Category::Iban,
        Category::BankAccount,
        Category::DateOfBirth,
        Category::Health,
        Category::Credential,
        Category::Location,
    ];

    /// The snake_case name used in JSON (`"payment_card"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::PersonName => "person_name",
            Category::Email => "email",
            Category::Phone => "phone",
            Category::PostalAddress => "postal_address",
            Category::GovernmentId => "government_id",
            Category::PaymentCard => "payment_card",
            Category::Iban => "iban",
            Category::BankAccount => "bank_account",
            Category::DateOfBirth => "date_of_birth",
            Category::Health => "health",
            Category::Credential => "credential",
            Category::Location => "location",
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a piece of sensitive data is: byte offsets into the scanned text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Span {
    /// First byte (inclusive).
    pub start: usize,
    /// Last byte (exclusive).
    pub end: usize,
    /// What was found there.
    pub category: Category,
}

/// The result of a scan.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PiiReport {
    /// Whether the text must stay on the device.
    pub sensitive: bool,
    /// The categories found, each once, in [`Category::ALL`] order.
    pub categories: Vec<Category>,
    /// Confidence in `sensitive` (0..=1): when sensitive, the strongest finding's score (checksum
    /// validated numbers ≈ 0.97, keyword-supported ≈ 0.85, heuristics ≈ 0.6–0.8); when not
    /// sensitive, 0.95 minus nothing for clean text, or `1 − r` where `r` is the risk of the
    /// strongest look-alike that a rule suppressed (a documentation test card gives 0.8).
    pub confidence: f32,
    /// The spans found, sorted by start; overlapping spans of one category are merged.
    pub spans: Vec<Span>,
}

impl PiiReport {
    fn fail_closed() -> Self {
        PiiReport { sensitive: true, categories: Vec::new(), confidence: 0.0, spans: Vec::new() }
    }
}

/// The sensitivity detector. Build it once ([`PiiDetector::new`] compiles its patterns) or use
/// the shared [`detector()`]. `Send + Sync`; [`scan`](PiiDetector::scan) takes `&self`.
pub struct PiiDetector {
    /// `None` only if a built-in pattern failed to compile: then every scan fails closed.
    engine: Option<Box<Engine>>,
}

impl Default for PiiDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for PiiDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PiiDetector").field("ready", &self.engine.is_some()).finish()
    }
}

impl PiiDetector {
    /// Compiles the detector's patterns (tens of milliseconds; do it once).
    pub fn new() -> Self {
        match Engine::new() {
            Ok(e) => PiiDetector { engine: Some(Box::new(e)) },
            Err(err) => {
                // A built-in pattern is broken: refuse to clear anything rather than fail open.
                log::error!(
                    "PII detector patterns failed to compile ({err}); every request will be treated as sensitive"
                );
                PiiDetector { engine: None }
            }
        }
    }

    /// Scans `text`. Never panics; on an internal failure the report says sensitive (fail closed).
    pub fn scan(&self, text: &str) -> PiiReport {
        match &self.engine {
            Some(e) => e.scan(text),
            None => PiiReport::fail_closed(),
        }
    }

    /// Whether the built-in patterns compiled (if not, every scan reports sensitive).
    pub fn is_ready(&self) -> bool {
        self.engine.is_some()
    }
}

/// The shared detector, built on first use.
pub fn detector() -> &'static PiiDetector {
    static DETECTOR: OnceLock<PiiDetector> = OnceLock::new();
    DETECTOR.get_or_init(PiiDetector::new)
}

/// A finding in normalized-text coordinates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Finding {
    start: usize,
    end: usize,
    cat: Category,
    score: f32,
}

/// Findings collected during one scan, plus the strongest suppressed look-alike.
#[derive(Default)]
pub(crate) struct Out {
    findings: Vec<Finding>,
    residual: f32,
}

impl Out {
    pub(crate) fn add(&mut self, start: usize, end: usize, cat: Category, score: f32) {
        if start < end {
            self.findings.push(Finding { start, end, cat, score });
        }
    }
    /// Records a suppressed look-alike with risk `r` (lowers the not-sensitive confidence).
    pub(crate) fn residual(&mut self, r: f32) {
        self.residual = self.residual.max(r);
    }
    pub(crate) fn sensitive(&self) -> bool {
        !self.findings.is_empty()
    }
    pub(crate) fn spans_of(&self, cat: Category) -> Vec<(usize, usize)> {
        self.findings.iter().filter(|f| f.cat == cat).map(|f| (f.start, f.end)).collect()
    }
}

/// Keyword hits and sentence spans of one normalized text.
pub(crate) struct Ctx {
    pub(crate) sents: Vec<(usize, usize)>,
    pub(crate) phone: Hits,
    pub(crate) number_word: Hits,
    pub(crate) card: Hits,
    pub(crate) doc: Hits,
    pub(crate) not_personal: Hits,
    pub(crate) math: Hits,
    pub(crate) ssn: Hits,
    pub(crate) gov_id: Hits,
    pub(crate) passport: Hits,
    pub(crate) licence: Hits,
    pub(crate) account: Hits,
    pub(crate) account_weak: Hits,
    pub(crate) routing: Hits,
    pub(crate) iban_kw: Hits,
    pub(crate) dob: Hits,
    pub(crate) location: Hits,
    pub(crate) not_coord: Hits,
    pub(crate) address: Hits,
    pub(crate) health: Hits,
    pub(crate) pronoun: Hits,
    pub(crate) possessive: Hits,
    pub(crate) main_mein: Hits,
    pub(crate) hinglish_verb: Hits,
    pub(crate) meta: Hits,
    pub(crate) relation: Hits,
    pub(crate) name_label: Hits,
    pub(crate) self_id: Hits,
    pub(crate) person_attr: Hits,
    pub(crate) fiction: Hits,
    pub(crate) public: Hits,
}

impl Ctx {
    /// A "not personal" number word (order, invoice, ISBN, version...) right before `pos`
    /// ("order #123", "Bestellung Nr. 123", "订单号123").
    pub(crate) fn not_personal_before(&self, pos: usize) -> bool {
        self.not_personal.dist_before(pos, 20).is_some()
    }
    /// A documentation/test word in the same sentence or within 120 bytes.
    pub(crate) fn doc_near(&self, start: usize, end: usize) -> bool {
        let (ss, se) = sentence_of(&self.sents, start);
        self.doc.within(ss, se) || self.doc.near(start, end, 120, 120)
    }
    /// The word "IBAN" shortly before.
    pub(crate) fn iban_word_near(&self, pos: usize) -> bool {
        self.iban_kw.dist_before(pos, 30).is_some()
    }
    /// Whether the sentence `[ss, se)` speaks in the first person (pronouns count unless the
    /// sentence is meta: "I'm writing an article about...").
    pub(crate) fn first_person_in(&self, text: &str, ss: usize, se: usize) -> bool {
        if self.possessive.within(ss, se) {
            return true;
        }
        let meta = self.meta.within(ss, se);
        if !meta && self.pronoun.within(ss, se) {
            return true;
        }
        // German "mein" + capitalized noun; Hinglish "main" (I) next to a Hinglish verb.
        for &(s, e) in self.main_mein.in_range(ss, se) {
            let word = text[s..e].to_lowercase();
            let next = text[e..].trim_start().chars().next();
            if word == "mein" && next.is_some_and(char::is_uppercase) {
                return true;
            }
            if word == "main" && !meta && self.hinglish_verb.within(ss, se) {
                return true;
            }
        }
        false
    }
    /// Whether `[s, e)` overlaps a keyword of a detector (so it is not a name).
    pub(crate) fn is_lexicon_word(&self, s: usize, e: usize) -> bool {
        [
            &self.health,
            &self.dob,
            &self.card,
            &self.phone,
            &self.gov_id,
            &self.account,
            &self.person_attr,
            &self.address,
        ]
        .iter()
        .any(|h| h.in_range(s.saturating_sub(64), e).any(|&(hs, he)| hs < e && he > s))
    }
}

/// Compiled lexicons and patterns.
struct Engine {
    phone: Lex,
    number_word: Lex,
    card: Lex,
    doc: Lex,
    not_personal: Lex,
    math: Lex,
    ssn: Lex,
    gov_id: Lex,
    passport: Lex,
    licence: Lex,
    account: Lex,
    account_weak: Lex,
    routing: Lex,
    iban_kw: Lex,
    dob: Lex,
    location: Lex,
    not_coord: Lex,
    address: Lex,
    health: Lex,
    pronoun: Lex,
    possessive: Lex,
    main_mein: Lex,
    hinglish_verb: Lex,
    meta: Lex,
    relation: Lex,
    name_label: Lex,
    self_id: Lex,
    person_attr: Lex,
    fiction: Lex,
    public: Lex,
    patterns: patterns::Patterns,
    names: names::NameFinder,
}

impl Engine {
    fn new() -> Result<Self, regex::Error> {
        use lexicon as lx;
        let public: Vec<String> = gazetteer::PUBLIC_FIGURES.iter().map(|p| regex::escape(p)).collect();
        let public_refs: Vec<&str> = public.iter().map(String::as_str).collect();
        Ok(Engine {
            phone: Lex::new(lx::PHONE)?,
            number_word: Lex::new(lx::NUMBER_WORD)?,
            card: Lex::new(lx::CARD)?,
            doc: Lex::new(lx::DOC)?,
            not_personal: Lex::new(lx::NOT_PERSONAL_NUMBER)?,
            math: Lex::new(lx::MATH)?,
            ssn: Lex::new(lx::SSN)?,
            gov_id: Lex::new(lx::GOV_ID)?,
            passport: Lex::new(lx::PASSPORT)?,
            licence: Lex::new(lx::LICENCE)?,
            account: Lex::new(lx::ACCOUNT)?,
            account_weak: Lex::new(lx::ACCOUNT_WEAK)?,
            routing: Lex::new(lx::ROUTING)?,
            iban_kw: Lex::new(&["iban"])?,
            dob: Lex::new(lx::DOB)?,
            location: Lex::new(lx::LOCATION)?,
            not_coord: Lex::new(lx::NOT_COORD)?,
            address: Lex::new(lx::ADDRESS)?,
            health: Lex::new(lx::HEALTH)?,
            pronoun: Lex::new(lx::FIRST_PERSON)?,
            possessive: Lex::new(lx::POSSESSIVE)?,
            main_mein: Lex::new(&["main", "mein"])?,
            hinglish_verb: Lex::new(lx::HINGLISH_VERB)?,
            meta: Lex::new(lx::META)?,
            relation: Lex::new(lx::RELATION)?,
            name_label: Lex::new(lx::NAME_LABEL)?,
            self_id: Lex::new(lx::SELF_ID)?,
            person_attr: Lex::new(lx::PERSON_ATTR)?,
            fiction: Lex::new(lx::FICTION)?,
            public: Lex::new(&public_refs)?,
            patterns: patterns::Patterns::new()?,
            names: names::NameFinder::new()?,
        })
    }

    fn ctx(&self, text: &str) -> Ctx {
        let lower = context::lower_same_len(text);
        let t = lower.as_str();
        Ctx {
            sents: sentences(text),
            phone: self.phone.hits(t),
            number_word: self.number_word.hits(t),
            card: self.card.hits(t),
            doc: self.doc.hits(t),
            not_personal: self.not_personal.hits(t),
            math: self.math.hits(t),
            ssn: self.ssn.hits(t),
            gov_id: self.gov_id.hits(t),
            passport: self.passport.hits(t),
            licence: self.licence.hits(t),
            account: self.account.hits(t),
            account_weak: self.account_weak.hits(t),
            routing: self.routing.hits(t),
            iban_kw: self.iban_kw.hits(t),
            dob: self.dob.hits(t),
            location: self.location.hits(t),
            not_coord: self.not_coord.hits(t),
            address: self.address.hits(t),
            health: self.health.hits(t),
            pronoun: self.pronoun.hits(t),
            possessive: self.possessive.hits(t),
            main_mein: self.main_mein.hits(t),
            hinglish_verb: self.hinglish_verb.hits(t),
            meta: self.meta.hits(t),
            relation: self.relation.hits(t),
            name_label: self.name_label.hits(t),
            self_id: self.self_id.hits(t),
            person_attr: self.person_attr.hits(t),
            fiction: self.fiction.hits(t),
            public: self.public.hits(t),
        }
    }

    fn scan(&self, text: &str) -> PiiReport {
        if text.trim().is_empty() {
            return PiiReport { sensitive: false, categories: Vec::new(), confidence: 0.95, spans: Vec::new() };
        }
        let norm = Normalized::new(text);
        let t = norm.text.as_str();
        let ctx = self.ctx(t);
        let mut out = Out::default();
        numbers::classify(t, &ctx, &mut out);
        self.patterns.detect(t, &ctx, &mut out);
        let mut names = self.names.find(t, &ctx);
        // Street and town names are often people's names ("Calle Yolanda Carnero", "South
        // Courtney, GU"): a name inside an address is not a person.
        let addresses = out.spans_of(Category::PostalAddress);
        names.retain(|n| !addresses.iter().any(|&(s, e)| n.start < e && n.end > s));
        names::people(t, &ctx, &names, &mut out);
        names::decorate_names(&names, &mut out);
        report(&norm, out)
    }
}

/// Maps findings back to the original text and builds the report.
fn report(norm: &Normalized, out: Out) -> PiiReport {
    if out.findings.is_empty() {
        return PiiReport {
            sensitive: false,
            categories: Vec::new(),
            confidence: (0.95 - out.residual).clamp(0.5, 0.95),
            spans: Vec::new(),
        };
    }
    // A number inside an IBAN, a credential or an email is part of it, not a separate finding;
    // so is the "user:password@host" of a connection string (not an email).
    let inside = |f: &Finding, cats: &[Category]| {
        out.findings.iter().any(|c| cats.contains(&c.cat) && c.cat != f.cat && c.start <= f.start && f.end <= c.end)
    };
    let findings: Vec<Finding> = out
        .findings
        .iter()
        .copied()
        .filter(|f| match f.cat {
            Category::BankAccount | Category::Phone | Category::GovernmentId | Category::PaymentCard => {
                !inside(f, &[Category::Iban, Category::Credential, Category::Email])
            }
            Category::Email => !inside(f, &[Category::Credential]),
            _ => true,
        })
        .collect();
    let confidence = findings.iter().map(|f| f.score).fold(0.0f32, f32::max);
    let mut spans: Vec<Span> = findings
        .iter()
        .map(|f| {
            let (start, end) = norm.orig_range(f.start, f.end);
            Span { start, end, category: f.cat }
        })
        .filter(|s| s.start < s.end)
        .collect();
    spans.sort_by_key(|s| (s.category, s.start, s.end));
    let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
    for s in spans {
        match merged.last_mut() {
            Some(last) if last.category == s.category && s.start <= last.end => last.end = last.end.max(s.end),
            _ => merged.push(s),
        }
    }
    merged.sort_by_key(|s| (s.start, s.end, s.category));
    let mut categories: Vec<Category> = merged.iter().map(|s| s.category).collect();
    categories.sort();
    categories.dedup();
    PiiReport { sensitive: true, categories, confidence, spans: merged }
}

#[cfg(test)]
mod gate_tests;
#[cfg(test)]
mod tests;
