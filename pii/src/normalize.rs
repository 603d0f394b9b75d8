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
    /// Normalizes `input` (pass 1: characters; pass 2: spaced-out characters; pass 3:
    /// spelled-out digit runs).
    pub(crate) fn new(input: &'a str) -> Self {
        let pass1 = char_pass(input);
        let pass2 = spaced_pass(&pass1.text).into_owned_parts();
        let changed2 = pass2.0.is_some();
        let t2: Cow<'_, str> = match pass2.0 {
            Some(t) => Cow::Owned(t),
            None => Cow::Borrowed(&pass1.text),
        };
        let pass3 = digit_word_pass(&t2).into_owned_parts();
        let src = compose(compose(pass1.src, pass2.1, input.len()), pass3.1, input.len());
        let text = match (pass3.0, changed2) {
            (Some(t), _) => Cow::Owned(t),
            (None, true) => Cow::Owned(t2.into_owned()),
            (None, false) => pass1.text,
        };
        Normalized { text, src }
    }

    /// The text if it was changed (owned), and the byte map.
    fn into_owned_parts(self) -> (Option<String>, Option<Vec<(u32, u32)>>) {
        match self.text {
            Cow::Owned(t) => (Some(t), self.src),
            Cow::Borrowed(_) => (None, self.src),
        }
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

/// Composes byte maps: `second` indexes the bytes of the text that `first` maps to the input.
fn compose(
    first: Option<Vec<(u32, u32)>>,
    second: Option<Vec<(u32, u32)>>,
    input_len: usize,
) -> Option<Vec<(u32, u32)>> {
    match (first, second) {
        (a, None) => a,
        (None, b) => b,
        (Some(t1), Some(t2)) => Some(
            t2.iter()
                .map(|&(s, e)| {
                    let s1 = t1.get(s as usize).map_or(input_len as u32, |r| r.0);
                    let e1 = if e == 0 { s1 } else { t1.get(e as usize - 1).map_or(input_len as u32, |r| r.1) };
                    (s1, e1)
                })
                .collect(),
        ),
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

/// What one input character becomes.
enum Fold {
    Keep,
    Drop,
    To(char),
    Str(&'static str),
}

/// Zero codepoints of Unicode decimal-digit blocks (other scripts and styled digits).
const DIGIT_ZEROS: &[u32] = &[
    0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6, 0x0D66, 0x0DE6, 0x0E50,
    0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50,
    0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10, 0x104A0, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC,
    0x1D7F6, 0x1FBF0,
];

/// Cyrillic and Greek letters that look like Latin ones (folded only inside a token that also has
/// ASCII letters, digits or "@": "mаrtin@оutlook.com" with Cyrillic а and о).
fn confusable(c: char) -> Option<char> {
    Some(match c {
        'а' => 'a',
        'в' => 'b',
        'е' | 'ё' => 'e',
        'к' => 'k',
        'м' => 'm',
        'н' => 'h',
        'о' => 'o',
        'р' => 'p',
        'с' => 'c',
        'т' => 't',
        'у' => 'y',
        'х' => 'x',
        'і' => 'i',
        'ј' => 'j',
        'ѕ' => 's',
        'ԁ' => 'd',
        'ӏ' => 'l',
        'ԛ' => 'q',
        'ԝ' => 'w',
        'ɡ' => 'g',
        'А' => 'A',
        'В' => 'B',
        'Е' => 'E',
        'К' => 'K',
        'М' => 'M',
        'Н' => 'H',
        'О' => 'O',
        'Р' => 'P',
        'С' => 'C',
        'Т' => 'T',
        'Х' => 'X',
        'У' => 'Y',
        'І' => 'I',
        'Ј' => 'J',
        'Ѕ' => 'S',
        'α' => 'a',
        'ε' => 'e',
        'ι' => 'i',
        'κ' => 'k',
        'ν' => 'v',
        'ο' => 'o',
        'ρ' => 'p',
        'τ' => 't',
        'υ' => 'u',
        'χ' => 'x',
        'Α' => 'A',
        'Β' => 'B',
        'Ε' => 'E',
        'Ζ' => 'Z',
        'Η' => 'H',
        'Ι' => 'I',
        'Κ' => 'K',
        'Μ' => 'M',
        'Ν' => 'N',
        'Ο' => 'O',
        'Ρ' => 'P',
        'Τ' => 'T',
        'Υ' => 'Y',
        'Χ' => 'X',
        _ => return None,
    })
}

/// A combining mark (accents, overlays such as strike-through).
fn is_combining(cp: u32) -> bool {
    matches!(cp, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

/// Compatibility folding of one non-ASCII character (an NFKC-style subset: styled, full-width,
/// circled and other-script digits and letters, spaces, dashes and quotes), and removal of
/// invisible characters (zero-width, soft hyphen, bidi controls, variation selectors).
fn fold_char(ch: char) -> Fold {
    let cp = ch as u32;
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    const TENS: [&str; 11] = ["10", "11", "12", "13", "14", "15", "16", "17", "18", "19", "20"];
    let digit = |d: u32| Fold::Str(DIGITS[(d % 10) as usize]);
    let from1 = |n: u32| if n <= 9 { digit(n) } else { Fold::Str(TENS[(n - 10).min(10) as usize]) };
    let letter = |k: u32| match char::from_u32(if k < 26 { 'A' as u32 + k } else { 'a' as u32 + k - 26 }) {
        Some(c) => Fold::To(c),
        None => Fold::Keep,
    };
    match cp {
        // Full-width ASCII block (U+FF01..U+FF5E) maps onto ASCII by a fixed offset.
        0xFF01..=0xFF5E => char::from_u32(cp - 0xFEE0).map_or(Fold::Keep, Fold::To),
        0x3000 | 0x00A0 | 0x2000..=0x200A | 0x202F | 0x205F | 0x1680 => Fold::To(' '),
        0x2028 | 0x2029 | 0x0085 => Fold::To('\n'),
        0x2010..=0x2015 | 0x2212 | 0xFE63 | 0xFE58 => Fold::To('-'),
        0x2018 | 0x2019 | 0x2032 | 0x02BC => Fold::To('\''),
        0x201C | 0x201D | 0x2033 => Fold::To('"'),
        0xFE6B => Fold::To('@'),
        0x2024 | 0xFE52 => Fold::To('.'),
        // Invisible: zero-width, soft hyphen, word joiner and invisible operators, bidi controls,
        // Mongolian vowel separator, combining grapheme joiner, variation selectors, tags, C1.
        0x200B..=0x200F
        | 0x2060..=0x2064
        | 0x2066..=0x2069
        | 0x202A..=0x202E
        | 0x061C
        | 0xFEFF
        | 0x00AD
        | 0x180E
        | 0x034F
        | 0xFE00..=0xFE0F
        | 0xE0000..=0xE007F
        | 0x0080..=0x009F => Fold::Drop,
        // Mathematical alphanumeric letters (bold, italic, script, ...): 13 alphabets of 52.
        0x1D400..=0x1D6A3 => letter((cp - 0x1D400) % 52),
        // Circled, parenthesized and dingbat digits and letters.
        0x24EA | 0x24FF | 0x1F10C => digit(0),
        0x2460..=0x2473 => from1(cp - 0x2460 + 1),
        0x2474..=0x2487 => from1(cp - 0x2474 + 1),
        0x2488..=0x249B => from1(cp - 0x2488 + 1),
        0x24F5..=0x24FE => from1(cp - 0x24F5 + 1),
        0x2776..=0x277F => from1(cp - 0x2776 + 1),
        0x2780..=0x2789 => from1(cp - 0x2780 + 1),
        0x278A..=0x2793 => from1(cp - 0x278A + 1),
        0x1F101..=0x1F10A => digit(cp - 0x1F101),
        0x24B6..=0x24CF => letter(cp - 0x24B6),
        0x24D0..=0x24E9 => letter(cp - 0x24D0 + 26),
        0x249C..=0x24B5 => letter(cp - 0x249C + 26),
        0x1F130..=0x1F149 => letter(cp - 0x1F130),
        0x1F150..=0x1F169 => letter(cp - 0x1F150),
        0x1F170..=0x1F189 => letter(cp - 0x1F170),
        // Superscript and subscript digits.
        0x2070 => digit(0),
        0x00B9 => digit(1),
        0x00B2 => digit(2),
        0x00B3 => digit(3),
        0x2074..=0x2079 => digit(cp - 0x2070),
        0x2080..=0x2089 => digit(cp - 0x2080),
        _ => match DIGIT_ZEROS.iter().find(|&&z| (z..z + 10).contains(&cp)) {
            Some(&z) => digit(cp - z),
            None => Fold::Keep,
        },
    }
}

/// Decodes an HTML character reference at the start of `s` ("&#64;", "&#x40;", "&commat;"):
/// the character and the reference's length.
fn html_entity(s: &str) -> Option<(char, usize)> {
    let b = s.as_bytes();
    if b.get(1) == Some(&b'#') {
        let hex = matches!(b.get(2), Some(b'x' | b'X'));
        let start = if hex { 3 } else { 2 };
        let n = b[start..]
            .iter()
            .take(7)
            .take_while(|c| if hex { c.is_ascii_hexdigit() } else { c.is_ascii_digit() })
            .count();
        if n == 0 {
            return None;
        }
        let v = u32::from_str_radix(&s[start..start + n], if hex { 16 } else { 10 }).ok()?;
        let c = char::from_u32(v)?;
        let len = start + n + usize::from(b.get(start + n) == Some(&b';'));
        return Some((c, len));
    }
    const NAMED: &[(&str, char)] = &[
        ("&commat;", '@'),
        ("&period;", '.'),
        ("&amp;", '&'),
        ("&lowbar;", '_'),
        ("&hyphen;", '-'),
        ("&dash;", '-'),
        ("&plus;", '+'),
        ("&num;", '#'),
        ("&nbsp;", ' '),
        ("&colon;", ':'),
        ("&sol;", '/'),
        ("&lpar;", '('),
        ("&rpar;", ')'),
        ("&quot;", '"'),
        ("&apos;", '\''),
        ("&lt;", '<'),
        ("&gt;", '>'),
    ];
    // Compared as bytes: `s` may continue with a multi-byte character right after the `&`.
    let b = s.as_bytes();
    NAMED
        .iter()
        .find(|(n, _)| b.len() >= n.len() && b[..n.len()].eq_ignore_ascii_case(n.as_bytes()))
        .map(|&(n, c)| (c, n.len()))
}

/// Decodes a run of URL escapes at the start of `s` ("%40", "%20", "%C3%A9"): the text and the
/// run's length. Only printable ASCII and whole UTF-8 characters are decoded.
fn url_escape(s: &str) -> Option<(String, usize)> {
    let b = s.as_bytes();
    let mut bytes = Vec::new();
    let mut i = 0;
    while i + 2 < b.len() && b[i] == b'%' && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() {
        let v = u8::from_str_radix(&s[i + 1..i + 3], 16).ok()?;
        bytes.push(v);
        i += 3;
        if bytes.len() >= 4 {
            break;
        }
    }
    if bytes.is_empty() {
        return None;
    }
    // The longest prefix that is printable ASCII or valid UTF-8.
    if (0x20..=0x7E).contains(&bytes[0]) {
        return Some(((bytes[0] as char).to_string(), 3));
    }
    for n in (2..=bytes.len()).rev() {
        if let Ok(t) = std::str::from_utf8(&bytes[..n]) {
            return Some((t.to_string(), 3 * n));
        }
    }
    None
}

/// Pass 1: one character at a time: HTML character references and URL escapes are decoded,
/// tabs and control characters become spaces or vanish, and non-ASCII characters are folded
/// ([`fold_char`], [`confusable`]); a combining mark after an ASCII character is dropped.
fn char_pass(input: &str) -> Normalized<'_> {
    let plain_ascii = input.is_ascii()
        && !input.bytes().any(|c| c == b'&' || c == b'%' || c == 0x7F || (c < 0x20 && c != b'\n' && c != b'\r'));
    if plain_ascii {
        return Normalized { text: Cow::Borrowed(input), src: None };
    }
    let mut b = Builder::new(input);
    let bytes = input.as_bytes();
    let mut i = 0usize;
    // Token (whitespace-delimited) flag for confusable folding, computed once per token.
    let mut token_end = 0usize;
    let mut token_latin = false;
    let mut prev_ascii = false;
    while i < input.len() {
        let Some(ch) = input[i..].chars().next() else { break };
        let end = i + ch.len_utf8();
        if i >= token_end {
            let rest = &input[i..];
            let len = rest.find(char::is_whitespace).map_or(rest.len(), |k| k.max(ch.len_utf8()));
            token_end = i + len;
            token_latin = rest[..len].bytes().any(|c| c.is_ascii_alphanumeric() || c == b'@');
        }
        if ch.is_ascii() {
            prev_ascii = true;
            match bytes[i] {
                b'&' => {
                    if let Some((c, len)) = html_entity(&input[i..]) {
                        // The decoded character is folded like any other ("&#xFF20;" is "＠").
                        match fold_char(c) {
                            Fold::Keep => b.push(c, i, i + len),
                            Fold::Drop => b.replace("", i, i + len),
                            Fold::To(d) => b.push(d, i, i + len),
                            Fold::Str(s) => b.replace(s, i, i + len),
                        }
                        i += len;
                        continue;
                    }
                    b.keep(i, end);
                }
                b'%' => {
                    if let Some((t, len)) = url_escape(&input[i..]) {
                        b.replace(&t, i, i + len);
                        i += len;
                        continue;
                    }
                    b.keep(i, end);
                }
                b'\t' | 0x0B | 0x0C => b.push(' ', i, end),
                b'\n' | b'\r' => b.keep(i, end),
                c if c < 0x20 || c == 0x7F => b.replace("", i, end),
                _ => b.keep(i, end),
            }
            i = end;
            continue;
        }
        let cp = ch as u32;
        if is_combining(cp) {
            if prev_ascii {
                b.replace("", i, end);
            } else {
                b.keep(i, end);
            }
            i = end;
            continue;
        }
        let folded = match fold_char(ch) {
            Fold::Keep => match confusable(ch) {
                Some(c) if token_latin => Fold::To(c),
                _ => Fold::Keep,
            },
            f => f,
        };
        prev_ascii = false;
        match folded {
            Fold::Keep => b.keep(i, end),
            Fold::Drop => b.replace("", i, end),
            Fold::To(c) => {
                prev_ascii = c.is_ascii();
                b.push(c, i, end);
            }
            Fold::Str(s) => {
                prev_ascii = true;
                b.replace(s, i, end);
            }
        }
        i = end;
    }
    b.finish()
}

/// Pass 2: spaced-out characters are joined. A run of at least six single characters (ASCII
/// letters, digits, "@._-+()#/") separated by single spaces or line breaks becomes one token when
/// it holds an "@" ("d a n . m o s s @ g m x . d e") or at least five digits with letters or
/// punctuation ("D E 7 2 - 7 6 0 5", "4 0 9 - 6 2 - 1 1 8 7"); a run of digits alone keeps single
/// spaces between them (line breaks become spaces), which the digit-run rules read as spaced digits.
fn spaced_pass(text: &str) -> Normalized<'_> {
    let b = text.as_bytes();
    let atom = |c: u8| c.is_ascii_alphanumeric() || b"@._-+()#/".contains(&c);
    let sep_len = |i: usize| -> usize {
        match b.get(i) {
            Some(b' ' | b'\n') => 1,
            Some(b'\r') => {
                if b.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                }
            }
            _ => 0,
        }
    };
    // Runs: (start, end) byte ranges, plus whether to join (true) or respace (false).
    let mut runs: Vec<(usize, usize, bool)> = Vec::new();
    let mut i = 0usize;
    while i < b.len() {
        let isolated_start = i == 0 || !atom(b[i - 1]);
        if !(atom(b[i]) && isolated_start && (i + 1 == b.len() || sep_len(i + 1) > 0)) {
            i += 1;
            continue;
        }
        let start = i;
        let (mut n, mut digits, mut letters, mut punct, mut at, mut newline) =
            (0usize, 0usize, 0usize, 0usize, false, false);
        let mut j = i;
        let mut end;
        loop {
            // b[j] is an atom followed by a separator or the end.
            n += 1;
            match b[j] {
                c if c.is_ascii_digit() => digits += 1,
                c if c.is_ascii_alphabetic() => letters += 1,
                b'@' => at = true,
                _ => punct += 1,
            }
            end = j + 1;
            let sl = sep_len(j + 1);
            let next = j + 1 + sl;
            if sl == 0 || next >= b.len() || !atom(b[next]) {
                break;
            }
            // The next atom must stand alone too (followed by a separator or the end).
            if !(next + 1 == b.len() || sep_len(next + 1) > 0) {
                break;
            }
            newline |= b[j + 1] != b' ';
            j = next;
        }
        let join = n >= 6 && (at || digits >= 5 && (letters >= 1 || punct >= 1));
        let respace = !join && newline && digits == n && n >= 4;
        if join || respace {
            runs.push((start, end, join));
        }
        i = end.max(i + 1);
    }
    if runs.is_empty() {
        return Normalized { text: Cow::Borrowed(text), src: None };
    }
    let mut out = Builder::new(text);
    let mut pos = 0usize;
    for (s, e, join) in runs {
        out.materialize(pos);
        for (off, c) in text[pos..s].char_indices() {
            out.keep(pos + off, pos + off + c.len_utf8());
        }
        for k in s..e {
            if atom(b[k]) {
                out.replace(&text[k..k + 1], k, k + 1);
            } else if !join && b[k] != b'\r' {
                out.replace(" ", k, k + 1);
            } else {
                out.replace("", k, k + 1);
            }
        }
        pos = e;
    }
    for (off, c) in text[pos..].char_indices() {
        out.keep(pos + off, pos + off + c.len_utf8());
    }
    out.finish()
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

/// The two-digit value of a tens word `tens` followed by `rest` (and how many tokens of `rest` it
/// used): "et"/"y"/"and" are skipped, a digit 1..=9 is added, and after 60 and 80 a "dix"/"onze"..
/// (French 70..79, 90..99) too.
fn tens_value(tens: u8, rest: &[(usize, usize, Tok)]) -> (u8, usize) {
    let mut used = 0usize;
    let mut v = tens;
    let mut k = 0usize;
    if matches!(rest.first(), Some(&(_, _, Tok::And))) {
        k = 1;
    }
    match rest.get(k) {
        Some(&(_, _, Tok::Digit(d))) if (1..=9).contains(&d) && tens != 10 || tens == 10 && (7..=9).contains(&d) => {
            v += d;
            used = k + 1;
        }
        Some(&(_, _, Tok::Tens(10))) if tens == 60 || tens == 80 => {
            v += 10;
            used = k + 1;
            if let Some(&(_, _, Tok::Digit(d))) = rest.get(k + 1) {
                if (7..=9).contains(&d) {
                    v += d;
                    used += 1;
                }
            }
        }
        Some(&(_, _, Tok::Pair(p))) if (tens == 60 || tens == 80) && p < 20 => {
            v += p;
            used = k + 1;
        }
        _ => {}
    }
    (v, used)
}

/// Tens words (phone numbers are often read in pairs: "zéro six, douze, quarante-huit").
fn tens_word(w: &str) -> Option<u8> {
    Some(match w {
        "dix" | "ten" | "diez" | "zehn" => 10,
        "vingt" | "vingts" | "twenty" | "veinte" | "zwanzig" => 20,
        "trente" | "thirty" | "treinta" | "dreißig" | "dreissig" => 30,
        "quarante" | "forty" | "cuarenta" | "vierzig" => 40,
        "cinquante" | "fifty" | "cincuenta" | "fünfzig" | "fuenfzig" => 50,
        "soixante" | "sixty" | "sesenta" | "sechzig" => 60,
        "seventy" | "setenta" | "siebzig" => 70,
        "eighty" | "ochenta" | "achtzig" => 80,
        "ninety" | "noventa" | "neunzig" => 90,
        _ => return None,
    })
}

/// Single words for 11..=29 ("onze", "quince", "veintitrés", "twelve", "zwölf").
fn pair_word(w: &str) -> Option<u8> {
    Some(match w {
        "onze" | "eleven" | "once" | "elf" => 11,
        "douze" | "twelve" | "doce" | "zwölf" | "zwoelf" => 12,
        "treize" | "thirteen" | "trece" | "dreizehn" => 13,
        "quatorze" | "fourteen" | "catorce" | "vierzehn" => 14,
        "quinze" | "fifteen" | "quince" | "fünfzehn" => 15,
        "seize" | "sixteen" | "dieciséis" | "dieciseis" | "sechzehn" => 16,
        "seventeen" | "diecisiete" | "siebzehn" => 17,
        "eighteen" | "dieciocho" | "achtzehn" => 18,
        "nineteen" | "diecinueve" | "neunzehn" => 19,
        "veintiuno" | "veintiún" => 21,
        "veintidós" | "veintidos" => 22,
        "veintitrés" | "veintitres" => 23,
        "veinticuatro" => 24,
        "veinticinco" => 25,
        "veintiséis" | "veintiseis" => 26,
        "veintisiete" => 27,
        "veintiocho" => 28,
        "veintinueve" => 29,
        _ => return None,
    })
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
    /// A tens word: "vingt", "treinta", "forty", "dix" (value 10..=90).
    Tens(u8),
    /// A two-digit word: "douze", "quince", "veinticuatro", "eleven" (value 11..=29).
    Pair(u8),
    /// "et"/"y"/"and"/"und" between a tens word and a digit ("trente et un", "treinta y cuatro").
    And,
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
    if w.len() > 14 {
        return (we, Tok::Other); // no number word is longer ("veinticuatro", "diecinueve")
    }
    let kind = match word_digit(w) {
        Some(d) => Tok::Digit(d),
        None => match w.to_lowercase().as_str() {
            "double" => Tok::Repeat(2),
            "triple" => Tok::Repeat(3),
            "plus" | "más" | "mas" => Tok::Plus,
            "et" | "y" | "and" | "und" => Tok::And,
            w => match tens_word(w).map(Tok::Tens).or_else(|| pair_word(w).map(Tok::Pair)) {
                Some(t) => t,
                None => Tok::Other,
            },
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
        if !matches!(tok, Tok::Digit(_) | Tok::Repeat(_) | Tok::Plus | Tok::Tens(_) | Tok::Pair(_)) {
            i = end.max(i + 1);
            continue;
        }
        let mut j = i;
        let mut last_end = i;
        let mut words = 0usize;
        let mut han = false;
        let mut sep_len = 0usize;
        let mut after_tens = false;
        while j < text.len() {
            let (e, t) = token_at(text, j);
            match t {
                Tok::Digit(_) | Tok::Tens(_) | Tok::Pair(_) => {
                    words += 1;
                    han |= !text[j..e].is_ascii();
                    last_end = e;
                    sep_len = 0;
                    after_tens = matches!(t, Tok::Tens(_));
                }
                Tok::And if after_tens => {
                    sep_len = 0;
                    after_tens = false;
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
        // The run's tokens without separators, then numbers read in pairs are combined:
        // "quarante-huit" 48, "soixante-dix" 70, "quatre-vingt-dix-sept" 97, "treinta y cuatro" 34.
        let mut toks: Vec<(usize, usize, Tok)> = Vec::new();
        let mut j = run_start;
        while j < run_end {
            let (e, t) = token_at(text, j);
            if !matches!(t, Tok::Sep | Tok::Other) {
                toks.push((j, e, t));
            }
            j = e.max(j + 1);
        }
        let mut repeat = 1u8;
        let mut k = 0usize;
        while k < toks.len() {
            let (ts, te, t) = toks[k];
            match t {
                Tok::Digit(4) if matches!(toks.get(k + 1), Some(&(_, _, Tok::Tens(20)))) => {
                    // "quatre-vingt(s)": 80, possibly followed by "dix"/"onze".. or a digit.
                    let (v, used) = tens_value(80, &toks[k + 2..]);
                    let end = toks[k + 1 + used].1;
                    b.replace(&format!("{v:02}"), ts, end);
                    k += 2 + used;
                    continue;
                }
                Tok::Digit(d) => {
                    for _ in 0..repeat {
                        b.push((b'0' + d) as char, ts, te);
                    }
                    repeat = 1;
                }
                Tok::Tens(v) => {
                    let (v, used) = tens_value(v, &toks[k + 1..]);
                    let end = toks[k + used].1;
                    b.replace(&format!("{v:02}"), ts, end);
                    k += 1 + used;
                    continue;
                }
                Tok::Pair(v) => b.replace(&format!("{v:02}"), ts, te),
                Tok::Repeat(n) => repeat = n,
                Tok::Plus => b.push('+', ts, te),
                Tok::Ascii => {
                    for p in ts..te {
                        b.replace(&text[p..p + 1], p, p + 1);
                    }
                }
                _ => {}
            }
            k += 1;
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
