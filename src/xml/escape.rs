//! C14N-compatible escaping: what dkd writes is already in exclusive-C14N form.

/// Escapes text content exactly as exclusive C14N does, so that what dkd writes is already in
/// canonical form and can be digested without re-canonicalising.
pub fn escape(s: &str, out: &mut String) {
    escape_with(s, out, &TEXT);
}

/// Escapes an attribute value the way C14N does.
pub fn escape_attr(s: &str, out: &mut String) {
    escape_with(s, out, &ATTR);
}

/// Per byte: 0 for a byte copied as it is, otherwise what to do with it (see [`escape_with`]).
const fn escape_table(attr: bool) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = FORBIDDEN;
        b += 1;
    }
    t[b'\r' as usize] = b'\r';
    t[b'&' as usize] = b'&';
    t[b'<' as usize] = b'<';
    t[0xEF] = LEAD_EF;
    if attr {
        t[b'"' as usize] = b'"';
        t[b'\t' as usize] = b'\t';
        t[b'\n' as usize] = b'\n';
    } else {
        t[b'>' as usize] = b'>';
        t[b'\t' as usize] = 0;
        t[b'\n' as usize] = 0;
    }
    t
}

const FORBIDDEN: u8 = 1;
const LEAD_EF: u8 = 2;
static TEXT: [u8; 256] = escape_table(false);
static ATTR: [u8; 256] = escape_table(true);

/// Copies runs of plain characters in one piece; never writes a character XML forbids (it could
/// only come from an echoed error). Works on bytes with a table: every character C14N replaces
/// is ASCII, and in a `str` the only characters XML forbids are C0 controls and U+FFFE/U+FFFF,
/// whose UTF-8 starts with 0xEF (escaping was ~7 % of an unsigned answer's work in process).
fn escape_with(s: &str, out: &mut String, table: &[u8; 256]) {
    out.reserve(s.len());
    let bytes = s.as_bytes();
    let mut plain = 0;
    let mut i = 0;
    while let Some(n) = bytes[i..].iter().position(|&b| table[usize::from(b)] != 0) {
        i += n;
        let (replacement, len) = match table[usize::from(bytes[i])] {
            b'&' => ("&amp;", 1),
            b'<' => ("&lt;", 1),
            b'>' => ("&gt;", 1),
            b'"' => ("&quot;", 1),
            b'\t' => ("&#x9;", 1),
            b'\n' => ("&#xA;", 1),
            b'\r' => ("&#xD;", 1),
            LEAD_EF if matches!(bytes.get(i + 1..i + 3), Some([0xBF, 0xBE | 0xBF])) => {
                ("\u{FFFD}", 3)
            }
            LEAD_EF => {
                // Another character starting with 0xEF: plain.
                i += 1;
                continue;
            }
            _ => ("\u{FFFD}", 1),
        };
        // `plain..i` ends before an ASCII byte or a lead byte: a character boundary.
        out.push_str(&s[plain..i]);
        out.push_str(replacement);
        i += len;
        plain = i;
    }
    out.push_str(&s[plain..]);
}

/// Appends `<name>text</name>` with escaping.
pub fn element(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    escape(text, out);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::is_xml_char;

    #[test]
    fn escape_covers_markup_characters() {
        let mut s = String::new();
        escape("a<b>&\"c\r", &mut s);
        assert_eq!(s, "a&lt;b&gt;&amp;\"c&#xD;");
        let mut a = String::new();
        escape_attr("a<\"&\n", &mut a);
        assert_eq!(a, "a&lt;&quot;&amp;&#xA;");
        // Characters XML forbids never reach the output; text around them, multi-byte included, does.
        let mut f = String::new();
        escape("é\u{1}ü<\u{FFFE}z", &mut f);
        assert_eq!(f, "é\u{FFFD}ü&lt;\u{FFFD}z");
    }

    /// The byte-wise escaping against a character-by-character statement of the rule, over every
    /// character of the BMP edges and a few beyond.
    #[test]
    fn escaping_bytes_equals_escaping_characters() {
        let reference = |s: &str, attr: bool| {
            let mut o = String::new();
            for c in s.chars() {
                match c {
                    '&' => o.push_str("&amp;"),
                    '<' => o.push_str("&lt;"),
                    '>' if !attr => o.push_str("&gt;"),
                    '"' if attr => o.push_str("&quot;"),
                    '\t' if attr => o.push_str("&#x9;"),
                    '\n' if attr => o.push_str("&#xA;"),
                    '\r' => o.push_str("&#xD;"),
                    c if !is_xml_char(c) => o.push('\u{FFFD}'),
                    c => o.push(c),
                }
            }
            o
        };
        let chars: String = (0u32..0x300)
            .chain(0xD700..0xD800)
            .chain(0xE000..0xE100)
            .chain(0xEFF0..0xF010)
            .chain(0xFFF0..=0xFFFF)
            .chain([0x10000, 0x1F600, 0x10FFFF])
            .filter_map(char::from_u32)
            .collect();
        for piece in [chars.as_str(), "plain text", "", "\u{FFFF}", "x\u{FFFE}"] {
            let (mut t, mut a) = (String::new(), String::new());
            escape(piece, &mut t);
            escape_attr(piece, &mut a);
            assert_eq!(t, reference(piece, false));
            assert_eq!(a, reference(piece, true));
        }
    }
}
