//! Prints how dkd::xml and uppsala read each file (a debugging aid for xml_diff findings).
fn main() {
    for f in std::env::args().skip(1) {
        let data = std::fs::read(&f).expect("read");
        println!("== {f}");
        match dkd::xml::parse(&data) {
            Ok(e) => println!("dkd::xml: {:?}", dkd_fuzz::shape_dkd(&e)),
            Err(e) => println!("dkd::xml: error: {e}"),
        }
        match std::str::from_utf8(&data).map(uppsala::parse) {
            Ok(Ok(doc)) => println!(
                "uppsala:  {:?}",
                doc.document_element()
                    .and_then(|r| dkd_fuzz::shape_uppsala(&doc, r))
            ),
            Ok(Err(e)) => println!("uppsala:  error: {e}"),
            Err(e) => println!("uppsala:  not UTF-8: {e}"),
        }
    }
}
