//! Event ids as PostgreSQL `uuid` values: 16 raw bytes on the wire, compared as fixed
//! 16-byte keys by the server (cheaper to index than `bytea`, which is a varlena).

use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

/// A 16-byte event id sent as a `uuid` parameter (or an element of a `uuid[]` one).
#[derive(Debug, Clone, Copy)]
pub struct Uuid<'a>(pub &'a [u8; 16]);

impl ToSql for Uuid<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::UUID
    }

    to_sql_checked!();
}

/// A stored event id read from a `uuid` column (or an element of a `uuid[]` one).
#[derive(Debug, Clone, Copy)]
pub struct StoredUuid(pub [u8; 16]);

impl<'a> FromSql<'a> for StoredUuid {
    fn from_sql(
        _ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(StoredUuid(<[u8; 16]>::try_from(raw).map_err(|_| {
            format!("a uuid of {} bytes from the server", raw.len())
        })?))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::UUID
    }
}
