//! `ics::split_feed` on arbitrary bytes; for every item: `render`, the safe
//! file name, `props::read_event` of the rendered file, and the invariants the
//! sync relies on (a rendered file is a feed of exactly that item, rendering is
//! a fixpoint). Same checks as `check_split` in src/ics/tests.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meetsync::ics;

fn assert_safe_stem(stem: &str) {
    assert!(!stem.is_empty());
    assert!(stem != "." && stem != "..");
    assert!(!stem.starts_with('.'));
    assert!(!stem.contains('/') && !stem.contains('\0') && !stem.contains('\\'));
    assert!(stem.len() <= 100, "{stem}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(feed) = ics::split_feed(data) else {
        return;
    };
    for item in feed.items() {
        assert!(item.components >= 1);
        let out = feed.render(item);
        // wrapped in BEGIN/END:VCALENDAR lines with the feed's line end
        assert!(out.starts_with(b"BEGIN:VCALENDAR"));
        let eol: &[u8] = match out.get(15..17) {
            Some(b"\r\n") => b"\r\n",
            Some([b'\n', _]) => b"\n",
            _ => b"\r",
        };
        assert!(out.ends_with(&[&b"END:VCALENDAR"[..], eol].concat()));
        assert_eq!(ics::uid_of_ics(&out).as_deref(), Some(item.uid.as_str()));
        assert_safe_stem(&ics::file_stem_for_uid(&item.uid));
        let again = ics::split_feed(&out).expect("a rendered item splits");
        assert_eq!(again.items().len(), 1);
        assert!(again.skipped().is_empty());
        let a = &again.items()[0];
        assert_eq!(
            (&a.uid, a.components, a.span),
            (&item.uid, item.components, item.span)
        );
        assert_eq!(again.render(a), out);
        // the two-way path reads and edits what the pull path wrote
        if let Ok(info) = ics::read_event(&out) {
            if let Ok(edited) = ics::apply_fields(&out, &info.fields) {
                let _ = ics::read_event(&edited);
            }
            let _ = ics::with_uid(&out, "fuzz-copy");
        }
    }
});
