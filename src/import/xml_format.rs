//! The XML format: a dkd `Aanlevering` (namespace `urn:dkd:aanlevering:v1`, schema
//! `wsdl/dkd-aanlevering-v1.xsd`) holding `ClientSuwi` elements exactly as in a
//! GSDReintegratieInfoResponse (unqualified children, schema order), and `Verwijderen` elements
//! for delta deletions. A backoffice that already writes GSD messages reuses that code.

use super::{Collector, ImportError, Item, Options, Rejection};
use crate::suwiml::types::Bsn;
use crate::xml::{line_of, Element};

/// The namespace of the `Aanlevering` root element.
pub const NS_AANLEVERING: &str = "urn:dkd:aanlevering:v1";

pub(crate) fn read(
    bytes: &[u8],
    opts: &Options,
    collector: &mut Collector,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, ImportError> {
    let root =
        crate::xml::parse(bytes).map_err(|e| ImportError::Structure(format!("line 1: {e}")))?;
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
    for el in root.elements() {
        rows += 1;
        let line = line_of(bytes, el.pos);
        if el.is(None, "ClientSuwi") {
            client(bytes, el, line, collector);
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
    Ok(rows)
}

fn client(bytes: &[u8], el: &Element, line: usize, collector: &mut Collector) {
    match crate::suwiml::gsd::read_client(el) {
        Ok(person) => {
            for (_, part) in crate::store::split_by_gemeente(&person) {
                collector.add(Item::Person { line, person: part });
            }
            if person.atl_relaties.is_empty() {
                collector.add(Item::Rejected {
                    key: None,
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
            for (i, (pos, fe)) in errs.into_iter().enumerate() {
                // The first rejection carries each gemeente's key, so the person keeps its old entry.
                let keys: Vec<Option<(Bsn, String)>> = if i == 0 && bsn.is_some() {
                    gemeenten
                        .iter()
                        .map(|g| bsn.map(|b| (b, g.clone())))
                        .collect()
                } else {
                    vec![None]
                };
                for key in keys
                    .into_iter()
                    .chain(std::iter::once(None))
                    .take(gemeenten.len().max(1))
                {
                    collector.add(Item::Rejected {
                        key,
                        rejection: Rejection {
                            line: line_of(bytes, pos).max(line),
                            field: fe.field.clone(),
                            value: fe.value.clone(),
                            reason: fe.reason.clone(),
                        },
                    });
                }
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
