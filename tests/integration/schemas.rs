//! dkd's own WSDL/XSD (wsdl/) against the official BKWI schemas: the same verdict on every sample
//! in tests/fixtures/schema (valid and invalid), so the WSDL dkd serves is wire-compatible.

use crate::common::*;
use std::path::Path;

#[test]
#[cfg_attr(
    any(dkd_missing = "shared", dkd_missing = "xmllint"),
    ignore = "needs ../shared/reference/suwiml (or DKD_SHARED_DIR) and xmllint (apt-get install libxml2-utils)"
)]
fn own_schemas_give_the_official_verdict_on_every_sample() {
    let Some(official) = official_dir() else {
        skip("schema comparison: ../shared/reference/suwiml not found");
        return;
    };
    if std::process::Command::new("xmllint")
        .arg("--version")
        .output()
        .is_err()
    {
        skip("schema comparison: xmllint not installed (apt-get install libxml2-utils)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let suwiml = official.parent().expect("suwiml dir");
    let out = std::process::Command::new("sh")
        .arg(root.join("tests/fixtures/schema/check.sh"))
        .arg(suwiml)
        .output()
        .expect("run check.sh");
    assert!(
        out.status.success(),
        "check.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
