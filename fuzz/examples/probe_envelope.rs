fn main() {
    for f in std::env::args().skip(1) {
        let data = std::fs::read(&f).expect("read");
        let out = dkd::soap::handle(
            dkd_fuzz::endpoint(),
            dkd::soap::Inbound {
                body: &data,
                content_type: Some("text/xml"),
                soap_action: None,
                tls_oin: Some(dkd_fuzz::OIN),
            },
        );
        println!("== {f}: {} {:?}\n{:?}", out.status, out.outcome, out.body);
    }
}
