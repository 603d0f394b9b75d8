//! Check-digit algorithms of the identifiers the detector validates.
//!
//! All functions take ASCII input and return `false` (never panic) on anything malformed.

/// Luhn (ISO/IEC 7812-1): payment cards, Canadian SIN.
pub(crate) fn luhn(digits: &[u8]) -> bool {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut sum = 0u32;
    for (i, &b) in digits.iter().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

/// IBAN mod-97 (ISO 13616) plus the per-country length table. `s`: uppercase, no spaces.
pub(crate) fn iban(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 15 || b.len() > 34 || !b.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let (Some(cc), Some(ck)) = (s.get(0..2), s.get(2..4)) else { return false };
    if !cc.bytes().all(|c| c.is_ascii_uppercase()) || !ck.bytes().all(|c| c.is_ascii_digit()) {
        return false;
    }
    match iban_length(cc) {
        Some(n) if n == b.len() => {}
        _ => return false,
    }
    let mut rem: u32 = 0;
    for &c in b[4..].iter().chain(&b[..4]) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

/// IBAN length by country (SWIFT IBAN registry).
fn iban_length(cc: &str) -> Option<usize> {
    Some(match cc {
        "NO" => 15,
        "BE" => 16,
        "DK" | "FI" | "FO" | "GL" | "NL" => 18,
        "MK" | "SI" => 19,
        "AT" | "BA" | "EE" | "KZ" | "LT" | "LU" | "XK" => 20,
        "CH" | "CR" | "HR" | "LI" | "LV" => 21,
        "BG" | "BH" | "DE" | "GB" | "GE" | "IE" | "ME" | "RS" | "VA" => 22,
        "AE" | "GI" | "IL" | "IQ" | "TL" => 23,
        "AD" | "CZ" | "ES" | "MD" | "PK" | "RO" | "SA" | "SE" | "SK" | "TN" | "VG" => 24,
        "PT" | "ST" => 25,
        "IS" | "TR" => 26,
        "FR" | "GR" | "IT" | "MC" | "MR" | "SM" => 27,
        "AL" | "AZ" | "BY" | "CY" | "DO" | "GT" | "HU" | "LB" | "PL" | "SV" => 28,
        "BR" | "EG" | "PS" | "QA" | "UA" => 29,
        "JO" | "KW" | "MU" => 30,
        "MT" | "SC" => 31,
        "LC" => 32,
        "RU" => 33,
        _ => return None,
    })
}

/// ABA routing number checksum (3-7-1 weights). `d`: exactly nine ASCII digits.
pub(crate) fn aba(d: &[u8]) -> bool {
    if d.len() != 9 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let v: Vec<u32> = d.iter().map(|&b| u32::from(b - b'0')).collect();
    let s = 3 * (v[0] + v[3] + v[6]) + 7 * (v[1] + v[4] + v[7]) + (v[2] + v[5] + v[8]);
    // Valid first two digits: 00-12, 21-32, 61-72, 80.
    let prefix = v[0] * 10 + v[1];
    let prefix_ok = matches!(prefix, 0..=12 | 21..=32 | 61..=72 | 80);
    s.is_multiple_of(10) && prefix_ok && d.iter().any(|&b| b != b'0')
}

const VERHOEFF_D: [[u8; 10]; 10] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];
const VERHOEFF_P: [[u8; 10]; 8] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
];

/// Verhoeff check (Indian Aadhaar).
pub(crate) fn verhoeff(digits: &[u8]) -> bool {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut c = 0usize;
    for (i, &b) in digits.iter().rev().enumerate() {
        c = usize::from(VERHOEFF_D[c][usize::from(VERHOEFF_P[i % 8][usize::from(b - b'0')])]);
    }
    c == 0
}

/// Aadhaar: 12 digits, first digit 2-9, Verhoeff check digit.
pub(crate) fn aadhaar(d: &[u8]) -> bool {
    d.len() == 12 && matches!(d[0], b'2'..=b'9') && verhoeff(d)
}

const DNI_LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";

/// Spanish DNI (8 digits + letter) or NIE (X/Y/Z + 7 digits + letter). `s`: no separators.
pub(crate) fn es_dni(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 9 {
        return false;
    }
    let first = match b[0].to_ascii_uppercase() {
        b'X' => b'0',
        b'Y' => b'1',
        b'Z' => b'2',
        c if c.is_ascii_digit() => c,
        _ => return false,
    };
    if !b[1..8].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut n: u32 = u32::from(first - b'0');
    for &c in &b[1..8] {
        n = n * 10 + u32::from(c - b'0');
    }
    DNI_LETTERS.get((n % 23) as usize) == Some(&b[8].to_ascii_uppercase())
}

/// Italian codice fiscale (16 characters, check letter; omocodia letters allowed).
pub(crate) fn it_codice_fiscale(s: &str) -> bool {
    const ODD: [u32; 26] =
        [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23];
    let b = s.as_bytes();
    if b.len() != 16 || !b.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let mut t = 0u32;
    for (i, &c) in b[..15].iter().enumerate() {
        let c = c.to_ascii_uppercase();
        let idx = if c.is_ascii_digit() { u32::from(c - b'0') } else { u32::from(c - b'A') };
        t += if i % 2 == 0 { ODD[idx as usize] } else { idx };
    }
    u32::from(b[15].to_ascii_uppercase()) == u32::from(b'A') + t % 26
}

/// Chinese resident identity number (18 characters, ISO 7064 MOD 11-2) with a plausible birth date.
pub(crate) fn cn_resident_id(s: &str) -> bool {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const MAP: &[u8; 11] = b"10X98765432";
    let b = s.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = b[..17].iter().zip(W).map(|(&c, w)| u32::from(c - b'0') * w).sum();
    if MAP.get((sum % 11) as usize) != Some(&b[17].to_ascii_uppercase()) {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> u32 { b[r].iter().fold(0, |a, &c| a * 10 + u32::from(c - b'0')) };
    let (y, m, d) = (num(6..10), num(10..12), num(12..14));
    (1900..=2030).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d)
}

/// French NIR (numéro de sécurité sociale): 13 characters (2A/2B Corsica) + 2-digit key.
/// `s`: no separators.
pub(crate) fn fr_nir(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 15 || !matches!(b[0], b'1' | b'2' | b'3' | b'4' | b'7' | b'8') {
        return false;
    }
    let month = (b[3], b[4]);
    if !month.0.is_ascii_digit() || !month.1.is_ascii_digit() {
        return false;
    }
    let mut n: u64 = 0;
    for (i, &c) in b[..13].iter().enumerate() {
        let c = c.to_ascii_uppercase();
        // Corsica: 2A counts as 19, 2B as 18 (replacing the two characters "2A"/"2B").
        if i == 6 && (c == b'A' || c == b'B') {
            if b[5] != b'2' {
                return false;
            }
            n = (n / 10) * 100 + if c == b'A' { 19 } else { 18 };
            continue;
        }
        if !c.is_ascii_digit() {
            return false;
        }
        n = n * 10 + u64::from(c - b'0');
    }
    if !b[13].is_ascii_digit() || !b[14].is_ascii_digit() {
        return false;
    }
    let key = u64::from(b[13] - b'0') * 10 + u64::from(b[14] - b'0');
    97 - n % 97 == key
}

/// US Social Security number area/group/serial rules (format AAA-GG-SSSS). `d`: nine digits.
pub(crate) fn us_ssn(d: &[u8]) -> bool {
    if d.len() != 9 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let area = &d[0..3];
    area != b"000" && area != b"666" && d[0] != b'9' && &d[3..5] != b"00" && &d[5..9] != b"0000"
}

/// UK National Insurance number prefix/suffix rules. `s`: no spaces, uppercase.
pub(crate) fn uk_nino(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 9 {
        return false;
    }
    let (p0, p1) = (b[0], b[1]);
    let bad_first = b"DFIQUV";
    let bad_second = b"DFIOQUV";
    p0.is_ascii_uppercase()
        && p1.is_ascii_uppercase()
        && !bad_first.contains(&p0)
        && !bad_second.contains(&p1)
        && !matches!(&b[0..2], b"BG" | b"GB" | b"KN" | b"NK" | b"NT" | b"TN" | b"ZZ")
        && b[2..8].iter().all(u8::is_ascii_digit)
        && matches!(b[8], b'A'..=b'D')
}

/// German tax id (Steuerliche Identifikationsnummer): 11 digits, ISO 7064 MOD 11,10.
pub(crate) fn de_steuer_id(d: &[u8]) -> bool {
    if d.len() != 11 || !d.iter().all(u8::is_ascii_digit) || d[0] == b'0' {
        return false;
    }
    let mut p = 10u32;
    for &c in &d[..10] {
        let mut s = (u32::from(c - b'0') + p) % 10;
        if s == 0 {
            s = 10;
        }
        p = (2 * s) % 11;
    }
    let check = (11 - p) % 10;
    check == u32::from(d[10] - b'0')
}

/// ICAO 9303 check digit (weights 7-3-1), used by the German ID card serial number.
/// `s`: the body followed by its check digit.
pub(crate) fn icao_check(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 2 {
        return false;
    }
    let (body, chk) = b.split_at(b.len() - 1);
    let mut t = 0u32;
    for (i, &c) in body.iter().enumerate() {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        t += v * [7, 3, 1][i % 3];
    }
    chk[0].is_ascii_digit() && t % 10 == u32::from(chk[0] - b'0')
}

/// Brazilian CPF: 11 digits with two mod-11 check digits.
pub(crate) fn br_cpf(d: &[u8]) -> bool {
    if d.len() != 11 || !d.iter().all(u8::is_ascii_digit) || d.iter().all(|&c| c == d[0]) {
        return false;
    }
    let v: Vec<u32> = d.iter().map(|&c| u32::from(c - b'0')).collect();
    let check = |n: usize| -> u32 {
        let s: u32 = (0..n).map(|i| v[i] * (n as u32 + 1 - i as u32)).sum();
        let r = (s * 10) % 11;
        if r == 10 {
            0
        } else {
            r
        }
    };
    check(9) == v[9] && check(10) == v[10]
}

/// Dutch BSN: 9 digits, "11-proof" with weights 9..2 and -1.
pub(crate) fn nl_bsn(d: &[u8]) -> bool {
    if d.len() != 9 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut s: i32 = 0;
    for (i, &c) in d[..8].iter().enumerate() {
        s += i32::from(c - b'0') * (9 - i as i32);
    }
    s -= i32::from(d[8] - b'0');
    s != 0 && s % 11 == 0
}

/// UK NHS number: 10 digits, mod-11 check digit.
pub(crate) fn uk_nhs(d: &[u8]) -> bool {
    if d.len() != 10 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let s: u32 = d[..9].iter().enumerate().map(|(i, &c)| u32::from(c - b'0') * (10 - i as u32)).sum();
    let c = 11 - s % 11;
    let c = if c == 11 { 0 } else { c };
    c != 10 && c == u32::from(d[9] - b'0')
}

/// French RIB key: `97 - (89·bank + 15·branch + 3·account) mod 97`, letters of the account number
/// mapped to digits as the banks do (A/J → 1, B/K/S → 2, … I/R/Z → 9). `bank` and `branch`: five
/// digits each; `account`: eleven digits or letters; `key`: two digits.
pub(crate) fn fr_rib(bank: &str, branch: &str, account: &str, key: &str) -> bool {
    if bank.len() != 5 || branch.len() != 5 || account.len() != 11 || key.len() != 2 {
        return false;
    }
    let num = |s: &str| -> Option<u64> {
        let mut v = 0u64;
        for c in s.bytes() {
            let d = match c {
                b'0'..=b'9' => u64::from(c - b'0'),
                b'A'..=b'I' => u64::from(c - b'A') + 1,
                b'J'..=b'R' => u64::from(c - b'J') + 1,
                b'S'..=b'Z' => u64::from(c - b'S') + 2,
                _ => return None,
            };
            v = v * 10 + d;
        }
        Some(v)
    };
    let (Some(b), Some(g), Some(a), Some(k)) = (num(bank), num(branch), num(account), num(key)) else {
        return false;
    };
    let r = (89 * b + 15 * g + 3 * (a % 97)) % 97;
    97 - r == k
}

/// Singapore NRIC/FIN (S, T, F, G series): a letter, seven digits and a check letter.
pub(crate) fn sg_nric(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 9 || !b[1..8].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut t: u32 = [2u32, 7, 6, 5, 4, 3, 2].iter().zip(&b[1..8]).map(|(w, &c)| w * u32::from(c - b'0')).sum();
    let table: &[u8] = match b[0] {
        b'S' => b"JZIHGFEDCBA",
        b'T' => {
            t += 4;
            b"JZIHGFEDCBA"
        }
        b'F' => b"XWUTRQPNMLK",
        b'G' => {
            t += 4;
            b"XWUTRQPNMLK"
        }
        _ => return false,
    };
    table[(t % 11) as usize] == b[8]
}

/// Mexican CURP: 18 characters, the last a check digit over the first 17.
pub(crate) fn mx_curp(s: &str) -> bool {
    const ALPHABET: &str = "0123456789ABCDEFGHIJKLMNÑOPQRSTUVWXYZ";
    let chars: Vec<char> = s.chars().collect();
    if chars.len() != 18 || !chars[17].is_ascii_digit() {
        return false;
    }
    let mut t = 0u32;
    for (i, c) in chars[..17].iter().enumerate() {
        let Some(v) = ALPHABET.chars().position(|a| a == *c) else { return false };
        t += v as u32 * (18 - i as u32);
    }
    (10 - t % 10) % 10 == chars[17].to_digit(10).unwrap_or(99)
}

/// Australian Medicare card number: 10 digits (the 10th the issue number), first 2–6, the 9th a
/// check digit over the first eight (weights 1, 3, 7, 9).
pub(crate) fn au_medicare(d: &[u8]) -> bool {
    if d.len() != 10 || !d.iter().all(u8::is_ascii_digit) || !(b'2'..=b'6').contains(&d[0]) {
        return false;
    }
    let s: u32 = [1u32, 3, 7, 9, 1, 3, 7, 9].iter().zip(d).map(|(w, &c)| w * u32::from(c - b'0')).sum();
    s % 10 == u32::from(d[8] - b'0')
}

/// Australian tax file number: 9 digits, weighted sum divisible by 11.
pub(crate) fn au_tfn(d: &[u8]) -> bool {
    if d.len() != 9 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let s: u32 = [1u32, 4, 3, 7, 5, 8, 6, 9, 10].iter().zip(d).map(|(w, &c)| w * u32::from(c - b'0')).sum();
    s % 11 == 0
}

/// Belgian national register number: 11 digits, the last two `97 - (first nine mod 97)` (with a
/// leading 2 for births from 2000).
pub(crate) fn be_national(d: &[u8]) -> bool {
    if d.len() != 11 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let n = |s: &[u8]| s.iter().fold(0u64, |v, &c| v * 10 + u64::from(c - b'0'));
    let (base, key) = (n(&d[..9]), n(&d[9..]));
    97 - base % 97 == key || 97 - (2_000_000_000 + base) % 97 == key
}

/// Polish PESEL: 11 digits, weights 1, 3, 7, 9 repeated, and a month that encodes the century.
pub(crate) fn pl_pesel(d: &[u8]) -> bool {
    if d.len() != 11 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let v = |i: usize| u32::from(d[i] - b'0');
    let month = (v(2) * 10 + v(3)) % 20;
    let day = v(4) * 10 + v(5);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return false;
    }
    let s: u32 = [1u32, 3, 7, 9, 1, 3, 7, 9, 1, 3].iter().enumerate().map(|(i, w)| w * v(i)).sum();
    (10 - s % 10) % 10 == v(10)
}

/// South Korean resident registration number: YYMMDD, then a sex/century digit 1–8 and six more.
/// (Numbers issued since October 2020 have no check digit, so only the shape is checked.)
pub(crate) fn kr_rrn_shape(d: &[u8]) -> bool {
    if d.len() != 13 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let v = |i: usize| u32::from(d[i] - b'0');
    let (month, day) = (v(2) * 10 + v(3), v(4) * 10 + v(5));
    (1..=12).contains(&month) && (1..=31).contains(&day) && (1..=8).contains(&v(6))
}

/// Japanese My Number (individual number): 12 digits, the last a mod-11 check digit.
pub(crate) fn jp_my_number(d: &[u8]) -> bool {
    if d.len() != 12 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let s: u32 = (1..=11u32)
        .map(|n| {
            let p = u32::from(d[11 - n as usize] - b'0');
            p * if n <= 6 { n + 1 } else { n - 5 }
        })
        .sum();
    let r = s % 11;
    let check = if r <= 1 { 0 } else { 11 - r };
    check == u32::from(d[11] - b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    // Published examples from the identifiers' own documentation or Wikipedia articles.
    #[test]
    fn published_examples_validate() {
        assert!(luhn(b"4111111111111111"));
        assert!(!luhn(b"4111111111111112"));
        assert!(iban("DE89370400440532013000"));
        assert!(iban("GB82WEST12345698765432"));
        assert!(!iban("GB82WEST12345698765433"));
        assert!(!iban("DE8937040044053201300")); // wrong length
        assert!(aba(b"011000015")); // Federal Reserve Bank of Boston
        assert!(!aba(b"011000016"));
        assert!(verhoeff(b"2363")); // Verhoeff article example (236 + check 3)
        assert!(es_dni("12345678Z"));
        assert!(!es_dni("12345678A"));
        assert!(es_dni("X1234567L"));
        assert!(it_codice_fiscale("RSSMRA85T10A562S"));
        assert!(!it_codice_fiscale("RSSMRA85T10A562T"));
        assert!(cn_resident_id("11010519491231002X"));
        assert!(!cn_resident_id("110105194912310021"));
        assert!(fr_nir("255081416802538"));
        assert!(fr_nir("269052A02110408")); // Corsica (2A), key computed with 2A -> 19
        assert!(!fr_nir("269052A02110409"));
        assert!(us_ssn(b"536907841"));
        assert!(!us_ssn(b"666123456"));
        assert!(uk_nino("AB123456C"));
        assert!(!uk_nino("GB123456C"));
        assert!(de_steuer_id(b"86095742719")); // BZSt sample
        assert!(icao_check("T220001293")); // German ID card specimen
        assert!(br_cpf(b"52998224725"));
        assert!(nl_bsn(b"111222333"));
        assert!(uk_nhs(b"9434765919"));
        assert!(fr_rib("20041", "01005", "91153162115", "13"));
        assert!(!fr_rib("20041", "01005", "91153162115", "14"));
        assert!(fr_rib("30002", "00550", "0000157841Z", "25")); // letters in the account number
        assert!(sg_nric("S1234567D"));
        assert!(sg_nric("T0123456G"));
        assert!(!sg_nric("S1234567E"));
        assert!(mx_curp("GOMA850312MDFRRN09"));
        assert!(!mx_curp("GOMA850312MDFRRN08"));
        assert!(au_medicare(b"2123456701"));
        assert!(!au_medicare(b"2123456711"));
        assert!(au_tfn(b"123456782"));
        assert!(!au_tfn(b"123456783"));
        assert!(be_national(b"85073030943"));
        assert!(!be_national(b"85073030944"));
        assert!(pl_pesel(b"44051401359"));
        assert!(pl_pesel(b"02070803628"));
        assert!(!pl_pesel(b"44051401358"));
        assert!(kr_rrn_shape(b"8504122445445"));
        assert!(!kr_rrn_shape(b"8513122445445"));
        assert!(jp_my_number(b"123456789018"));
        assert!(!jp_my_number(b"123456789019"));
    }

    #[test]
    fn malformed_input_is_rejected_without_panicking() {
        for s in ["", "X", "ÄÖÜ", "12", "DE", "DE89", "🙂🙂🙂🙂🙂🙂🙂🙂🙂"] {
            let b = s.as_bytes();
            let _ = (iban(s), aba(b), aadhaar(b), es_dni(s), it_codice_fiscale(s), cn_resident_id(s), fr_nir(s));
            let _ = (us_ssn(b), uk_nino(s), de_steuer_id(b), icao_check(s), br_cpf(b), nl_bsn(b), uk_nhs(b));
            let _ = (fr_rib(s, s, s, s), sg_nric(s), mx_curp(s), au_medicare(b), au_tfn(b), be_national(b));
            let _ = (pl_pesel(b), kr_rrn_shape(b), jp_my_number(b));
        }
    }
}
