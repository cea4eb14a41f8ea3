//! The binary encoding of a stored person (the payload of an `r` entry, after its mutation time).
//!
//! Why not JSON: decoding the stored JSON was ~2 µs of a ~24 µs GSDReintegratieInfo answer, on
//! the path of every lookup. JSON payloads written by dkd before schema 5 still read (they start
//! with `{`, which is never a format tag), so no store has to be rewritten.
//!
//! Layout, after the format tag [`TAG_V1`]:
//!
//! ```text
//! person    = opt(str) voornamen, opt(str) voorletters, opt(str) voorvoegsel,
//!             opt(str) achternaam, opt(str) geslacht, opt(datum) geboortedat, opt(bron) bron,
//!             count, atl_relatie*
//! atl       = opt(str) arbeidsvermogen, opt(str) doel_rv, count, provision*, bron
//! provision = opt(str) registratienr, datum start, opt(datum) end, opt(str) type_code,
//!             opt(str) description, opt(varint) loonwaarde (hundredths)
//! bron      = u8 kolom, str partij, opt(str) vestiging
//! str       = varint byte length, UTF-8 bytes
//! opt(x)    = 0x00 | 0x01 x
//! datum     = the 8 ASCII digits
//! count, varint = unsigned LEB128, at most 32 bits, shortest form
//! ```
//!
//! The BSN is not in the payload: the key holds it, and a second copy could only disagree.
//! LEB128 because nearly every length and count is below 128 (one byte) while nothing caps a
//! string at 255 bytes before validation. Every part has exactly one accepted form (tags 0 or 1,
//! shortest varints, no trailing bytes), so a payload that decodes is the encoding of what it
//! decodes to: comparing encodings byte for byte is comparing persons.
//!
//! Decoding trusts nothing: every length and count is checked against the bytes left before
//! anything is allocated for it, and dates and percentages go through their validating
//! constructors. It does not run [`Person::validate`]; the writers do, before encoding.

use crate::suwiml::model::{AtlRelatie, Bron, Person, Provision};
use crate::suwiml::types::{Bsn, Datum, Percentage};
use std::borrow::Cow;

/// The first payload byte of this encoding; JSON payloads start with `{`.
pub(super) const TAG_V1: u8 = 0x01;

/// The fewest bytes an encoded AtlRelatie / Provision takes: what bounds a count before its
/// `Vec` is allocated.
const MIN_ATL_BYTES: usize = 1 + 1 + 1 + (1 + 1 + 1);
const MIN_PROVISION_BYTES: usize = 1 + 8 + 1 + 1 + 1 + 1;

/// Why a payload does not decode, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Malformed {
    /// Offset in the payload (the format tag is byte 0).
    pub(super) at: usize,
    pub(super) why: Cow<'static, str>,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "binary record: {} at byte {}", self.why, self.at)
    }
}

/// Appends the tag and the encoding of `p` (without its BSN). Fails only for a string or list
/// longer than `u32::MAX`, which validation makes impossible.
pub(super) fn encode_into(out: &mut Vec<u8>, p: &Person) -> Result<(), &'static str> {
    out.push(TAG_V1);
    put_opt_str(out, &p.voornamen)?;
    put_opt_str(out, &p.voorletters)?;
    put_opt_str(out, &p.voorvoegsel)?;
    put_opt_str(out, &p.achternaam)?;
    put_opt_str(out, &p.geslacht)?;
    put_opt_datum(out, &p.geboortedat);
    match &p.bron {
        Some(b) => {
            out.push(1);
            put_bron(out, b)?;
        }
        None => out.push(0),
    }
    put_len(out, p.atl_relaties.len())?;
    for r in &p.atl_relaties {
        put_opt_str(out, &r.arbeidsvermogen)?;
        put_opt_str(out, &r.doel_rv)?;
        put_len(out, r.provisions.len())?;
        for v in &r.provisions {
            put_opt_str(out, &v.registratienr)?;
            out.extend_from_slice(v.start.as_str().as_bytes());
            put_opt_datum(out, &v.end);
            put_opt_str(out, &v.type_code)?;
            put_opt_str(out, &v.description)?;
            match v.loonwaarde {
                Some(l) => {
                    out.push(1);
                    put_varint(out, l.hundredths());
                }
                None => out.push(0),
            }
        }
        put_bron(out, &r.bron)?;
    }
    Ok(())
}

fn put_varint(out: &mut Vec<u8>, mut n: u32) {
    while n >= 0x80 {
        out.push((n & 0x7f) as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_len(out: &mut Vec<u8>, n: usize) -> Result<(), &'static str> {
    put_varint(
        out,
        u32::try_from(n).map_err(|_| "a text or list too long for a 32-bit length")?,
    );
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), &'static str> {
    put_len(out, s.len())?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_opt_str(out: &mut Vec<u8>, s: &Option<String>) -> Result<(), &'static str> {
    match s {
        Some(s) => {
            out.push(1);
            put_str(out, s)
        }
        None => {
            out.push(0);
            Ok(())
        }
    }
}

fn put_opt_datum(out: &mut Vec<u8>, d: &Option<Datum>) {
    match d {
        Some(d) => {
            out.push(1);
            out.extend_from_slice(d.as_str().as_bytes());
        }
        None => out.push(0),
    }
}

fn put_bron(out: &mut Vec<u8>, b: &Bron) -> Result<(), &'static str> {
    out.push(b.kolom);
    put_str(out, &b.partij)?;
    put_opt_str(out, &b.vestiging)
}

/// Decodes a payload that starts with [`TAG_V1`]; `bsn` is the key's.
pub(super) fn decode(bsn: Bsn, payload: &[u8]) -> Result<Person, Malformed> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    if r.byte()? != TAG_V1 {
        return Err(r.malformed_at(0, "not the binary format tag"));
    }
    let person = Person {
        bsn,
        voornamen: r.opt(Reader::string)?,
        voorletters: r.opt(Reader::string)?,
        voorvoegsel: r.opt(Reader::string)?,
        achternaam: r.opt(Reader::string)?,
        geslacht: r.opt(Reader::string)?,
        geboortedat: r.opt(Reader::datum)?,
        bron: r.opt(Reader::bron)?,
        atl_relaties: r.list(MIN_ATL_BYTES, Reader::atl_relatie)?,
    };
    if r.pos != payload.len() {
        return Err(r.malformed(format!("{} trailing bytes", payload.len() - r.pos)));
    }
    Ok(person)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn malformed(&self, why: impl Into<Cow<'static, str>>) -> Malformed {
        self.malformed_at(self.pos, why)
    }

    fn malformed_at(&self, at: usize, why: impl Into<Cow<'static, str>>) -> Malformed {
        Malformed {
            at,
            why: why.into(),
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, Malformed> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.malformed("truncated")),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.remaining() {
            return Err(self.malformed(format!("{n} bytes declared, {} left", self.remaining())));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn varint(&mut self) -> Result<u32, Malformed> {
        let start = self.pos;
        let mut v: u32 = 0;
        for i in 0..5 {
            let b = self.byte()?;
            // The fifth byte holds bits 28-31 only, and ends the number.
            if i == 4 && b > 0x0f {
                return Err(self.malformed_at(start, "number over 32 bits"));
            }
            v |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                // A last byte of 0 after others is a longer form of a shorter number.
                if i > 0 && b == 0 {
                    return Err(self.malformed_at(start, "number not in its shortest form"));
                }
                return Ok(v);
            }
        }
        Err(self.malformed_at(start, "number over 32 bits"))
    }

    /// A count of items that take at least `min_bytes` each: refused when the bytes left could
    /// not hold them, so a corrupt count never sizes an allocation.
    fn count(&mut self, min_bytes: usize) -> Result<usize, Malformed> {
        let start = self.pos;
        let n = self.varint()? as usize;
        if n > self.remaining() / min_bytes {
            return Err(self.malformed_at(
                start,
                format!("{n} items declared, {} bytes left", self.remaining()),
            ));
        }
        Ok(n)
    }

    fn present(&mut self) -> Result<bool, Malformed> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            t => Err(self.malformed_at(self.pos - 1, format!("option tag {t:#04x}"))),
        }
    }

    fn str(&mut self) -> Result<&'a str, Malformed> {
        let n = self.varint()? as usize;
        let start = self.pos;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes)
            .map_err(|e| self.malformed_at(start + e.valid_up_to(), "text is not valid UTF-8"))
    }

    fn string(&mut self) -> Result<String, Malformed> {
        self.str().map(str::to_owned)
    }

    /// A list: its count (bounded by the bytes left, at `min_bytes` per item, before anything is
    /// allocated), then the items read by `read`.
    fn list<T>(
        &mut self,
        min_bytes: usize,
        read: impl Fn(&mut Self) -> Result<T, Malformed>,
    ) -> Result<Vec<T>, Malformed> {
        let n = self.count(min_bytes)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(read(self)?);
        }
        Ok(v)
    }

    /// An optional part: its tag, then the part read by `read` when present.
    fn opt<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, Malformed>,
    ) -> Result<Option<T>, Malformed> {
        if self.present()? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }

    fn datum(&mut self) -> Result<Datum, Malformed> {
        let start = self.pos;
        let digits = self.take(8)?;
        std::str::from_utf8(digits)
            .map_err(|_| Cow::Borrowed("date is not 8 digits"))
            .and_then(|s| Datum::parse(s).map_err(|e| Cow::Owned(format!("date: {e}"))))
            .map_err(|why| self.malformed_at(start, why))
    }

    fn bron(&mut self) -> Result<Bron, Malformed> {
        Ok(Bron {
            kolom: self.byte()?,
            partij: self.string()?,
            vestiging: self.opt(Self::string)?,
        })
    }

    fn provision(&mut self) -> Result<Provision, Malformed> {
        Ok(Provision {
            registratienr: self.opt(Self::string)?,
            start: self.datum()?,
            end: self.opt(Self::datum)?,
            type_code: self.opt(Self::string)?,
            description: self.opt(Self::string)?,
            loonwaarde: self.opt(|r| {
                let start = r.pos;
                let h = r.varint()?;
                Percentage::try_from(h)
                    .map_err(|e| r.malformed_at(start, format!("loonwaarde: {e}")))
            })?,
        })
    }

    fn atl_relatie(&mut self) -> Result<AtlRelatie, Malformed> {
        Ok(AtlRelatie {
            arbeidsvermogen: self.opt(Self::string)?,
            doel_rv: self.opt(Self::string)?,
            provisions: self.list(MIN_PROVISION_BYTES, Self::provision)?,
            bron: self.bron()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suwiml::model::KOLOM_GEMEENTE;

    fn bsn() -> Bsn {
        Bsn::parse("123456782").expect("bsn")
    }

    fn encode(p: &Person) -> Vec<u8> {
        let mut out = Vec::new();
        encode_into(&mut out, p).expect("encode");
        out
    }

    fn date(s: &str) -> Datum {
        Datum::parse(s).expect("date")
    }

    fn bare() -> Person {
        Person::with_relaties(bsn(), Vec::new())
    }

    fn provision(i: u32) -> Provision {
        Provision {
            registratienr: Some(format!("R{i}")),
            start: date("20240101"),
            end: Some(date("20261231")),
            type_code: Some("24".into()),
            description: Some(format!("Proefplaatsing {i}")),
            loonwaarde: Some(Percentage::from_hundredths(i * 1000).expect("pct")),
        }
    }

    /// Every field present, several relations and provisions, texts of every UTF-8 width.
    fn full() -> Person {
        Person {
            bsn: bsn(),
            voornamen: Some("Zoë Ŝtefan 李 😀".into()),
            voorletters: Some("ZS".into()),
            voorvoegsel: Some("van 't".into()),
            achternaam: Some("Jansen-Ålström".into()),
            geslacht: Some("2".into()),
            geboortedat: Some(date("19800229")),
            bron: Some(Bron {
                kolom: KOLOM_GEMEENTE,
                partij: "0363".into(),
                vestiging: Some("0001".into()),
            }),
            atl_relaties: (0..3)
                .map(|r| AtlRelatie {
                    arbeidsvermogen: Some("01".into()),
                    doel_rv: Some("€".into()),
                    provisions: (0..4).map(|i| provision(r * 4 + i / 2)).collect(),
                    bron: Bron {
                        kolom: 99,
                        partij: format!("{:04}", 363 + r),
                        vestiging: Some("9999".into()),
                    },
                })
                .collect(),
        }
    }

    fn edge_cases() -> Vec<Person> {
        let mut empty = full();
        for s in [
            &mut empty.voornamen,
            &mut empty.voorletters,
            &mut empty.voorvoegsel,
            &mut empty.achternaam,
            &mut empty.geslacht,
        ] {
            *s = Some(String::new());
        }
        for r in &mut empty.atl_relaties {
            r.arbeidsvermogen = Some(String::new());
            r.bron.partij = String::new();
            for v in &mut r.provisions {
                v.registratienr = Some(String::new());
                v.description = Some(String::new());
                v.type_code = Some(String::new());
            }
        }
        let mut longest = full();
        // The longest texts validation lets through, in four-byte characters (800 bytes: a
        // two-byte length), and one far beyond (a three-byte length).
        longest.voornamen = Some("😀".repeat(200));
        longest.achternaam = Some("ë".repeat(200));
        longest.voorvoegsel = Some("x".repeat(70_000));
        longest.atl_relaties[0].provisions[0].description = Some("李".repeat(100));
        longest.atl_relaties[0].provisions[0].registratienr = Some("R".repeat(15));
        let mut extremes = bare();
        extremes.geboortedat = Some(date("00000000"));
        extremes.atl_relaties = vec![AtlRelatie {
            arbeidsvermogen: None,
            doel_rv: None,
            provisions: vec![
                Provision {
                    registratienr: None,
                    start: date("00000101"),
                    end: None,
                    type_code: None,
                    description: None,
                    loonwaarde: Some(Percentage::from_hundredths(0).expect("pct")),
                },
                Provision {
                    loonwaarde: Some(
                        Percentage::from_hundredths(Percentage::MAX_HUNDREDTHS).expect("pct"),
                    ),
                    ..provision(1)
                },
            ],
            bron: Bron {
                kolom: u8::MAX,
                partij: "0000".into(),
                vestiging: None,
            },
        }];
        let mut no_provisions = full();
        no_provisions.atl_relaties[1].provisions.clear();
        vec![bare(), full(), empty, longest, extremes, no_provisions]
    }

    #[test]
    fn every_demo_person_and_every_edge_case_round_trips() {
        let people = crate::chain::demo::generate(2000, time::macros::date!(2026 - 11 - 22));
        assert_eq!(people.len(), 2000);
        for p in people.iter().chain(&edge_cases()) {
            let bytes = encode(p);
            assert_eq!(bytes[0], TAG_V1);
            assert_eq!(decode(p.bsn, &bytes).as_ref(), Ok(p), "{:?}", p.bsn);
        }
    }

    #[test]
    fn the_bsn_comes_from_the_key_not_the_payload() {
        let p = full();
        let other = Bsn::parse("111222333").expect("bsn");
        let q = decode(other, &encode(&p)).expect("decode");
        assert_eq!(q.bsn, other);
        let mut p2 = p.clone();
        p2.bsn = other;
        assert_eq!(encode(&p2), encode(&p), "the BSN is not encoded");
    }

    #[test]
    fn every_truncation_is_refused() {
        for p in edge_cases().iter().take(3) {
            let bytes = encode(p);
            for n in 0..bytes.len() {
                assert!(
                    decode(p.bsn, &bytes[..n]).is_err(),
                    "a prefix of {n} of {} bytes decoded",
                    bytes.len()
                );
            }
        }
    }

    #[test]
    fn single_byte_corruptions_are_refused_or_decode_to_what_they_encode() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            // xorshift64: a fixed, reproducible sequence.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut refused = 0;
        for p in [full(), edge_cases()[4].clone()] {
            let bytes = encode(&p);
            for _ in 0..300 {
                let mut bad = bytes.clone();
                let at = (next() % bad.len() as u64) as usize;
                let with = next() as u8;
                if bad[at] == with {
                    continue;
                }
                bad[at] = with;
                match decode(p.bsn, &bad) {
                    Err(_) => refused += 1,
                    // One accepted form per person: what decodes re-encodes to the same bytes,
                    // so the byte comparison of `upsert` stays a comparison of persons.
                    Ok(q) => assert_eq!(encode(&q), bad, "byte {at} set to {with:#04x}"),
                }
            }
        }
        assert!(refused > 100, "only {refused} corruptions refused");
    }

    fn refused(payload: &[u8]) -> String {
        match decode(bsn(), payload) {
            Err(e) => e.to_string(),
            Ok(p) => panic!("decoded {p:?}"),
        }
    }

    /// A payload up to the count of AtlRelaties, all person fields absent.
    fn up_to_relations() -> Vec<u8> {
        let mut v = vec![TAG_V1];
        v.extend_from_slice(&[0; 7]);
        v
    }

    #[test]
    fn a_huge_count_or_length_is_refused_before_allocating() {
        // Were any of these allocated as declared, the test would abort (hundreds of GB).
        let mut v = up_to_relations();
        v.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0]);
        assert!(refused(&v).contains("4294967295 items declared, 3 bytes left"));
        let mut v = up_to_relations();
        v.extend_from_slice(&[1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0]);
        assert!(refused(&v).contains("items declared"));
        let v = [TAG_V1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, b'a', b'b', b'c'];
        assert!(refused(&v).contains("4294967295 bytes declared, 3 left"));
        // A count that fits the bytes left but not items of their smallest size.
        let mut v = up_to_relations();
        v.extend_from_slice(&[2]);
        v.extend_from_slice(&[0; 11]);
        assert!(refused(&v).contains("2 items declared"));
    }

    #[test]
    fn malformed_parts_are_refused_with_a_reason() {
        let good = encode(&full());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(refused(&trailing).contains("1 trailing bytes"));
        assert!(refused(&[0x02]).contains("format tag"));
        assert!(refused(&[TAG_V1, 2]).contains("option tag 0x02"));
        assert!(refused(&[TAG_V1, 1, 2, 0xc3, 0x28]).contains("UTF-8"));
        // 0x80 0x00: zero in two bytes.
        assert!(refused(&[TAG_V1, 1, 0x80, 0x00]).contains("shortest form"));
        assert!(refused(&[TAG_V1, 1, 0x80, 0x80, 0x80, 0x80, 0x10]).contains("over 32 bits"));
        let mut v = up_to_relations();
        v[6] = 1;
        v.splice(7..7, *b"20230229");
        assert!(refused(&v).contains("date: day does not exist"));
        v.splice(7..15, *b"2023010a");
        assert!(refused(&v).contains("date must be 8 digits"));
        // A provision whose loonwaarde is 100.01 %.
        let mut v = up_to_relations();
        v.extend_from_slice(&[1, 0, 0, 1, 0]);
        v.extend_from_slice(b"20240101");
        v.extend_from_slice(&[0, 0, 0, 1, 0x91, 0x4e]);
        assert!(refused(&v).contains("loonwaarde"));
        // The same with 100.00 % and a Bron: accepted (the test above can fail only on the value).
        v.truncate(v.len() - 2);
        v.extend_from_slice(&[0x90, 0x4e, 3, 4]);
        v.extend_from_slice(b"0363");
        v.push(0);
        let p = decode(bsn(), &v).expect("valid");
        assert_eq!(
            p.atl_relaties[0].provisions[0].loonwaarde,
            Some(Percentage::from_hundredths(10_000).expect("pct"))
        );
    }
}
