//! Contact details that are not a private person's: an organisation's phone number, address or
//! mailbox ("the Apple Store at 235 Regent St", "Iberia's customer service, 901 111 500"), service
//! numbers (toll-free, shared-cost), documentation and example data ("John Doe, 123 Main Street,
//! Anytown"), fiction ("For my novel: ... 221 Elm Street"), fictional phone ranges in tests and
//! scripts, and coordinates of landmarks. Such findings are withdrawn (kept as a residual risk)
//! unless something in the same sentence makes them personal: a first-person contact phrase
//! ("my number", "call me", "I live at"), a private person's name or a relation word.

use regex::Regex;

use super::context::sentence_of;
use super::names::Name;
use super::{Category, Ctx, Out};

/// Compiled patterns of this module.
pub(crate) struct OrgRules {
    /// "the Apple Store at " / "the DMV office at " right before an address.
    venue_at: Regex,
    /// Syntax of program code (a test with phone-like literals is not a person's number).
    code: Regex,
    /// A flat, apartment or house number: a home, whatever business words are near.
    dwelling: Regex,
    /// Words that tie coordinates to someone even without a pronoun ("home", "come", "pick up",
    /// "help"; six languages).
    coord_anchor: Regex,
    /// The words of `coord_anchor` that tie coordinates to one person ("home", "come", "me"),
    /// without the plural "we"/"us" a business speaks in ("our depot is at 53.40, -2.99").
    coord_anchor_one: Regex,
}

impl OrgRules {
    pub(crate) fn new() -> Result<Self, regex::Error> {
        Ok(OrgRules {
            venue_at: Regex::new(
                r"(?:^|\s)(?:the|The|el|El|la|La|le|Le|der|die|das|Der|Die|Das)\s+(?:\p{Lu}[\p{L}'’&\-]*\.?\s+){1,4}(?:[\p{Ll}]+\s+)?(?:at|on|in|en|à|in der|am|an der)\s*$",
            )?,
            dwelling: Regex::new(
                r"(?i)(?-u:\b)(?:flat|apt\.?|apartment|apartamento|appartement|wohnung|piso|h\.?\s?no\.?|house\s+no\.?|ghar)(?-u:\b)",
            )?,
            coord_anchor: Regex::new(
                r"(?i)(?-u:\b)(?:live\s+location|current\s+location|shared?\s+(?:\w+\s+)?loc(?:ation)?|standort|ubicación|localisation|we|we're|us|wir|uns|estamos|estoy|nous|sommes|suis|hum|notfall\w*|emergenc\w*|urgence|sos|atrapad\w*|fest|battery|akku|batería|bateria|batterie|home|house|flat|here|come|pick\s+(?:\w+\s+)?up|pickup|help|ambulance|stuck|lost|parked|waiting|ghar|yahan|yahin|casa|aquí|aqui|ven|maison|chez|ici|viens|zuhause|daheim|hier|komm|abholen)(?-u:\b)|[家这我接位定]",
            )?,
            coord_anchor_one: Regex::new(
                r"(?i)(?-u:\b)(?:live\s+location|current\s+location|shared?\s+(?:\w+\s+)?loc(?:ation)?|standort|ubicación|localisation|estoy|suis|hum|notfall\w*|emergenc\w*|urgence|sos|atrapad\w*|fest|battery|akku|batería|bateria|batterie|home|house|flat|here|come|pick\s+(?:\w+\s+)?up|pickup|help|ambulance|stuck|lost|parked|waiting|ghar|yahan|yahin|casa|aquí|aqui|ven|maison|chez|ici|viens|zuhause|daheim|hier|komm|abholen)(?-u:\b)|[家这接位定]|我(?:[^们]|$)",
            )?,
            code: Regex::new(
                r"(?m)\bdef\s+\w+\(|\bassert\b|\bexpect\(|\btoBe\(|=>|===?|\bconst\s+\w+\s*=|\bfunction\b|\breturn\b|console\.log|print\(|;\s*$|\bpytest\b|\bjest\b|\bunittest\b|\bAssertionError\b",
            )?,
        })
    }

    /// Withdraws the contact findings of `out` that belong to organisations, documentation or
    /// fiction (see the module documentation).
    pub(crate) fn withdraw(&self, text: &str, ctx: &Ctx, names: &[Name], out: &mut Out) {
        let contact = |c: Category| matches!(c, Category::Phone | Category::Email | Category::PostalAddress);
        if !out.findings.iter().any(|f| contact(f.cat) || f.cat == Category::Location || placeholder_kind(f.cat)) {
            return;
        }
        let doc_text = !ctx.doc.0.is_empty() || self.code.is_match(text);
        let fiction_text = !ctx.fiction.0.is_empty();
        let placeholders = &ctx.placeholder.0;
        let strong_placeholders = placeholders.len() >= 2 || doc_text && !placeholders.is_empty();
        let mut withdrawn = false;
        // Per sentence, computed once (linear even when one long sentence holds many findings):
        // does it make a contact personal? "my number", "call me", "I live at", a relation word,
        // a private person's name (in fiction names are characters, and "lives at" is about a
        // character: only first-person phrases count there).
        let n_sents = ctx.sents.len();
        let mut personal_in = vec![false; n_sents];
        for (k, &(ss, se)) in ctx.sents.iter().enumerate() {
            personal_in[k] = ctx.relation.within(ss, se)
                || ctx.personal_contact.in_range(ss, se).any(|&(a, b)| {
                    !fiction_text
                        || !matches!(text[a..b].to_ascii_lowercase().as_str(), "lives at" | "live at" | "home address")
                });
        }
        if !fiction_text {
            // A capitalized run that is (or runs straight into) the name of a sight or a business
            // ("Sydney Opera House", "Taj Mahal", "Katz's Delicatessen", "Poison Control") is a
            // place, not a person.
            let place = |n: &&Name| ctx.landmark.near(n.start, n.end, 0, 1) || ctx.org.near(n.start, n.end, 0, 1);
            for n in names
                .iter()
                .filter(|n| !n.public && !n.weak && !ctx.placeholder.near(n.start, n.end, 0, 0))
                .filter(|n| !place(n))
            {
                let k = ctx.sents.partition_point(|&(_, e)| e <= n.start);
                if let Some(p) = personal_in.get_mut(k) {
                    *p = true;
                }
            }
        }
        // Does anything in the text tie coordinates to a person: the first person, a relation, a
        // private name, a personal contact phrase, "right now", or a word like "home" or "come"?
        // Bare coordinates with nobody attached ("What's at 48.8584, 2.2945?", "Plot these:
        // Big Ben 51.5007,-0.1246") are a place, not someone's whereabouts.
        let anyone = (0..n_sents).any(|k| personal_in[k] || ctx.first_person.get(k).copied().unwrap_or(false))
            || !ctx.relation.0.is_empty()
            || !ctx.possessive.0.is_empty()
            || !ctx.personal_contact.0.is_empty()
            || !ctx.present.0.is_empty()
            || !ctx.third.0.is_empty()
            || self.coord_anchor.is_match(text);
        // Someone in particular, leaving aside the plural "we"/"our" of a business: the first
        // person singular, a relation, a private name, a personal contact phrase, "right now", a
        // third person, "my", or a word like "home" or "come".
        let one_person = || {
            const PLURAL: &[&str] =
                &["our", "nuestro", "nuestra", "nuestros", "nuestras", "notre", "nos", "hamara", "hamari"];
            // (`ctx.first_person` counts "our" too: ask for "I"/"me" and "mein"/"main" instead.)
            personal_in.iter().any(|&p| p)
                || !ctx.pronoun.0.is_empty()
                || !ctx.main_mein.0.is_empty()
                || !ctx.relation.0.is_empty()
                || ctx.possessive.0.iter().any(|&(a, b)| {
                    let w = text[a..b].to_lowercase();
                    !PLURAL.contains(&w.as_str()) && !w.starts_with("unser")
                })
                || !ctx.personal_contact.0.is_empty()
                || !ctx.present.0.is_empty()
                || !ctx.third.0.is_empty()
                || self.coord_anchor_one.is_match(text)
        };
        let mut one_person_memo: Option<bool> = None;
        // A bank's routing number or sort code with no account, card or IBAN in the text and
        // nobody in it ("Is Chase's routing number 021000021 the same in every state?", "Monzo's
        // sort code 04-00-04"): it identifies a bank branch, which the bank publishes.
        let account_data = out
            .findings
            .iter()
            .filter(|f| matches!(f.cat, Category::BankAccount | Category::Iban | Category::PaymentCard))
            .count();
        let nobody = !ctx.any_first_person()
            && ctx.relation.0.is_empty()
            && ctx.possessive.0.is_empty()
            && ctx.personal_contact.0.is_empty()
            && ctx.name_label.0.is_empty();
        // Per sentence, on first use: does it mention a flat or apartment (a home)?
        let mut home_in: Vec<Option<bool>> = vec![None; n_sents + 1];
        let findings = std::mem::take(&mut out.findings);
        let mut kept = Vec::with_capacity(findings.len());
        for f in findings {
            let k = ctx.sents.partition_point(|&(_, e)| e <= f.start).min(n_sents);
            let (ss, se) = sentence_of(&ctx.sents, f.start);
            let personal = personal_in.get(k).copied().unwrap_or(false);
            let value = &text[f.start..f.end];
            let near = |h: &super::context::Hits, before: usize| h.near(f.start, f.end, before, 40) || h.within(ss, se);
            let example = strong_placeholders && near(&ctx.placeholder, 200);
            let drop = match f.cat {
                Category::Phone => {
                    let digits: String =
                        text[f.start..f.end].bytes().filter(u8::is_ascii_digit).map(char::from).collect();
                    let plus = text[f.start..f.end].starts_with('+');
                    !personal
                        && (service_number(&digits, plus)
                            || reserved_fictional(&digits)
                            || asked_number(text, ctx, f.end)
                            || near(&ctx.org, 200)
                            || doc_text && fictional_number(&digits, plus)
                            || fiction_text
                            || example)
                }
                Category::Email => {
                    // An address at a free mail provider is a person's.
                    let free_mail = value.rsplit_once('@').is_some_and(|(_, d)| {
                        let first = d.split('.').next().unwrap_or("").to_ascii_lowercase();
                        super::patterns::MAIL_PROVIDERS.contains(&first.as_str())
                    });
                    !personal
                        && !free_mail
                        && (near(&ctx.org, 120)
                            || role_mailbox(value)
                            || fiction_text
                            || example
                            || reserved_domain(value))
                }
                Category::PostalAddress => {
                    let venue = self
                        .venue_at
                        .is_match(&text[super::patterns::floor_char(text, f.start.saturating_sub(60))..f.start]);
                    // A flat or apartment is a home.
                    let home = *home_in[k].get_or_insert_with(|| self.dwelling.is_match(&text[ss..se.max(ss)]));
                    !personal && !home && (venue || near(&ctx.org, 160) || fiction_text || example)
                }
                Category::Location => {
                    // The coordinates of a landmark ("The Eiffel Tower is at 48.8584° N"), or a
                    // demo value in documentation ("///filled.count.soap as its demo address").
                    let shared_link = {
                        let before = &text[..f.start];
                        before.ends_with('=') || before.ends_with('@') || before.ends_with("geo:")
                    };
                    let coordinates = value.bytes().any(|b| b.is_ascii_digit()) && !value.starts_with("///");
                    // A business site's coordinates ("our Chicago DC at 41.8781, -87.6298", "the
                    // depot we tip at"): only the plural "we" of a business, nobody in particular.
                    let site = coordinates
                        && !shared_link
                        && (ctx.site.within(ss, se) || ctx.org.within(ss, se))
                        && !*one_person_memo.get_or_insert_with(one_person);
                    (ctx.landmark.within(ss, se) || ctx.doc.near(f.start, f.end, 60, 60) || fiction_text)
                        && !ctx.first_person_at(f.start)
                        && !personal
                        || coordinates && !anyone && !shared_link
                        || site
                }
                // A US SSN the SSA voided or never issues ("078-05-1120", printed on a wallet
                // insert; 123-45-6789) is nobody's, with or without a docs word nearby. Sample
                // numbers that pass their checks (the Chinese standard's ID) still need one.
                Category::GovernmentId if voided_ssn(value) => !personal,
                Category::BankAccount if account_data == 1 && nobody && bank_code(text, ctx, f.start, f.end) => {
                    !personal
                }
                c if placeholder_kind(c) => example && !personal,
                _ => false,
            };
            // "En los tests usamos el DNI 12345678Z": a trivially sequential number in documentation.
            let drop = drop
                || doc_text
                    && !personal
                    && matches!(
                        f.cat,
                        Category::GovernmentId | Category::PaymentCard | Category::BankAccount | Category::Phone
                    )
                    && trivial_digits(value);
            if drop {
                withdrawn = true;
            } else {
                kept.push(f);
            }
        }
        out.findings = kept;
        if withdrawn {
            out.residual(0.3);
        }
    }
}

/// A phone number asked about as public knowledge ("¿El teléfono de objetos perdidos de Renfe es el
/// 912 320 320?", "is the number of the Louvre pharmacy 01 42 60 00 00?"): a question mark closes
/// the number's clause, and nothing in the text is personal (no first person, "my", relation,
/// personal contact phrase or name label; a private person's name in the sentence is checked by the
/// caller). One asks an assistant to confirm a shop's or an office's number, not a friend's.
fn asked_number(text: &str, ctx: &Ctx, end: usize) -> bool {
    let after = &text[end..super::patterns::floor_char(text, (end + 16).min(text.len()))];
    let question = after.find(['?', '？']).is_some_and(|q| !after[..q].contains(['.', '!', '\n', '。']));
    question
        && !ctx.any_first_person()
        && ctx.relation.0.is_empty()
        && ctx.possessive.0.is_empty()
        && ctx.personal_contact.0.is_empty()
        && ctx.name_label.0.is_empty()
}

/// Sample rows quoted from documentation ("The Faker docs show output like 'Jennifer Wilson, 4831
/// Cody Cove Suite 182'", "sample data hai 'Ramesh Kumar, Sales, 45000'", "el formulario de
/// ejemplo pone 'Juan Pérez, DNI 00000000T'"): a finding inside a quotation whose sentence, or the
/// 100 bytes before it, has a documentation word ("docs", "tutorial", "sample", "ejemplo",
/// "Beispiel", "示例"...) is withdrawn, unless the text makes anything personal ("my", a relation,
/// a personal contact phrase). Credentials and health are left alone (a real key pasted from a
/// tutorial is still a key).
pub(crate) fn doc_samples(text: &str, ctx: &Ctx, out: &mut Out) {
    if ctx.doc.0.is_empty()
        || !ctx.possessive.0.is_empty()
        || !ctx.relation.0.is_empty()
        || !ctx.personal_contact.0.is_empty()
        || !ctx.self_id.0.is_empty()
        || out.findings.iter().any(|f| matches!(f.cat, Category::Credential | Category::Health))
    {
        return;
    }
    let quotes = quoted_spans(text);
    if quotes.is_empty() {
        return;
    }
    let sample = |start: usize, end: usize| {
        quotes.iter().any(|&(qs, qe)| {
            qs <= start && end <= qe && {
                let (ss, se) = sentence_of(&ctx.sents, qs);
                ctx.doc.within(ss, se) || ctx.doc.near(qs, qs, 100, 0)
            }
        })
    };
    if out.findings.iter().all(|f| sample(f.start, f.end)) {
        out.findings.clear();
        out.residual(0.3);
    }
}

/// Quoted passages (inside '…', "…", `…`, ‘…’, “…”, «…», „…“, 「…」, 『…』; at most 400 bytes): an
/// opening mark at the start or after a space or `:([{=,`, a closing one before the end, a space or
/// punctuation (so the apostrophe of "Joe's" opens nothing).
fn quoted_spans(text: &str) -> Vec<(usize, usize)> {
    const PAIRS: &[(char, char)] = &[
        ('\'', '\''),
        ('"', '"'),
        ('`', '`'),
        ('‘', '’'),
        ('“', '”'),
        ('«', '»'),
        ('„', '“'),
        ('「', '」'),
        ('『', '』'),
    ];
    let mut out = Vec::new();
    let mut prev: Option<char> = None;
    let mut i = 0usize;
    while let Some(c) = text[i..].chars().next() {
        let opener = prev.is_none_or(|p| p.is_whitespace() || ":([{=,".contains(p)) || c == '「' || c == '『';
        let close = PAIRS.iter().find(|&&(o, _)| o == c).map(|&(_, cl)| cl);
        prev = Some(c);
        i += c.len_utf8();
        let (Some(close), true) = (close, opener) else { continue };
        let limit = super::patterns::floor_char(text, (i + 400).min(text.len()));
        let found = text[i..limit].char_indices().find(|&(j, ch)| {
            ch == close
                && j > 0
                && text[i + j + ch.len_utf8()..]
                    .chars()
                    .next()
                    .is_none_or(|n| n.is_whitespace() || n.is_ascii_punctuation() || "，。、！？：；）」』".contains(n))
        });
        if let Some((j, ch)) = found {
            out.push((i, i + j));
            i += j + ch.len_utf8();
            prev = Some(ch);
        }
    }
    out
}

/// A US or Indian toll-free number ("1-800-772-1213", "(888) 555 0142", "1800-258-1800") taken
/// for an ID after an "SSN" or "ID" label ("call social security at 1-800-772-1213") is a phone
/// number: an SSN has 3-2-4 digits, and no ID is laid out as a toll-free number (an optional 1,
/// then 800, 833, 844, 855, 866, 877 or 888, then 3 and 4 digits; in India 1800 or 1860 and 6-7
/// digits). Re-labelled as a phone, the contact rules then decide (an organisation's line is
/// nobody's; "my number" still is).
pub(crate) fn toll_free_ids(text: &str, out: &mut Out) {
    for f in out.findings.iter_mut().filter(|f| f.cat == Category::GovernmentId) {
        let value = &text[f.start..f.end];
        let groups: Vec<&str> = value.split(|c: char| !c.is_ascii_digit()).filter(|g| !g.is_empty()).collect();
        let groups = match groups.as_slice() {
            ["1", rest @ ..] => rest,
            all => all,
        };
        let layout = matches!(groups, [a, b, c] if a.len() == 3 && b.len() == 3 && c.len() == 4);
        // India's toll-free 1800/1860 numbers ("1800-258-1800", "1800 11 4000").
        let india =
            matches!(groups, [p, a, b] if (*p == "1800" || *p == "1860") && (6..=7).contains(&(a.len() + b.len())));
        if india || layout && ["800", "833", "844", "855", "866", "877", "888"].contains(&groups[0]) {
            f.cat = Category::Phone;
        }
    }
}

/// A routing number (nine digits passing the ABA check) or a sort code / BSB (six digits) right
/// after its label: the code of a bank branch, not an account.
fn bank_code(text: &str, ctx: &Ctx, start: usize, end: usize) -> bool {
    let d: Vec<u8> = text[start..end].bytes().filter(u8::is_ascii_digit).collect();
    ctx.routing.near(start, end, 50, 0) && (d.len() == 9 && super::checksum::aba(&d) || d.len() == 6)
}

/// SSNs that the SSA voided or never issues, as published: nobody's number.
fn voided_ssn(value: &str) -> bool {
    let digits: String = value.bytes().filter(u8::is_ascii_digit).map(char::from).collect();
    matches!(digits.as_str(), "078051120" | "123456789" | "000000000")
}

/// Digits that count up or repeat ("12345678", "00000000", "600 000 000"): example values.
fn trivial_digits(value: &str) -> bool {
    let d: Vec<u8> = value.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect();
    // Leading zeros pad a sample account number ("000123456789"): look at what follows them.
    let zeros = d.iter().take_while(|&&x| x == 0).count();
    let d = if zeros >= 2 && d.len() - zeros >= 6 { d[zeros..].to_vec() } else { d };
    if d.len() < 6 {
        return false;
    }
    // A prefix of up to three digits, then one digit repeated ("600 000 000", "+34 699 999 999").
    if (1..=3).any(|k| d[k..].iter().all(|&x| x == d[k]) && d.len() - k >= 6) {
        return true;
    }
    let ascending = d.windows(2).all(|w| w[1] == (w[0] + 1) % 10);
    let same = d.iter().all(|&x| x == d[0]);
    ascending || same || d.windows(2).filter(|w| w[1] == (w[0] + 1) % 10).count() + 1 >= d.len() - 1
}

/// Categories whose example values ("DOB: 01/01/1970", "SSN: 000-00-0000", the sample IBAN of
/// a bank's documentation) appear in templates.
fn placeholder_kind(c: Category) -> bool {
    matches!(
        c,
        Category::DateOfBirth
            | Category::GovernmentId
            | Category::PersonName
            | Category::Iban
            | Category::PaymentCard
            | Category::BankAccount
    )
}

/// The mailbox of a role, not a person ("support.sg@", "info@", "kundenservice@"): an
/// organisation's address unless the domain is a free mail provider (checked by the caller).
fn role_mailbox(value: &str) -> bool {
    #[rustfmt::skip]
    const ROLES: &[&str] = &[
        "support", "info", "help", "helpdesk", "service", "services", "customerservice", "customercare", "care",
        "sales", "contact", "contactus", "contacto", "kontakt", "hello", "enquiries", "enquiry", "inquiries",
        "office", "team", "press", "media", "billing", "accounts", "invoices", "orders", "bookings",
        "reservations", "reservas", "reception", "noreply", "no-reply", "donotreply", "do-not-reply", "webmaster",
        "postmaster", "hostmaster", "abuse", "security", "privacy", "legal", "jobs", "careers", "recruiting",
        "marketing", "news", "newsletter", "feedback", "atencion", "atencionalcliente", "clientes", "ventas",
        "kundenservice", "kundendienst", "servicio", "serviceclient", "service-client", "accueil", "ayuda",
        "hilfe", "admissions", "registrar", "frontdesk", "partners", "investors", "ir", "hr", "it",
    ];
    let Some((local, _)) = value.rsplit_once('@') else { return false };
    let local = local.to_ascii_lowercase();
    let head = local.split(['.', '-', '_', '+']).next().unwrap_or("");
    ROLES.contains(&local.as_str()) || ROLES.contains(&head)
}

/// A domain that cannot receive mail: the top-level names reserved for tests and documentation
/// (RFC 2606/6761: `.test`, `.example`, `.invalid`, `.localhost`) and `.local`.
fn reserved_domain(value: &str) -> bool {
    let Some((_, domain)) = value.rsplit_once('@') else { return false };
    let tld = domain.trim_end_matches('.').rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    matches!(tld.as_str(), "test" | "example" | "invalid" | "localhost" | "local")
}

/// Toll-free, shared-cost and other service numbers: always an organisation's.
pub(crate) fn service_number(digits: &str, plus: bool) -> bool {
    let d = digits;
    // International form: country code, then the national number.
    let (cc, nat): (&str, String) = if plus || d.starts_with("00") {
        let d = d.trim_start_matches("00");
        match () {
            _ if d.starts_with('1') => ("1", d[1..].to_string()),
            _ if d.starts_with("44") => ("44", format!("0{}", &d[2..])),
            _ if d.starts_with("49") => ("49", format!("0{}", &d[2..])),
            _ if d.starts_with("33") => ("33", format!("0{}", &d[2..])),
            _ if d.starts_with("34") => ("34", d[2..].to_string()),
            _ if d.starts_with("91") => ("91", d[2..].to_string()),
            _ => return false,
        }
    } else {
        ("", d.to_string())
    };
    let n = nat.as_str();
    let nanp_toll_free =
        |x: &str| x.len() == 10 && ["800", "833", "844", "855", "866", "877", "888"].iter().any(|p| x.starts_with(p));
    match cc {
        "1" => nanp_toll_free(n),
        "44" => uk_service(n),
        "49" => de_service(n),
        "33" => n.len() == 10 && n.starts_with("08"),
        "34" => es_service(n),
        "91" => n.starts_with("1800") || n.starts_with("1860"),
        _ => {
            nanp_toll_free(n)
                || n.len() == 11 && n.starts_with('1') && nanp_toll_free(&n[1..])
                || uk_service(n)
                || de_service(n)
                || es_service(n)
                || n.starts_with("1800") && n.len() >= 10
        }
    }
}

fn uk_service(n: &str) -> bool {
    (10..=11).contains(&n.len())
        && (["0800", "0808", "0500", "0843", "0844", "0845", "0870", "0871", "0872", "0873"]
            .iter()
            .any(|p| n.starts_with(p))
            || n.starts_with("03") && n.len() == 11)
}

fn de_service(n: &str) -> bool {
    (10..=12).contains(&n.len()) && ["0800", "0180", "0900", "0137"].iter().any(|p| n.starts_with(p))
}

fn es_service(n: &str) -> bool {
    n.len() == 9 && ["900", "901", "902", "800", "803", "806", "807"].iter().any(|p| n.starts_with(p))
}

/// Numbers reserved for fiction and examples: North American 555 numbers and the UK Ofcom
/// drama ranges (07700 900xxx, 01632 960xxx, 020 7946 0xxx, 0113..0191 496/498 0xxx).
pub(crate) fn fictional_number(digits: &str, plus: bool) -> bool {
    let d = if plus && digits.starts_with("44") { format!("0{}", &digits[2..]) } else { digits.to_string() };
    let d = d.as_str();
    let nanp = match d.len() {
        7 => d.starts_with("555"),
        10 => &d[..3] == "555" || &d[3..6] == "555",
        11 if d.starts_with('1') => &d[1..4] == "555" || &d[4..7] == "555",
        _ => false,
    };
    let uk = d.len() == 11
        && (d.starts_with("07700900")
            || d.starts_with("01632960")
            || d.starts_with("02079460")
            || (d.starts_with("01") && &d[4..7] == "496" && &d[7..8] == "0")
            || (d.starts_with("0191") && &d[4..8] == "4980"));
    nanp || uk
}

/// The North American range reserved for fiction and examples (555-0100 to 555-0199): nobody's.
pub(crate) fn reserved_fictional(digits: &str) -> bool {
    let d = digits.strip_prefix('1').filter(|d| d.len() == 10).unwrap_or(digits);
    match d.len() {
        7 => d.starts_with("55501"),
        10 => &d[3..8] == "55501",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_and_fictional_numbers() {
        assert!(service_number("18005550199", false));
        assert!(service_number("8008291040", false));
        assert!(service_number("03454541111", false));
        assert!(service_number("08003301000", false));
        assert!(service_number("901111500", false));
        assert!(!service_number("07700900123", false));
        assert!(!service_number("4969867997", true)); // Frankfurt, geographic
        assert!(fictional_number("5551234567", false));
        assert!(fictional_number("2025550143", false));
        assert!(fictional_number("07700900123", false));
        assert!(fictional_number("447700900123", true));
        assert!(!fictional_number("07821330495", false));
    }
}
