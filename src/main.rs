//! The `dkd` command line: everything is in `dkd::cli`.

use std::process::ExitCode;

// mimalloc: imports allocate and free millions of small strings; glibc's malloc spent ~40 % of an
// import in malloc/free/consolidate (perf), mimalloc a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    dkd::cli::main()
}
