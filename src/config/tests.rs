use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn defaults_are_valid() {
    let c = Config::load(None, env(&[])).expect("defaults load");
    assert_eq!(
        c.public_url(),
        "https://127.0.0.1:8443/GSDDossierReintegratie-v0200"
    );
    assert_eq!(c.server.max_body_bytes, 1 << 20);
}

#[test]
fn unknown_keys_are_rejected_in_file_and_environment() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("dkd.toml");
    std::fs::write(&p, "[server]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n").expect("write");
    let e = Config::load(Some(&p), env(&[])).expect_err("typo refused");
    assert!(e.to_string().contains("lisen"), "{e}");
    let e =
        Config::load(None, env(&[("DKD_SERVER__PORT", "1")])).expect_err("unknown env key refused");
    assert!(e.to_string().contains("port"), "{e}");
}

#[test]
fn environment_overrides_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("dkd.toml");
    std::fs::write(
        &p,
        "[server]\nlisten = \"127.0.0.1:1\"\nmax_body_bytes = 2048\n",
    )
    .expect("write");
    let c = Config::load(
        Some(&p),
        env(&[
            ("DKD_SERVER__LISTEN", "0.0.0.0:9443"),
            (
                "DKD_AUTH__ALLOWED_OINS",
                "00000099000000000002, 00000001234567890000",
            ),
            ("DKD_LOG__FORMAT", "json"),
            ("DKD_UNRELATED", "ignored"),
        ]),
    )
    .expect("loads");
    assert_eq!(c.server.listen, "0.0.0.0:9443");
    assert_eq!(c.server.max_body_bytes, 2048);
    assert_eq!(
        c.auth.allowed_oins,
        vec!["00000099000000000002", "00000001234567890000"]
    );
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn invalid_values_are_named() {
    let e = Config::load(None, env(&[("DKD_AUTH__ALLOWED_OINS", "123")])).expect_err("bad oin");
    assert!(e.to_string().contains("123"), "{e}");
    let e = Config::load(None, env(&[("DKD_SERVER__LISTEN", "localhost")])).expect_err("bad addr");
    assert!(e.to_string().contains("server.listen"), "{e}");
    for (k, v, says) in [
        ("DKD_SERVER__MAX_HANDSHAKES", "0", "server.max_handshakes"),
        ("DKD_AUDIT__QUEUE_RECORDS", "0", "audit.queue_records"),
        ("DKD_AUDIT__WAIT_MS", "60001", "audit.wait_ms"),
        (
            "DKD_SERVER__MAX_HANDSHAKES_PER_ADDRESS",
            "129",
            "server.max_handshakes_per_address",
        ),
    ] {
        let e = Config::load(None, env(&[(k, v)])).expect_err(k);
        assert!(e.to_string().contains(says), "{k}: {e}");
    }
}

#[test]
fn role_and_the_chain_sections_are_validated() {
    let c = Config::load(
        None,
        env(&[(
            "DKD_STORE__URL",
            "postgres://dkd:geheim@db.example:5432/dkd?sslmode=disable",
        )]),
    )
    .expect("store url from env");
    assert_eq!(
        c.store.location(),
        crate::store::Location::Postgres {
            url: "postgres://dkd:geheim@db.example:5432/dkd?sslmode=disable".into(),
            ca: None
        }
    );
    assert_eq!(
        Config::default().store.location(),
        crate::store::Location::Sled(PathBuf::from("data/dkd.sled"))
    );
    for bad in [
        "mysql://x@h/db",
        "postgres://dkd@db.example:5432",
        "postgres://dkd@db:notaport/db",
        "postgres://dkd@db/dkd?sslmode=require",
    ] {
        let e = Config::load(None, env(&[("DKD_STORE__URL", bad)])).expect_err(bad);
        assert!(e.to_string().contains("store.url"), "{e}");
    }
    let e = Config::load(
        None,
        env(&[("DKD_STORE__URL", "postgres://dkd:geheim@h/db?port=x")]),
    )
    .expect_err("bad port");
    assert!(!e.to_string().contains("geheim"), "{e}");
    Config::load(
        None,
        env(&[
            ("DKD_STORE__URL", "postgres://dkd@db/dkd?sslmode=require"),
            ("DKD_STORE__CA", "/etc/dkd/pg-ca.pem"),
        ]),
    )
    .expect("TLS with the CA to check the server");
    let c = Config::load(None, env(&[("DKD_ROLE", "IB")])).expect("role from env");
    assert_eq!(c.role, Role::Ib);
    assert!(!c.pushes(), "an IB does not push");
    let c = Config::load(
        None,
        env(&[("DKD_PUSH__URL", "https://ib.example/IBVerwijsindex-v0300")]),
    )
    .expect("push");
    assert!(c.pushes());
    assert_eq!(
        c.push.ind_dkd_nee(),
        crate::suwiml::verwijsindex::Nee::Zero,
        "IndDkd no is 0 unless configured"
    );
    let c = Config::load(None, env(&[("DKD_PUSH__IND_DKD_NEE", "2")])).expect("2");
    assert_eq!(c.push.ind_dkd_nee(), crate::suwiml::verwijsindex::Nee::Two);
    assert_eq!(
        c.push.lease_secs, 60,
        "the outbox lease lasts a minute by default"
    );
    let c = Config::load(
        None,
        env(&[
            ("DKD_PUSH__LEASE_SECS", "3"),
            ("DKD_PUSH__TIMEOUT_SECS", "2"),
        ]),
    )
    .expect("a short lease (two nodes, tests)");
    assert_eq!(c.push.lease_secs, 3);
    for (k, v, says) in [
        ("DKD_PUSH__URL", "http://ib.example/", "push.url"),
        ("DKD_PUSH__CLUSTER", "004", "push.cluster"),
        ("DKD_PUSH__IND_DKD_NEE", "1", "push.ind_dkd_nee"),
        ("DKD_PUSH__IND_DKD_NEE", "N", "push.ind_dkd_nee"),
        ("DKD_PUSH__LEASE_SECS", "10", "push.lease_secs"),
        (
            "DKD_IB__REINTEGRATIE_CLUSTER",
            "09",
            "ib.reintegratie_cluster",
        ),
        ("DKD_ROLE", "uwv", "role"),
    ] {
        let e = Config::load(None, env(&[(k, v)])).expect_err(k);
        assert!(e.to_string().contains(says), "{k}: {e}");
    }
    let dir = tempfile::tempdir().expect("dir");
    for (block, says) in [
        ("code = \"363\"\nurl = \"https://g/\"", "4 digits"),
        ("code = \"0363\"", "needs a url"),
        (
            "code = \"0363\"\nurl = \"https://g/\"\noins = [\"1\"]",
            "20-digit OIN",
        ),
    ] {
        let p = dir.path().join("ib.toml");
        std::fs::write(&p, format!("role = \"ib\"\n[[ib.gemeenten]]\n{block}\n")).expect("write");
        let e = Config::load(Some(&p), env(&[])).expect_err(block);
        assert!(e.to_string().contains(says), "{block}: {e}");
    }
}

#[test]
fn a_scenario_is_refused_unless_enabled_explicitly() {
    let e = Config::load(None, env(&[("DKD_SCENARIO__ANSWER", "hang")]))
        .expect_err("a scenario without enabled");
    assert!(e.to_string().contains("scenario.enabled = true"), "{e}");
    let c = Config::load(
        None,
        env(&[
            ("DKD_SCENARIO__ANSWER", "fault"),
            ("DKD_SCENARIO__FAULT_CODE", "0021"),
            ("DKD_SCENARIO__ENABLED", "true"),
            ("DKD_SCENARIO__BSNS", "123456782,111222333"),
        ]),
    )
    .expect("enabled");
    assert_eq!(
        c.scenario.answer,
        Some(crate::chain::scenario::AnswerKind::Fault)
    );
    assert_eq!(c.scenario.fault_code, "0021");
    assert_eq!(c.scenario.bsns.len(), 2);
    for (pairs, says) in [
        (
            vec![("DKD_SCENARIO__ANSWER", "slow")],
            "unknown variant `slow`, expected one of `delay`",
        ),
        (
            vec![
                ("DKD_SCENARIO__ENABLED", "true"),
                ("DKD_SCENARIO__ANSWER", "fault"),
                ("DKD_SCENARIO__FAULT_CODE", "0051"),
            ],
            "scenario.fault_code",
        ),
        (
            vec![("DKD_SCENARIO__ENABLED", "true"), ("DKD_ROLE", "ib")],
            "only an emulated gemeente",
        ),
        (
            vec![
                ("DKD_SCENARIO__ENABLED", "true"),
                ("DKD_SCENARIO__PUSH", "paused"),
            ],
            "push.url",
        ),
    ] {
        let e = Config::load(None, env(&pairs)).expect_err(says);
        assert!(e.to_string().contains(says), "{pairs:?}: {e}");
    }
}

#[test]
fn example_config_in_repo_parses() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("dkd.example.toml");
    Config::load(Some(&p), env(&[])).expect("dkd.example.toml is valid");
}
