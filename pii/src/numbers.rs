//! Digit runs: maximal sequences of digit groups joined by short separators ("4111 1111-1111",
//! "+49 (0) 30 1234", "1 2 3 4"), classified as payment cards, government IDs, bank numbers or
//! phone numbers by checksum, grouping and nearby keywords.

use super::checksum;
use super::context::sentence_of;
use super::{Category, Ctx, Out};

/// Well-known test card numbers published in payment-provider documentation.
pub(crate) const TEST_CARDS: &[&str] = &[
    "4111111111111111",
    "4242424242424242",
    "4012888888881881",
    "4222222222222",
    "4000056655665556",
    "4000000000000002",
    "4000000000009995",
    "4000002500003155",
    "4000000000003220",
    "4444333322221111",
    "5555555555554444",
    "5105105105105100",
    "5200828282828210",
    "2223003122003222",
    "2222400070000005",
    "378282246310005",
    "371449635398431",
    "378734493671000",
    "6011111111111117",
    "6011000990139424",
    "6011000400000000",
    "3530111333300000",
    "3566002020360505",
    "3566111111111113",
    "30569309025904",
    "38520000023237",
    "36227206271667",
    "6200000000000005",
    "6250941006528599",
    // Redsys (Spain) and Adyen test cards.
    "4548812049400004",
    "4548810000000003",
    "5555341244441115",
];

/// One run of digits in the normalized text.
pub(crate) struct DigitRun {
    /// Byte span in the normalized text (includes a leading `+` or `(`).
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// The digits only.
    pub(crate) digits: String,
    /// Length of each digit group.
    pub(crate) groups: Vec<usize>,
    /// The separators between groups (trimmed of surrounding spaces, " " when only spaces).
    pub(crate) seps: Vec<String>,
    /// Starts with `+` (country code), not used as an operator.
    pub(crate) plus: bool,
    /// Contains a parenthesised group ("(555) 123-4567", "+49 (0) 30").
    pub(crate) paren: bool,
    /// A letter is glued to the run ("A123456", "INV-2024-001"): not a bare number.
    pub(crate) glued: bool,
}

/// Splits the normalized text into digit runs.
pub(crate) fn runs(text: &str) -> Vec<DigitRun> {
    let b = text.as_bytes();
    let n = b.len();
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        if !b[i].is_ascii_digit() || (i > 0 && b[i - 1].is_ascii_digit()) {
            i += 1;
            continue;
        }
        let mut start = i;
        let mut plus = false;
        let mut paren = false;
        // A leading "(" and/or "+" belongs to the run.
        let mut j = i;
        if j > 0 && b[j - 1] == b'(' {
            j -= 1;
            paren = true;
        }
        if j > 0 && b[j - 1] == b'+' {
            j -= 1;
            plus = true;
        } else if j > 1 && b[j - 1] == b' ' && b[j - 2] == b'+' {
            j -= 2;
            plus = true;
        }
        if plus {
            // "+" after a number is an operator ("5 + 44 20..."), not a country-code prefix.
            let before = text[..j].trim_end();
            if before.ends_with(|c: char| c.is_ascii_digit() || c == ')') {
                plus = false;
                j = i - usize::from(paren);
            }
        }
        start = start.min(j);
        let glued_before = {
            let k = start;
            (k > 0 && b[k - 1].is_ascii_alphabetic())
                || (k > 1 && matches!(b[k - 1], b'-' | b'#' | b'_' | b'/' | b'.') && b[k - 2].is_ascii_alphanumeric())
        };
        let mut digits = String::new();
        let mut groups = Vec::new();
        let mut seps = Vec::new();
        let mut k = i;
        let mut end;
        loop {
            let gs = k;
            while k < n && b[k].is_ascii_digit() {
                k += 1;
            }
            digits.push_str(&text[gs..k]);
            groups.push(k - gs);
            end = k;
            // Separator: up to 3 bytes of space - . / ( ), then a digit.
            let mut s = k;
            while s < n && s - k < 3 && matches!(b[s], b' ' | b'-' | b'.' | b'/' | b'(' | b')') {
                s += 1;
            }
            if s > k && s < n && b[s].is_ascii_digit() && groups.len() < 24 {
                let sep = text[k..s].trim();
                if text[k..s].contains('(') || text[k..s].contains(')') {
                    paren = true;
                }
                seps.push(if sep.is_empty() { " ".to_string() } else { sep.to_string() });
                k = s;
            } else {
                break;
            }
        }
        if paren && end < n && b[end] == b')' {
            end += 1;
        }
        // A trailing letter glues the run, except an extension marker ("555-1234x56", "ext").
        let glued_after = end < n
            && b[end].is_ascii_alphabetic()
            && !(b[end] == b'x' && b.get(end + 1).is_some_and(u8::is_ascii_digit));
        out.push(DigitRun { start, end, digits, groups, seps, plus, paren, glued: glued_before || glued_after });
        i = k.max(i + 1);
    }
    out
}

impl DigitRun {
    fn grouped(&self, pattern: &[usize]) -> bool {
        self.groups == pattern
    }
    fn contiguous(&self) -> bool {
        self.groups.len() == 1
    }
    /// Every group is one digit ("4 1 1 1 ..."): a spaced-out obfuscation.
    fn spaced(&self) -> bool {
        self.groups.len() > 3 && self.groups.iter().all(|&g| g == 1)
    }
    fn sep_is(&self, allowed: &[&str]) -> bool {
        self.seps.iter().all(|s| allowed.contains(&s.as_str()))
    }
    /// Groups of a date (d/m/y, y-m-d) or a dotted IP address: never a phone number.
    fn date_or_ip(&self) -> bool {
        let g = &self.groups;
        let date = (g == &[2, 2, 4]
            || g == &[4, 2, 2]
            || g == &[1, 2, 4]
            || g == &[2, 1, 4]
            || g == &[1, 1, 4]
            || g == &[4, 1, 2]
            || g == &[4, 2, 1])
            && self.sep_is(&["/", ".", "-"]);
        let ip = g.len() == 4 && g.iter().all(|&x| x <= 3) && self.sep_is(&["."]);
        date || ip
    }
    /// Thousands grouping of a quantity ("2 102 650", "1.250.000").
    fn thousands(&self) -> bool {
        self.groups.len() >= 2
            && (1..=3).contains(&self.groups[0])
            && self.groups[1..].iter().all(|&g| g == 3)
            && self.sep_is(&[" ", ".", "'"])
    }
    fn bytes(&self) -> &[u8] {
        self.digits.as_bytes()
    }
}

/// Card-network prefix and length plausibility (IIN ranges).
fn card_prefix_ok(d: &[u8]) -> bool {
    let n = d.len();
    let p2 = d.get(..2).map_or(0, |x| u32::from(x[0] - b'0') * 10 + u32::from(x[1] - b'0'));
    let p4 = d.get(..4).map_or(0, |x| x.iter().fold(0u32, |a, &c| a * 10 + u32::from(c - b'0')));
    match d.first() {
        Some(b'4') => matches!(n, 13 | 16 | 19),
        Some(b'5') => (16..=19).contains(&n) && (50..=59).contains(&p2),
        Some(b'2') => n == 16 && ((2221..=2720).contains(&p4) || (2200..=2204).contains(&p4)),
        Some(b'3') => (p2 == 34 || p2 == 37) && n == 15 || (30..=39).contains(&p2) && (14..=19).contains(&n),
        Some(b'6') => (16..=19).contains(&n),
        Some(b'8') => (p2 == 81 || p2 == 82) && n == 16,
        _ => false,
    }
}

fn card_grouping_ok(r: &DigitRun) -> bool {
    let g = &r.groups;
    if r.contiguous() || r.spaced() {
        return true;
    }
    let fours = g.len() >= 3 && g[..g.len() - 1].iter().all(|&x| x == 4) && (1..=4).contains(g.last().unwrap_or(&0));
    fours || g == &[4, 6, 5] || g == &[4, 6, 4] || g == &[6, 13] || g == &[4, 4, 4, 4, 3]
}

/// Classifies every digit run and records findings.
pub(crate) fn classify(text: &str, ctx: &Ctx, out: &mut Out) {
    for r in runs(text) {
        if r.glued {
            continue;
        }
        classify_run(text, &r, ctx, out);
    }
}

fn classify_run(text: &str, r: &DigitRun, ctx: &Ctx, out: &mut Out) {
    let d = r.bytes();
    let n = d.len();
    if n < 6 {
        return;
    }
    let (s, e) = (r.start, r.end);
    let (ss, se) = sentence_of(&ctx.sents, s);
    let not_personal = ctx.not_personal_before(s);
    let math = ctx.math.within(ss, se) || math_operator_near(text, s, e);
    let card_ctx = ctx.card.near(s, e, 50, 20);
    let phone_ctx = ctx.phone.near(s, e, 60, 25);
    let gov_ctx = ctx.gov_id.near(s, e, 50, 0)
        || ctx.ssn.near(s, e, 50, 0)
        || ctx.passport.near(s, e, 50, 0)
        || ctx.licence.near(s, e, 50, 0);
    let account_dist = match (ctx.account.dist_before(s, 50), ctx.account_weak.dist_before(s, 12)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let account_ctx = account_dist.is_some_and(|d| ctx.phone.dist_before(s, 60).is_none_or(|p| d < p));
    let mut classified = false;

    // --- payment cards ---
    // A card followed by more numbers in one run ("4556-7301 8842-2192 / 05-28 / 771"): the
    // leading groups of four that make a card.
    if n > 19 && r.groups.len() >= 4 && r.groups[..3].iter().all(|&g| g == 4) {
        let mut total = 0usize;
        for (p, &g) in r.groups.iter().enumerate() {
            total += g;
            if p >= 2 && (13..=19).contains(&total) && (g == 4 || p >= 3) {
                let prefix = &d[..total];
                if card_prefix_ok(prefix) && checksum::luhn(prefix) {
                    let end = group_end(text, s, e, total);
                    if !(not_personal || TEST_CARDS.contains(&&r.digits[..total]) && ctx.doc_near(s, end)) {
                        out.add(s, end, Category::PaymentCard, if card_ctx { 0.95 } else { 0.85 });
                        return;
                    }
                }
            }
            if total >= 19 {
                break;
            }
        }
    }
    if (13..=19).contains(&n) && card_prefix_ok(d) && card_grouping_ok(r) {
        if checksum::luhn(d) {
            if TEST_CARDS.contains(&r.digits.as_str()) && ctx.doc_near(s, e) || test_card_sentence(text, ctx, s) {
                out.residual(0.2);
                return;
            }
            if (not_personal || math) && !card_ctx {
                out.residual(0.4);
                return;
            }
            out.add(s, e, Category::PaymentCard, if card_ctx { 0.97 } else { 0.9 });
            return;
        } else if card_ctx && !not_personal && !ctx.doc_near(s, e) {
            // Labelled as a card but the check digit fails: a typo is still a card. Fail closed.
            out.add(s, e, Category::PaymentCard, 0.6);
            return;
        }
    }

    // --- government identifiers ---
    if n == 9 {
        let ssn_fmt = r.grouped(&[3, 2, 4]) && r.sep_is(&["-", " "]);
        let ssn_ctx = ctx.ssn.near(s, e, 60, 0);
        if checksum::us_ssn(d) && (ssn_fmt || ssn_ctx) {
            if (not_personal || math) && !ssn_ctx {
                out.residual(0.4);
            } else {
                out.add(s, e, Category::GovernmentId, if ssn_ctx { 0.95 } else { 0.85 });
                classified = true;
            }
        }
        if gov_ctx && (checksum::luhn(d) || checksum::nl_bsn(d)) {
            out.add(s, e, Category::GovernmentId, 0.9); // Canadian SIN, Dutch BSN
            classified = true;
        }
    }
    if n == 12 && checksum::aadhaar(d) && !r.plus && !phone_ctx {
        let aadhaar_ctx = ctx.gov_id.near(s, e, 50, 10);
        let shaped = r.grouped(&[4, 4, 4]) || r.spaced();
        if aadhaar_ctx || (shaped && !not_personal && !math) {
            out.add(s, e, Category::GovernmentId, if aadhaar_ctx { 0.97 } else { 0.85 });
            classified = true;
        } else if r.contiguous() && !not_personal && !math && !account_ctx {
            out.add(s, e, Category::GovernmentId, 0.7);
            classified = true;
        }
    }
    if n == 11 && checksum::de_steuer_id(d) && (gov_ctx || r.grouped(&[2, 3, 3, 3])) && !not_personal {
        out.add(s, e, Category::GovernmentId, if gov_ctx { 0.95 } else { 0.8 });
        classified = true;
    }
    if n == 11 && r.grouped(&[3, 3, 3, 2]) && checksum::br_cpf(d) {
        out.add(s, e, Category::GovernmentId, 0.95);
        classified = true;
    }
    if n == 10 && ctx.gov_id.near(s, e, 50, 0) && checksum::uk_nhs(d) {
        out.add(s, e, Category::GovernmentId, 0.9);
        classified = true;
    }
    if n == 15 && checksum::fr_nir(&r.digits) {
        out.add(s, e, Category::GovernmentId, 0.95);
        classified = true;
    }
    // Layouts distinctive enough without a label: a Korean resident registration number
    // (YYMMDD-NNNNNNN), an Australian Medicare card (NNNN NNNNN N, check digit), a Belgian
    // national number (YY.MM.DD-NNN.CC, mod 97).
    if n == 13 && r.grouped(&[6, 7]) && r.sep_is(&["-"]) && checksum::kr_rrn_shape(d) && !not_personal {
        out.add(s, e, Category::GovernmentId, 0.9);
        classified = true;
    }
    if n == 10 && r.grouped(&[4, 5, 1]) && checksum::au_medicare(d) && !not_personal && !phone_ctx {
        out.add(s, e, Category::GovernmentId, 0.9);
        classified = true;
    }
    if n == 11 && r.grouped(&[2, 2, 2, 3, 2]) && checksum::be_national(d) && !not_personal {
        out.add(s, e, Category::GovernmentId, 0.95);
        classified = true;
    }
    // Checksummed national numbers right after their label ("PESEL", "TFN", "マイナンバー").
    if gov_ctx
        && ((n == 11 && checksum::pl_pesel(d))
            || (n == 9 && checksum::au_tfn(d))
            || (n == 12 && checksum::jp_my_number(d)))
    {
        out.add(s, e, Category::GovernmentId, 0.95);
        classified = true;
    }
    if n == 18 && checksum::cn_resident_id(&r.digits) {
        out.add(s, e, Category::GovernmentId, 0.95);
        classified = true;
    }
    // A labelled number belongs to the closest label: "DNI 12345678Z, móvil +34 612..." is an ID
    // followed by a phone number.
    let phone_dist = ctx.phone.dist_before(s, 60);
    let closer_than_phone = |d: Option<usize>| d.is_some_and(|d| phone_dist.is_none_or(|p| d < p));
    let gov_dist =
        [&ctx.gov_id, &ctx.ssn, &ctx.passport, &ctx.licence].iter().filter_map(|h| h.dist_before(s, 40)).min();
    if !classified && closer_than_phone(gov_dist) && !r.date_or_ip() && !account_ctx && !r.plus {
        out.add(s, e, Category::GovernmentId, 0.8);
        classified = true;
    }

    // --- bank numbers ---
    let routing_ctx = ctx.routing.near(s, e, 50, 0);
    if routing_ctx {
        if n == 9 {
            out.add(s, e, Category::BankAccount, if checksum::aba(d) { 0.95 } else { 0.7 });
            classified = true;
        } else if r.grouped(&[2, 2, 2]) || n == 6 {
            out.add(s, e, Category::BankAccount, 0.9); // UK sort code
            classified = true;
        }
    }
    if !classified && (6..=20).contains(&n) && account_ctx && !r.date_or_ip() && !r.plus && !r.thousands() {
        out.add(s, e, Category::BankAccount, 0.85);
        classified = true;
    }
    if n == 20 && r.grouped(&[4, 4, 2, 10]) {
        out.add(s, e, Category::BankAccount, 0.85); // Spanish CCC
        classified = true;
    }
    if classified {
        return;
    }

    // --- phone numbers ---
    if !(7..=15).contains(&n) || r.date_or_ip() {
        return;
    }
    let arithmetic = r.seps.iter().any(|x| x == "-") && text[s..e].contains(" - ");
    let score = if r.plus && n >= 8 {
        Some(0.9)
    } else if phone_ctx || d.starts_with(b"00") && n >= 11 && r.groups.len() >= 2 {
        Some(0.85)
    } else if national_phone_format(r) {
        Some(0.75)
    } else if ctx.number_word.dist_before(s, 30).is_some() && (8..=13).contains(&n) && !not_personal {
        Some(0.7)
    } else {
        None
    };
    let Some(score) = score else { return };
    if !phone_ctx && (not_personal || math || arithmetic) {
        out.residual(0.3);
        return;
    }
    out.add(s, e, Category::Phone, score);
}

/// The byte just after the `count`-th digit of `text[s..e]`.
fn group_end(text: &str, s: usize, e: usize, count: usize) -> usize {
    let mut seen = 0usize;
    for (i, b) in text.as_bytes()[s..e].iter().enumerate() {
        if b.is_ascii_digit() {
            seen += 1;
            if seen == count {
                return s + i + 1;
            }
        }
    }
    e
}

/// National phone layouts that are distinctive without any keyword.
fn national_phone_format(r: &DigitRun) -> bool {
    let d = r.bytes();
    let n = d.len();
    let g = r.groups.as_slice();
    let first = d.first().copied().unwrap_or(b'0');
    let nanp = (g == [3, 3, 4] && r.sep_is(&["-", ".", " "]) && first != b'0')
        || (r.paren && g == [3, 3, 4])
        || (g == [1, 3, 3, 4] && first == b'1');
    let fr = n == 10 && first == b'0' && g == [2, 2, 2, 2, 2];
    let trunk = first == b'0' && (10..=12).contains(&n) && g.len() >= 2 && (r.paren || (3..=5).contains(&g[0]));
    let es =
        n == 9 && matches!(first, b'6' | b'7' | b'8' | b'9') && (g == [3, 3, 3] || g == [3, 2, 2, 2] || g == [3, 6]);
    let cn = n == 11
        && d.starts_with(b"1")
        && matches!(d.get(1), Some(b'3'..=b'9'))
        && (g == [11] || g == [3, 4, 4] || g == [3, 8]);
    let india = n == 10 && matches!(first, b'6'..=b'9') && (g == [10] || g == [5, 5]);
    let uk = n == 11 && d.starts_with(b"07") && (g == [11] || g == [5, 6] || g == [4, 3, 4]);
    let spaced = r.spaced() && (9..=13).contains(&n);
    nanp || fr || trunk || es || cn || india || uk || spaced
}

/// An arithmetic operator right before or after the run ("555 * 1234", "= 8675309").
fn math_operator_near(text: &str, s: usize, e: usize) -> bool {
    let before = text[..s].trim_end();
    let after = text[e..].trim_start();
    let op = |c: char| matches!(c, '*' | '×' | '÷' | '=' | '^' | '<' | '>');
    before.ends_with(op) || after.starts_with(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_and_group() {
        let rs = runs("call +49 (0) 30 1234567 or 4111-1111-1111-1111, order INV-2024-001");
        assert_eq!(rs.len(), 3);
        assert!(rs[0].plus && rs[0].paren);
        assert_eq!(rs[0].digits, "490301234567");
        assert_eq!(rs[1].groups, vec![4, 4, 4, 4]);
        assert!(!rs[1].glued && rs[2].glued);
    }

    #[test]
    fn plus_after_number_is_an_operator() {
        let rs = runs("5 + 44 20 7946 0958");
        assert!(rs.iter().all(|r| !r.plus));
    }

    #[test]
    fn card_prefixes() {
        assert!(card_prefix_ok(b"4111111111111111"));
        assert!(card_prefix_ok(b"378282246310005"));
        assert!(!card_prefix_ok(b"9781234567897"));
    }
}

/// A card number in a sentence about payment providers' test cards ("Adyen's docs list … as a test
/// Visa", "the sandbox card 4000 0027 6000 3184 triggers 3DS", "tarjeta de prueba") with nobody's
/// first person in it: the providers publish many test numbers and generate more in their
/// sandboxes; none can pay for anything. "My test card" or "I used my card in the sandbox" stays.
fn test_card_sentence(text: &str, ctx: &Ctx, start: usize) -> bool {
    #[rustfmt::skip]
    const TEST_CARD: &[&str] = &[
        "sandbox", "test card", "test visa", "test mastercard", "test amex", "test mode", "test number", "testmodus",
        "testkarte", "tarjeta de prueba", "modo de prueba", "carte de test", "mode test", "测试卡", "沙箱", "测试模式",
    ];
    let (ss, se) = sentence_of(&ctx.sents, start);
    let sentence = text[ss..se.max(ss)].to_lowercase();
    TEST_CARD.iter().any(|w| sentence.contains(w)) && !ctx.first_person_at(start)
}
