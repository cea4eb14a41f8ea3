//! The tools `build.rs` looked for agree with the tools here: a test it marked ignored ("needs
//! TOOL") really lacks its tool, and a tool it found is really there.

use crate::common::*;
use std::path::Path;

fn runs(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok()
}

#[test]
fn the_ignored_checks_are_the_ones_whose_tool_is_missing() {
    let venv = std::env::var_os("DKD_INTEROP_PYTHON").is_some()
        || Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/interop-venv/bin/python")
            .is_file();
    let node_soap = runs("node")
        && (std::env::var_os("DKD_INTEROP_NODE_MODULES").is_some()
            || Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/interop-node/.lock.sha256")
                .is_file());
    let here = [
        (
            "chromium",
            ["chromium", "chromium-browser", "google-chrome"]
                .into_iter()
                .any(runs),
            cfg!(dkd_missing = "chromium"),
        ),
        ("xmllint", runs("xmllint"), cfg!(dkd_missing = "xmllint")),
        ("xmlsec1", runs("xmlsec1"), cfg!(dkd_missing = "xmlsec1")),
        ("curl", runs("curl"), cfg!(dkd_missing = "curl")),
        ("haproxy", runs("haproxy"), cfg!(dkd_missing = "haproxy")),
        ("interop-venv", venv, cfg!(dkd_missing = "interop-venv")),
        (
            "shared",
            official_dir().is_some(),
            cfg!(dkd_missing = "shared"),
        ),
        ("node-soap", node_soap, cfg!(dkd_missing = "node-soap")),
    ];
    for (tool, present, marked_missing) in here {
        if external_required() {
            assert!(
                !marked_missing,
                "{tool}: nothing is ignored under DKD_REQUIRE_EXTERNAL=1"
            );
            continue;
        }
        assert_eq!(
            present, !marked_missing,
            "{tool}: present here {present}, but the build took it for {} (changed since the build? touch build.rs)",
            if marked_missing { "missing" } else { "present" }
        );
    }
}
