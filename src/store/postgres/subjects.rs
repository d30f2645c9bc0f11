//! Personal data on PostgreSQL (README "Personal data", `store::subjects`; schema 7).
//!
//! An event that names a subject is sealed here, in the library, before it is sent: the
//! server only ever sees its ciphertext. Its `metadata` element is stored null (never
//! null for other events) and its `data` element holds `[1][subject length u16 LE]
//! [subject][nonce][sealed varint metadata length, metadata, payload][tag]`.
//!
//! Positions are handed out at the commit, after sealing, so the position cannot be
//! bound as the file engine binds it: what is bound instead is the event's id (one is
//! made for an event that names a subject and has none), which the `ids` table keeps
//! unique, with every clear field of the event (stream, type, schema version, subject).
//! Ciphertext moved to another event fails its authentication, as on files.
//!
//! Keys are kept in `subject_keys` (wrapped by the master key when one is given) or by
//! the application's key provider. Forgetting (`forget_subject`) writes the forget entry,
//! records the subject in `forgotten_subjects` and deletes its key in one transaction:
//! the key is fully there or fully gone. Every handle learns of forgets by the count of
//! lifecycle entries its window statements read (`PgStore::learn_forgets`).

use super::{block, PgStore};
use crate::error::{Error, ErrorKind, Result};
use crate::store::import::{forgotten_here, Item};
use crate::store::lifecycle::LifecycleOp;
use crate::store::subjects::{DataKey, KeyBytes, KeyRing, KeyVault, NONCE_LEN, TAG_LEN};
use crate::store::{Event, EventInput, StreamAppend};
use crate::wal::record::{get_varint, put_varint};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::runtime::Runtime;

/// The first byte of a sealed `data` element (its format).
const SEALED_FORMAT: u8 = 1;

/// Bound first into every sealed event's associated data.
const CONTEXT: &[u8] = b"evstore postgres sealed event\0";

/// The store's own keys in the `subject_keys` table.
pub(super) struct PgVault {
    pub conn: Arc<super::conn::Conn>,
    pub runtime: Arc<Runtime>,
}

impl PgVault {
    fn query(
        &self,
        sql: &str,
        params: &[&dyn super::conn::Param],
        what: &str,
    ) -> Result<Vec<tokio_postgres::Row>> {
        block(&self.runtime, self.conn.query(sql, params, what))
    }
}

impl KeyVault for PgVault {
    fn get(&self, subject: &str, _fresh: bool) -> Result<Option<Vec<u8>>> {
        let rows = self.query(
            "select key from @.subject_keys where subject = $1",
            &[&subject],
            "reading a subject's key",
        )?;
        Ok(rows.first().map(|r| r.get::<_, Vec<u8>>(0)))
    }

    fn put(&self, subject: &str, blob: &[u8]) -> Result<()> {
        self.put_first(subject, blob).map(|_| ())
    }

    fn put_first(&self, subject: &str, blob: &[u8]) -> Result<Option<Vec<u8>>> {
        let rows = self.query(
            "select @.subject_key_put($1, $2)",
            &[&subject, &blob],
            "storing a subject's key",
        )?;
        Ok(rows.first().and_then(|r| r.get::<_, Option<Vec<u8>>>(0)))
    }

    fn destroy(&self, subject: &str) -> Result<()> {
        self.query(
            "delete from @.subject_keys where subject = $1",
            &[&subject],
            "deleting a forgotten subject's key",
        )
        .map(|_| ())
    }

    fn subjects(&self) -> Result<Vec<String>> {
        let rows = self.query(
            "select subject from @.subject_keys order by subject",
            &[],
            "listing the subjects with a key",
        )?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }
}

/// The associated data of a sealed event: its id and every clear field, into `out`.
fn bind(
    id: &[u8; 16],
    stream: &str,
    event_type: &str,
    schema_version: i32,
    subject: &str,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(CONTEXT);
    out.extend_from_slice(id);
    for field in [stream, event_type, subject] {
        out.extend_from_slice(&(field.len() as u32).to_le_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out.extend_from_slice(&schema_version.to_le_bytes());
}

/// An append's events with an id made for each that names a subject and has none (its
/// id is what its ciphertext is bound to); `None` when no event needs one.
pub(super) fn with_ids<'a>(
    appends: &[StreamAppend<'a>],
) -> Result<Option<Vec<Vec<EventInput<'a>>>>> {
    let events = || appends.iter().flat_map(|a| a.events.iter());
    if !events().any(|e| e.subject.is_some() && e.id.is_none()) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(appends.len());
    for a in appends {
        let mut evs = a.events.to_vec();
        for e in evs
            .iter_mut()
            .filter(|e| e.subject.is_some() && e.id.is_none())
        {
            e.id = Some(crate::store::subjects::random_id()?);
        }
        out.push(evs);
    }
    Ok(Some(out))
}

/// `appends` with each part's events from `filled` (`with_ids`' answer) instead.
pub(super) fn refilled<'a>(
    appends: &[StreamAppend<'a>],
    filled: &'a [Vec<EventInput<'a>>],
) -> Vec<StreamAppend<'a>> {
    let parts = appends.iter().zip(filled);
    parts
        .map(|(a, evs)| StreamAppend {
            stream: a.stream,
            expected: a.expected,
            events: evs,
        })
        .collect()
}

/// The `data` element of `e` (which names `subject` and has an id) sealed with its
/// subject's key (made if it has none).
fn seal(keys: &KeyRing, stream: &str, e: &EventInput<'_>, subject: &str) -> Result<Vec<u8>> {
    let key = keys.key_for_append(subject)?;
    // A forgotten subject's (its key is gone): only its header, which is never stored.
    // The append function answers a retry (its ids stored) from the stored events and
    // refuses anything else under the head lock (`append_7`).
    seal_with(key.as_deref(), stream, e, subject)
}

/// The `data` element of `e` (which names `subject` and has an id) sealed with `key`
/// (`None`: its header and a nonce and tag of zeros, nothing sealed).
fn seal_with(
    key: Option<&DataKey>,
    stream: &str,
    e: &EventInput<'_>,
    subject: &str,
) -> Result<Vec<u8>> {
    let id = e.id.as_ref().ok_or_else(|| {
        Error::new(
            ErrorKind::Internal,
            "an event naming a subject has no id to bind",
        )
    })?;
    let mut buf = Vec::with_capacity(
        3 + subject.len() + NONCE_LEN + 10 + e.metadata.len() + e.payload.len() + TAG_LEN,
    );
    buf.push(SEALED_FORMAT);
    buf.extend_from_slice(&(subject.len() as u16).to_le_bytes());
    buf.extend_from_slice(subject.as_bytes());
    let Some(key) = key else {
        buf.resize(buf.len() + NONCE_LEN + TAG_LEN, 0);
        return Ok(buf);
    };
    let at = buf.len();
    buf.resize(at + NONCE_LEN, 0);
    put_varint(&mut buf, e.metadata.len() as u64);
    buf.extend_from_slice(e.metadata);
    buf.extend_from_slice(e.payload);
    let mut aad = Vec::new();
    let sv = e.schema_version.max(1) as i32;
    bind(id, stream, e.event_type, sv, subject, &mut aad);
    key.seal(&aad, &mut buf, at)?;
    Ok(buf)
}

/// An event's `metadata` element (null: sealed) and `data` element.
pub(super) type Elements = (Option<Vec<u8>>, Vec<u8>);

/// The `metadata` and `data` elements of each event of `appends`, in order: sealed (null
/// metadata) for the events that name a subject.
pub(super) fn elements(keys: &KeyRing, appends: &[StreamAppend<'_>]) -> Result<Vec<Elements>> {
    let mut out = Vec::new();
    for a in appends {
        for e in a.events {
            out.push(match e.subject {
                Some(s) => (None, seal(keys, a.stream, e, s)?),
                None => (Some(e.metadata.to_vec()), e.payload.to_vec()),
            });
        }
    }
    Ok(out)
}

/// An imported event as PostgreSQL stores it (`import_elements`): its id, and its sealed
/// `data` element (`None`: it names no subject, and is stored as it is).
pub(super) struct Imported {
    pub id: Option<[u8; 16]>,
    pub sealed: Option<Vec<u8>>,
}

/// The events of an import batch (`PgStore::import_items`) as they are stored, in order:
/// each that names a subject sealed here exactly as an append seals it (`seal`), bound
/// to its id (a random one made where it has none, as appends make one), with this
/// store's key of its subject (made if it has none); an erased one (its subject
/// forgotten in the source: it holds nothing) sealed empty under a key of this batch
/// that is never stored, so it reads as erased once its forget entry (later in the log)
/// is in, and no key of a forgotten subject is made here. An event not erased of a
/// subject this handle knows as forgotten is refused (the import transaction checks
/// again under the head lock: `check_not_forgotten`).
pub(super) fn import_elements(keys: &KeyRing, items: &[Item]) -> Result<Vec<Imported>> {
    let mut erased_key = None;
    let mut out = Vec::new();
    for item in items {
        let Item::Event(e) = item else { continue };
        let Some(subject) = e.subject.as_deref() else {
            out.push(Imported {
                id: e.id,
                sealed: None,
            });
            continue;
        };
        let id = match e.id {
            Some(id) => id,
            None => crate::store::subjects::random_id()?,
        };
        let input = EventInput {
            event_type: &e.event_type,
            payload: &e.payload,
            metadata: &e.metadata,
            schema_version: e.schema_version,
            id: Some(id),
            subject: Some(subject),
        };
        let key = match e.erased {
            true => match &erased_key {
                Some(k) => Arc::clone(k),
                None => erased_key
                    .insert(Arc::new(DataKey::new(&KeyBytes::random()?)))
                    .clone(),
            },
            false => keys
                .key_for_append(subject)?
                .ok_or_else(|| forgotten_here(e.position, subject, keys.forgotten_at(subject)))?,
        };
        let sealed = seal_with(Some(&key), &e.stream, &input, subject)?;
        out.push(Imported {
            id: Some(id),
            sealed: Some(sealed),
        });
    }
    Ok(out)
}

/// A sealed `data` element's subject and the offset of its nonce.
pub(super) fn sealed_subject(data: &[u8]) -> Result<(&str, usize)> {
    let bad = || Error::corrupt("a sealed event's header does not decode");
    if data.first() != Some(&SEALED_FORMAT) || data.len() < 3 {
        return Err(bad());
    }
    let n = u16::from_le_bytes([data[1], data[2]]) as usize;
    let subject = data
        .get(3..3 + n)
        .and_then(|s| std::str::from_utf8(s).ok())
        .ok_or_else(bad)?;
    Ok((subject, 3 + n))
}

impl PgStore {
    /// Learns the forgets committed up to a statement that saw `entries` lifecycle
    /// entries, if this handle has not (one small query per change of the count): reads
    /// after a forget's commit find the subject forgotten in every handle. (`u64::MAX`:
    /// learn them now.)
    pub(super) fn learn_forgets(&self, entries: u64) -> Result<()> {
        if self.forgets_known.load(Ordering::Acquire) >= entries {
            return Ok(());
        }
        let rows = self.query(
            "select (select entries from @.head), f.subject, f.pos \
             from (select 1) one left join @.forgotten_subjects f on true",
            &[],
            "reading the forgotten subjects",
        )?;
        let mut seen = 0;
        for r in &rows {
            seen = r.get::<_, i64>(0) as u64;
            if let Some(subject) = r.get::<_, Option<String>>(1) {
                let op = LifecycleOp::Forget { subject };
                let pos = r.get::<_, i64>(2) as u64;
                crate::store::Projection::apply_lifecycle(&*self.keys, &op, pos);
            }
        }
        self.forgets_known.fetch_max(seen, Ordering::AcqRel);
        Ok(())
    }

    /// Opens the sealed events of a window read at `entries` lifecycle entries: each gets
    /// its metadata and payload, or is marked erased (its subject forgotten).
    pub(super) fn open_events(&self, events: &mut [Event], entries: u64) -> Result<()> {
        if !events.iter().any(|e| e.subject.is_some()) {
            return Ok(());
        }
        self.learn_forgets(entries)?;
        let (mut aad, mut plain) = (Vec::new(), Vec::new());
        for e in events.iter_mut().filter(|e| e.subject.is_some()) {
            let sealed = std::mem::take(&mut e.payload);
            let subject = e.subject.as_deref().expect("filtered");
            let id = e.id.ok_or_else(|| {
                Error::corrupt("a sealed event has no id").at_position(e.position)
            })?;
            bind(
                &id,
                &e.stream,
                &e.event_type,
                e.schema_version as i32,
                subject,
                &mut aad,
            );
            if !self
                .keys
                .open_event(subject, e.position, &aad, &sealed, &mut plain)?
            {
                e.erased = true;
                continue;
            }
            let bad = || {
                Error::corrupt("a sealed event's opened bytes do not decode")
                    .at_position(e.position)
            };
            let (n, at) = get_varint(&plain, 0).map_err(|_| bad())?;
            let end = at.checked_add(n as usize).filter(|&end| end <= plain.len());
            let end = end.ok_or_else(bad)?;
            e.metadata = plain[at..end].to_vec();
            e.payload = plain[end..].to_vec();
        }
        plain.iter_mut().for_each(|b| *b = 0);
        Ok(())
    }

    /// Forgets `subject` (`Backend::forget_subject`): the entry, the record and the key's
    /// deletion in one transaction, then a VACUUM FULL of the key table, which writes the
    /// table anew without the deleted row (a plain VACUUM leaves a removed row's bytes in
    /// the page's free space; the table is small, its lock brief). Best effort: it needs
    /// the table's owner (or MAINTAIN); the forget is done whether it ran or not.
    /// Returns the forget entry's position.
    pub(super) fn forget(&self, subject: &str) -> Result<u64> {
        self.check_writable()?;
        crate::store::check_name("subject", subject, false)?;
        let op = LifecycleOp::Forget {
            subject: subject.to_owned(),
        }
        .encode();
        let channel = super::listener::channel(self.conn.schema());
        let rows = self.query(
            "select @.forget_subject($1, $2, $3)",
            &[&subject, &op, &channel.as_str()],
            "forgetting a subject",
        )?;
        let position = rows
            .first()
            .map(|r| r.get::<_, i64>(0) as u64)
            .ok_or_else(|| Error::new(ErrorKind::Internal, "forget_subject returned no row"))?;
        self.saw(position + 1);
        // A failure to destroy a provider's key is the caller's: the forget is recorded,
        // and forgetting again destroys the key again.
        self.forgotten(subject, position)?;
        self.vacuum_keys();
        Ok(position)
    }

    /// A forget of `subject` at `position` committed by this handle (`forget`, an
    /// import): this handle's ring forgets the subject, and its key is destroyed where
    /// the application keeps it (the store's own row went with the transaction).
    pub(super) fn forgotten(&self, subject: &str, position: u64) -> Result<()> {
        let op = LifecycleOp::Forget {
            subject: subject.to_owned(),
        };
        crate::store::Projection::apply_lifecycle(&*self.keys, &op, position);
        self.keys.destroy(subject)
    }

    /// A VACUUM FULL of the key table after keys were deleted (`forget`).
    pub(super) fn vacuum_keys(&self) {
        let _ = self.query(
            "vacuum full @.subject_keys",
            &[],
            "vacuuming the key table after a forget",
        );
    }
}

impl PgStore {
    /// The error for an append the function refused for naming a forgotten subject
    /// (`Outcome::Forgotten`): names the subject, learning of the forgets first.
    pub(super) fn forgotten_in(&self, appends: &[StreamAppend<'_>]) -> Error {
        let refused = self.learn_forgets(u64::MAX).and_then(|_| {
            let mut named = appends
                .iter()
                .flat_map(|a| a.events)
                .filter_map(|e| e.subject);
            named.try_for_each(|s| self.keys.check_appendable(s))
        });
        match refused {
            Err(e) => e,
            Ok(()) => Error::invalid(
                "an event of the append names a subject that was forgotten: events naming it cannot be appended again (use a new subject id)",
            ),
        }
    }

    /// `evs_list_subjects` on PostgreSQL: the events left that name each subject (read
    /// from the sealed elements' clear headers) and where each forgotten one was
    /// forgotten; counts, never keys.
    pub(super) fn subject_counts(&self) -> Result<Vec<crate::store::subjects::SubjectInfo>> {
        let rows = self.query(
            "with n as (select convert_from(substr(x.d, 4, get_byte(x.d, 1) + 256 * get_byte(x.d, 2)), \
               'UTF8') as subject, count(*)::int8 as events \
               from @.chunks c cross join lateral unnest(c.metadata, c.data) as x(m, d) \
               where x.m is null group by 1) \
             select coalesce(n.subject, f.subject), coalesce(n.events, 0), f.pos \
             from n full join @.forgotten_subjects f on f.subject = n.subject order by 1",
            &[],
            "counting the events of each subject",
        )?;
        Ok(rows
            .iter()
            .map(|r| crate::store::subjects::SubjectInfo {
                name: r.get(0),
                events: r.get::<_, i64>(1) as u64,
                forgotten_at: r.get::<_, Option<i64>>(2).map(|p| p as u64),
            })
            .collect())
    }
}
