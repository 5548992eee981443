//! File names for UIDs: a UID never becomes a path.

use sha2::{Digest, Sha256};

/// Longest UID kept as-is, and the length bound of every stem.
const MAX_AS_IS: usize = 100;
/// Longest readable prefix in the hashed form.
const MAX_PREFIX: usize = 40;
/// Hex characters of sha256(uid) in the hashed form (80 bits).
const HASH_HEX: usize = 20;

/// The file stem (name without `.ics`) for an event UID.
///
/// * A UID that is already a safe, portable name is returned as-is: only `[a-z0-9._@+-]`
///   (lowercase, so UIDs differing only by case cannot collide on case-insensitive file
///   systems), 1..=100 bytes, not starting with `.`, not containing `..`, and not a Windows
///   device name (`con`, `nul`, `com1`, … before the first `.`).
/// * Anything else becomes `prefix~hash`: a readable lowercase prefix of `[a-z0-9-]` (≤ 40
///   chars, may be empty, never starts or ends with `-`), `~`, and the first 20 hex chars of
///   sha256(uid). `~` never occurs in the as-is form, so the two families cannot collide.
///
/// The result is never empty, never `.` or `..`, never contains `/`, `\`, NUL or `~` twice,
/// and is at most 100 bytes.
pub fn file_stem_for_uid(uid: &str) -> String {
    if is_safe_as_is(uid) {
        return uid.to_owned();
    }
    let mut out = String::with_capacity(MAX_PREFIX + 1 + HASH_HEX);
    let mut pending_dash = false;
    for c in uid.chars() {
        if out.len() >= MAX_PREFIX {
            break;
        }
        if c.is_ascii_alphanumeric() {
            if pending_dash && !out.is_empty() && out.len() + 1 < MAX_PREFIX {
                out.push('-');
            }
            pending_dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            pending_dash = true;
        }
    }
    out.push('~');
    let digest = Sha256::digest(uid.as_bytes());
    out.push_str(&hex::encode(&digest[..HASH_HEX / 2]));
    out
}

fn is_safe_as_is(uid: &str) -> bool {
    let b = uid.as_bytes();
    (1..=MAX_AS_IS).contains(&b.len())
        && b[0] != b'.'
        && b.iter()
            .all(|&c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'@' | b'+' | b'-'))
        && !uid.contains("..")
        && !is_windows_device(uid)
}

/// `con`, `prn`, `aux`, `nul`, `com0`-`com9`, `lpt0`-`lpt9` (as the part before the first dot).
fn is_windows_device(uid: &str) -> bool {
    let base = uid.split('.').next().unwrap_or(uid);
    match base.len() {
        3 => matches!(base, "con" | "prn" | "aux" | "nul"),
        4 => {
            (base.starts_with("com") || base.starts_with("lpt"))
                && base.as_bytes()[3].is_ascii_digit()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_safe(uid: &str, stem: &str) {
        assert!(!stem.is_empty(), "{uid:?}");
        assert!(stem != "." && stem != "..", "{uid:?}");
        assert!(stem.len() <= 100, "{uid:?} -> {stem:?}");
        assert!(
            !stem.starts_with('.') && !stem.starts_with('-'),
            "{uid:?} -> {stem:?}"
        );
        assert!(!stem.contains(".."), "{uid:?} -> {stem:?}");
        assert!(
            stem.bytes().all(
                |c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'@' | b'+' | b'-' | b'~')
            ),
            "{uid:?} -> {stem:?}"
        );
    }

    #[test]
    fn as_is_and_hashed() {
        assert_eq!(file_stem_for_uid("abc"), "abc");
        assert_eq!(
            file_stem_for_uid("a1b2-c3@example.com"),
            "a1b2-c3@example.com"
        );
        let upper = file_stem_for_uid("ABC");
        assert_ne!(upper, "abc");
        assert!(upper.starts_with("abc~"), "{upper}");
        assert_eq!(upper.len(), 3 + 1 + HASH_HEX);
        for uid in [
            "../x", "/", "a\0b", "", ".", "..", ".hidden", "x/../y", "con", "nul.x", "COM1",
        ] {
            let s = file_stem_for_uid(uid);
            assert_safe(uid, &s);
            assert!(s.contains('~'), "{uid:?} -> {s}");
        }
        assert_eq!(
            file_stem_for_uid("../x"),
            format!("x~{}", &hex::encode(Sha256::digest(b"../x"))[..20])
        );
        assert!(file_stem_for_uid("/").starts_with('~'));
        assert!(file_stem_for_uid("").starts_with('~'));
        let long = "a".repeat(500);
        let s = file_stem_for_uid(&long);
        assert_safe(&long, &s);
        assert_eq!(s.len(), MAX_PREFIX + 1 + HASH_HEX);
        assert_ne!(file_stem_for_uid(&"a".repeat(501)), s);
        assert_eq!(file_stem_for_uid(&"a".repeat(100)), "a".repeat(100));
        let s = file_stem_for_uid("Hello, World!! Meeting #42");
        assert!(s.starts_with("hello-world-meeting-42~"), "{s}");
        let s = file_stem_for_uid("äöü");
        assert!(s.starts_with('~'), "{s}");
    }
}
