//! The tracing subscriber dkd logs through: tracing-subscriber's own formats, human or JSON
//! (one object per line, the event's fields flattened, for journald and log shippers).

use crate::config::LogFormat;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// The subscriber of `dkd serve` and the other commands: `filter` decides what is written,
/// `format` how, `ansi` whether with colour codes, `writer` where.
pub fn dispatch<W>(filter: EnvFilter, format: LogFormat, ansi: bool, writer: W) -> tracing::Dispatch
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).into(),
        LogFormat::Human => builder.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    /// Everything written, shared with the test.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Capture {
        /// What `with_writer` takes: every event's writer appends here.
        fn writer(&self) -> impl Fn() -> Capture + Send + Sync + 'static {
            let out = self.clone();
            move || out.clone()
        }

        fn take(&self) -> String {
            let mut v = self.0.lock().expect("capture lock");
            String::from_utf8(std::mem::take(&mut *v)).expect("log lines are UTF-8")
        }
    }

    /// An error with a source, both with text from outside.
    #[derive(Debug)]
    struct Outer(io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("peer said \u{1b}[2J\u{9b}31m")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// Events with every kind of field value the two visitors tell apart.
    fn events() {
        tracing::info!(
            operation = "GSDReintegratieInfo",
            oin = "00000001234567890000",
            message_id = "urn:uuid:0b6f0a38-3f1c-4d7e-9a51-8f1e2c3b4d5e",
            bsn = "*****0006",
            code = "",
            status = 200u16,
            count = 3u64,
            delta = -7i64,
            duration_ms = 0.125f64,
            ok = true,
            "request"
        );
        tracing::warn!(
            message_id = "with \"quotes\", a \\ and\na newline\t\u{1b}[31m é \u{7f}",
            shown = %"display \"value\"",
            r#type = "raw identifier",
            error = %io::Error::other("disk full"),
            "a message with \u{1b}[1m escapes"
        );
        tracing::error!(
            dropped = 1001u64,
            "audit queue full: audit records are being dropped"
        );
        // As `tracing-log` hands over a `log` record (sled logs through `log`).
        tracing::info!(
            log.target = "sled::pagecache",
            log.line = 12u64,
            n = 1u64,
            "from log"
        );
        let e = Outer(io::Error::other("disk \u{1b}[31mfull"));
        tracing::warn!(
            error = &e as &(dyn std::error::Error + 'static),
            "an error value"
        );
        tracing::info!("no fields at all");
        tracing::info!(only = "fields, no message");
    }

    /// The lines dkd's subscriber writes for [`events`] and an event in a span.
    fn written(format: LogFormat, ansi: bool) -> String {
        let out = Capture::default();
        let dispatch = dispatch(EnvFilter::new("info"), format, ansi, out.writer());
        tracing::dispatcher::with_default(&dispatch, || {
            events();
            let span = tracing::info_span!("import", file = "a.csv");
            let _entered = span.enter();
            tracing::info!(rows = 3u64, "in a span");
        });
        out.take()
    }

    #[test]
    fn human_lines_carry_every_field_and_escape_wire_text() {
        let plain = written(LogFormat::Human, false);
        assert_eq!(plain.lines().count(), 8, "{plain}");
        assert!(
            plain.contains(
                "request operation=\"GSDReintegratieInfo\" oin=\"00000001234567890000\" \
                 message_id=\"urn:uuid:0b6f0a38-3f1c-4d7e-9a51-8f1e2c3b4d5e\" \
                 bsn=\"*****0006\" code=\"\" status=200 count=3 delta=-7 duration_ms=0.125 ok=true"
            ),
            "{plain}"
        );
        assert!(
            plain.contains(r"error=peer said \x1b[2J\u{9b}31m error.sources=[disk \x1b[31mfull]"),
            "{plain}"
        );
        // Wire-derived text can never start a line of its own or colour a terminal.
        assert!(
            plain.contains(
                r#"message_id="with \"quotes\", a \\ and\na newline\t\u{1b}[31m é \u{7f}""#
            ),
            "{plain}"
        );
        assert!(!written(LogFormat::Human, true).is_empty());
    }

    #[test]
    fn json_lines_are_one_object_each_with_the_fields_flattened() {
        let json = written(LogFormat::Json, false);
        assert_eq!(json.lines().count(), 8, "{json}");
        for l in json.lines() {
            let v: serde_json::Value = serde_json::from_str(l).expect("one JSON object");
            assert!(v["timestamp"].is_string(), "{l}");
            assert!(v["level"].is_string(), "{l}");
        }
        let request: serde_json::Value =
            serde_json::from_str(json.lines().next().expect("a line")).expect("JSON");
        assert_eq!(request["message"], "request");
        assert_eq!(request["oin"], "00000001234567890000");
        assert_eq!(request["status"], 200);
        assert_eq!(request["target"], module_path!());
        // Wire-derived text stays inside its string.
        let odd: serde_json::Value =
            serde_json::from_str(json.lines().nth(1).expect("a line")).expect("JSON");
        assert_eq!(
            odd["message_id"],
            "with \"quotes\", a \\ and\na newline\t\u{1b}[31m é \u{7f}"
        );
    }
}
