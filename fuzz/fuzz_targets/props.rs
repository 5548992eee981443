//! The property editor of the two-way path on arbitrary bytes, as a user's
//! calendar file can hold anything: `read_event`, then `apply_fields`,
//! `with_uid`, `set_property`, `transplant` and `update_from_platform` must
//! not panic, and an edited file must still read back with the fields that
//! were written (for `update_from_platform`: the platform's summary under the
//! local UID).
#![no_main]

use libfuzzer_sys::fuzz_target;
use meetsync::ics::props;
use meetsync::model::Field;

fuzz_target!(|data: &[u8]| {
    let Ok(info) = props::read_event(data) else {
        return;
    };
    if let Ok(edited) = props::apply_fields(data, &info.fields) {
        let again = props::read_event(&edited).expect("an edited file reads back");
        assert_eq!(again.uid, info.uid);
    }
    let mut f = info.fields.clone();
    f.summary = "fuzz, summary; with \\ specials\nand a newline".into();
    if let Ok(edited) = props::apply_fields(data, &f) {
        let again = props::read_event(&edited).expect("an edited file reads back");
        assert_eq!(again.fields.summary, f.summary);
    }
    if let Ok(b) = props::with_uid(data, "fuzz-copy@example.test") {
        assert_eq!(
            props::read_event(&b)
                .expect("a renamed file reads back")
                .uid,
            "fuzz-copy@example.test"
        );
    }
    let _ = props::set_property(data, "X-MEETSYNC-CONFLICT-COPY", "x");
    let _ = props::transplant(data, data, &Field::ALL);
    // the file as the platform's new version of itself (other summary, other UID)
    let platform = props::apply_fields(data, &f).and_then(|b| props::with_uid(&b, "platform-uid"));
    if let Ok(remote) = platform {
        if let Ok(merged) = props::update_from_platform(data, &remote, &["SEQUENCE"], &[]) {
            let again = props::read_event(&merged).expect("a merged file reads back");
            assert_eq!(again.uid, info.uid);
            assert_eq!(again.fields.summary, f.summary);
        }
        let _ = props::update_from_platform(data, &remote, &[], &[Field::Summary]);
    }
});
