//! People: person names (with public figures told apart), health information about a person,
//! and a named private person together with personal attributes (age, residence, income...).

use std::collections::HashSet;

use regex::Regex;

use super::context::sentence_of;
use super::gazetteer;
use super::lexicon as lx;
use super::normalize::is_cjk;
use super::{Category, Ctx, Out};

/// A person name found in the normalized text.
pub(crate) struct Name {
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// Matches a well-known public figure.
    pub(crate) public: bool,
    /// Number of name tokens (Latin) or 2 for Han names.
    pub(crate) tokens: usize,
    /// Only a capitalized pair mid-sentence ("... de Febe Ortega"): reported next to other
    /// personal data, never a reason on its own.
    pub(crate) weak: bool,
}

pub(crate) struct NameFinder {
    seq: Regex,
    honorific: Regex,
    predicate: Regex,
    age_after: Regex,
    first_names: HashSet<&'static str>,
    not_name: HashSet<&'static str>,
    /// Single-character Chinese surnames.
    cn_single: HashSet<char>,
    /// Two-character (compound) Chinese surnames.
    cn_compound: Vec<&'static str>,
}

/// Strong words after a Han name (longer cues first).
const HAN_FOLLOW_STRONG: &[&str] = &[
    // The text is normalized, so full-width punctuation ("，（：") arrives as ASCII (",(:").
    "的电话",
    "的邮箱",
    "的手机",
    "的银行",
    "的身份证",
    "的地址",
    "的护照",
    "先生",
    "女士",
    "小姐",
    "(",
    "今年",
    ",出生",
    ",电话",
    ",邮箱",
    ",身份证",
    ",手机",
    ",住在",
    ",地址",
];

impl NameFinder {
    pub(crate) fn new() -> Result<Self, regex::Error> {
        let token = r"\p{Lu}[\p{L}'’\-]*\p{Ll}";
        let particle = r"(?:de|del|de la|de los|van|von|der|van der|von der|da|di|du|le|la|bin|al|y|dos|das|e)";
        Ok(NameFinder {
            seq: Regex::new(&format!(r"{token}(?:[ \t]+(?:{particle}[ \t]+)?{token}){{0,4}}"))?,
            honorific: Regex::new(&format!(r"(?-u:\b){}(?:[ \t]+|$)", lx::HONORIFIC))?,
            predicate: Regex::new(
                r"(?i)^[ \t]*(?:has|had|have|is|was|tested|lives|earns|works|suffers|got|dio|tiene|fue|vive|gana|trabaja|padece|sufre|está|hat|ist|wurde|wohnt|verdient|arbeitet|leidet|a|est|habite|gagne|travaille|souffre|ko|ka|ki|ke|ne)(?:[ \t,.]|$)",
            )?,
            age_after: Regex::new(
                r"(?i)^\s*(?:,\s*|\(\s*)(?:de\s+|aged?\s+)?\d{1,3}(?:\s*(?:years?|yrs?|años|jahre|ans|saal|sal|岁))?\s*(?:[,)]|\s|$)|^\s+\d{1,3}\s+(?:years?|años|jahre|ans|saal|sal)(?:\s|$)",
            )?,
            first_names: gazetteer::FIRST_NAMES.iter().copied().collect(),
            not_name: lx::NOT_NAME.iter().copied().collect(),
            cn_single: gazetteer::CN_SURNAMES
                .iter()
                .filter(|s| s.chars().count() == 1)
                .filter_map(|s| s.chars().next())
                .collect(),
            cn_compound: gazetteer::CN_SURNAMES.iter().copied().filter(|s| s.chars().count() > 1).collect(),
        })
    }

    /// All person names: Latin-script names supported by a cue (honorific, relation word, name
    /// label, following age or verb) or a known given name, and Han names next to a cue.
    pub(crate) fn find(&self, text: &str, ctx: &Ctx) -> Vec<Name> {
        let mut names = Vec::new();
        let honorific_ends: Vec<usize> = self.honorific.find_iter(text).map(|m| m.end()).collect();
        for m in self.seq.find_iter(text) {
            // Token spans inside the sequence.
            let mut toks: Vec<(usize, usize)> = Vec::new();
            let mut cur: Option<usize> = None;
            for (i, ch) in m.as_str().char_indices() {
                if ch == ' ' || ch == '\t' {
                    if let Some(s) = cur.take() {
                        toks.push((m.start() + s, m.start() + i));
                    }
                } else if cur.is_none() {
                    cur = Some(i);
                }
            }
            if let Some(s) = cur {
                toks.push((m.start() + s, m.end()));
            }
            let lower = |t: (usize, usize)| text[t.0..t.1].trim_end_matches('.').to_lowercase();
            let is_particle = |t: (usize, usize)| text[t.0..t.1].chars().next().is_some_and(char::is_lowercase);
            // Where does the name start? A cue ending right before a token, or a known given name.
            let mut start_tok: Option<usize> = None;
            let mut cued = false;
            for (k, &t) in toks.iter().enumerate() {
                if is_particle(t) {
                    continue;
                }
                // The honorific ending at or one byte before the token (sorted ends: binary search).
                let h = honorific_ends.partition_point(|&e| e <= t.0);
                let cue =
                    honorific_ends[..h].iter().rev().take(2).any(|&e| t.0 - e <= 1 && text[e..t.0].trim().is_empty())
                        || ctx.relation.ending_at(text, t.0, 3).is_some()
                        || ctx.name_label.ending_at(text, t.0, 3).is_some()
                        || ctx.self_id.ending_at(text, t.0, 3).is_some();
                let w = lower(t);
                if cue && !self.not_name.contains(w.as_str()) {
                    start_tok = Some(k);
                    cued = true;
                    break;
                }
                if self.first_names.contains(w.as_str()) {
                    start_tok = Some(k);
                    break;
                }
            }
            let after = &text[m.end()..];
            let gap = after.len() - after.trim_start_matches([' ', ',', '(']).len();
            let attr_follows =
                gap <= 3 && (ctx.dob.starts_at(m.end() + gap) || ctx.person_attr.starts_at(m.end() + gap));
            let age_follows = self.age_after.is_match(after) || attr_follows;
            let verb_follows = self.predicate.is_match(after);
            if start_tok.is_none() && (age_follows || verb_follows) {
                // "Laura Becker, 54, ..." / "Jon Cole tested positive ...": strip leading non-names.
                let k = toks.iter().position(|&t| !self.not_name.contains(lower(t).as_str()) && !is_particle(t));
                if let Some(k) = k {
                    let rest = &toks[k..];
                    let plausible = rest.len() >= 2
                        && rest
                            .iter()
                            .all(|&t| !self.not_name.contains(lower(t).as_str()) && !ctx.is_lexicon_word(t.0, t.1))
                        && at_clause_start(text, rest[0].0);
                    if plausible || (age_follows && rest.len() >= 2) {
                        start_tok = Some(k);
                    }
                }
            }
            let mut weak = false;
            if start_tok.is_none() {
                // A run of two or more capitalized words after a lowercase word, mid-sentence:
                // the longest tail of the sequence made of plausible name tokens.
                let bad = |t: (usize, usize)| {
                    !is_particle(t) && (self.not_name.contains(lower(t).as_str()) || ctx.is_lexicon_word(t.0, t.1))
                };
                let k = toks.iter().rposition(|&t| bad(t)).map_or(0, |i| i + 1);
                let k = (k..toks.len()).find(|&i| !is_particle(toks[i])).unwrap_or(toks.len());
                if k < toks.len() {
                    let rest = &toks[k..];
                    let prev_word_lower =
                        text[..rest[0].0].trim_end().chars().next_back().is_some_and(|c| c.is_lowercase() || c == ':');
                    let proper = rest.iter().filter(|&&t| !is_particle(t)).count() >= 2;
                    if proper && (prev_word_lower || k > 0) {
                        start_tok = Some(k);
                        weak = true;
                    }
                }
            }
            let Some(k) = start_tok else { continue };
            // Drop trailing non-name tokens.
            let mut last = toks.len() - 1;
            while last > k && (self.not_name.contains(lower(toks[last]).as_str()) || is_particle(toks[last])) {
                last -= 1;
            }
            let (s, e) = (toks[k].0, toks[last].1);
            let count = toks[k..=last].iter().filter(|&&t| !is_particle(t)).count();
            if count == 1 && !cued && !self.first_names.contains(lower(toks[k]).as_str()) {
                continue;
            }
            let public = ctx.public.near(s, e, 0, 0) || is_public(&text[s..e]);
            names.push(Name { start: s, end: e, public, tokens: count, weak });
        }
        self.han_names(text, ctx, &mut names);
        names
    }

    fn han_names(&self, text: &str, ctx: &Ctx, names: &mut Vec<Name>) {
        if !text.chars().any(is_cjk) {
            return;
        }
        let mut skip_until = 0usize;
        for (p, c) in text.char_indices() {
            if p < skip_until || !is_han_letter(c) {
                continue;
            }
            let rest = &text[p..];
            let sur_len = if let Some(sur) = self.cn_compound.iter().find(|s| rest.starts_with(**s)) {
                sur.len()
            } else if self.cn_single.contains(&c) {
                c.len_utf8()
            } else {
                continue;
            };
            let after_sur = p + sur_len;
            let given: Vec<(usize, char)> = text[after_sur..].char_indices().take(2).collect();
            let precede = lx::HAN_NAME_PRECEDE.iter().any(|c| text[..p].ends_with(c))
                || ctx.relation.ending_at(text, p, 0).is_some()
                || ctx.self_id.ending_at(text, p, 3).is_some();
            let mut choice: Option<usize> = None;
            for len in [2usize, 1] {
                let Some(&(off, ch)) = given.get(len - 1) else { continue };
                if !given[..len].iter().all(|&(_, c)| is_han_letter(c)) {
                    continue;
                }
                let end = after_sur + off + ch.len_utf8();
                let follow = &text[end..];
                let strong = HAN_FOLLOW_STRONG.iter().any(|c| follow.starts_with(c))
                    || follow.starts_with(',') && follow.chars().nth(1).is_some_and(|c| c.is_ascii_digit());
                let weak = lx::HAN_NAME_FOLLOW.iter().any(|c| follow.starts_with(c));
                if strong || (precede && weak) {
                    choice = Some(end);
                    break;
                }
            }
            if choice.is_none() && precede {
                // Default to surname + two given characters when they are letters.
                if given.len() == 2 && given.iter().all(|&(_, c)| is_han_letter(c)) {
                    choice = Some(after_sur + given[1].0 + given[1].1.len_utf8());
                }
            }
            if let Some(end) = choice {
                if ctx.is_lexicon_word(p, end) {
                    continue;
                }
                let public = ctx.public.near(p, end, 0, 0);
                names.push(Name { start: p, end, public, tokens: 2, weak: false });
                skip_until = end;
            }
        }
    }
}

/// A Han character that can be part of a personal name (not punctuation, digits or particles).
fn is_han_letter(c: char) -> bool {
    matches!(c as u32, 0x4E00..=0x9FFF | 0x3400..=0x4DBF)
        && !"的是在有和了得被把给到于与及或您我你他她它们这那个一二三四五六七八九十零电话手机邮箱地址号码".contains(c)
}

fn is_public(name: &str) -> bool {
    let l = name.to_lowercase();
    gazetteer::PUBLIC_FIGURES.contains(&l.as_str())
}

/// Whether byte `pos` starts a clause: start of text, or after sentence/colon/comma punctuation.
fn at_clause_start(text: &str, pos: usize) -> bool {
    let before = text[..pos].trim_end();
    before.is_empty() || before.ends_with(['.', '!', '?', ':', ';', ',', '\n', '。', '：', '，', '(', '-'])
}

/// Health information about a person, and named private people with personal attributes.
/// Whether a sentence opens, without a subject, with a verb of the writer's own health.
fn subjectless_first_person(sentence: &str) -> bool {
    #[rustfmt::skip]
    const OPENERS: &[&str] = &[
        "diagnosed ", "got diagnosed", "been diagnosed", "just diagnosed", "started ", "prescribed ", "tested positive",
        "recovering from", "living with", "struggling with", "suffering from", "dealing with", "just found out",
        "on medication", "pregnant", "diagnosticad", "diagnostiqué", "diagnostiziert",
    ];
    let head: String = sentence.trim_start().chars().take(24).flat_map(char::to_lowercase).collect();
    OPENERS.iter().any(|o| head.starts_with(o))
}

pub(crate) fn people(text: &str, ctx: &Ctx, names: &[Name], out: &mut Out) {
    // Which sentences name a private person (strongly) or a public figure: one pass over the
    // names (a name never crosses a sentence boundary), so the health loop stays linear.
    let mut private_in = vec![false; ctx.sents.len()];
    let mut public_in = vec![false; ctx.sents.len()];
    for n in names {
        let first = ctx.sents.partition_point(|&(_, e)| e <= n.start);
        let last = ctx.sents.partition_point(|&(s, _)| s < n.end);
        for k in first..last.min(ctx.sents.len()) {
            if n.public {
                public_in[k] = true;
            } else if !n.weak {
                private_in[k] = true;
            }
        }
    }
    // --- health: a health term in a sentence that is about the writer or a specific person ---
    for &(hs, he) in &ctx.health.0 {
        let idx = ctx.sents.partition_point(|&(_, e)| e <= hs);
        let (ss, se) = ctx.sents.get(idx).copied().unwrap_or((0, 0));
        // "Diagnosed with bipolar II last month. Started lamotrigine.": a sentence without a
        // subject that opens with such a verb is about the writer.
        let relation = ctx.relation.within(ss, se);
        // A clinical vignette ("Case study for my nursing class: a 27-year-old presents with
        // chest pain") is about nobody unless the writer says "I"/"me" or a relation is named.
        let vignette = ctx.vignette.within(ss, se) && !ctx.pronoun.within(ss, se) && !relation;
        // "A character in my novel is diagnosed with...": "my" owns the novel, not the illness.
        let first_person = !vignette
            && (ctx.first_person_at(hs) && !ctx.fiction_possessive_only(ss, se)
                || subjectless_first_person(&text[ss..se.max(ss)]));
        // In a sentence of fiction ("a scene where Margaret learns..."), a name is a character.
        let named = private_in.get(idx).copied().unwrap_or(false) && !ctx.fiction.within(ss, se);
        // "My son Ethan has a meeting. He was diagnosed with autism": a he/she/his/her in the
        // health sentence refers to the person named or related in one of the two sentences before.
        let about_person = |k: usize| {
            private_in.get(k).copied().unwrap_or(false)
                || ctx.sents.get(k).is_some_and(|&(a, b)| ctx.relation.within(a, b))
        };
        let coreferent =
            ctx.third.within(ss, se) && (idx >= 1 && about_person(idx - 1) || idx >= 2 && about_person(idx - 2));
        if first_person || relation || named || coreferent {
            out.add(hs, he, Category::Health, 0.8);
        } else if public_in.get(idx).copied().unwrap_or(false) || ctx.public.within(ss, se) {
            out.residual(0.25);
        }
    }
    // --- a named private person with personal attributes in the same sentence ---
    // Placeholder names of forms and documentation ("John Doe") are nobody.
    for n in names.iter().filter(|n| !n.public && !n.weak && !ctx.placeholder.near(n.start, n.end, 0, 0)) {
        let (ss, se) = sentence_of(&ctx.sents, n.start);
        if ctx.person_attr.within(ss, se) && !ctx.fiction.within(ss, se) {
            out.add(n.start, n.end, Category::PersonName, 0.75);
        }
        // Self-identification with a full name: "my name is Ana Ruiz", "我叫王伟".
        if n.tokens >= 2 && ctx.self_id.ending_at(text, n.start, 3).is_some() {
            out.add(n.start, n.end, Category::PersonName, 0.7);
        }
    }
}

/// When the text is sensitive, its private names are reported too (the person the data is about).
pub(crate) fn decorate_names(names: &[Name], ctx: &Ctx, out: &mut Out) {
    if !out.sensitive() {
        return;
    }
    for n in names.iter().filter(|n| !n.public && !ctx.placeholder.near(n.start, n.end, 0, 0)) {
        out.add(n.start, n.end, Category::PersonName, 0.6);
    }
}
