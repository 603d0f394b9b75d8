//! Offset-keeping normalization.
//!
//! Detectors run on a normalized copy of the input in which obfuscations are undone:
//! full-width ASCII (`４１１１`, `＠`) becomes ASCII, Devanagari and Arabic-Indic digits become
//! `0-9`, Unicode dashes and spaces become `-` and ` `, zero-width characters are dropped, and runs of
//! spelled-out digits ("four one one one ...", "nau aath saat ...", "一三八一二...") become digits.
//! Every byte of the normalized text remembers the byte range of the original it came from, so a
//! span found in the normalized text maps back to exact original byte offsets.

use std::borrow::Cow;

/// Normalized text plus a byte map back to the original.
pub(crate) struct Normalized<'a> {
    /// The normalized text the detectors scan (borrowed when nothing changed).
    pub(crate) text: Cow<'a, str>,
    /// For each byte of `text`: the original byte range `[start, end)` it came from; `None` when
    /// the text is unchanged (the common case: no copy, no table).
    src: Option<Vec<(u32, u32)>>,
}

impl<'a> Normalized<'a> {
    /// Normalizes `input` (pass 1: characters; pass 2: spelled-out digit runs).
    pub(crate) fn new(input: &'a str) -> Self {
        let pass1 = char_pass(input);
        let pass2 = digit_word_pass(&pass1.text);
        let src = match (pass1.src, pass2.src) {
            (a, None) => a,
            (None, b) => b,
            // Compose: pass-2 ranges index pass-1 bytes; map them through pass-1's table.
            (Some(t1), Some(t2)) => Some(
                t2.iter()
                    .map(|&(s, e)| {
                        let s1 = t1.get(s as usize).map_or(input.len() as u32, |r| r.0);
                        let e1 = if e == 0 { s1 } else { t1.get(e as usize - 1).map_or(input.len() as u32, |r| r.1) };
                        (s1, e1)
                    })
                    .collect(),
            ),
        };
        let text = match pass2.text {
            Cow::Owned(t) => Cow::Owned(t),
            Cow::Borrowed(_) => pass1.text,
        };
        Normalized { text, src }
    }

    /// Maps a normalized byte range back to the original byte range it covers.
    pub(crate) fn orig_range(&self, start: usize, end: usize) -> (usize, usize) {
        if start >= end {
            return (0, 0);
        }
        let Some(src) = &self.src else {
            return (start.min(self.text.len()), end.min(self.text.len()));
        };
        if src.is_empty() {
            return (0, 0);
        }
        let s = src.get(start).map_or(0, |r| r.0);
        let e = src.get(end - 1).or(src.last()).map_or(0, |r| r.1);
        (s as usize, (e as usize).max(s as usize))
    }
}

/// Builds a normalized copy only once something changes: until then it only remembers how far
/// the input was unchanged.
struct Builder<'a> {
    input: &'a str,
    out: Option<(String, Vec<(u32, u32)>)>,
}

impl<'a> Builder<'a> {
    fn new(input: &'a str) -> Self {
        Builder { input, out: None }
    }
    /// Starts the copy: the unchanged input before byte `upto` maps to itself.
    fn materialize(&mut self, upto: usize) -> &mut (String, Vec<(u32, u32)>) {
        let input = self.input;
        self.out.get_or_insert_with(|| {
            let mut text = String::with_capacity(input.len());
            text.push_str(&input[..upto]);
            let src = (0..upto as u32).map(|i| (i, i + 1)).collect::<Vec<_>>();
            (text, src)
        })
    }
    /// The input character at `[start, end)` is kept as it is.
    fn keep(&mut self, start: usize, end: usize) {
        if let Some((text, src)) = &mut self.out {
            text.push_str(&self.input[start..end]);
            src.extend((start as u32..end as u32).map(|i| (i, i + 1)));
        }
    }
    /// The input at `[start, end)` becomes `s` (possibly empty).
    fn replace(&mut self, s: &str, start: usize, end: usize) {
        let (text, src) = self.materialize(start);
        text.push_str(s);
        src.extend(std::iter::repeat_n((start as u32, end as u32), s.len()));
    }
    fn push(&mut self, c: char, start: usize, end: usize) {
        let mut buf = [0u8; 4];
        self.replace(c.encode_utf8(&mut buf), start, end);
    }
    fn finish(self) -> Normalized<'a> {
        match self.out {
            None => Normalized { text: Cow::Borrowed(self.input), src: None },
            Some((text, src)) => Normalized { text: Cow::Owned(text), src: Some(src) },
        }
    }
}

/// Pass 1: one character at a time.
fn char_pass(input: &str) -> Normalized<'_> {
    if input.is_ascii() {
        return Normalized { text: Cow::Borrowed(input), src: None };
    }
    let mut b = Builder::new(input);
    for (i, ch) in input.char_indices() {
        let end = i + ch.len_utf8();
        if ch.is_ascii() {
            b.keep(i, end);
            continue;
        }
        let cp = ch as u32;
        let mapped = match ch {
            // Full-width ASCII block (U+FF01..U+FF5E) maps onto ASCII by a fixed offset.
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(cp - 0xFEE0),
            '\u{3000}' | '\u{00A0}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' => Some(' '),
            '\u{0966}'..='\u{096F}' => char::from_u32('0' as u32 + cp - 0x0966),
            '\u{0660}'..='\u{0669}' => char::from_u32('0' as u32 + cp - 0x0660),
            '\u{06F0}'..='\u{06F9}' => char::from_u32('0' as u32 + cp - 0x06F0),
            '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE63}' => Some('-'),
            '\u{2018}' | '\u{2019}' | '\u{2032}' => Some('\''),
            '\u{201C}' | '\u{201D}' | '\u{2033}' => Some('"'),
            // Zero-width characters and soft hyphens are dropped.
            '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' => None,
            _ => Some(ch),
        };
        match mapped {
            Some(c) if c == ch => b.keep(i, end),
            Some(c) => b.push(c, i, end),
            None => b.replace("", i, end),
        }
    }
    b.finish()
}

/// The digit a spelled-out word stands for, in any of the six languages.
fn word_digit(word: &str) -> Option<u8> {
    let lower: Cow<str> = if word.bytes().all(|b| b.is_ascii_lowercase()) {
        Cow::Borrowed(word)
    } else {
        Cow::Owned(word.to_lowercase())
    };
    let d = match lower.as_ref() {
        "zero" | "oh" | "cero" | "null" | "zéro" | "shunya" | "shoonya" | "sunya" | "shunye" => 0,
        "one" | "uno" | "eins" | "un" | "ek" => 1,
        "two" | "dos" | "zwei" | "zwo" | "deux" | "do" => 2,
        "three" | "tres" | "drei" | "trois" | "teen" | "tin" => 3,
        "four" | "cuatro" | "vier" | "quatre" | "char" | "chaar" => 4,
        "five" | "cinco" | "fünf" | "fuenf" | "cinq" | "paanch" | "panch" | "paanch." => 5,
        "six" | "seis" | "sechs" | "chhah" | "chhe" | "chhah." | "chah" | "che" | "chhai" => 6,
        "seven" | "siete" | "sieben" | "sept" | "saat" | "sat" => 7,
        "eight" | "ocho" | "acht" | "huit" | "aath" | "aat" => 8,
        "nine" | "nueve" | "neun" | "neuf" | "nau" | "nao" => 9,
        _ => return None,
    };
    Some(d)
}

fn han_digit(c: char) -> Option<u8> {
    Some(match c {
        '〇' | '零' => 0,
        '一' | '幺' => 1,
        '二' => 2,
        '三' => 3,
        '四' => 4,
        '五' => 5,
        '六' => 6,
        '七' => 7,
        '八' => 8,
        '九' => 9,
        _ => return None,
    })
}

/// A token of pass 2: a word (letters), a Han digit, an ASCII digit group, or anything else.
#[derive(Clone, Copy, PartialEq)]
enum Tok {
    /// A spelled-out digit word (value).
    Digit(u8),
    /// "double"/"triple" (repeat count for the next digit word).
    Repeat(u8),
    /// "plus"/"más" (a leading `+`).
    Plus,
    /// ASCII digits.
    Ascii,
    /// A separator allowed inside a spoken number: space, comma, hyphen, dot.
    Sep,
    /// Anything else.
    Other,
}

/// The token starting at byte `i` (a char boundary): its end and kind.
fn token_at(text: &str, i: usize) -> (usize, Tok) {
    let Some(c) = text[i..].chars().next() else { return (i, Tok::Other) };
    let end = i + c.len_utf8();
    if let Some(d) = han_digit(c) {
        return (end, Tok::Digit(d));
    }
    if c.is_ascii_digit() {
        let n = text.as_bytes()[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        return (i + n, Tok::Ascii);
    }
    if matches!(c, ' ' | ',' | '-' | '.' | '\t') {
        return (end, Tok::Sep);
    }
    if !c.is_alphabetic() || is_cjk(c) {
        return (end, Tok::Other);
    }
    let mut we = end;
    for (j, d) in text[end..].char_indices() {
        if d.is_alphabetic() && !is_cjk(d) {
            we = end + j + d.len_utf8();
        } else {
            break;
        }
    }
    let w = &text[i..we];
    if w.len() > 8 {
        return (we, Tok::Other); // no digit word is longer ("shoonya", "cuatro", "fünf")
    }
    let kind = match word_digit(w) {
        Some(d) => Tok::Digit(d),
        None => match w.to_lowercase().as_str() {
            "double" => Tok::Repeat(2),
            "triple" => Tok::Repeat(3),
            "plus" | "más" | "mas" => Tok::Plus,
            _ => Tok::Other,
        },
    };
    (we, kind)
}

/// Pass 2: runs of at least four spelled-out digits (Latin words) or five Han digits become digits.
/// Separators between spoken digits are dropped, so "five five five, one two" becomes "55512".
/// One forward pass: a failed run resumes where it stopped (every later start would stop there
/// too, with fewer digit words), so the pass is linear.
fn digit_word_pass(text: &str) -> Normalized<'_> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut i = 0usize;
    while i < text.len() {
        let (end, tok) = token_at(text, i);
        if !matches!(tok, Tok::Digit(_) | Tok::Repeat(_) | Tok::Plus) {
            i = end.max(i + 1);
            continue;
        }
        let mut j = i;
        let mut last_end = i;
        let mut words = 0usize;
        let mut han = false;
        let mut sep_len = 0usize;
        while j < text.len() {
            let (e, t) = token_at(text, j);
            match t {
                Tok::Digit(_) => {
                    words += 1;
                    han |= !text[j..e].is_ascii();
                    last_end = e;
                    sep_len = 0;
                }
                Tok::Repeat(_) | Tok::Ascii => {
                    last_end = e;
                    sep_len = 0;
                }
                Tok::Plus if j == i => {}
                Tok::Sep => {
                    sep_len += 1;
                    if sep_len > 3 {
                        break;
                    }
                }
                _ => break,
            }
            j = e.max(j + 1);
        }
        let need = if han { 5 } else { 4 };
        if words >= need {
            runs.push((i, last_end));
            i = last_end;
        } else {
            i = j.max(end);
        }
    }
    if runs.is_empty() {
        return Normalized { text: Cow::Borrowed(text), src: None };
    }

    let mut b = Builder::new(text);
    let mut pos = 0usize; // next unconsumed byte of `text`
    for (run_start, run_end) in runs {
        b.materialize(pos);
        for (off, c) in text[pos..run_start].char_indices() {
            let s = pos + off;
            b.keep(s, s + c.len_utf8());
        }
        let mut repeat = 1u8;
        let mut j = run_start;
        while j < run_end {
            let (e, t) = token_at(text, j);
            match t {
                Tok::Digit(d) => {
                    for _ in 0..repeat {
                        b.push((b'0' + d) as char, j, e);
                    }
                    repeat = 1;
                }
                Tok::Repeat(n) => repeat = n,
                Tok::Plus => b.push('+', j, e),
                Tok::Ascii => {
                    for k in j..e {
                        b.replace(&text[k..k + 1], k, k + 1);
                    }
                }
                _ => {}
            }
            j = e.max(j + 1);
        }
        pos = run_end;
    }
    for (off, c) in text[pos..].char_indices() {
        let s = pos + off;
        b.keep(s, s + c.len_utf8());
    }
    b.finish()
}

/// Han ideographs and CJK punctuation (scripts written without spaces).
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3000..=0x303F | 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF
        | 0xFF00..=0xFF0F | 0xFF1A..=0xFF20 | 0x20000..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orig<'a>(input: &'a str, n: &Normalized, needle: &str) -> &'a str {
        let s = n.text.find(needle).expect("needle");
        let (a, b) = n.orig_range(s, s + needle.len());
        &input[a..b]
    }

    #[test]
    fn fullwidth_digits_keep_offsets() {
        let input = "卡号：４１１１ ２２２２";
        let n = Normalized::new(input);
        assert!(n.text.contains("4111 2222"));
        assert_eq!(orig(input, &n, "4111 2222"), "４１１１ ２２２２");
    }

    #[test]
    fn spelled_digits_become_digits() {
        let input = "my number is five five five, one two three four ok";
        let n = Normalized::new(input);
        assert!(n.text.contains("5551234 ok"), "{}", n.text);
        assert_eq!(orig(input, &n, "5551234"), "five five five, one two three four");
    }

    #[test]
    fn hinglish_and_han_digits() {
        let n = Normalized::new("mera number nau aath saat chhah paanch hai");
        assert!(n.text.contains("98765 hai"), "{}", n.text);
        let n = Normalized::new("手机号是一三八一二三四五六七八");
        assert!(n.text.contains("13812345678"), "{}", n.text);
        // Short counting phrases are left alone.
        let n = Normalized::new("one two three");
        assert_eq!(n.text, "one two three");
    }

    #[test]
    fn zero_width_dropped_and_devanagari_digits() {
        let input = "4532\u{200b}0151 ९८७६";
        let n = Normalized::new(input);
        assert_eq!(n.text, "45320151 9876");
        assert_eq!(orig(input, &n, "9876"), "९८७६");
    }
}
