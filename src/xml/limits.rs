//! How much of a document `parse` builds before it refuses.

/// How deep dkd follows element nesting. SuwiML messages with WS-Security need about 12 levels;
/// the limit keeps the tree (and its recursive drop) bounded for hostile input.
pub const MAX_DEPTH: usize = 64;

/// Bounds on what [`parse_with`](super::parse_with) builds. The body limit (`server.max_body_bytes`, 1 MiB) already
/// bounds the total, but within 1 MiB a hostile message can still be ~100,000 empty elements or
/// attributes, or one 1 MiB text node, each of which costs far more memory and time in the tree,
/// the namespace resolver and the signature verifier's parser than its bytes suggest. A signed
/// GSDReintegratieInfo (fuzz/corpus/wssec/seed-signed-found.xml) has 53 elements, at most 3
/// attributes on one element, names under 30 bytes, attribute values under 100 bytes and no text
/// over 1.3 KiB (the BinarySecurityToken; a PKIoverheid certificate makes that ~3 KiB), so the
/// defaults leave one to two orders of magnitude of room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Element nesting.
    pub max_depth: usize,
    /// Elements in the document.
    pub max_elements: usize,
    /// Attributes on one element, namespace declarations included.
    pub max_attributes_per_element: usize,
    /// Attributes in the document, namespace declarations included.
    pub max_attributes: usize,
    /// Bytes of one text node (adjacent text, references and CDATA joined, after unescaping).
    pub max_text_bytes: usize,
    /// Bytes of an element or attribute name, prefix included.
    pub max_name_bytes: usize,
    /// Bytes of one attribute value (namespace names included) as written, before unescaping.
    pub max_attr_value_bytes: usize,
}

impl ParseLimits {
    /// For SOAP messages from the network: what [`parse`](super::parse) uses.
    pub const MESSAGE: ParseLimits = ParseLimits {
        max_depth: MAX_DEPTH,
        max_elements: 10_000,
        max_attributes_per_element: 64,
        max_attributes: 10_000,
        max_text_bytes: 64 * 1024,
        max_name_bytes: 256,
        max_attr_value_bytes: 8 * 1024,
    };

    /// For import files an operator hands to `dkd import`: they hold a million persons, so only
    /// the depth (which bounds recursion) is limited.
    pub const FILE: ParseLimits = ParseLimits {
        max_depth: MAX_DEPTH,
        max_elements: usize::MAX,
        max_attributes_per_element: usize::MAX,
        max_attributes: usize::MAX,
        max_text_bytes: usize::MAX,
        max_name_bytes: usize::MAX,
        max_attr_value_bytes: usize::MAX,
    };
}
