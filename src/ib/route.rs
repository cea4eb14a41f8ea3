//! The IB's routing of GSDReintegratieInfo: the gemeenten holding data for the BSN are looked up,
//! every registered endpoint is asked once, concurrently, and the answers are merged into one
//! ClientSuwi (an FWI for the gemeenten that failed); route figures and Toets LKS signals are
//! recorded.
//!
//! Forwarding needs the network, which this layer does not know: the transport hands in a
//! [`Forward`] implementation.

use super::{Delivery, Gemeente, Ib};
use crate::suwiml::fwi::{Level, Melding};
use crate::suwiml::gsd::Reply;
use crate::suwiml::model::Person;
use crate::suwiml::types::Bsn;
use futures_util::future::join_all;
use std::future::Future;
use std::pin::Pin;

/// Who asked, for the Toets LKS signal.
#[derive(Debug, Clone, Default)]
pub struct Question {
    /// The request's `wsa:From` address (passed on to the gemeenten).
    pub from_address: String,
    /// Its `wsa:MessageID`.
    pub message_id: String,
    /// The asking party's OIN (`wsa:From`, else the TLS client's).
    pub asking_oin: String,
}

/// A forwarded question's failure, as the FWI names it.
pub type ForwardError = String;

/// Sends a GSDReintegratieInfo to a gemeente and reads its answer: implemented by the transport.
pub trait Forward: Send + Sync {
    /// Asks `gemeente` about `bsn` on behalf of the party at `from_address`.
    fn forward<'a>(
        &'a self,
        gemeente: &'a Gemeente,
        bsn: &'a Bsn,
        from_address: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Reply, ForwardError>> + Send + 'a>>;
}

/// dkd code: a gemeente could not be asked (timeout, unreachable, refused, unusable answer).
pub const CODE_GEMEENTE_FAILED: &str = "0052";

/// What one gemeente contributed to an answer.
enum Part {
    Found(Box<Person>, Vec<Melding>),
    Nothing,
    Failed(String, String),
}

impl Ib {
    /// GSDReintegratieInfo at the IB: every gemeente registered for the BSN in the re-integratie
    /// cluster is asked at once (each within the route timeout); the answers are merged.
    pub async fn reintegratie_info(&self, bsn: &Bsn, q: &Question) -> Reply {
        let from_address = q.from_address.as_str();
        let cluster = &self.settings.reintegratie_cluster;
        let registered = self.registered(bsn, cluster);
        let registered = match registered {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "verwijsindex lookup failed");
                return Reply::Fwi(vec![self.fout(
                    crate::suwiml::fwi::CODE_UNAVAILABLE,
                    "De gegevens kunnen op dit moment niet worden geleverd (service unavailable)"
                        .into(),
                    vec![],
                )]);
            }
        };
        if registered.is_empty() {
            return Reply::NietsGevonden;
        }
        // Gemeenten served by one endpoint (a shared service centre, or one dkd holding several
        // gemeentecodes) are asked once: its answer covers all of them.
        let mut targets: Vec<Vec<&str>> = Vec::new();
        for code in &registered {
            let url = self
                .gemeente(code)
                .filter(|g| g.delivery == Delivery::Webservice)
                .and_then(|g| g.url.as_deref());
            let same = targets.iter_mut().find(|t| {
                url.is_some()
                    && self
                        .gemeente(t[0])
                        .filter(|g| g.delivery == Delivery::Webservice)
                        .and_then(|g| g.url.as_deref())
                        == url
            });
            match same {
                Some(t) => t.push(code),
                None => targets.push(vec![code]),
            }
        }
        let parts = join_all(targets.iter().map(|t| self.ask(t, bsn, from_address))).await;
        let now = time::OffsetDateTime::now_utc();
        let day = crate::suwiml::types::Datum::from_date(now.date());
        for (codes, part) in targets.iter().zip(&parts) {
            let err = match part {
                Part::Failed(_, why) => Some(why.as_str()),
                _ => None,
            };
            for code in codes {
                if let Err(e) = self.store.ib_record_route(
                    code,
                    cluster,
                    day.as_str(),
                    err,
                    now.unix_timestamp(),
                ) {
                    tracing::warn!(error = %e, "route figures could not be recorded");
                }
            }
        }
        let reply = self.merge(parts);
        if let Reply::Client(p, _) = &reply {
            self.signal(p, q, now);
        }
        reply
    }

    /// The gemeenten holding data for a BSN: webservice gemeenten from the verwijsindex, batch
    /// gemeenten from their stored delivery.
    fn registered(
        &self,
        bsn: &Bsn,
        cluster: &str,
    ) -> Result<Vec<String>, crate::store::StoreError> {
        let mut codes: Vec<String> = self
            .store
            .ib_gemeenten_for(bsn, cluster)?
            .into_iter()
            .map(|(g, _)| g)
            .filter(|g| {
                self.gemeente(g)
                    .is_none_or(|x| x.delivery == Delivery::Webservice)
            })
            .collect();
        let has_batch = self
            .settings
            .gemeenten
            .iter()
            .any(|g| g.delivery == Delivery::Batch);
        // Without batch gemeenten there is no stored delivery to look in.
        if has_batch && cluster == self.settings.reintegratie_cluster {
            for e in self.store.read_may_block(|| self.store.entries(bsn))? {
                if self
                    .gemeente(&e.gemeente)
                    .is_some_and(|g| g.delivery == Delivery::Batch)
                    && !codes.contains(&e.gemeente)
                {
                    codes.push(e.gemeente);
                }
            }
        }
        Ok(codes)
    }

    /// Records a Toets LKS signal for every gemeente whose part of the answer holds LKS granted or
    /// paid in the look-back before today.
    fn signal(&self, p: &Person, q: &Question, now: time::OffsetDateTime) {
        let mut gemeenten: Vec<&str> = p
            .atl_relaties
            .iter()
            .map(|r| r.bron.partij.as_str())
            .collect();
        gemeenten.sort_unstable();
        gemeenten.dedup();
        for g in gemeenten {
            let mut part = p.clone();
            part.atl_relaties.retain(|r| r.bron.partij == g);
            let hits: Vec<_> =
                crate::retention::toets(&part, now.date(), self.settings.window_days)
                    .into_iter()
                    .cloned()
                    .collect();
            if hits.is_empty() {
                continue;
            }
            let s = crate::store::signals::Signal {
                bsn: p.bsn,
                gemeente: g.to_owned(),
                at: now.unix_timestamp(),
                message_id: q.message_id.clone(),
                asking_oin: q.asking_oin.clone(),
                provisions: hits,
            };
            if let Err(e) = self.store.ib_record_signal(&s) {
                tracing::error!(error = %e, gemeente = g, "Toets LKS signal could not be recorded");
            } else {
                tracing::info!(gemeente = g, bsn = %p.bsn.masked(), "Toets LKS signal recorded");
            }
        }
    }

    /// Asks the endpoint of `codes` (one endpoint may serve several gemeenten) and keeps only
    /// what it answered for them, about this BSN.
    async fn ask(&self, codes: &[&str], bsn: &Bsn, from_address: &str) -> Part {
        let Some(code) = codes.first().copied() else {
            return Part::Nothing;
        };
        let Some(g) = self.gemeente(code) else {
            return Part::Failed(code.to_owned(), "niet geconfigureerd bij het IB".to_owned());
        };
        let label = format!("{} ({})", g.name, g.code);
        let reply = match g.delivery {
            Delivery::Batch => Ok(self.batch_answer(g, bsn)),
            Delivery::Webservice => {
                // `Forward` gives up within the route timeout itself (`http::forward`).
                self.forward.forward(g, bsn, from_address).await
            }
        };
        match reply {
            Ok(Reply::Client(p, _)) if p.bsn != *bsn => Part::Failed(
                label,
                format!("antwoord over een andere BSN ({})", p.bsn.masked()),
            ),
            Ok(Reply::Client(mut p, m)) => {
                // A gemeente answers for itself: relations under another gemeente's Bron are not
                // passed on (nor signalled to that gemeente).
                p.atl_relaties
                    .retain(|r| codes.contains(&r.bron.partij.as_str()));
                if p.atl_relaties.is_empty() {
                    Part::Nothing
                } else {
                    Part::Found(p, m)
                }
            }
            Ok(Reply::NietsGevonden) => Part::Nothing,
            Ok(Reply::Fwi(m)) => Part::Failed(
                label,
                m.first()
                    .map(|f| format!("FWI {}: {}", f.code, f.tekst))
                    .unwrap_or_else(|| "leeg FWI-antwoord".into()),
            ),
            Err(why) => Part::Failed(label, why),
        }
    }

    /// A batch gemeente's answer from its stored delivery (issue 8 fills these).
    fn batch_answer(&self, g: &Gemeente, bsn: &Bsn) -> Reply {
        let today = time::OffsetDateTime::now_utc().date();
        match self.store.read_may_block(|| self.store.entries(bsn)) {
            Ok(entries) => {
                let mine: Vec<_> = entries
                    .into_iter()
                    .filter(|e| {
                        e.gemeente == g.code
                            && crate::retention::in_index(
                                &e.person,
                                self.settings.window_days,
                                today,
                            )
                    })
                    .collect();
                match crate::store::merge(mine) {
                    Some(p) => Reply::Client(Box::new(p), Vec::new()),
                    None => Reply::NietsGevonden,
                }
            }
            Err(e) => Reply::Fwi(vec![self.fout(
                crate::suwiml::fwi::CODE_UNAVAILABLE,
                format!("batchgegevens onleesbaar: {e}"),
                vec![],
            )]),
        }
    }

    fn merge(&self, parts: Vec<Part>) -> Reply {
        let mut person: Option<Person> = None;
        let mut meldingen = Vec::new();
        let mut failures = Vec::new();
        for part in parts {
            match part {
                Part::Found(p, m) => {
                    meldingen.extend(m);
                    match &mut person {
                        None => person = Some(*p),
                        Some(acc) => acc.atl_relaties.extend(p.atl_relaties),
                    }
                }
                Part::Nothing => {}
                Part::Failed(who, why) => failures.push((who, why)),
            }
        }
        let failed = |level: Level, (who, why): (String, String)| Melding {
            level,
            code: CODE_GEMEENTE_FAILED.into(),
            tekst: format!("Gemeente {who} kon niet worden bevraagd"),
            details: vec![why],
            dn: self.settings.dn.clone(),
        };
        match person {
            Some(p) => {
                meldingen.extend(failures.into_iter().map(|f| failed(Level::Waarschuwing, f)));
                Reply::Client(Box::new(p), meldingen)
            }
            None if failures.is_empty() => Reply::NietsGevonden,
            None => Reply::Fwi(
                failures
                    .into_iter()
                    .map(|f| failed(Level::Fout, f))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ib::IbSettings;
    use crate::store::Store;
    use crate::suwiml::model::{AtlRelatie, Bron, Provision};
    use crate::suwiml::types::{Datum, Percentage};
    use crate::suwiml::verwijsindex::IndDkd;
    use std::sync::Arc;

    /// A gemeente that answers with a fixed person.
    struct Canned(Person);

    impl Forward for Canned {
        fn forward<'a>(
            &'a self,
            _: &'a Gemeente,
            _: &'a Bsn,
            _: &'a str,
        ) -> Pin<Box<dyn Future<Output = Result<Reply, ForwardError>> + Send + 'a>> {
            let p = self.0.clone();
            Box::pin(async move { Ok(Reply::Client(Box::new(p), Vec::new())) })
        }
    }

    fn person(bsn: &str, gemeenten: &[&str]) -> Person {
        Person::with_relaties(
            Bsn::parse(bsn).expect("bsn"),
            gemeenten
                .iter()
                .map(|g| AtlRelatie {
                    arbeidsvermogen: None,
                    doel_rv: None,
                    provisions: vec![Provision {
                        registratienr: Some(format!("R{g}")),
                        start: Datum::parse("20250101").expect("d"),
                        end: None,
                        type_code: Some("24".into()),
                        description: None,
                        loonwaarde: Some(Percentage::from_hundredths(5000).expect("p")),
                    }],
                    bron: Bron::gemeente(g),
                })
                .collect(),
        )
    }

    fn ib_answering(answer: Person) -> Ib {
        let store = Store::temporary().expect("store");
        let g = |code: &str| Gemeente {
            code: code.into(),
            name: format!("G{code}"),
            oins: vec!["00000099000000000001".into()],
            url: Some(format!("https://{code}.example/")),
            delivery: Delivery::Webservice,
        };
        Ib {
            store,
            settings: IbSettings {
                gemeenten: vec![g("0363"), g("0599")],
                clusters: vec!["04".into()],
                reintegratie_cluster: "04".into(),
                dn: "CN=ib".into(),
                window_days: 730,
                stale_after_days: 35,
            },
            forward: Arc::new(Canned(answer)),
        }
    }

    fn question() -> Question {
        Question {
            from_address: "https://uwv/?oin=00000099000000000002".into(),
            message_id: "urn:uuid:q".into(),
            asking_oin: "00000099000000000002".into(),
        }
    }

    #[tokio::test]
    async fn a_gemeente_answers_only_for_itself_and_only_about_the_bsn_asked() {
        let bsn = Bsn::parse("123456782").expect("bsn");
        // 0363 is registered; its answer also carries a relation under 0599's Bron.
        let ib = ib_answering(person("123456782", &["0363", "0599"]));
        ib.store
            .ib_apply("0363", &bsn, "04", IndDkd::Present, "x", 1)
            .expect("apply");
        let Reply::Client(p, fwi) = ib.reintegratie_info(&bsn, &question()).await else {
            panic!("expected a ClientSuwi");
        };
        assert!(fwi.is_empty());
        let partijen: Vec<&str> = p
            .atl_relaties
            .iter()
            .map(|r| r.bron.partij.as_str())
            .collect();
        assert_eq!(partijen, ["0363"]);
        let day = crate::suwiml::types::Datum::from_date(time::OffsetDateTime::now_utc().date());
        assert_eq!(
            ib.store.ib_signals("0363", day.as_str()).expect("s").len(),
            1
        );
        assert!(ib
            .store
            .ib_signals("0599", day.as_str())
            .expect("s")
            .is_empty());

        // An answer about someone else is a failure, not passed on.
        let other = ib_answering(person("111222333", &["0363"]));
        other
            .store
            .ib_apply("0363", &bsn, "04", IndDkd::Present, "x", 1)
            .expect("apply");
        match other.reintegratie_info(&bsn, &question()).await {
            Reply::Fwi(m) => {
                assert_eq!(m[0].code, CODE_GEMEENTE_FAILED);
                assert!(m[0].details[0].contains("andere BSN"), "{m:?}");
            }
            r => panic!("expected an FWI Fout, got {r:?}"),
        }
    }
}
