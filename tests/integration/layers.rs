//! The layer rules of ARCHITECTURE.md, checked on the source so they stay true: the envelope
//! (`soap`), the messages (`suwiml`) and the operations (`gemeente::service`, `ib`'s shared
//! types, `ib::verwijsindex`, `ib::route`, `ib::signals`, `retention`) never name the transport
//! (hyper), the runtime (tokio) or a store engine; only `store` names sled or the PostgreSQL
//! driver; only `soap::wssec` and `soap::dsig` name uppsala. Test modules (after
//! `#[cfg(test)]`) and comments are not the product and are left out.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The product code of a file: up to its test module, without comment lines. A `tests.rs` is
/// a test module moved out of its parent file, none of it product.
fn product_code(p: &Path) -> String {
    if p.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    let text = std::fs::read_to_string(p).expect("read source");
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn names(code: &str, krate: &str) -> bool {
    [format!("{krate}::"), format!("use {krate}")]
        .iter()
        .any(|n| code.contains(n.as_str()))
}

#[test]
fn each_layer_names_only_what_it_may() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 20, "found the sources: {files:?}");
    let mut broken = Vec::new();
    for f in &files {
        let rel = f
            .strip_prefix(&src)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        let code = product_code(f);
        // The operations of each role, and the clock rule both apply.
        let inner = [
            "soap/",
            "suwiml/",
            "gemeente/service.rs",
            "ib/mod.rs",
            "ib/verwijsindex.rs",
            "ib/route.rs",
            "ib/signals.rs",
            "retention.rs",
        ]
        .iter()
        .any(|d| rel.starts_with(d));
        let mut forbidden: Vec<&str> = Vec::new();
        if inner {
            forbidden.extend([
                "hyper",
                "tokio",
                "sled",
                "tokio_postgres",
                "deadpool_postgres",
            ]);
        } else if !rel.starts_with("store/") {
            forbidden.extend(["sled", "tokio_postgres", "deadpool_postgres"]);
        }
        if !rel.starts_with("soap/wssec/") && !rel.starts_with("soap/dsig") {
            forbidden.push("uppsala");
        }
        for k in forbidden {
            if names(&code, k) {
                broken.push(format!("src/{rel} names {k}"));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "layer rules broken:\n{}",
        broken.join("\n")
    );
}

/// A lower module never names the one above it, so neither can grow back into a circle:
/// `soap::dsig` (the XML-DSig arithmetic) is used by `soap::wssec`, and `config` by `demo`.
#[test]
fn lower_modules_do_not_name_the_ones_above() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut broken = Vec::new();
    // The two roles share what lies below them and never name each other.
    for (lower, upper) in [
        ("soap/dsig", "wssec"),
        ("config", "demo"),
        ("gemeente", "crate::ib"),
        ("ib", "crate::gemeente"),
    ] {
        let mut files = Vec::new();
        let file = src.join(format!("{lower}.rs"));
        if file.is_file() {
            files.push(file);
        }
        let dir = src.join(lower);
        if dir.is_dir() {
            sources(&dir, &mut files);
        }
        assert!(!files.is_empty(), "found src/{lower}");
        for f in files {
            if names(&product_code(&f), upper) {
                broken.push(format!("{} names {upper}", f.display()));
            }
        }
    }
    assert!(broken.is_empty(), "circles:\n{}", broken.join("\n"));
}
