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
//! A scan takes time linear in the length of the text (about 0.1 s per MB). Texts longer than
//! [`MAX_SCAN_BYTES`] are not scanned: they are reported sensitive (fail closed) with
//! [`PiiReport::fail_closed`] set to [`FailClosed::TooLong`].
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
mod orgs;
mod patterns;

use std::sync::OnceLock;

pub use gate::{
    gate, second_stage_example, GateReport, PrivacyGate, SecondStage, SecondStageFailure, Stage,
    DEFAULT_CLASSIFIER_BUDGET, SECOND_STAGE_EXAMPLES,
};

use context::{sentence_of, sentences, Hits, Lex};

/// The longest text (in UTF-8 bytes, 16 MiB) one scan examines. A longer text is reported
/// sensitive without being scanned ([`FailClosed::TooLong`]): it stays on the device.
pub const MAX_SCAN_BYTES: usize = 16 * 1024 * 1024;
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

/// Why a report says sensitive without having examined the text (fail closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailClosed {
    /// The text is longer than [`MAX_SCAN_BYTES`].
    TooLong,
    /// The detector's built-in patterns failed to compile.
    NotReady,
}

impl FailClosed {
    /// The snake_case name used in JSON (`"too_long"`).
    pub fn as_str(self) -> &'static str {
        match self {
            FailClosed::TooLong => "too_long",
            FailClosed::NotReady => "not_ready",
        }
    }
}

impl std::fmt::Display for FailClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// Set when the text was not examined and is reported sensitive for that reason alone
    /// (then `categories` and `spans` are empty and `confidence` is 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_closed: Option<FailClosed>,
}

impl PiiReport {
    fn closed(reason: FailClosed) -> Self {
        PiiReport {
            sensitive: true,
            categories: Vec::new(),
            confidence: 0.0,
            spans: Vec::new(),
            fail_closed: Some(reason),
        }
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

    /// Scans `text` in time linear in its length. Never panics; a text longer than
    /// [`MAX_SCAN_BYTES`], or an internal failure, gives a sensitive report (fail closed) whose
    /// [`fail_closed`](PiiReport::fail_closed) says why.
    pub fn scan(&self, text: &str) -> PiiReport {
        if text.len() > MAX_SCAN_BYTES {
            log::warn!(
                "privacy check: text of {} bytes exceeds the {MAX_SCAN_BYTES}-byte scan limit; treated as sensitive",
                text.len()
            );
            return PiiReport::closed(FailClosed::TooLong);
        }
        match &self.engine {
            Some(e) => e.scan(text),
            None => PiiReport::closed(FailClosed::NotReady),
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
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) cat: Category,
    score: f32,
}

/// Findings collected during one scan, plus the strongest suppressed look-alike.
#[derive(Default)]
pub(crate) struct Out {
    pub(crate) findings: Vec<Finding>,
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
    /// Per sentence of `sents`: whether it speaks in the first person (see [`Ctx::first_person_at`]).
    first_person: Vec<bool>,
    /// Byte ranges within [`DIGIT_REACH`] of an ASCII digit (merged, on char boundaries): the only
    /// places where patterns that need a digit are searched.
    pub(crate) digit_regions: Vec<(usize, usize)>,
    /// Whether the text has CJK characters (Chinese patterns run only then).
    pub(crate) has_cjk: bool,
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
    pub(crate) otp: Hits,
    pub(crate) code_word: Hits,
    pub(crate) door_code: Hits,
    pub(crate) sms: Hits,
    pub(crate) seed: Hits,
    pub(crate) third: Hits,
    pub(crate) birthday: Hits,
    pub(crate) intersection: Hits,
    pub(crate) present: Hits,
    pub(crate) org: Hits,
    pub(crate) site: Hits,
    pub(crate) vignette: Hits,
    pub(crate) landmark: Hits,
    pub(crate) placeholder: Hits,
    pub(crate) personal_contact: Hits,
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
    /// Whether the sentence containing byte `pos` speaks in the first person (precomputed once
    /// per sentence, so asking for every hit of a long sentence stays linear).
    pub(crate) fn first_person_at(&self, pos: usize) -> bool {
        let idx = self.sents.partition_point(|&(_, e)| e <= pos);
        self.first_person.get(idx).copied().unwrap_or(false)
    }
    /// Whether the first person of the sentence `[ss, se)` is only a "my"/"our" before a word of
    /// fiction ("a character in my novel", "my crime novel", "my D&D campaign", "mi novela"): the
    /// writer's own work, not the writer. An "I"/"me", a German "mein"/Hinglish "main", or any
    /// other "my" ("my wife", "my diabetes") in the sentence keeps it first person.
    pub(crate) fn fiction_possessive_only(&self, ss: usize, se: usize) -> bool {
        self.fiction.within(ss, se)
            && !self.pronoun.within(ss, se)
            && !self.main_mein.within(ss, se)
            && self
                .possessive
                .in_range(ss, se)
                .all(|&(a, b)| self.fiction.in_range(a, (b + 24).min(se)).next().is_some())
    }
    /// Whether any sentence of the text speaks in the first person.
    pub(crate) fn any_first_person(&self) -> bool {
        self.first_person.iter().any(|&f| f)
    }
    /// Whether the sentence `[ss, se)` speaks in the first person (pronouns count unless the
    /// sentence is meta: "I'm writing an article about..."). Costs the number of "main"/"mein"
    /// hits in the sentence: call it once per sentence.
    fn first_person_in(&self, text: &str, ss: usize, se: usize) -> bool {
        if self.possessive.within(ss, se) {
            return true;
        }
        let meta = self.meta.within(ss, se);
        // German "mein" + capitalized noun; Hinglish "main" (I) next to a Hinglish verb.
        let hinglish = !meta && self.hinglish_verb.within(ss, se);
        // In a Hinglish sentence "me" is mostly the postposition "in" ("dengue me platelets",
        // "din me kitni baar"): it counts as "me" only after an English verb or preposition.
        if !meta && self.pronoun.in_range(ss, se).any(|&(a, b)| !(hinglish && postposition_me(text, a, b))) {
            return true;
        }
        for &(s, e) in self.main_mein.in_range(ss, se) {
            let word = &text[s..e];
            let next = text[e..].trim_start().chars().next();
            if word.eq_ignore_ascii_case("mein") && next.is_some_and(char::is_uppercase) {
                return true;
            }
            if word.eq_ignore_ascii_case("main") && hinglish {
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

/// How far (bytes) from a digit a digit-bearing pattern may extend; matches are far shorter.
const DIGIT_REACH: usize = 256;

/// Merged ranges of `text` within [`DIGIT_REACH`] bytes of an ASCII digit, on char boundaries.
fn digit_regions(text: &str) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (i, b) in text.bytes().enumerate() {
        if !b.is_ascii_digit() {
            continue;
        }
        let lo = patterns::floor_char(text, i.saturating_sub(DIGIT_REACH));
        let hi = patterns::floor_char(text, (i + 1 + DIGIT_REACH).min(text.len()));
        match out.last_mut() {
            Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
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
    otp: Lex,
    code_word: Lex,
    door_code: Lex,
    sms: Lex,
    seed: Lex,
    third: Lex,
    birthday: Lex,
    intersection: Lex,
    present: Lex,
    org: Lex,
    site: Lex,
    vignette: Lex,
    landmark: Lex,
    placeholder: Lex,
    personal_contact: Lex,
    patterns: patterns::Patterns,
    orgs: orgs::OrgRules,
    names: names::NameFinder,
    /// The single keywords of every list above.
    words: context::WordTable,
}

impl Engine {
    fn new() -> Result<Self, regex::Error> {
        use lexicon as lx;
        let public: Vec<String> = gazetteer::PUBLIC_FIGURES.iter().map(|p| regex::escape(p)).collect();
        let public_refs: Vec<&str> = public.iter().map(String::as_str).collect();
        let mut words = context::WordTable::default();
        Ok(Engine {
            phone: Lex::new(&mut words, lx::PHONE)?,
            number_word: Lex::new(&mut words, lx::NUMBER_WORD)?,
            card: Lex::new(&mut words, lx::CARD)?,
            doc: Lex::new(&mut words, lx::DOC)?,
            not_personal: Lex::new(&mut words, lx::NOT_PERSONAL_NUMBER)?,
            math: Lex::new(&mut words, lx::MATH)?,
            ssn: Lex::new(&mut words, lx::SSN)?,
            gov_id: Lex::new(&mut words, lx::GOV_ID)?,
            passport: Lex::new(&mut words, lx::PASSPORT)?,
            licence: Lex::new(&mut words, lx::LICENCE)?,
            account: Lex::new(&mut words, lx::ACCOUNT)?,
            account_weak: Lex::new(&mut words, lx::ACCOUNT_WEAK)?,
            routing: Lex::new(&mut words, lx::ROUTING)?,
            iban_kw: Lex::new(&mut words, &["iban"])?,
            dob: Lex::new(&mut words, lx::DOB)?,
            location: Lex::new(&mut words, lx::LOCATION)?,
            not_coord: Lex::new(&mut words, lx::NOT_COORD)?,
            address: Lex::new(&mut words, lx::ADDRESS)?,
            health: Lex::new(&mut words, lx::HEALTH)?,
            pronoun: Lex::new(&mut words, lx::FIRST_PERSON)?,
            possessive: Lex::new(&mut words, lx::POSSESSIVE)?,
            main_mein: Lex::new(&mut words, &["main", "mein"])?,
            hinglish_verb: Lex::new(&mut words, lx::HINGLISH_VERB)?,
            meta: Lex::new(&mut words, lx::META)?,
            relation: Lex::new(&mut words, lx::RELATION)?,
            name_label: Lex::new(&mut words, lx::NAME_LABEL)?,
            self_id: Lex::new(&mut words, lx::SELF_ID)?,
            person_attr: Lex::new(&mut words, lx::PERSON_ATTR)?,
            fiction: Lex::new(&mut words, lx::FICTION)?,
            public: Lex::new(&mut words, &public_refs)?,
            otp: Lex::new(&mut words, lx::OTP)?,
            code_word: Lex::new(&mut words, lx::CODE_WORD)?,
            door_code: Lex::new(&mut words, lx::DOOR_CODE)?,
            sms: Lex::new(&mut words, lx::SMS)?,
            seed: Lex::new(&mut words, lx::SEED)?,
            present: Lex::new(&mut words, lx::PRESENT)?,
            landmark: Lex::new(&mut words, lx::LANDMARK)?,
            placeholder: Lex::new(&mut words, lx::PLACEHOLDER)?,
            personal_contact: Lex::new(&mut words, lx::PERSONAL_CONTACT)?,
            org: Lex::new(&mut words, lx::ORG)?,
            site: Lex::new(&mut words, lx::SITE)?,
            vignette: Lex::new(&mut words, lx::VIGNETTE)?,
            intersection: Lex::new(&mut words, lx::INTERSECTION)?,
            birthday: Lex::new(&mut words, lx::BIRTHDAY)?,
            third: Lex::new(&mut words, lx::THIRD_PERSON)?,
            patterns: patterns::Patterns::new()?,
            names: names::NameFinder::new()?,
            orgs: orgs::OrgRules::new()?,
            words,
        })
    }

    fn ctx(&self, text: &str) -> Ctx {
        let lower = context::lower_same_len(text);
        let t = lower.as_str();
        let w = self.words.scan(t);
        let mut ctx = Ctx {
            sents: sentences(text),
            first_person: Vec::new(),
            digit_regions: digit_regions(text),
            has_cjk: !text.is_ascii() && text.chars().any(normalize::is_cjk),
            phone: self.phone.hits(t, &w),
            number_word: self.number_word.hits(t, &w),
            card: self.card.hits(t, &w),
            doc: self.doc.hits(t, &w),
            not_personal: self.not_personal.hits(t, &w),
            math: self.math.hits(t, &w),
            ssn: self.ssn.hits(t, &w),
            gov_id: self.gov_id.hits(t, &w),
            passport: self.passport.hits(t, &w),
            licence: self.licence.hits(t, &w),
            account: self.account.hits(t, &w),
            account_weak: self.account_weak.hits(t, &w),
            routing: self.routing.hits(t, &w),
            iban_kw: self.iban_kw.hits(t, &w),
            dob: self.dob.hits(t, &w),
            location: self.location.hits(t, &w),
            not_coord: self.not_coord.hits(t, &w),
            address: self.address.hits(t, &w),
            health: self.health.hits(t, &w),
            pronoun: self.pronoun.hits(t, &w),
            possessive: self.possessive.hits(t, &w),
            main_mein: self.main_mein.hits(t, &w),
            hinglish_verb: self.hinglish_verb.hits(t, &w),
            meta: self.meta.hits(t, &w),
            relation: self.relation.hits(t, &w),
            name_label: self.name_label.hits(t, &w),
            self_id: self.self_id.hits(t, &w),
            person_attr: self.person_attr.hits(t, &w),
            fiction: self.fiction.hits(t, &w),
            public: self.public.hits(t, &w),
            otp: self.otp.hits(t, &w),
            code_word: self.code_word.hits(t, &w),
            door_code: self.door_code.hits(t, &w),
            sms: self.sms.hits(t, &w),
            seed: self.seed.hits(t, &w),
            present: self.present.hits(t, &w),
            landmark: self.landmark.hits(t, &w),
            placeholder: self.placeholder.hits(t, &w),
            personal_contact: self.personal_contact.hits(t, &w),
            org: self.org.hits(t, &w),
            site: self.site.hits(t, &w),
            vignette: self.vignette.hits(t, &w),
            intersection: self.intersection.hits(t, &w),
            birthday: self.birthday.hits(t, &w),
            third: self.third.hits(t, &w),
        };
        ctx.first_person = ctx.sents.iter().map(|&(ss, se)| ctx.first_person_in(text, ss, se)).collect();
        ctx
    }

    fn scan(&self, text: &str) -> PiiReport {
        if text.trim().is_empty() {
            return PiiReport {
                sensitive: false,
                categories: Vec::new(),
                confidence: 0.95,
                spans: Vec::new(),
                fail_closed: None,
            };
        }
        let norm = Normalized::new(text);
        let t: &str = &norm.text;
        let ctx = self.ctx(t);
        let mut out = Out::default();
        numbers::classify(t, &ctx, &mut out);
        self.patterns.detect(t, &ctx, &mut out);
        // A toll-free number after an ID label is a phone number.
        orgs::toll_free_ids(t, &mut out);
        let mut names = self.names.find(t, &ctx);
        // Street and town names are often people's names ("Calle Yolanda Carnero", "South
        // Courtney, GU"): a name inside an address is not a person.
        let addresses = Containers::new(&out.findings, &[Category::PostalAddress]);
        names.retain(|n| !addresses.overlaps(n.start, n.end));
        // Business, documentation and fiction contact details are not a person's.
        self.orgs.withdraw(t, &ctx, &names, &mut out);
        names::people(t, &ctx, &names, &mut out);
        // Sample rows quoted from documentation are nobody's.
        orgs::doc_samples(t, &ctx, &mut out);
        names::decorate_names(&names, &ctx, &mut out);
        report(&norm, out)
    }
}

/// Whether the pronoun hit `[a, b)` is the word "me" not governed by an English verb or
/// preposition ("tell me", "for me"): in Hinglish it is the postposition "in" (में).
fn postposition_me(text: &str, a: usize, b: usize) -> bool {
    const GOVERNS_ME: &[&str] = &[
        "tell", "call", "help", "give", "send", "email", "text", "for", "to", "with", "let", "remind", "show", "ask",
        "message", "ping", "contact", "teach", "get", "bring", "pay", "owe", "told", "called", "helped", "gave",
        "sent", "about", "from", "like", "make", "made", "take", "took", "hit", "hurt", "beat", "of", "by",
    ];
    if !text[a..b].eq_ignore_ascii_case("me") {
        return false;
    }
    let before = text[..a].trim_end();
    let prev = before.rsplit(|c: char| !c.is_alphanumeric()).next().unwrap_or("").to_ascii_lowercase();
    !GOVERNS_ME.contains(&prev.as_str())
}

/// Spans of some categories, sorted by start, with the running maximum of their ends: answers
/// "does one of them contain `[start, end)`?" in O(log n).
struct Containers {
    starts: Vec<usize>,
    max_end: Vec<usize>,
}

impl Containers {
    fn new(findings: &[Finding], cats: &[Category]) -> Self {
        let mut spans: Vec<(usize, usize)> =
            findings.iter().filter(|f| cats.contains(&f.cat)).map(|f| (f.start, f.end)).collect();
        spans.sort_unstable();
        let mut max_end = Vec::with_capacity(spans.len());
        let mut m = 0;
        for &(_, e) in &spans {
            m = m.max(e);
            max_end.push(m);
        }
        Containers { starts: spans.iter().map(|&(s, _)| s).collect(), max_end }
    }
    fn contains(&self, start: usize, end: usize) -> bool {
        let idx = self.starts.partition_point(|&s| s <= start);
        idx > 0 && self.max_end[idx - 1] >= end
    }
    /// Whether one of them overlaps `[start, end)`.
    fn overlaps(&self, start: usize, end: usize) -> bool {
        let idx = self.starts.partition_point(|&s| s < end);
        idx > 0 && self.max_end[idx - 1] > start
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
            fail_closed: None,
        };
    }
    // A number inside an IBAN, a credential or an email is part of it, not a separate finding;
    // so is the "user:password@host" of a connection string (not an email). (Interval tables, so
    // that texts with many findings stay linear.)
    let numbers_in = Containers::new(&out.findings, &[Category::Iban, Category::Credential, Category::Email]);
    let emails_in = Containers::new(&out.findings, &[Category::Credential]);
    let findings: Vec<Finding> = out
        .findings
        .iter()
        .copied()
        .filter(|f| match f.cat {
            Category::BankAccount | Category::Phone | Category::GovernmentId | Category::PaymentCard => {
                !numbers_in.contains(f.start, f.end)
            }
            Category::Email => !emails_in.contains(f.start, f.end),
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
    PiiReport { sensitive: true, categories, confidence, spans: merged, fail_closed: None }
}

#[cfg(test)]
mod gate_tests;
#[cfg(test)]
mod tests;
