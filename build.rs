//! Finds the external tools some integration tests need, so a test whose tool is missing is
//! reported as *ignored* by `cargo test` instead of passing after a `SKIPPED:` line nobody sees.
//!
//! For every tool absent here it sets `--cfg dkd_missing="<name>"`; such a test carries
//! `#[cfg_attr(dkd_missing = "<name>", ignore = "needs <name>: <how to get it>")]`. With
//! `DKD_REQUIRE_EXTERNAL=1` (CI) it sets none, so those tests run and their missing tool is a
//! failure (`tests/integration/common.rs::skip`).
//!
//! One more tool: add a row to `TOOLS` (name, what it takes to be present); the check-cfg list is
//! built from the same table.

use std::path::{Path, PathBuf};

/// What makes a tool present.
enum Needs {
    /// One of these programs on `PATH`.
    Program(&'static [&'static str]),
    /// The interop venv: `DKD_INTEROP_PYTHON`, or `target/interop-venv/bin/python`.
    InteropVenv,
    /// node on `PATH` and the node-soap packages: `DKD_INTEROP_NODE_MODULES`, or a complete
    /// install by `tests/interop/node/setup.sh` (its stamp) in `target/interop-node`.
    NodeSoap,
    /// The official schemas: `DKD_SHARED_DIR` or `../shared`, with `reference/suwiml/...` in it.
    Shared,
    /// An environment variable naming a server: `DKD_TEST_PG_URL`, a PostgreSQL server the
    /// tests may create schemas in (`.ci/pg-cluster.sh` starts a throw-away one).
    Env(&'static str),
}

const TOOLS: &[(&str, Needs)] = &[
    (
        "chromium",
        Needs::Program(&["chromium", "chromium-browser", "google-chrome"]),
    ),
    ("xmllint", Needs::Program(&["xmllint"])),
    ("xmlsec1", Needs::Program(&["xmlsec1"])),
    ("curl", Needs::Program(&["curl"])),
    ("interop-venv", Needs::InteropVenv),
    ("shared", Needs::Shared),
    ("node-soap", Needs::NodeSoap),
    ("postgres", Needs::Env("DKD_TEST_PG_URL")),
    ("haproxy", Needs::Program(&["haproxy"])),
];

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| {
            let p = d.join(program);
            p.is_file()
                && std::fs::metadata(&p).is_ok_and(|m| {
                    #[cfg(unix)]
                    {
                        use std::os::unix::fs::PermissionsExt;
                        m.permissions().mode() & 0o111 != 0
                    }
                    #[cfg(not(unix))]
                    {
                        let _ = m;
                        true
                    }
                })
        })
    })
}

/// Rebuild when `p` changes, but only for paths that exist: cargo reruns a build script on
/// every build while a watched path is missing, and the crate would be recompiled each time.
fn watch(p: &Path) {
    if p.exists() {
        println!("cargo::rerun-if-changed={}", p.display());
    }
}

fn present(needs: &Needs, root: &Path) -> bool {
    match needs {
        Needs::Program(names) => names.iter().any(|n| on_path(n)),
        Needs::InteropVenv => {
            if std::env::var_os("DKD_INTEROP_PYTHON").is_some() {
                return true;
            }
            let p = root.join("target/interop-venv/bin/python");
            watch(&p);
            p.is_file()
        }
        Needs::NodeSoap => {
            if !on_path("node") {
                return false;
            }
            if std::env::var_os("DKD_INTEROP_NODE_MODULES").is_some() {
                return true;
            }
            let stamp = root.join("target/interop-node/.lock.sha256");
            watch(&stamp);
            stamp.is_file()
        }
        Needs::Env(var) => std::env::var_os(var).is_some_and(|v| !v.is_empty()),
        Needs::Shared => {
            let shared = std::env::var_os("DKD_SHARED_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("../shared"));
            let d = shared.join("reference/suwiml/GSDDossierReintegratie-v0200-b04");
            watch(&d);
            d.is_dir()
        }
    }
}

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    for var in [
        "DKD_REQUIRE_EXTERNAL",
        "DKD_INTEROP_PYTHON",
        "DKD_INTEROP_NODE_MODULES",
        "DKD_SHARED_DIR",
        "DKD_TEST_PG_URL",
        "PATH",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let names: Vec<String> = TOOLS.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    println!(
        "cargo::rustc-check-cfg=cfg(dkd_missing, values({}))",
        names.join(", ")
    );
    if std::env::var("DKD_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1") {
        return;
    }
    // An `apt-get install` of a tool rewrites dpkg's status file: notice it without a clean.
    watch(Path::new("/var/lib/dpkg/status"));
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    for (name, needs) in TOOLS {
        if !present(needs, &root) {
            println!("cargo::rustc-cfg=dkd_missing=\"{name}\"");
        }
    }
}
