//! The keys of a JSON text, found by a scan rather than a parse, for text that may be cut
//! short (the first bytes of an over-long line) or whose positions are wanted (a config error's
//! line). Used by `codec::answered_id`, `codec::parse_json` (`has_key`) and `config::locate_key`.

/// One object key in the text.
pub(crate) struct Key {
    /// How many objects and arrays enclose it: 1 for a member of the outermost object.
    pub depth: usize,
    /// Byte offset of its opening quote.
    pub start: usize,
    /// Byte offset just past its closing quote: `text[start..end]` is the quoted key.
    pub end: usize,
    /// Byte offset just past its colon, where its value begins.
    pub value: usize,
}

/// Whether any object of `text`, at any depth, has a member named `name` (escapes in the key
/// read as JSON reads them: `"\u0024a"` is `$a`).
pub(crate) fn has_key(text: &[u8], name: &str) -> bool {
    keys(text).any(|k| {
        let quoted = &text[k.start..k.end];
        let inner = &quoted[1..quoted.len().saturating_sub(1).max(1)];
        if inner.contains(&b'\\') {
            serde_json::from_slice::<String>(quoted).is_ok_and(|key| key == name)
        } else {
            inner == name.as_bytes()
        }
    })
}

/// Every key of `text`, in order. A string followed by a colon is a key; strings are skipped
/// with their escapes, so a quote or brace inside one is not taken for structure.
pub(crate) fn keys(text: &[u8]) -> impl Iterator<Item = Key> + '_ {
    let mut at = 0;
    let mut depth = 0usize;
    std::iter::from_fn(move || {
        while at < text.len() {
            let byte = text[at];
            at += 1;
            match byte {
                b'{' | b'[' => depth += 1,
                b'}' | b']' => depth = depth.saturating_sub(1),
                b'"' => {
                    let start = at - 1;
                    while at < text.len() && text[at] != b'"' {
                        at += if text[at] == b'\\' { 2 } else { 1 };
                    }
                    at = (at + 1).min(text.len());
                    let end = at;
                    let colon = text[end..].iter().position(|b| !b.is_ascii_whitespace());
                    if let Some(c) = colon.filter(|c| text[end + c] == b':') {
                        return Some(Key {
                            depth,
                            start,
                            end,
                            value: end + c + 1,
                        });
                    }
                }
                _ => {}
            }
        }
        None
    })
}
