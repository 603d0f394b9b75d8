//! Keyword matching with word-boundary checks, and per-scan keyword hit tables.

use regex::Regex;

use super::normalize::is_cjk;

/// A compiled keyword list. Single words (letters and digits only) go into the shared
/// [`WordTable`] and are found by one hash lookup per word of the text, shared by all lists; other
/// plain phrases go into one literal alternation (matched with Aho-Corasick, bounded memory) and
/// fragments with regex syntax into a second, small regex. All are case-sensitive and matched
/// against [`lower_same_len`] text: case-insensitive Unicode automata are much larger, and a large
/// lazy DFA thrashes its cache on long inputs.
pub(crate) struct Lex {
    id: usize,
    literals: Option<Regex>,
    patterns: Option<Regex>,
}

/// Which keyword lists each single word belongs to (a bit per list), for all lists at once.
#[derive(Default)]
pub(crate) struct WordTable {
    map: std::collections::HashMap<String, u64, FnvBuild>,
    lists: usize,
}

/// The words of one text found in the [`WordTable`], per list, sorted by start.
pub(crate) struct WordHits(Vec<Vec<(usize, usize)>>);

impl WordTable {
    /// Finds every word of `text` (lowercased) that belongs to a list: one pass, one lookup per word.
    pub(crate) fn scan(&self, text: &str) -> WordHits {
        let mut hits = vec![Vec::new(); self.lists];
        let mut add = |s: usize, e: usize| {
            if let Some(&bits) = self.map.get(&text[s..e]) {
                let mut b = bits;
                while b != 0 {
                    let k = b.trailing_zeros() as usize;
                    hits[k].push((s, e));
                    b &= b - 1;
                }
            }
        };
        let mut start: Option<usize> = None;
        if text.is_ascii() {
            for (i, b) in text.bytes().enumerate() {
                match (b.is_ascii_alphanumeric(), start) {
                    (true, None) => start = Some(i),
                    (false, Some(s)) => {
                        add(s, i);
                        start = None;
                    }
                    _ => {}
                }
            }
        } else {
            for (i, c) in text.char_indices() {
                match (c.is_alphanumeric() && !is_cjk(c), start) {
                    (true, None) => start = Some(i),
                    (false, Some(s)) => {
                        add(s, i);
                        start = None;
                    }
                    _ => {}
                }
            }
        }
        if let Some(s) = start {
            add(s, text.len());
        }
        WordHits(hits)
    }
}

/// FNV-1a: a fast hasher for short keyword lookups (the keys are our own word lists).
#[derive(Default, Clone, Copy)]
pub(crate) struct FnvBuild;

pub(crate) struct Fnv(u64);

impl std::hash::BuildHasher for FnvBuild {
    type Hasher = Fnv;
    fn build_hasher(&self) -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl Lex {
    /// Compiles `fragments` (lowercase; regex syntax allowed), registering its single words in `words`.
    pub(crate) fn new(words: &mut WordTable, fragments: &[&str]) -> Result<Self, regex::Error> {
        let is_meta = |c: char| "\\.[](){}*+?|^$".contains(c);
        let is_word = |f: &str| !f.is_empty() && f.chars().all(|c| c.is_alphanumeric() && !is_cjk(c));
        let id = words.lists;
        if id >= 64 {
            // More lists than bits: a programming error; fail closed like any broken pattern.
            return Err(regex::Error::Syntax("too many keyword lists".to_string()));
        }
        words.lists += 1;
        for f in fragments.iter().copied().filter(|f| is_word(f)) {
            *words.map.entry(f.to_string()).or_insert(0) |= 1u64 << id;
        }
        let mut lits: Vec<&str> = fragments.iter().copied().filter(|f| !f.contains(is_meta) && !is_word(f)).collect();
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
        Ok(Lex { id, literals: build(&lits)?, patterns: build(&pats)? })
    }

    /// All matches in `text` (lowercased with [`lower_same_len`]) that start and end on word
    /// boundaries (CJK needs none), with its single words taken from `words`
    /// ([`WordTable::scan`] of the same text); where matches overlap, the leftmost-longest wins.
    pub(crate) fn hits(&self, text: &str, words: &WordHits) -> Hits {
        let mut all: Vec<(usize, usize)> = words.0.get(self.id).cloned().unwrap_or_default();
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
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
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

    /// Whether a hit starts exactly at `pos`.
    pub(crate) fn starts_at(&self, pos: usize) -> bool {
        let idx = self.0.partition_point(|&(s, _)| s < pos);
        self.0.get(idx).is_some_and(|&(s, _)| s == pos)
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
        let mut words = WordTable::default();
        let lex = Lex::new(&mut words, &["card", "card number", "卡号"]).expect("compiles");
        let text = lower_same_len("My Card number, discard it; 卡号123 card");
        let h = lex.hits(&text, &words.scan(&text));
        assert_eq!(h.0, vec![(3, 14), (28, 34), (38, 42)]);
    }

    #[test]
    fn sentences_split() {
        let s = sentences("I am ill. Dr. Who? 我很好。OK");
        assert_eq!(s.len(), 4, "{s:?}");
    }
}
