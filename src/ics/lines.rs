//! Content-line scanning (RFC 5545 §3.1) over byte offsets of the feed body.
//!
//! * a *physical* line ends with CRLF, LF or a lone CR (the last line may have no end);
//! * a *logical* line is a physical line plus the continuation lines (starting with a space or
//!   a tab) that follow it;
//! * [`unfold_into`] removes the folds of one logical line into a reused buffer; nothing else
//!   here allocates.

/// Space or horizontal tab: the bytes that start a continuation line.
#[inline]
pub(crate) fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Position of the first CR or LF in `s`, scanning a machine word at a time.
#[inline]
pub(crate) fn find_eol(s: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const LF: u64 = LO * b'\n' as u64;
    const CR: u64 = LO * b'\r' as u64;
    let mut i = 0;
    let mut chunks = s.chunks_exact(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let w = u64::from_le_bytes(w);
        let a = w ^ LF;
        let b = w ^ CR;
        // "has a zero byte" test: exact about whether one exists, which is all we need here.
        if ((a.wrapping_sub(LO) & !a) | (b.wrapping_sub(LO) & !b)) & HI != 0 {
            break;
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&c| c == b'\n' || c == b'\r')
        .map(|p| p + i)
}

/// What a logical line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LineKind {
    /// A normal content line (possibly folded, possibly malformed).
    Content,
    /// An empty physical line. Continuation lines never attach to it.
    Blank,
    /// A line that starts with a space or tab but has no line to continue (start of the body,
    /// or after a blank line): bad folding.
    Orphan,
}

/// One logical line: `start..end` are its raw bytes including the final line end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Line {
    pub start: usize,
    /// End of the first physical line's content (before its line end).
    pub first_end: usize,
    /// End of the last physical line's content (before its line end).
    pub content_end: usize,
    /// After the final line end.
    pub end: usize,
    pub kind: LineKind,
}

impl Line {
    /// Whether continuation lines follow the first physical line.
    #[inline]
    pub fn is_folded(&self) -> bool {
        self.content_end != self.first_end
    }

    /// The line's content with folds removed (borrowed from `body` when it is not folded).
    pub fn text<'a>(&self, body: &'a [u8], scratch: &'a mut Vec<u8>) -> &'a [u8] {
        let raw = &body[self.start..self.content_end];
        if self.is_folded() {
            unfold_into(raw, scratch);
            scratch
        } else {
            raw
        }
    }

    /// The line's content, name and parameters only (up to the `:` that starts the value),
    /// with folds removed. Cheap for long folded values: the value is not copied.
    pub fn head<'a>(&self, body: &'a [u8], scratch: &'a mut Vec<u8>) -> &'a [u8] {
        if self.is_folded() {
            unfold_head_into(&body[self.start..self.content_end], scratch);
            scratch
        } else {
            let raw = &body[self.start..self.content_end];
            &raw[..value_colon(raw).unwrap_or(raw.len())]
        }
    }
}

/// Iterator over the logical lines of `body[pos..]`.
pub(crate) struct Lines<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    pub fn new(body: &'a [u8], pos: usize) -> Self {
        Lines { body, pos }
    }

    /// Content end and end (after the line end) of the physical line starting at `start`.
    #[inline]
    fn physical(&self, start: usize) -> (usize, usize) {
        let body = self.body;
        match find_eol(&body[start..]) {
            None => (body.len(), body.len()),
            Some(p) => {
                let ce = start + p;
                let end = if body[ce] == b'\r' && body.get(ce + 1) == Some(&b'\n') {
                    ce + 2
                } else {
                    ce + 1
                };
                (ce, end)
            }
        }
    }
}

impl Iterator for Lines<'_> {
    type Item = Line;

    #[inline]
    fn next(&mut self) -> Option<Line> {
        let body = self.body;
        if self.pos >= body.len() {
            return None;
        }
        let start = self.pos;
        let (first_end, mut end) = self.physical(start);
        let kind = if first_end == start {
            LineKind::Blank
        } else if is_wsp(body[start]) {
            LineKind::Orphan
        } else {
            LineKind::Content
        };
        let mut content_end = first_end;
        if kind != LineKind::Blank {
            while end < body.len() && is_wsp(body[end]) {
                let (ce, e) = self.physical(end);
                content_end = ce;
                end = e;
            }
        }
        self.pos = end;
        Some(Line {
            start,
            first_end,
            content_end,
            end,
            kind,
        })
    }
}

/// Length of the line end at `s[i]` (CRLF = 2, CR or LF = 1), 0 if none.
#[inline]
fn eol_len(s: &[u8], i: usize) -> usize {
    match s.get(i) {
        Some(b'\r') if s.get(i + 1) == Some(&b'\n') => 2,
        Some(b'\r') | Some(b'\n') => 1,
        _ => 0,
    }
}

/// Removes folds (a line end followed by one space or tab) from a logical line's content.
pub(crate) fn unfold_into(src: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < src.len() {
        match find_eol(&src[i..]) {
            None => {
                out.extend_from_slice(&src[i..]);
                break;
            }
            Some(p) => {
                out.extend_from_slice(&src[i..i + p]);
                i += p;
                i += eol_len(src, i);
                if i < src.len() && is_wsp(src[i]) {
                    i += 1;
                }
            }
        }
    }
}

/// Like [`unfold_into`] but stops at the `:` that starts the value.
fn unfold_head_into(src: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut in_quotes = false;
    let mut i = 0;
    while i < src.len() {
        let b = src[i];
        match b {
            b'\r' | b'\n' => {
                i += eol_len(src, i);
                if i < src.len() && is_wsp(src[i]) {
                    i += 1;
                }
                continue;
            }
            b'"' => in_quotes = !in_quotes,
            b':' if !in_quotes => break,
            _ => {}
        }
        out.push(b);
        i += 1;
    }
}

/// Position of the `:` that separates name and parameters from the value (quotes respected).
pub(crate) fn value_colon(s: &[u8]) -> Option<usize> {
    // Fast path: no parameters, or parameters without quotes.
    let first = s.iter().position(|&b| b == b':' || b == b'"')?;
    if s[first] == b':' {
        return Some(first);
    }
    let mut in_quotes = false;
    for (i, &b) in s.iter().enumerate().skip(first) {
        match b {
            b'"' => in_quotes = !in_quotes,
            b':' if !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

/// A content line split into its parts (all borrowed from unfolded text).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ContentLine<'a> {
    pub name: &'a [u8],
    /// Everything between the name and the value colon, without the leading `;`.
    pub params: &'a [u8],
    pub value: &'a [u8],
    /// Whether a value colon exists at all (a line without one is malformed).
    pub has_value: bool,
}

/// Splits an unfolded content line into name, parameters and value.
pub(crate) fn parse_content(s: &[u8]) -> ContentLine<'_> {
    let name_end = s
        .iter()
        .position(|&b| b == b';' || b == b':')
        .unwrap_or(s.len());
    let name = &s[..name_end];
    match value_colon(&s[name_end..]) {
        Some(c) => {
            let colon = name_end + c;
            let params = if name_end < colon {
                &s[name_end + 1..colon]
            } else {
                &s[colon..colon]
            };
            ContentLine {
                name,
                params,
                value: &s[colon + 1..],
                has_value: true,
            }
        }
        None => ContentLine {
            name,
            params: s.get(name_end + 1..).unwrap_or(&[]),
            value: &[],
            has_value: false,
        },
    }
}

/// Iterator over `(name, raw value)` of a parameter list such as
/// `TZID="America/New_York";VALUE=DATE-TIME` (quotes kept in the raw value).
pub(crate) struct Params<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Params<'a> {
    pub fn new(s: &'a [u8]) -> Self {
        Params { s, i: 0 }
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.s;
        while self.i < s.len() {
            let start = self.i;
            let mut in_quotes = false;
            let mut eq = None;
            let mut j = start;
            while j < s.len() {
                match s[j] {
                    b'"' => in_quotes = !in_quotes,
                    b'=' if !in_quotes && eq.is_none() => eq = Some(j),
                    b';' if !in_quotes => break,
                    _ => {}
                }
                j += 1;
            }
            self.i = j + 1;
            if j == start {
                continue;
            }
            return Some(match eq {
                Some(e) => (&s[start..e], &s[e + 1..j]),
                None => (&s[start..j], &s[j..j]),
            });
        }
        None
    }
}

/// The value of parameter `name` (case-insensitive), first of a list, quotes removed.
pub(crate) fn param<'a>(params: &'a [u8], name: &str) -> Option<&'a [u8]> {
    Params::new(params)
        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| unquote_first(v))
}

/// First element of a parameter value list, without surrounding double quotes.
pub(crate) fn unquote_first(v: &[u8]) -> &[u8] {
    if let Some(rest) = v.strip_prefix(b"\"") {
        let end = rest.iter().position(|&b| b == b'"').unwrap_or(rest.len());
        &rest[..end]
    } else {
        let end = v.iter().position(|&b| b == b',').unwrap_or(v.len());
        &v[..end]
    }
}

/// Trims ASCII whitespace on both ends.
pub(crate) fn trim(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

/// `[A-Za-z0-9-]+`: an iana-token or x-name (RFC 5545 §3.1).
pub(crate) fn is_valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(body: &[u8]) -> Vec<(LineKind, Vec<u8>)> {
        let mut scratch = Vec::new();
        Lines::new(body, 0)
            .map(|l| (l.kind, l.text(body, &mut scratch).to_vec()))
            .collect()
    }

    #[test]
    fn line_ends_and_folding() {
        for eol in ["\r\n", "\n", "\r"] {
            let body = format!("A:1{eol}B:2{eol} x{eol}\ty{eol}{eol} orphan{eol}C:3");
            let got = lines(body.as_bytes());
            let want: Vec<(LineKind, Vec<u8>)> = vec![
                (LineKind::Content, b"A:1".to_vec()),
                (LineKind::Content, b"B:2xy".to_vec()),
                (LineKind::Blank, b"".to_vec()),
                (LineKind::Orphan, b" orphan".to_vec()),
                (LineKind::Content, b"C:3".to_vec()),
            ];
            assert_eq!(got, want, "eol {eol:?}");
        }
    }

    #[test]
    fn find_eol_matches_naive() {
        let mut s = vec![b'a'; 40];
        for pos in 0..40 {
            for c in [b'\r', b'\n'] {
                let mut t = s.clone();
                t[pos] = c;
                assert_eq!(find_eol(&t), Some(pos));
            }
        }
        s.push(0x8a); // high bytes must not confuse the word test
        assert_eq!(find_eol(&s), None);
    }

    #[test]
    fn content_and_params() {
        let c = parse_content(b"DTSTART;TZID=\"A:B\";VALUE=DATE-TIME:20240101T100000");
        assert_eq!(c.name, b"DTSTART");
        assert_eq!(c.value, b"20240101T100000");
        assert_eq!(param(c.params, "tzid"), Some(&b"A:B"[..]));
        assert_eq!(param(c.params, "VALUE"), Some(&b"DATE-TIME"[..]));
        let c = parse_content(b"garbage");
        assert!(!c.has_value);
        let mut scratch = Vec::new();
        let body = b"ATTENDEE;CN=\"x:\r\n y\";TZID=Z:mailto:a\r\n b\r\n";
        let line = Lines::new(body, 0).next().unwrap();
        assert_eq!(line.head(body, &mut scratch), b"ATTENDEE;CN=\"x:y\";TZID=Z");
    }
}
