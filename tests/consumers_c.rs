//! Durable consumers through the C API: the callback form (retry, park from inside the
//! callback, a stop that says why), then the pull form resuming after it, the list, and
//! refusals with their status codes.

use evstore::ffi::*;
use std::ffi::{c_void, CStr, CString};
use std::sync::Mutex;

fn input(payload: &[u8]) -> evs_event_input {
    // SAFETY: all zero is a valid evs_event_input (NULL pointers, no id).
    let mut e: evs_event_input = unsafe { std::mem::zeroed() };
    e.struct_size = std::mem::size_of::<evs_event_input>();
    e.event_type = c"T".as_ptr();
    e.payload = payload.as_ptr();
    e.payload_len = payload.len();
    e
}

/// What the callback saw: (position, attempt).
static SEEN: Mutex<Vec<u64>> = Mutex::new(Vec::new());

unsafe extern "C" fn on_event(_: *mut c_void, c: *mut evs_consumer, e: *const evs_event) -> i32 {
    let p = unsafe { (*e).position };
    let mut seen = SEEN.lock().unwrap();
    let tries = seen.iter().filter(|&&x| x == p).count();
    seen.push(p);
    drop(seen);
    match p {
        // Fails once, then is handled.
        0 if tries == 0 => EVS_CONSUMER_RETRY,
        // Parked from inside the callback; delivery goes on.
        2 => {
            let rc = unsafe { evs_consumer_park(c, 2, c"no handler".as_ptr()) };
            assert_eq!(rc, EVS_OK);
            // The subscription's consumer is not the callback's to close.
            assert_eq!(unsafe { evs_consumer_close(c) }, EVS_ERR_INVALID_ARGUMENT);
            EVS_CONSUMER_ACK
        }
        4 => 7,
        _ => EVS_CONSUMER_ACK,
    }
}

#[test]
fn the_callback_form_retries_parks_stops_with_a_reason_and_the_pull_form_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let path = CString::new(dir.path().join("s").to_str().unwrap()).unwrap();
    let mut s = std::ptr::null_mut();
    assert_eq!(
        unsafe {
            evs_open(
                path.as_ptr(),
                std::ptr::null(),
                &mut s,
                std::ptr::null_mut(),
            )
        },
        EVS_OK
    );
    for i in 0..6u8 {
        let ev = [input(&[i])];
        let rc = unsafe {
            evs_append(
                s,
                c"s".as_ptr(),
                EVS_EXPECT_ANY,
                ev.as_ptr(),
                1,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, EVS_OK);
    }
    let opts = evs_consumer_options {
        struct_size: std::mem::size_of::<evs_consumer_options>(),
        retry_backoff_ms: 1,
        retry_backoff_max_ms: 2,
        ..unsafe { std::mem::zeroed() }
    };
    let mut sub = std::ptr::null_mut();
    let rc = unsafe {
        evs_subscribe_durable(
            s,
            c"cb".as_ptr(),
            &opts,
            Some(on_event),
            std::ptr::null_mut(),
            &mut sub,
        )
    };
    assert_eq!(rc, EVS_OK);
    // Open while the subscription runs: refused.
    let mut c = std::ptr::null_mut();
    assert_eq!(
        unsafe { evs_consumer_open(s, c"cb".as_ptr(), &opts, &mut c) },
        EVS_ERR_LOCKED
    );
    let mut status = EVS_OK;
    while unsafe { evs_subscription_status(sub, &mut status) } == EVS_OK {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(status, EVS_OK);
    let why = unsafe { CStr::from_ptr(evs_subscription_error_message(sub)) };
    assert_eq!(
        why.to_str().unwrap(),
        "stopped by its callback, which returned 7"
    );
    assert_eq!(unsafe { evs_subscription_close(sub) }, EVS_OK);
    assert_eq!(*SEEN.lock().unwrap(), vec![0, 0, 1, 2, 3, 4]);

    // The parked event is listed with its reason.
    let mut parked = std::ptr::null_mut();
    assert_eq!(
        unsafe { evs_list_parked(s, c"cb".as_ptr(), &mut parked) },
        EVS_OK
    );
    assert_eq!(unsafe { evs_parked_list_count(parked) }, 1);
    let mut p = evs_parked_event {
        struct_size: std::mem::size_of::<evs_parked_event>(),
        ..unsafe { std::mem::zeroed() }
    };
    assert_eq!(unsafe { evs_parked_list_get(parked, 0, &mut p) }, EVS_OK);
    assert_eq!(p.position, 2);
    assert_eq!(
        unsafe { CStr::from_ptr(p.reason) }.to_str().unwrap(),
        "no handler"
    );
    assert_eq!(
        unsafe { evs_parked_list_get(parked, 1, &mut p) },
        EVS_ERR_NOT_FOUND
    );
    unsafe { evs_parked_list_free(parked) };

    // The pull form resumes after the last event the callback handled (3).
    assert_eq!(
        unsafe { evs_consumer_open(s, c"cb".as_ptr(), std::ptr::null(), &mut c) },
        EVS_OK
    );
    let mut e: evs_event = unsafe { std::mem::zeroed() };
    e.struct_size = std::mem::size_of::<evs_event>();
    assert_eq!(unsafe { evs_consumer_next(c, &mut e, 1000) }, EVS_OK);
    assert_eq!(e.position, 4);
    assert_eq!(
        unsafe { evs_consumer_ack(c, 9) },
        EVS_ERR_INVALID_ARGUMENT,
        "not delivered"
    );
    assert_eq!(unsafe { evs_consumer_ack(c, 4) }, EVS_OK);
    let (mut next, mut stored) = (0u64, 0u64);
    assert_eq!(
        unsafe { evs_consumer_position(c, &mut next, &mut stored) },
        EVS_OK
    );
    assert_eq!(next, 5);
    assert_eq!(unsafe { evs_consumer_close(c) }, EVS_OK);

    let mut list = std::ptr::null_mut();
    assert_eq!(unsafe { evs_list_consumers(s, &mut list) }, EVS_OK);
    assert_eq!(unsafe { evs_consumer_list_count(list) }, 1);
    let mut info = evs_consumer_info {
        struct_size: std::mem::size_of::<evs_consumer_info>(),
        ..unsafe { std::mem::zeroed() }
    };
    assert_eq!(unsafe { evs_consumer_list_get(list, 0, &mut info) }, EVS_OK);
    assert_eq!(unsafe { CStr::from_ptr(info.name) }.to_str().unwrap(), "cb");
    assert_eq!(info.next_position, 5);
    assert_eq!(info.parked, 1);
    assert!(!info.open);
    unsafe { evs_consumer_list_free(list) };

    // Refusals name their argument.
    assert_eq!(
        unsafe { evs_consumer_open(s, c"".as_ptr(), std::ptr::null(), &mut c) },
        EVS_ERR_INVALID_ARGUMENT
    );
    let long = CString::new("n".repeat(101)).unwrap();
    assert_eq!(
        unsafe { evs_consumer_reset(s, long.as_ptr(), 0) },
        EVS_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        unsafe { evs_consumer_reset(s, c"cb".as_ptr(), 1_000_000) },
        EVS_ERR_NOT_FOUND
    );
    assert_eq!(
        unsafe { evs_consumer_delete(s, c"nobody".as_ptr()) },
        EVS_ERR_NOT_FOUND
    );
    assert_eq!(unsafe { evs_close(s) }, EVS_OK);
}
