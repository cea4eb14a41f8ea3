//! The XML format: a dkd `Aanlevering` (namespace `urn:dkd:aanlevering:v1`, schema
//! `wsdl/dkd-aanlevering-v1.xsd`) holding `ClientSuwi` elements exactly as in a
//! GSDReintegratieInfoResponse (unqualified children, schema order), and `Verwijderen` elements
//! for delta deletions. A backoffice that already writes GSD messages reuses that code.

use super::{Collector, ImportError, Item, Options, Rejection};
use crate::suwiml::model::Person;
use crate::suwiml::types::Bsn;
use crate::xml::{line_of, Element};

/// The namespace of the `Aanlevering` root element.
pub const NS_AANLEVERING: &str = "urn:dkd:aanlevering:v1";

/// Writes `people` as an `Aanlevering` (no gemeentecode attribute: each person's Bron names its
/// gemeente), one `ClientSuwi` per line; [`read`] takes it back as it was.
pub fn write(people: &[Person], out: &mut String) {
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<dkd:Aanlevering xmlns:dkd=\"");
    out.push_str(NS_AANLEVERING);
    out.push_str("\">\n");
    for p in people {
        crate::suwiml::gsd::write_client(p, out);
        out.push('\n');
    }
    out.push_str("</dkd:Aanlevering>\n");
}

pub(crate) fn read(
    bytes: &[u8],
    opts: &Options,
    collector: &mut Collector,
    progress: &mut dyn FnMut(u64),
) -> Result<(u64, Option<String>), ImportError> {
    let root = crate::xml::parse_with(bytes, &crate::xml::ParseLimits::FILE)
        .map_err(|e| ImportError::Structure(format!("line 1: {e}")))?;
    if !root.is(Some(NS_AANLEVERING), "Aanlevering") {
        return Err(ImportError::Structure(format!(
            "line {}: the root element must be {{{NS_AANLEVERING}}}Aanlevering, found {}",
            line_of(bytes, root.pos),
            root.qname()
        )));
    }
    let file_gemeente = root.attr(None, "gemeentecode").map(str::to_owned);
    if let (Some(f), Some(o)) = (&file_gemeente, &opts.gemeente) {
        if f != o {
            return Err(ImportError::Usage(format!(
                "the file is for gemeente {f}, --gemeente says {o}"
            )));
        }
    }
    let mut rows = 0u64;
    let mut lines = Lines::new(bytes);
    let fallback = file_gemeente.clone().or_else(|| opts.gemeente.clone());
    for el in root.elements() {
        rows += 1;
        let line = lines.at(el.pos);
        if el.is(None, "ClientSuwi") {
            client(
                &mut lines,
                el,
                line,
                fallback.as_deref(),
                file_gemeente.as_deref(),
                collector,
            );
        } else if el.is(None, "Verwijderen") {
            delete(
                el,
                line,
                file_gemeente.as_ref().or(opts.gemeente.as_ref()),
                collector,
            );
        } else {
            collector.add(Item::Rejected {
                key: None,
                rejection: Rejection {
                    line,
                    field: el.qname(),
                    value: String::new(),
                    reason: "expected ClientSuwi or Verwijderen".into(),
                },
            });
        }
        if rows % 10_000 == 0 {
            progress(rows);
        }
    }
    progress(rows);
    Ok((rows, file_gemeente))
}

/// Line numbers for increasing byte offsets in one pass (counting from the start for every
/// element would be quadratic in the file size).
struct Lines<'b> {
    bytes: &'b [u8],
    pos: usize,
    line: usize,
}

impl<'b> Lines<'b> {
    fn new(bytes: &'b [u8]) -> Self {
        Lines {
            bytes,
            pos: 0,
            line: 1,
        }
    }
    fn at(&mut self, pos: usize) -> usize {
        if pos < self.pos {
            return line_of(self.bytes, pos);
        }
        let end = pos.min(self.bytes.len());
        self.line += self.bytes[self.pos..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.pos = end;
        self.line
    }
}

fn client(
    lines: &mut Lines<'_>,
    el: &Element,
    line: usize,
    fallback: Option<&str>,
    file_gemeente: Option<&str>,
    collector: &mut Collector,
) {
    match crate::suwiml::gsd::read_client(el) {
        Ok(person) => {
            for (g, part) in crate::store::split_by_gemeente(&person) {
                if file_gemeente.is_some_and(|f| f != g) {
                    collector.add(Item::Rejected {
                        key: Some((person.bsn, g.clone())),
                        rejection: Rejection {
                            line,
                            field: "AtlRelatie/Bron/CdPartijSuwi".into(),
                            value: g,
                            reason: format!(
                                "this file is for gemeente {}",
                                file_gemeente.unwrap_or_default()
                            ),
                        },
                    });
                    continue;
                }
                collector.add(Item::Person { line, person: part });
            }
            if person.atl_relaties.is_empty() {
                collector.add(Item::Rejected {
                    key: fallback.map(|g| (person.bsn, g.to_owned())),
                    rejection: Rejection {
                        line,
                        field: "AtlRelatie".into(),
                        value: String::new(),
                        reason: "a ClientSuwi needs at least one AtlRelatie with its Bron".into(),
                    },
                });
            }
        }
        Err(errs) => {
            let bsn = el
                .elements()
                .find(|c| c.is(None, "Burgerservicenr"))
                .and_then(|b| Bsn::parse(&b.text()).ok());
            let gemeenten: Vec<String> = el
                .elements()
                .filter(|c| c.is(None, "AtlRelatie"))
                .filter_map(|r| r.elements().find(|c| c.is(None, "Bron")))
                .filter_map(|b| {
                    b.elements()
                        .find(|c| c.is(None, "CdPartijSuwi"))
                        .map(|p| p.text())
                })
                .collect();
            let mut gemeenten = gemeenten;
            if gemeenten.is_empty() {
                gemeenten.extend(fallback.map(str::to_owned));
            }
            // The person is rejected as a whole in every gemeente it names, so each keeps its old
            // entry (a full import does not remove it).
            if let Some(b) = bsn {
                for g in gemeenten {
                    collector.mark_rejected((b, g), line);
                }
            }
            for (pos, fe) in errs {
                collector.add(Item::Rejected {
                    key: None,
                    rejection: Rejection {
                        line: lines.at(pos).max(line),
                        field: fe.field,
                        value: fe.value,
                        reason: fe.reason,
                    },
                });
            }
        }
    }
}

fn delete(el: &Element, line: usize, gemeente: Option<&String>, collector: &mut Collector) {
    let bsn_text = el
        .elements()
        .find(|c| c.is(None, "Burgerservicenr"))
        .map(|b| b.text())
        .unwrap_or_default();
    let g = el
        .elements()
        .find(|c| c.is(None, "CdPartijSuwi"))
        .map(|p| p.text())
        .or_else(|| gemeente.cloned());
    match (Bsn::parse(&bsn_text), g) {
        (Ok(bsn), Some(g)) => collector.add(Item::Delete {
            line,
            bsn,
            gemeente: g,
        }),
        (Err(_), _) => collector.add(Item::Rejected {
            key: None,
            rejection: Rejection {
                line,
                field: "Verwijderen/Burgerservicenr".into(),
                value: bsn_text,
                reason: "not a valid BSN (9 digits, 11-test)".into(),
            },
        }),
        (Ok(_), None) => collector.add(Item::Rejected {
            key: None,
            rejection: Rejection {
                line,
                field: "Verwijderen/CdPartijSuwi".into(),
                value: String::new(),
                reason: "missing: give CdPartijSuwi, the gemeentecode attribute, or --gemeente"
                    .into(),
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{Format, Mode, Rules};

    fn options(today: time::Date) -> Options {
        Options {
            format: Format::Xml,
            mode: Mode::Delta,
            gemeente: None,
            dry_run: true,
            strict: true,
            rules: Rules {
                lks_type_codes: vec![],
                max_future_days: 0,
            },
            purge: true,
            window_days: 730,
            today,
        }
    }

    #[test]
    fn the_demo_persons_written_read_back_equal() {
        let today = time::macros::date!(2026 - 03 - 02);
        let people = crate::chain::demo::generate(60, today);
        let mut text = String::new();
        write(&people, &mut text);
        let mut collector = Collector::with_capacity(people.len());
        let (rows, gemeente) = read(
            text.as_bytes(),
            &options(today),
            &mut collector,
            &mut |_| {},
        )
        .expect("the written file reads");
        assert_eq!(rows, people.len() as u64);
        assert_eq!(gemeente, None);
        assert!(
            collector.rejected_lines.is_empty(),
            "{:?}",
            collector.rejected_lines
        );
        let read: Vec<&Person> = collector.persons.iter().map(|c| &c.person).collect();
        // The index holds a person per gemeente: so does the reader.
        let per_gemeente: Vec<Person> = people
            .iter()
            .flat_map(crate::store::split_by_gemeente)
            .map(|(_, part)| part)
            .collect();
        assert!(
            per_gemeente.len() > people.len(),
            "some person in two gemeenten"
        );
        assert_eq!(read, per_gemeente.iter().collect::<Vec<_>>());
    }
}
