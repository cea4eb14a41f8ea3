//! Small XML helpers shared by the message and envelope writers: escaping and namespace constants.
//!
//! Kept apart so that `suwiml` and `soap` agree on the exact bytes they emit (which matters once
//! responses are signed over their canonical form).
//!
//! `ns`: namespace constants; `escape`: C14N-compatible escaping; `dom`: the tree; `limits`:
//! `ParseLimits`; `parse`: the parser.

mod dom;
mod escape;
mod limits;
mod ns;
mod parse;

pub use dom::{Attr, Element, Node};
pub use escape::{element, escape, escape_attr};
pub use limits::{ParseLimits, MAX_DEPTH};
pub use ns::*;
pub(crate) use parse::{check_chars, tokenizer};
pub use parse::{is_xml_char, line_of, parse, parse_with, XmlError};
