//! How the domain's types are stored, per backend, so one query text serves both.
//!
//! - [`UtcInstant`]: SQLite keeps the canonical UTC text (`2026-11-01T00:00:00Z`, so text order
//!   is time order and one instant is one key); PostgreSQL keeps `timestamptz`.
//! - [`SealedToken`]: SQLite keeps the base64 text; PostgreSQL keeps the raw bytes (`bytea`).
//!
//! Dates are chrono's `NaiveDate` (sqlx stores `YYYY-MM-DD` text in SQLite, `date` in
//! PostgreSQL).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Postgres, Sqlite, Type};

use crate::domain::UtcInstant;
use crate::secret::SealedToken;

impl Type<Sqlite> for UtcInstant {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for UtcInstant {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Sqlite>::encode(self.to_text(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for UtcInstant {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        Ok(UtcInstant::parse(text)?)
    }
}

impl Type<Postgres> for UtcInstant {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for UtcInstant {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Postgres>::encode(self.get(), buf)
    }
}

impl<'r> Decode<'r, Postgres> for UtcInstant {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let at = <DateTime<Utc> as Decode<Postgres>>::decode(value)?;
        Ok(UtcInstant::checked(at)?)
    }
}

impl Type<Sqlite> for SealedToken {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for SealedToken {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Sqlite>::encode(self.as_str().to_owned(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for SealedToken {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(SealedToken::from_stored(
            <String as Decode<Sqlite>>::decode(value)?,
        ))
    }
}

impl Type<Postgres> for SealedToken {
    fn type_info() -> PgTypeInfo {
        <Vec<u8> as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for SealedToken {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        // A sealed token is base64 by construction; one that is not is refused here rather than
        // stored as something that can never open.
        let bytes = BASE64
            .decode(self.as_str())
            .map_err(|_| "a sealed token is not base64")?;
        Encode::<Postgres>::encode(bytes, buf)
    }
}

impl<'r> Decode<'r, Postgres> for SealedToken {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let bytes = <&[u8] as Decode<Postgres>>::decode(value)?;
        Ok(SealedToken::from_stored(BASE64.encode(bytes)))
    }
}
