//! The tracing subscriber dkd logs through, with cheaper parts for both its formats.
//!
//! Every answered request writes one `request` line at info. With tracing-subscriber's defaults
//! that line cost ~1.5 µs of an unsigned answer's ~23 µs (BENCHMARKS.md, profiles): each string
//! field goes through `Debug` (a char-by-char escape check) and the timestamp is computed from
//! the calendar each time. [`Fields`] writes the fields that need no escaping straight into the
//! line and hands every other field to tracing-subscriber's own visitor; [`Clock`] computes the
//! date part once a second per thread. Both write exactly what tracing-subscriber's defaults
//! would (tests below compare the two), so a line reads the same either way.
//!
//! The JSON format (the README's choice for systemd) cost 1.23 µs a line, nearly half of it in
//! tracing-subscriber's adaptor from `io::Write` to `fmt::Write`, which checks UTF-8 and copies
//! for each of the dozens of small writes serde_json makes. [`JsonLines`] serializes the same
//! object (the same serde visitor for the fields) into a buffer and writes that once.

use crate::config::LogFormat;
use serde::ser::{SerializeMap, Serializer as _};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_serde::{AsSerde, SerdeMapVisitor};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Format, Json, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
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
        .with_writer(writer)
        .with_timer(Clock);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .event_format(JsonLines::default())
            .into(),
        LogFormat::Human => builder.fmt_fields(Fields).into(),
    }
}

/// One JSON object per line, as tracing-subscriber's flattened JSON format writes it with its
/// defaults (timestamp, level, the event's fields, target).
pub struct JsonLines {
    /// For events in a span, and `log` records (their level and target come from fields).
    inner: Format<Json, Clock>,
}

impl Default for JsonLines {
    fn default() -> Self {
        JsonLines {
            inner: tracing_subscriber::fmt::format()
                .json()
                .flatten_event(true)
                .with_timer(Clock),
        }
    }
}

thread_local! {
    /// The line being serialized, kept between events.
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let from_log = event.fields().any(|f| f.name().starts_with("log."));
        if from_log || event.parent().is_some() || ctx.lookup_current().is_some() {
            return self.inner.format_event(ctx, writer, event);
        }
        // The clock's own bytes; a time it does not write (before 1970, after 9999) as
        // tracing-subscriber does.
        let (stamp, mut other) = (Clock::stamp(), String::new());
        let timestamp = match &stamp {
            Some(b) => std::str::from_utf8(b).map_err(|_| fmt::Error)?,
            None => {
                tracing_subscriber::fmt::time::SystemTime
                    .format_time(&mut Writer::new(&mut other))?;
                &other
            }
        };
        let meta = event.metadata();
        let mut write = |line: &mut Vec<u8>| -> fmt::Result {
            line.clear();
            let mut ser = serde_json::Serializer::new(&mut *line);
            let object = (|| {
                let mut map = ser.serialize_map(None)?;
                map.serialize_entry("timestamp", timestamp)?;
                map.serialize_entry("level", &meta.level().as_serde())?;
                let mut fields = SerdeMapVisitor::new(map);
                event.record(&mut fields);
                let mut map = fields.take_serializer()?;
                map.serialize_entry("target", meta.target())?;
                map.end()
            })();
            object.map_err(|_| fmt::Error)?;
            writer.write_str(std::str::from_utf8(line).map_err(|_| fmt::Error)?)?;
            writer.write_char('\n')
        };
        // An event logged while formatting another (a field's `Debug` that logs) gets a buffer of
        // its own.
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut line) => write(&mut line),
            Err(_) => write(&mut Vec::new()),
        })
    }
}

/// The event fields of a human log line, as tracing-subscriber's `DefaultFields` writes them.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fields;

impl<'a> MakeVisitor<Writer<'a>> for Fields {
    type Visitor = Visitor<'a>;

    fn make_visitor(&self, writer: Writer<'a>) -> Visitor<'a> {
        Visitor {
            writer,
            empty: true,
            result: Ok(()),
        }
    }
}

/// See [`Fields`].
pub struct Visitor<'a> {
    writer: Writer<'a>,
    empty: bool,
    result: fmt::Result,
}

impl Visitor<'_> {
    /// Whether `name=value` can be written as is: a plain name (what the default visitor treats
    /// specially is left to it) and, with colour codes, nothing at all (the default paints).
    fn plain(&self, name: &str) -> bool {
        self.result.is_ok()
            && !self.writer.has_ansi_escapes()
            && name != "message"
            && !name.starts_with("r#")
            && !name.starts_with("log.")
    }

    fn separate(&mut self) -> fmt::Result {
        if std::mem::take(&mut self.empty) {
            Ok(())
        } else {
            self.writer.write_char(' ')
        }
    }

    /// The default visitor's way, for everything the fast paths leave.
    fn default(&mut self, field: &Field, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        // `log.*` fields are the `log` crate's metadata, which the line already shows: the
        // default visitor skips them, and writes every other field.
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        let mut v = DefaultVisitor::new(self.writer.by_ref(), self.empty);
        record(&mut v);
        self.result = v.finish();
        self.empty = false;
    }

    /// An integer field: `Debug` and `Display` agree.
    fn integer(
        &mut self,
        field: &Field,
        value: impl fmt::Display,
        record: impl FnOnce(&mut DefaultVisitor<'_>),
    ) {
        let name = field.name();
        if self.plain(name) {
            self.result = self
                .separate()
                .and_then(|()| write!(self.writer, "{name}={value}"));
        } else {
            self.default(field, record);
        }
    }
}

/// A string whose `Debug` form is the string between double quotes: printable ASCII without
/// `"` and `\`, the only characters `str`'s `Debug` leaves as they are and escapes nothing
/// around.
fn debug_is_quoted(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let name = field.name();
        if self.plain(name) && debug_is_quoted(value) {
            self.result = self.separate().and_then(|()| {
                let w = &mut self.writer;
                w.write_str(name)?;
                w.write_str("=\"")?;
                w.write_str(value)?;
                w.write_char('"')
            });
        } else {
            self.default(field, |v| v.record_str(field, value));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.integer(field, value, |v| v.record_u64(field, value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.integer(field, value, |v| v.record_i64(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.default(field, |v| v.record_debug(field, value));
    }

    // Not left to `Visit`'s own `record_error`, which writes the bare `Display`: the default
    // visitor escapes terminal control characters in it and lists the error's sources.
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.default(field, |v| v.record_error(field, value));
    }
}

impl VisitOutput<fmt::Result> for Visitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for Visitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

/// The time of a log line, as tracing-subscriber's `SystemTime` writes it
/// (`2026-11-23T04:24:36.123456Z`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Clock;

thread_local! {
    /// The second last written by this thread and its `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

impl Clock {
    /// Now as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (ASCII); `None` outside the years 1970-9999.
    fn stamp() -> Option<[u8; 27]> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        let secs = now.as_secs();
        let (cached, mut date) = SECOND.get();
        if cached != secs {
            date = date_time(secs)?;
            SECOND.set((secs, date));
        }
        let mut out = [0u8; 27];
        out[..19].copy_from_slice(&date);
        out[19] = b'.';
        put_digits(&mut out[20..26], now.subsec_micros());
        out[26] = b'Z';
        Some(out)
    }
}

impl FormatTime for Clock {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        match Clock::stamp() {
            Some(b) => w.write_str(std::str::from_utf8(&b).map_err(|_| fmt::Error)?),
            None => tracing_subscriber::fmt::time::SystemTime.format_time(w),
        }
    }
}

/// `v` in decimal, right-aligned and zero-padded over all of `out` (higher digits cut off).
fn put_digits(out: &mut [u8], mut v: u32) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// `YYYY-MM-DDTHH:MM:SS` in UTC of a unix time with a four-digit year.
fn date_time(secs: u64) -> Option<[u8; 19]> {
    let t = time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).ok()?).ok()?;
    if !(0..=9999).contains(&t.year()) {
        return None;
    }
    let mut out = [0u8; 19];
    put_digits(&mut out[0..4], t.year().unsigned_abs());
    put_digits(&mut out[5..7], u32::from(u8::from(t.month())));
    put_digits(&mut out[8..10], u32::from(t.day()));
    put_digits(&mut out[11..13], u32::from(t.hour()));
    put_digits(&mut out[14..16], u32::from(t.minute()));
    put_digits(&mut out[17..19], u32::from(t.second()));
    for (i, c) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
        out[i] = c;
    }
    Some(out)
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

    /// The lines one subscriber writes for [`events`], the timestamps cut off.
    fn lines(fields: bool, ansi: bool) -> String {
        let out = Capture::default();
        let writer = out.writer();
        let builder = tracing_subscriber::fmt()
            .with_ansi(ansi)
            .with_writer(writer)
            .without_time();
        let dispatch: tracing::Dispatch = if fields {
            builder.fmt_fields(Fields).into()
        } else {
            builder.into()
        };
        tracing::dispatcher::with_default(&dispatch, events);
        out.take()
    }

    #[test]
    fn human_lines_are_those_of_tracing_subscribers_default_fields() {
        for ansi in [false, true] {
            let ours = lines(true, ansi);
            let theirs = lines(false, ansi);
            assert_eq!(ours, theirs, "ansi {ansi}");
            assert_eq!(ours.lines().count(), 7, "{ours}");
        }
        let plain = lines(true, false);
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
    }

    /// The JSON lines one subscriber writes for [`events`] and an event in a span.
    fn json_lines(ours: bool) -> String {
        let out = Capture::default();
        let writer = out.writer();
        let builder = tracing_subscriber::fmt()
            .with_writer(writer)
            .with_timer(Clock)
            .json()
            .flatten_event(true);
        let dispatch: tracing::Dispatch = if ours {
            builder.event_format(JsonLines::default()).into()
        } else {
            builder.into()
        };
        tracing::dispatcher::with_default(&dispatch, || {
            events();
            let span = tracing::info_span!("import", file = "a.csv");
            let _entered = span.enter();
            tracing::info!(rows = 3u64, "in a span");
        });
        out.take()
    }

    #[test]
    fn json_lines_are_those_of_tracing_subscribers_json_format() {
        let ours = json_lines(true);
        let theirs = json_lines(false);
        // The same lines but for the time each was written.
        let untimed = |s: &str| -> Vec<String> {
            s.lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).expect("one JSON object");
                    let t = v["timestamp"].as_str().expect("timestamp");
                    assert_eq!(t.len(), "2026-11-23T04:24:36.123456Z".len(), "{l}");
                    l.replacen(t, "", 1)
                })
                .collect()
        };
        assert_eq!(untimed(&ours), untimed(&theirs));
        assert_eq!(ours.lines().count(), 8, "{ours}");
        let request: serde_json::Value =
            serde_json::from_str(ours.lines().next().expect("a line")).expect("JSON");
        assert_eq!(request["message"], "request");
        assert_eq!(request["oin"], "00000001234567890000");
        assert_eq!(request["status"], 200);
        assert_eq!(request["target"], module_path!());
        // Wire-derived text stays inside its string.
        let odd: serde_json::Value =
            serde_json::from_str(ours.lines().nth(1).expect("a line")).expect("JSON");
        assert_eq!(
            odd["message_id"],
            "with \"quotes\", a \\ and\na newline\t\u{1b}[31m é \u{7f}"
        );
    }

    #[test]
    fn quoting_is_skipped_only_where_debug_adds_nothing() {
        for s in [
            "",
            "abc",
            "0123 ~!#$%&'()*+,-./:;<=>?@[]^_`{|}",
            "*****0006",
        ] {
            assert!(debug_is_quoted(s), "{s}");
            assert_eq!(format!("{s:?}"), format!("\"{s}\""));
        }
        for s in [
            "a\"b", "a\\b", "a\nb", "\t", "\u{7f}", "é", "\u{1b}", "\u{0}",
        ] {
            assert!(!debug_is_quoted(s), "{s:?}");
        }
    }

    #[test]
    fn the_clock_writes_the_time_as_tracing_subscriber_does() {
        for secs in [
            0u64,
            951_782_400,
            1_700_000_000,
            1_795_400_000,
            4_102_444_799,
            253_402_300_799,
        ] {
            let expected = time::OffsetDateTime::from_unix_timestamp(secs as i64)
                .expect("in range")
                .format(&time::format_description::well_known::Rfc3339)
                .expect("formats");
            let got = date_time(secs).expect("four-digit year");
            assert_eq!(
                format!("{}Z", std::str::from_utf8(&got).expect("ascii")),
                expected
            );
        }
        assert_eq!(date_time(253_402_300_800), None, "year 10000");

        let mut ours = String::new();
        let mut theirs = String::new();
        let before = SystemTime::now();
        Clock
            .format_time(&mut Writer::new(&mut ours))
            .expect("formats");
        tracing_subscriber::fmt::time::SystemTime
            .format_time(&mut Writer::new(&mut theirs))
            .expect("formats");
        let after = SystemTime::now();
        assert_eq!(ours.len(), theirs.len(), "{ours} / {theirs}");
        assert_eq!(ours.len(), "2026-11-23T04:24:36.123456Z".len());
        // The same second, unless the two calls straddled one.
        if before.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).ok()
            == after.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).ok()
        {
            assert_eq!(ours[..19], theirs[..19]);
        }
        let parsed =
            time::OffsetDateTime::parse(&ours, &time::format_description::well_known::Rfc3339)
                .expect("RFC 3339");
        let diff = parsed - time::OffsetDateTime::from(before);
        assert!(diff.abs() < time::Duration::seconds(2), "{ours}");
    }
}
