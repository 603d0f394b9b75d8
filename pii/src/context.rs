//! Keyword matching with word-boundary checks, and per-scan keyword hit tables.

use regex::Regex;

use super::normalize::is_cjk;

/// A compiled keyword list. Plain words go into one literal alternation (matched with
/// Aho-Corasick, bounded memory); fragments with regex syntax go into a second, small regex.
/// Both are case-sensitive and matched against [`lower_same_len`] text: case-insensitive Unicode
/// automata are much larger, and a large lazy DFA thrashes its cache on long inputs.
pub(crate) struct Lex {
    literals: Option<Regex>,
    patterns: Option<Regex>,
}

impl Lex {
    /// Compiles `fragments` (lowercase; regex syntax allowed).
    pub(crate) fn new(fragments: &[&str]) -> Result<Self, regex::Error> {
        let is_meta = |c: char| "\\.[](){}*+?|^$".contains(c);
        let mut lits: Vec<&str> = fragments.iter().copied().filter(|f| !f.contains(is_meta)).collect();
        let mut pats: Vec<&str> = fragments.iter().copied().filter(|f| f.contains(is_meta)).collect();
        // Leftmost-first semantics: longer alternatives first so "card number" wins over "card".
        for v in [&mut lits, &mut pats] {
            v.sort_by_key(|f| std::cmp::Reverse(f.len()));
            v.dedup();
        }
        let build = |v: &[&str]| -> Result<Option<Regex>, regex::Error> {
            if v.is_empty() {
                return Ok(None);
            }
            Ok(Some(Regex::new(&format!("(?:{})", v.join("|")))?))
        };
        Ok(Lex { literals: build(&lits)?, patterns: build(&pats)? })
    }

    /// All matches in `text` (lowercased with [`lower_same_len`]) that start and end on word
    /// boundaries (CJK needs none); where the two sets overlap, the leftmost-longest match wins.
    pub(crate) fn hits(&self, text: &str) -> Hits {
        let mut all: Vec<(usize, usize)> = Vec::new();
        for re in [&self.literals, &self.patterns].into_iter().flatten() {
            for m in re.find_iter(text) {
                if m.start() < m.end() && on_boundaries(text, m.start(), m.end()) {
                    all.push((m.start(), m.end()));
                }
            }
        }
        all.sort_by_key(|&(s, e)| (s, std::cmp::Reverse(e)));
        let mut out: Vec<(usize, usize)> = Vec::with_capacity(all.len());
        for (s, e) in all {
            if out.last().is_none_or(|&(_, pe)| s >= pe) {
                out.push((s, e));
            }
        }
        Hits(out)
    }
}

/// Lowercases `text` character by character wherever the lowercase form has the same UTF-8
/// length (all of ASCII and nearly all accented Latin letters), so byte offsets are unchanged.
pub(crate) fn lower_same_len(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let mut l = c.to_lowercase();
        match (l.next(), l.next()) {
            (Some(lc), None) if lc.len_utf8() == c.len_utf8() => out.push(lc),
            _ => out.push(c),
        }
    }
    out
}

/// Whether `text[start..end]` is delimited by non-word characters (or CJK on the inside edge).
pub(crate) fn on_boundaries(text: &str, start: usize, end: usize) -> bool {
    let first = text[start..].chars().next();
    let last = text[..end].chars().next_back();
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    let word = |c: char| c.is_alphanumeric() && !is_cjk(c);
    let left_ok = match (before, first) {
        (Some(b), Some(f)) if word(f) => !word(b),
        _ => true,
    };
    let right_ok = match (last, after) {
        (Some(l), Some(a)) if word(l) => !word(a),
        _ => true,
    };
    left_ok && right_ok
}

/// Sorted, non-overlapping keyword hits `(start, end)` in the normalized text.
#[derive(Default)]
pub(crate) struct Hits(pub(crate) Vec<(usize, usize)>);

impl Hits {
    /// Distance from the end of the closest hit that ends at or before `pos` (and within `max`).
    pub(crate) fn dist_before(&self, pos: usize, max: usize) -> Option<usize> {
        let idx = self.0.partition_point(|&(s, _)| s < pos);
        self.0[..idx]
            .iter()
            .rev()
            .take(4)
            .filter(|&&(_, e)| e <= pos)
            .map(|&(_, e)| pos - e)
            .filter(|&d| d <= max)
            .min()
    }

    /// Whether a hit lies within `before` bytes before `start` or `after` bytes after `end`,
    /// or overlaps `[start, end)`.
    pub(crate) fn near(&self, start: usize, end: usize, before: usize, after: usize) -> bool {
        let lo = start.saturating_sub(before);
        let hi = end.saturating_add(after);
        let idx = self.0.partition_point(|&(_, e)| e < lo);
        self.0[idx..].iter().take_while(|&&(s, _)| s <= hi).any(|_| true)
    }

    /// Whether a hit lies inside `[lo, hi)`.
    pub(crate) fn within(&self, lo: usize, hi: usize) -> bool {
        let idx = self.0.partition_point(|&(s, _)| s < lo);
        self.0.get(idx).is_some_and(|&(s, _)| s < hi)
    }

    /// Hits inside `[lo, hi)`.
    pub(crate) fn in_range(&self, lo: usize, hi: usize) -> impl Iterator<Item = &(usize, usize)> {
        let idx = self.0.partition_point(|&(s, _)| s < lo);
        self.0[idx..].iter().take_while(move |&&(s, _)| s < hi)
    }

    /// The hit that ends exactly at (or up to `slack` bytes of spaces/punctuation before) `pos`.
    pub(crate) fn ending_at(&self, text: &str, pos: usize, slack: usize) -> Option<(usize, usize)> {
        let idx = self.0.partition_point(|&(s, _)| s < pos);
        for &(s, e) in self.0[..idx].iter().rev().take(3) {
            if e <= pos && pos - e <= slack {
                let gap = &text[e..pos];
                if gap.chars().all(|c| c.is_whitespace() || matches!(c, ':' | '：' | ',' | '，' | '-')) {
                    return Some((s, e));
                }
            }
        }
        None
    }
}

/// Sentence spans of the normalized text: split after `.!?。！？` followed by space/CJK/end,
/// and at newlines and semicolons.
pub(crate) fn sentences(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = i + c.len_utf8();
        let next = chars.peek().map(|&(_, n)| n);
        let boundary = match c {
            '\n' | ';' | '；' | '。' | '！' | '？' => true,
            '.' => next.is_none_or(|n| n.is_whitespace() || is_cjk(n)) && !abbreviation_before(text, i),
            '!' | '?' => next.is_none_or(|n| n.is_whitespace() || is_cjk(n)),
            _ => false,
        };
        if boundary {
            if end > start {
                out.push((start, end));
            }
            start = end;
        }
    }
    if start < text.len() {
        out.push((start, text.len()));
    }
    out
}

/// Whether the word ending at byte `dot` (a '.') is an abbreviation or an initial ("Dr.", "H.No.").
fn abbreviation_before(text: &str, dot: usize) -> bool {
    const ABBR: &[&str] = &[
        "mr", "mrs", "ms", "dr", "prof", "sr", "sra", "srta", "st", "apt", "no", "nr", "geb", "jr", "inc", "ltd", "co",
        "vs", "etc", "mme", "mlle", "hr", "fr", "tel", "ca", "approx", "dept", "ave", "rd", "blvd", "ing", "dipl",
        "str", "bzw", "nº", "av", "avda", "pza", "ctra", "smt", "shri", "e.g", "i.e", "z.b", "d.o.b",
    ];
    let head = &text[..dot];
    let word_start = head
        .char_indices()
        .rev()
        .find(|&(_, c)| !(c.is_alphanumeric() || c == '.'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let word = head[word_start..].to_lowercase();
    let last = word.rsplit('.').next().unwrap_or("");
    word.chars().count() == 1 || last.chars().count() == 1 || ABBR.contains(&word.as_str()) || ABBR.contains(&last)
}

/// The sentence containing byte `pos`.
pub(crate) fn sentence_of(sents: &[(usize, usize)], pos: usize) -> (usize, usize) {
    let idx = sents.partition_point(|&(_, e)| e <= pos);
    sents.get(idx).copied().unwrap_or((0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_and_longest_first() {
        let lex = Lex::new(&["card", "card number", "卡号"]).expect("compiles");
        let h = lex.hits(&lower_same_len("My Card number, discard it; 卡号123"));
        assert_eq!(h.0, vec![(3, 14), (28, 34)]);
    }

    #[test]
    fn sentences_split() {
        let s = sentences("I am ill. Dr. Who? 我很好。OK");
        assert_eq!(s.len(), 4, "{s:?}");
    }
}
