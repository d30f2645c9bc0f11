//! Promises every engine keeps, checked the same way on the file store (tests/store.rs)
//! and on PostgreSQL (tests/pg_store.rs): an event id names one event, and errors carry
//! the numbers a caller acts on (`Error::detail`).

use evstore::store::{EventInput, ExpectedVersion, Store, StreamAppend};
use evstore::ErrorKind;

fn with_id<'a>(ty: &'a str, payload: &'a [u8], id: u8) -> EventInput<'a> {
    let mut e = EventInput::new(ty, payload);
    e.id = Some([id; 16]);
    e
}

/// A two-part append, each part to its stream whatever its version.
fn any_version<'a>(
    a: (&'a str, &'a [EventInput<'a>]),
    b: (&'a str, &'a [EventInput<'a>]),
) -> [StreamAppend<'a>; 2] {
    [a, b].map(|(stream, events)| StreamAppend {
        stream,
        expected: ExpectedVersion::Any,
        events,
    })
}

/// Appends `events` to `stream` once, then checks that the same events again are a
/// retry (the stored positions, nothing written) and that each kind of other content
/// under the same ids is refused with `AlreadyExists`, naming the stored event.
pub fn an_event_id_names_one_event(s: &Store) {
    let stored = [
        with_id("Placed", b"order 1", 0xA1),
        with_id("Paid", b"10 EUR", 0xA2),
    ];
    let first = s
        .append("order-1", ExpectedVersion::NoStream, &stored)
        .expect("the first append");
    let next = s.next_position().unwrap();
    // The same events again: a retry, whatever the expected version says now.
    let again = s
        .append("order-1", ExpectedVersion::NoStream, &stored)
        .expect("a retry");
    assert_eq!(again, first);
    refused_for_other_content(s, first.first_position, next);
}

/// Every way an append can carry a stored id (that of position `at`, "Placed"/"order 1"
/// in "order-1") with other content: refused, nothing written (`next` stays).
pub fn refused_for_other_content(s: &Store, at: u64, next: u64) {
    let paid = with_id("Paid", b"10 EUR", 0xA2);
    let mut other_schema = with_id("Placed", b"order 1", 0xA1);
    other_schema.schema_version = 2;
    let mut other_metadata = with_id("Placed", b"order 1", 0xA1);
    other_metadata.metadata = b"by: a bug";
    let cases: [(&str, EventInput, &str); 5] = [
        ("order-1", with_id("Placed", b"order 2", 0xA1), "payload"),
        ("order-1", with_id("Cancelled", b"order 1", 0xA1), "type"),
        ("order-1", other_schema, "schema version"),
        ("order-1", other_metadata, "metadata"),
        (
            "order-9",
            with_id("Placed", b"order 1", 0xA1),
            "stream 'order-1'",
        ),
    ];
    for (stream, changed, what) in cases {
        let e = s
            .append(stream, ExpectedVersion::Any, &[changed, paid])
            .expect_err(what);
        assert_eq!(e.kind, ErrorKind::AlreadyExists, "{what}: {e}");
        assert!(
            e.message.contains("other content") && e.message.contains(what),
            "{what}: {}",
            e.message
        );
        assert_eq!(e.detail().position, Some(at), "{what}");
        assert_eq!(e.detail().part_index, None, "{what}: one stream, no parts");
        assert_eq!(s.next_position().unwrap(), next, "{what}: nothing written");
    }
    // Other content wins over "only some ids stored": the id names another event.
    let e = s
        .append(
            "order-1",
            ExpectedVersion::Any,
            &[
                with_id("Placed", b"order 3", 0xA1),
                with_id("New", b"", 0xA9),
            ],
        )
        .unwrap_err();
    assert!(e.message.contains("other content"), "{}", e.message);
    // In a multi-stream append the error names its part.
    let e = s
        .append_multi(&any_version(
            ("order-7", &[with_id("X", b"", 0xB1)]),
            ("order-1", &[with_id("Placed", b"other", 0xA1)]),
        ))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::AlreadyExists);
    assert_eq!(
        (e.detail().part_index, e.detail().position),
        (Some(1), Some(at))
    );
    assert_eq!(s.next_position().unwrap(), next, "nothing written");
}

/// `WrongExpectedVersion` carries the stream's version (and, in a multi-stream append,
/// the part); a partly stored retry carries the stored event's position.
pub fn errors_carry_their_numbers(s: &Store) {
    let ev = |t| EventInput::new(t, b"x");
    s.append("acct-a", ExpectedVersion::NoStream, &[ev("A"), ev("B")])
        .unwrap();
    let e = s
        .append("acct-a", ExpectedVersion::Exact(0), &[ev("C")])
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::WrongExpectedVersion);
    assert_eq!(e.detail().actual_version, Some(Some(1)));
    assert_eq!(e.detail().part_index, None, "evs_append names no parts");
    assert_eq!(e.detail().position, None);
    let e = s
        .append("acct-none", ExpectedVersion::Exists, &[ev("C")])
        .unwrap_err();
    assert_eq!(e.detail().actual_version, Some(None), "no such stream");
    let e = s
        .append_multi(&[
            StreamAppend {
                stream: "acct-b",
                expected: ExpectedVersion::NoStream,
                events: &[ev("Opened")],
            },
            StreamAppend {
                stream: "acct-a",
                expected: ExpectedVersion::Exact(7),
                events: &[ev("Moved")],
            },
        ])
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::WrongExpectedVersion);
    assert_eq!(
        (e.detail().actual_version, e.detail().part_index),
        (Some(Some(1)), Some(1))
    );
    // Only some ids stored: the stored one's position, in its part.
    let r = s
        .append("ids", ExpectedVersion::Any, &[with_id("I", b"1", 0xC1)])
        .unwrap();
    let e = s
        .append_multi(&any_version(
            ("other", &[with_id("J", b"2", 0xC2)]),
            ("ids", &[with_id("I", b"1", 0xC1)]),
        ))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
    assert_eq!(
        (e.detail().position, e.detail().part_index),
        (Some(r.first_position), Some(1))
    );
    // Errors without numbers have none.
    let e = s.read_stream("no-such-stream", 0).err().expect("not found");
    assert_eq!(e.detail(), evstore::ErrorDetail::default());
}
