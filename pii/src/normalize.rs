//! Offset-keeping normalization.
//!
//! Detectors run on a normalized copy of the input in which obfuscations are undone:
//! full-width ASCII (`４１１１`, `＠`) becomes ASCII, Devanagari and Arabic-Indic digits become
//! `0-9`, Unicode dashes and spaces become `-` and ` `, zero-width characters are dropped, and runs of
//! spelled-out digits ("four one one one ...", "nau aath saat ...", "一三八一二...") become digits.
//! Every byte of the normalized text remembers the byte range of the original it came from, so a
//! span found in the normalized text maps back to exact original byte offsets.

/// Normalized text plus a byte map back to the original.
pub(crate) struct Normalized {
    /// The normalized text the detectors scan.
    pub(crate) text: String,
    /// For each byte of `text`: the original byte range `[start, end)` it came from.
    src: Vec<(u32, u32)>,
}

impl Normalized {
    /// Normalizes `input` (pass 1: characters; pass 2: spelled-out digit runs).
    pub(crate) fn new(input: &str) -> Self {
        let pass1 = char_pass(input);
        let pass2 = digit_word_pass(&pass1.text);
        // Compose: pass-2 ranges index pass-1 bytes; map them through pass-1's table.
        let src = pass2
            .src
            .iter()
            .map(|&(s, e)| {
                let s1 = pass1.src.get(s as usize).map_or(input.len() as u32, |r| r.0);
                let e1 = if e == 0 { s1 } else { pass1.src.get(e as usize - 1).map_or(input.len() as u32, |r| r.1) };
                (s1, e1)
            })
            .collect();
        Normalized { text: pass2.text, src }
    }

    /// Maps a normalized byte range back to the original byte range it covers.
    pub(crate) fn orig_range(&self, start: usize, end: usize) -> (usize, usize) {
        if start >= end || self.src.is_empty() {
            return (0, 0);
        }
        let s = self.src.get(start).map_or(0, |r| r.0);
        let e = self.src.get(end - 1).or(self.src.last()).map_or(0, |r| r.1);
        (s as usize, (e as usize).max(s as usize))
    }
}

struct Builder {
    text: String,
    src: Vec<(u32, u32)>,
}

impl Builder {
    fn with_capacity(n: usize) -> Self {
        Builder { text: String::with_capacity(n), src: Vec::with_capacity(n) }
    }
    fn push(&mut self, c: char, start: usize, end: usize) {
        let before = self.text.len();
        self.text.push(c);
        for _ in before..self.text.len() {
            self.src.push((start as u32, end as u32));
        }
    }
    fn push_str(&mut self, s: &str, start: usize, end: usize) {
        for c in s.chars() {
            self.push(c, start, end);
        }
    }
}

/// Pass 1: one character at a time.
fn char_pass(input: &str) -> Normalized {
    let mut b = Builder::with_capacity(input.len());
    for (i, ch) in input.char_indices() {
        let end = i + ch.len_utf8();
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
        if let Some(c) = mapped {
            b.push(c, i, end);
        }
    }
    Normalized { text: b.text, src: b.src }
}

/// The digit a spelled-out word stands for, in any of the six languages.
fn word_digit(word: &str) -> Option<u8> {
    let lower = word.to_lowercase();
    let d = match lower.as_str() {
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

/// Pass 2: runs of at least four spelled-out digits (Latin words) or five Han digits become digits.
/// Separators between spoken digits are dropped, so "five five five, one two" becomes "55512".
fn digit_word_pass(text: &str) -> Normalized {
    // Tokenize into (start, end, kind).
    let mut toks: Vec<(usize, usize, Tok)> = Vec::new();
    let mut it = text.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if let Some(d) = han_digit(c) {
            toks.push((i, i + c.len_utf8(), Tok::Digit(d)));
        } else if c.is_alphabetic() && !is_cjk(c) {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = it.peek() {
                if d.is_alphabetic() && !is_cjk(d) {
                    end = j + d.len_utf8();
                    it.next();
                } else {
                    break;
                }
            }
            let w = &text[i..end];
            let kind = match word_digit(w) {
                Some(d) => Tok::Digit(d),
                None => match w.to_lowercase().as_str() {
                    "double" => Tok::Repeat(2),
                    "triple" => Tok::Repeat(3),
                    "plus" | "más" | "mas" => Tok::Plus,
                    _ => Tok::Other,
                },
            };
            toks.push((i, end, kind));
        } else if c.is_ascii_digit() {
            let mut end = i + 1;
            while let Some(&(j, d)) = it.peek() {
                if d.is_ascii_digit() {
                    end = j + 1;
                    it.next();
                } else {
                    break;
                }
            }
            toks.push((i, end, Tok::Ascii));
        } else if matches!(c, ' ' | ',' | '-' | '.' | '\t') {
            toks.push((i, i + 1, Tok::Sep));
        } else {
            toks.push((i, i + c.len_utf8(), Tok::Other));
        }
    }

    // Find qualifying runs: [first, last] token indices.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut k = 0;
    while k < toks.len() {
        let starts_run = matches!(toks[k].2, Tok::Digit(_) | Tok::Repeat(_) | Tok::Plus);
        if !starts_run {
            k += 1;
            continue;
        }
        let mut j = k;
        let mut last = k;
        let mut words = 0usize;
        let mut han = false;
        let mut sep_len = 0usize;
        while j < toks.len() {
            match toks[j].2 {
                Tok::Digit(_) => {
                    words += 1;
                    han |= !text[toks[j].0..toks[j].1].is_ascii();
                    last = j;
                    sep_len = 0;
                }
                Tok::Repeat(_) | Tok::Ascii => {
                    last = j;
                    sep_len = 0;
                }
                Tok::Plus if j == k => {}
                Tok::Sep => {
                    sep_len += 1;
                    if sep_len > 3 {
                        break;
                    }
                }
                _ => break,
            }
            j += 1;
        }
        let need = if han { 5 } else { 4 };
        if words >= need {
            runs.push((k, last));
            k = last + 1;
        } else {
            k += 1;
        }
    }

    if runs.is_empty() {
        let src = (0..text.len()).map(|i| (i as u32, i as u32 + 1)).collect();
        return Normalized { text: text.to_string(), src };
    }

    let mut b = Builder::with_capacity(text.len());
    let mut pos = 0usize; // next unconsumed byte of `text`
    for (first, last) in runs {
        let run_start = toks[first].0;
        // Copy the text before the run unchanged.
        for (off, c) in text[pos..run_start].char_indices() {
            let s = pos + off;
            b.push(c, s, s + c.len_utf8());
        }
        let mut repeat = 1u8;
        for t in &toks[first..=last] {
            match t.2 {
                Tok::Digit(d) => {
                    for _ in 0..repeat {
                        b.push((b'0' + d) as char, t.0, t.1);
                    }
                    repeat = 1;
                }
                Tok::Repeat(n) => repeat = n,
                Tok::Plus => b.push('+', t.0, t.1),
                Tok::Ascii => b.push_str(&text[t.0..t.1], t.0, t.1),
                _ => {}
            }
        }
        pos = toks[last].1;
    }
    for (off, c) in text[pos..].char_indices() {
        let s = pos + off;
        b.push(c, s, s + c.len_utf8());
    }
    Normalized { text: b.text, src: b.src }
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
