//! The SuwiML simple types dkd reads and writes, each a validated newtype.
//!
//! Validation lives here, once, so the wire parser, the store, the import and the admin API all
//! refuse the same values for the same reasons. Nothing here does I/O.

use std::fmt;

/// Why a value is not a valid SuwiML simple type. The text is shown to integrators as-is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TypeError(pub String);

fn err(msg: impl Into<String>) -> TypeError {
    TypeError(msg.into())
}

/// A Burgerservicenummer: nine digits that pass the 11-test.
///
/// The official schema only checks "nine digits"; dkd also applies the 11-test because a BSN that
/// fails it can never identify a person and is always a caller's mistake.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Bsn([u8; 9]);

/// How a candidate BSN failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BsnError {
    /// Not exactly nine ASCII digits: a schema violation.
    Format,
    /// Nine digits, but the 11-test fails.
    ElevenTest,
}

impl Bsn {
    /// Parses and checks a BSN.
    pub fn parse(s: &str) -> Result<Bsn, BsnError> {
        let b = s.as_bytes();
        if b.len() != 9 || !b.iter().all(u8::is_ascii_digit) {
            return Err(BsnError::Format);
        }
        let mut digits = [0u8; 9];
        digits.copy_from_slice(b);
        if !eleven_test(&digits) {
            return Err(BsnError::ElevenTest);
        }
        Ok(Bsn(digits))
    }

    /// The nine ASCII digits, as stored and as written on the wire.
    pub fn as_str(&self) -> &str {
        // The constructor only admits ASCII digits.
        std::str::from_utf8(&self.0).unwrap_or("000000000")
    }

    /// The key bytes the store uses.
    pub fn as_bytes(&self) -> &[u8; 9] {
        &self.0
    }

    /// A form safe for logs at info level: only the last three digits.
    pub fn masked(&self) -> String {
        format!("******{}", &self.as_str()[6..])
    }

    /// Builds a valid BSN from its first eight digits, choosing the check digit, if one exists.
    pub fn from_prefix(prefix: u32) -> Option<Bsn> {
        if prefix > 99_999_999 {
            return None;
        }
        let s = format!("{prefix:08}");
        let mut digits = [0u8; 9];
        digits[..8].copy_from_slice(s.as_bytes());
        let sum: u32 = (0..8)
            .map(|i| (9 - i as u32) * u32::from(digits[i] - b'0'))
            .sum();
        let check = sum % 11;
        if check > 9 {
            return None;
        }
        digits[8] = b'0' + check as u8;
        let bsn = Bsn(digits);
        // A BSN of all zeros passes the arithmetic but is never issued.
        (bsn.as_str() != "000000000").then_some(bsn)
    }
}

/// The 11-test ("elfproef") for BSNs: 9·d1 + 8·d2 + … + 2·d8 − 1·d9 must be a multiple of 11.
fn eleven_test(d: &[u8; 9]) -> bool {
    let mut sum: i32 = 0;
    for (i, c) in d.iter().enumerate().take(8) {
        sum += (9 - i as i32) * i32::from(c - b'0');
    }
    sum -= i32::from(d[8] - b'0');
    sum % 11 == 0 && d.iter().any(|&c| c != b'0')
}

impl fmt::Debug for Bsn {
    // Debug output ends up in logs: mask it like info-level output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bsn({})", self.masked())
    }
}

impl fmt::Display for Bsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Bsn {
    type Error = TypeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Bsn::parse(&s).map_err(|e| match e {
            BsnError::Format => err("BSN must be exactly 9 digits"),
            BsnError::ElevenTest => err("BSN fails the 11-test"),
        })
    }
}

impl From<Bsn> for String {
    fn from(b: Bsn) -> String {
        b.as_str().to_owned()
    }
}

/// A SuwiML `Datum`: `YYYYMMDD`, where zeros stand for unknown parts (`19800000`, `00000000`).
///
/// Stored as the eight digits so that ordering by string is ordering by date and the wire form is
/// preserved exactly.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Datum([u8; 8]);

impl Datum {
    /// Parses a `Datum` the way the official schema pattern does, and additionally refuses dates that
    /// do not exist on the calendar (20230230) when all parts are known.
    pub fn parse(s: &str) -> Result<Datum, TypeError> {
        let b = s.as_bytes();
        if b.len() != 8 || !b.iter().all(u8::is_ascii_digit) {
            return Err(err("date must be 8 digits YYYYMMDD"));
        }
        let num = |r: std::ops::Range<usize>| -> u32 {
            b[r].iter().fold(0, |acc, c| acc * 10 + u32::from(c - b'0'))
        };
        let (y, m, d) = (num(0..4), num(4..6), num(6..8));
        if m > 12 {
            return Err(err("month must be 00-12"));
        }
        if d > 31 {
            return Err(err("day must be 00-31"));
        }
        if y == 0 {
            // The schema allows a fully unknown date, or an unknown year with a known month and day.
            let ok = (m == 0 && d == 0) || (m >= 1 && d >= 1);
            if !ok {
                return Err(err(
                    "a date with unknown year needs both month and day, or all zeros",
                ));
            }
        }
        if y > 0 && m > 0 && d > 0 && d > days_in_month(y, m) {
            return Err(err("day does not exist in that month"));
        }
        let mut out = [0u8; 8];
        out.copy_from_slice(b);
        Ok(Datum(out))
    }

    /// The eight digits.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("00000000")
    }

    /// A fully known date, from a calendar date.
    pub fn from_ymd(y: i32, m: u8, d: u8) -> Datum {
        let s = format!("{:04}{:02}{:02}", y.clamp(0, 9999), m, d);
        let mut out = [0u8; 8];
        out.copy_from_slice(s.as_bytes());
        Datum(out)
    }

    /// The calendar date, when year, month and day are all known.
    pub fn to_date(&self) -> Option<time::Date> {
        let s = self.as_str();
        let y: i32 = s[0..4].parse().ok()?;
        let m: u8 = s[4..6].parse().ok()?;
        let d: u8 = s[6..8].parse().ok()?;
        let month = time::Month::try_from(m).ok()?;
        time::Date::from_calendar_date(y, month, d).ok()
    }

    /// Today's date (UTC) as a `Datum`.
    pub fn from_date(d: time::Date) -> Datum {
        Datum::from_ymd(d.year(), d.month() as u8, d.day())
    }
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            if leap {
                29
            } else {
                28
            }
        }
    }
}

impl fmt::Debug for Datum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Datum({})", self.as_str())
    }
}

impl TryFrom<String> for Datum {
    type Error = TypeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Datum::parse(&s)
    }
}

impl From<Datum> for String {
    fn from(d: Datum) -> String {
        d.as_str().to_owned()
    }
}

/// Loonwaarde as a percentage of the statutory minimum wage, in hundredths of a percent.
///
/// On the wire it is a SuwiML `Percentage`: five digits, three integer and two decimal
/// (`04550` = 45.50 %), a project decision recorded in interface.md §1.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "u32", into = "u32")]
pub struct Percentage(u32);

impl Percentage {
    /// The largest loonwaarde dkd accepts: 100.00 %.
    pub const MAX_HUNDREDTHS: u32 = 10_000;

    /// From hundredths of a percent (4550 = 45.50 %).
    pub fn from_hundredths(h: u32) -> Result<Percentage, TypeError> {
        if h > Self::MAX_HUNDREDTHS {
            return Err(err("loonwaarde must be between 0.00 and 100.00"));
        }
        Ok(Percentage(h))
    }

    /// From hundredths, capped at 100.00 % (for generated data).
    pub fn saturating(h: u32) -> Percentage {
        Percentage(h.min(Self::MAX_HUNDREDTHS))
    }

    /// Parses a human decimal such as `45.5`, `45.50` or `45` (at most two decimals).
    pub fn parse_decimal(s: &str) -> Result<Percentage, TypeError> {
        let s = s.trim();
        let (int, frac) = match s.split_once(['.', ',']) {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        let digits_ok = |x: &str| x.bytes().all(|c| c.is_ascii_digit());
        if int.is_empty() || int.len() > 3 || !digits_ok(int) || frac.len() > 2 || !digits_ok(frac)
        {
            return Err(err(
                "loonwaarde must be a number 0.00-100.00 with at most two decimals",
            ));
        }
        let i: u32 = int.parse().map_err(|_| err("loonwaarde is not a number"))?;
        let f: u32 = match frac.len() {
            0 => 0,
            1 => {
                frac.parse::<u32>()
                    .map_err(|_| err("loonwaarde is not a number"))?
                    * 10
            }
            _ => frac
                .parse()
                .map_err(|_| err("loonwaarde is not a number"))?,
        };
        Percentage::from_hundredths(i * 100 + f)
    }

    /// Parses the five-digit wire form.
    pub fn parse_wire(s: &str) -> Result<Percentage, TypeError> {
        if s.len() != 5 || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err("Percentage must be exactly 5 digits"));
        }
        let h: u32 = s.parse().map_err(|_| err("Percentage is not a number"))?;
        Percentage::from_hundredths(h)
    }

    /// The five-digit wire form.
    pub fn wire(&self) -> String {
        format!("{:05}", self.0)
    }

    /// Hundredths of a percent.
    pub fn hundredths(&self) -> u32 {
        self.0
    }
}

impl fmt::Debug for Percentage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self)
    }
}

impl fmt::Display for Percentage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}%", self.0 / 100, self.0 % 100)
    }
}

impl TryFrom<u32> for Percentage {
    type Error = TypeError;
    fn try_from(h: u32) -> Result<Self, Self::Error> {
        Percentage::from_hundredths(h)
    }
}

impl From<Percentage> for u32 {
    fn from(p: Percentage) -> u32 {
        p.0
    }
}

/// Checks a string against a SuwiML length limit and, for names, the `\D*` pattern.
pub fn check_text(
    field: &str,
    s: &str,
    max_chars: usize,
    no_digits: bool,
) -> Result<(), TypeError> {
    let n = s.chars().count();
    if n > max_chars {
        return Err(err(format!(
            "{field} is longer than {max_chars} characters"
        )));
    }
    if no_digits && s.chars().any(|c| c.is_ascii_digit()) {
        return Err(err(format!("{field} must not contain digits")));
    }
    if s.chars().any(|c| c.is_control() && c != '\t') {
        return Err(err(format!("{field} contains control characters")));
    }
    Ok(())
}

/// Checks an exact-length code (CdTypeRvGsd, CdArbeidsvermogen, CdDoelRv).
pub fn check_code(field: &str, s: &str, len: usize) -> Result<(), TypeError> {
    if s.chars().count() != len {
        return Err(err(format!("{field} must be exactly {len} characters")));
    }
    check_text(field, s, len, false)
}

/// Checks `Voorletters`: one to six capitals, or a single `.` when unknown.
pub fn check_voorletters(s: &str) -> Result<(), TypeError> {
    let ok =
        s == "." || (!s.is_empty() && s.len() <= 6 && s.bytes().all(|c| c.is_ascii_uppercase()));
    if ok {
        Ok(())
    } else {
        Err(err("Voorletters must be 1-6 capitals A-Z, or '.'"))
    }
}

/// Checks a gemeentecode / `CdPartijSuwi` / `CdVestigingSuwi`: exactly four digits.
pub fn check_four_digits(field: &str, s: &str) -> Result<(), TypeError> {
    if s.len() == 4 && s.bytes().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(err(format!("{field} must be exactly 4 digits")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bsn_eleven_test_accepts_known_valid_numbers() {
        // 111222333 and 123456782 are the textbook valid test BSNs.
        for s in ["111222333", "123456782", "999999990"] {
            assert!(Bsn::parse(s).is_ok(), "{s} should pass");
        }
    }

    #[test]
    fn bsn_eleven_test_refuses_off_by_one_and_formats() {
        assert_eq!(Bsn::parse("123456781"), Err(BsnError::ElevenTest));
        assert_eq!(Bsn::parse("000000000"), Err(BsnError::ElevenTest));
        assert_eq!(Bsn::parse("12345678"), Err(BsnError::Format));
        assert_eq!(Bsn::parse("1234567890"), Err(BsnError::Format));
        assert_eq!(Bsn::parse("12345678a"), Err(BsnError::Format));
        assert_eq!(Bsn::parse(" 23456782"), Err(BsnError::Format));
        assert_eq!(Bsn::parse("１２３４５６７８２"), Err(BsnError::Format));
    }

    #[test]
    fn bsn_from_prefix_always_passes_eleven_test() {
        let mut made = 0;
        for p in (10_000_000..10_100_000).step_by(7) {
            if let Some(b) = Bsn::from_prefix(p) {
                assert!(Bsn::parse(b.as_str()).is_ok());
                made += 1;
            }
        }
        assert!(made > 10_000);
    }

    #[test]
    fn bsn_masked_hides_all_but_last_three() {
        let b = Bsn::parse("123456782").expect("valid");
        assert_eq!(b.masked(), "******782");
        assert!(!format!("{b:?}").contains("123456"));
    }

    #[test]
    fn datum_accepts_schema_forms() {
        for s in [
            "20240229", "19800000", "19800100", "00000000", "00000101", "20231231",
        ] {
            assert!(Datum::parse(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn datum_refuses_impossible_dates() {
        for s in [
            "20230229",
            "20231301",
            "20230132",
            "20230431",
            "2023010",
            "2023-01-01",
            "00000100",
            "00000001",
            "abcdefgh",
        ] {
            assert!(Datum::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn datum_orders_like_calendar() {
        let a = Datum::parse("20231231").expect("valid");
        let b = Datum::parse("20240101").expect("valid");
        assert!(a < b);
        assert_eq!(b.to_date().map(|d| d.ordinal()), Some(1));
        assert_eq!(Datum::parse("19800000").expect("valid").to_date(), None);
    }

    #[test]
    fn percentage_wire_is_three_integer_two_decimal_digits() {
        assert_eq!(
            Percentage::parse_decimal("45.5").expect("ok").wire(),
            "04550"
        );
        assert_eq!(
            Percentage::parse_decimal("45,50").expect("ok").wire(),
            "04550"
        );
        assert_eq!(
            Percentage::parse_decimal("100").expect("ok").wire(),
            "10000"
        );
        assert_eq!(
            Percentage::parse_decimal("0.01").expect("ok").wire(),
            "00001"
        );
        assert_eq!(
            Percentage::parse_wire("04550").expect("ok").hundredths(),
            4550
        );
    }

    #[test]
    fn percentage_refuses_out_of_range_and_precision() {
        for s in ["100.01", "101", "45.505", "-1", "", "4a", ".5", "1000"] {
            assert!(Percentage::parse_decimal(s).is_err(), "{s}");
        }
        assert!(Percentage::parse_wire("4550").is_err());
        assert!(Percentage::parse_wire("10001").is_err());
    }

    #[test]
    fn text_checks_follow_suwiml_patterns() {
        assert!(check_voorletters("JAN").is_ok());
        assert!(check_voorletters(".").is_ok());
        assert!(check_voorletters("j").is_err());
        assert!(check_voorletters("ABCDEFG").is_err());
        assert!(check_text("name", "Jansen", 200, true).is_ok());
        assert!(check_text("name", "Jansen2", 200, true).is_err());
        assert!(check_code("CdTypeRvGsd", "23", 2).is_ok());
        assert!(check_code("CdTypeRvGsd", "3", 2).is_err());
        assert!(check_four_digits("gemeentecode", "0363").is_ok());
        assert!(check_four_digits("gemeentecode", "363").is_err());
    }
}
