//! [`PgReadModel`]: a projection's checkpoint and parked events in
//! PostgreSQL, next to its read model's tables; one active runner per
//! projection across every process.
//!
//! A runner becomes active by taking a session advisory lock,
//! `pg_try_advisory_lock(key)` where `key` is a fixed hash (FNV-1a) of the
//! table prefix and projection name, on a connection of its own taken out
//! of the pool ([`PgLease`]). The lock is held as long as that connection
//! lives: when the runner stops, crashes or loses its network, PostgreSQL
//! ends the session and frees the lock, and a standby runner (trying every
//! [`lock_retry_interval`](crate::ProjectionSettings::lock_retry_interval))
//! takes over from the stored checkpoint. The active runner checks its
//! session every `lock_retry_interval` while idle and after each batch; if
//! it is gone (a server restart), the runner stops applying and tries the
//! lock again.
//!
//! Exactly-once does not rest on the lock alone: each batch reads the
//! checkpoint `FOR UPDATE` in its transaction and rolls back if it is not
//! the one the batch started from.

use sqlx::Connection as _;

crate::backend::sql::sql_read_model! {
    db: sqlx::Postgres,
    pool: sqlx::PgPool,
    backend: PgReadModel,
    engine: "PostgreSQL",
    begin: "BEGIN",
    lock_suffix: " FOR UPDATE",
    create_schema: true,
    lease: PgLease,
}

/// The connection holding a projection's advisory lock: dropping it closes
/// the session, which frees the lock.
#[derive(Debug)]
pub struct PgLease {
    connection: sqlx::PgConnection,
}

/// The advisory-lock key of a projection: FNV-1a 64 of
/// `"<prefix>/<name>"`, the same in every process and release.
#[must_use]
pub fn lock_key(table_prefix: &str, name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in table_prefix
        .bytes()
        .chain(std::iter::once(b'/'))
        .chain(name.bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

impl PgReadModel {
    async fn try_lock_impl(&self, name: &str) -> Result<Option<PgLease>, sqlx::Error> {
        let mut connection = self.pool.acquire().await?.detach();
        let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(lock_key(&self.sql.prefix, name))
            .fetch_one(&mut connection)
            .await?;
        if locked {
            Ok(Some(PgLease { connection }))
        } else {
            let _ = connection.close().await;
            Ok(None)
        }
    }

    async fn lease_alive_impl(lease: &mut PgLease) -> bool {
        lease.connection.ping().await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lock_keys_are_stable_and_distinct() {
        assert_eq!(super::lock_key("p", "a"), super::lock_key("p", "a"));
        assert_ne!(super::lock_key("p", "a"), super::lock_key("p", "b"));
        assert_ne!(super::lock_key("p", "a"), super::lock_key("q", "a"));
    }
}
