//! Stats and Prometheus metrics for C callers.

use super::args::{out_arg, write_out};
use super::extensible::{extensible, out_struct};
use super::status::*;
use super::store::{evs_store, store_arg};
use std::ffi::{c_char, CString};
use std::fmt::Write;

/// Counters of a store since it was opened (events and bytes: of the whole log).
/// Caller-allocated: set `struct_size` (see `EVS_STRUCT_INIT`).
#[repr(C)]
pub struct evs_stats {
    /// sizeof(evs_stats) as the caller's header has it; the library never changes it.
    pub struct_size: usize,
    /// Positions used: events (removed ones too) and lifecycle entries.
    pub events: u64,
    /// Streams a reader sees: those `evs_list_streams` lists (not hard-deleted, with an
    /// event left).
    pub streams: u64,
    pub bytes_on_disk: u64,
    pub segments: u64,
    /// Append calls since open.
    pub appends: u64,
    pub fsyncs: u64,
    /// Upper bounds of the fsync latency's median and 99th percentile, microseconds.
    pub fsync_p50_us: u64,
    pub fsync_p99_us: u64,
    pub open_time_us: u64,
    pub snapshots: u64,
    /// Memory held by the indexes for their events.
    pub index_bytes: u64,
    pub accounts: u64,
    /// Subscriptions still delivering.
    pub subscriptions: u64,
    /// Event ids remembered for idempotent appends (added in 1.0; older programs' smaller
    /// structs do not get it).
    pub event_ids: u64,
    /// Events removed by deletes, truncations and retention rules, whose positions read
    /// as empty (added in 1.1, as are the two after it).
    pub removed_events: u64,
    /// Lifecycle entries (deletes, truncations, rules) in the log; `events` counts them
    /// too, as it counts every position used.
    pub lifecycle_entries: u64,
    /// Bytes of sealed segments' records that a compaction (`evs_compact`) would free now:
    /// the records of removed events (file engine; computed at each call, a walk over
    /// the streams with removed events). The active segment's are not counted until it
    /// seals. PostgreSQL: the stored size of the rows that retention rules by age
    /// removed and `evs_compact` would delete (deletes and truncations delete theirs at
    /// once).
    pub reclaimable_bytes: u64,
}

/// Fills `*out` with the store's counters.
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL, a bad `out->struct_size`); on
/// PostgreSQL EVS_ERR_CORRUPT (the accounts' events could not be taken in: positions not
/// dense). Thread safety: any thread.
/// Ownership: `*out` is the caller's struct, filled only on success.
#[no_mangle]
pub unsafe extern "C" fn evs_stats_get(s: *mut evs_store, out: *mut evs_stats) -> evs_status {
    boundary(|| {
        // SAFETY: `s` is NULL or a live store.
        let store = unsafe { store_arg(s) }?;
        // SAFETY: NULL or the caller's struct, starting with its size.
        let out = unsafe { out_struct(out, "out") }?;
        let st = store.bank.store().stats()?;
        out.write(evs_stats {
            struct_size: std::mem::size_of::<evs_stats>(),
            events: st.events,
            streams: st.streams,
            bytes_on_disk: st.bytes_on_disk,
            segments: st.segments,
            appends: st.appends,
            fsyncs: st.fsyncs,
            fsync_p50_us: st.fsync_p50_us,
            fsync_p99_us: st.fsync_p99_us,
            open_time_us: st.open_time_us,
            snapshots: st.snapshots,
            index_bytes: st.index_bytes,
            accounts: store.bank.accounts().len() as u64,
            subscriptions: super::subscription::live_count(&store),
            event_ids: st.event_ids,
            removed_events: st.removed_events,
            lifecycle_entries: st.lifecycle_entries,
            reclaimable_bytes: st.reclaimable_bytes,
        });
        Ok(EVS_OK)
    })
}

extensible!(evs_stats, events);

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The durable consumers' figures (docs/consumers.md, Operations), one series per
/// consumer, labelled with its name: what `evs_list_consumers` gives.
fn consumer_metrics(t: &mut String, consumers: &[crate::store::consumer::ConsumerInfo]) {
    let series: [(&str, &str, &str); 5] = [
        (
            "evstore_consumer_next_position",
            "gauge",
            "A durable consumer's checkpoint: the next position it will be given.",
        ),
        (
            "evstore_consumer_lag_events",
            "gauge",
            "Positions between a durable consumer's checkpoint and the log's end.",
        ),
        (
            "evstore_consumer_lag_seconds",
            "gauge",
            "Age of the first event after a durable consumer's checkpoint (0 when none).",
        ),
        (
            "evstore_consumer_parked",
            "gauge",
            "Events a durable consumer has parked.",
        ),
        (
            "evstore_consumer_open",
            "gauge",
            "1 while a durable consumer is open (in any process).",
        ),
    ];
    for (i, (name, kind, help)) in series.iter().enumerate() {
        let _ = writeln!(t, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for c in consumers {
            let label = escape_label(&c.name);
            let value = match i {
                0 => c.next.unwrap_or(0).to_string(),
                1 => c.lag_events.to_string(),
                2 => format!("{}.{:06}", c.lag_us / 1_000_000, c.lag_us % 1_000_000),
                3 => c.parked.to_string(),
                _ => u64::from(c.open).to_string(),
            };
            let _ = writeln!(t, "{name}{{consumer=\"{label}\"}} {value}");
        }
    }
}

/// The store's counters in the Prometheus text exposition format, with one series per
/// durable consumer (`evstore_consumer_*{consumer="NAME"}`).
///
/// Ownership: `*out_text` belongs to the caller, who frees it with `evs_string_free`.
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL); on PostgreSQL EVS_ERR_CORRUPT as for
/// `evs_stats_get`; EVS_ERR_CORRUPT / EVS_ERR_IO as `evs_list_consumers` (a consumer
/// journal damaged or unreadable). Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn evs_metrics_text(
    s: *mut evs_store,
    out_text: *mut *mut c_char,
) -> evs_status {
    boundary(|| {
        // SAFETY: `s` is NULL or a live store.
        let store = unsafe { store_arg(s) }?;
        let out = out_arg(out_text, "out_text")?;
        let st = store.bank.store().stats()?;
        let mut t = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                t,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "evstore_events_total",
            "counter",
            "Events in the log.",
            st.events,
        );
        metric(
            "evstore_removed_events",
            "gauge",
            "Events removed by deletes, truncations and retention rules.",
            st.removed_events,
        );
        metric(
            "evstore_appends_total",
            "counter",
            "Append calls since open.",
            st.appends,
        );
        metric(
            "evstore_fsyncs_total",
            "counter",
            "fdatasync calls since open.",
            st.fsyncs,
        );
        metric(
            "evstore_snapshots_total",
            "counter",
            "Snapshots written since open.",
            st.snapshots,
        );
        metric(
            "evstore_streams",
            "gauge",
            "Streams in the store.",
            st.streams,
        );
        metric(
            "evstore_bytes_on_disk",
            "gauge",
            "Logical bytes of the log.",
            st.bytes_on_disk,
        );
        metric(
            "evstore_segments",
            "gauge",
            "Segment files of the log.",
            st.segments,
        );
        metric(
            "evstore_fsync_p50_microseconds",
            "gauge",
            "Median fdatasync latency (bucket bound).",
            st.fsync_p50_us,
        );
        metric(
            "evstore_fsync_p99_microseconds",
            "gauge",
            "99th percentile fdatasync latency (bucket bound).",
            st.fsync_p99_us,
        );
        metric(
            "evstore_open_time_microseconds",
            "gauge",
            "Time the last open took.",
            st.open_time_us,
        );
        metric(
            "evstore_index_bytes",
            "gauge",
            "Memory held by the indexes.",
            st.index_bytes,
        );
        metric(
            "evstore_subscriptions",
            "gauge",
            "Subscriptions still delivering.",
            super::subscription::live_count(&store),
        );
        metric(
            "evstore_accounts",
            "gauge",
            "Accounts in the projection.",
            store.bank.accounts().len() as u64,
        );
        for (name, kind, help, value) in store.bank.store().backend_metrics() {
            metric(name, kind, help, value);
        }
        super::subscription::write_metrics(&store, st.events, &mut t);
        let _ = writeln!(
            t,
            "# HELP evstore_events_by_type_total Events in the log by type."
        );
        let _ = writeln!(t, "# TYPE evstore_events_by_type_total counter");
        for (ty, n) in &st.events_by_type {
            let _ = writeln!(
                t,
                "evstore_events_by_type_total{{type=\"{}\"}} {n}",
                escape_label(ty)
            );
        }
        consumer_metrics(
            &mut t,
            &crate::store::consumer_run::list(store.bank.store())?,
        );
        let c = CString::new(t.replace('\0', "")).unwrap_or_default();
        write_out(out, c.into_raw());
        Ok(EVS_OK)
    })
}

/// Frees a string the library returned (e.g. from `evs_metrics_text`). NULL is a no-op.
/// Ownership: takes `text`. Thread safety: any thread, once per string.
#[no_mangle]
pub unsafe extern "C" fn evs_string_free(text: *mut c_char) {
    if !text.is_null() {
        // Like every export: cancellation held off, panics caught (`cancel::quietly`).
        super::cancel::quietly(|| {
            // SAFETY: `text` came from CString::into_raw in this library and is freed once.
            drop(unsafe { CString::from_raw(text) });
        });
    }
}
