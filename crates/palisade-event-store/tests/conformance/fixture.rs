//! A store per test, on each backend, removed after.

use std::path::PathBuf;

use palisade_event_store::EventStore;
use palisade_test_util::{POSTGRES_URL_VAR, service_url, unique_name};

/// Events per subscription page in the suite: small, so catch-up takes
/// several pages.
pub(crate) const PAGE_SIZE: usize = 3;

pub(crate) struct Fixture {
    pub(crate) store: EventStore,
    /// How to open another store on the same data (another process).
    pub(crate) url: String,
    pub(crate) prefix: String,
    cleanup: Cleanup,
}

enum Cleanup {
    None,
    Dir(PathBuf),
    Schema(String, String),
}

impl Fixture {
    pub(crate) async fn memory(_test: &str) -> Option<Self> {
        let store = EventStore::builder("conformance")
            .url("memory:")
            .page_size(PAGE_SIZE)
            .open()
            .await
            .unwrap();
        Some(Self {
            store,
            url: "memory:".into(),
            prefix: "palisade_es".into(),
            cleanup: Cleanup::None,
        })
    }

    pub(crate) async fn sqlite(test: &str) -> Option<Self> {
        let dir = std::env::temp_dir().join(unique_name(&format!("es_{test}")));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite:{}", dir.join("events.db").display());
        let store = EventStore::builder("conformance")
            .url(&url)
            .page_size(PAGE_SIZE)
            .max_connections(8)
            .open()
            .await
            .unwrap();
        Some(Self {
            store,
            url,
            prefix: "palisade_es".into(),
            cleanup: Cleanup::Dir(dir),
        })
    }

    pub(crate) async fn postgres(test: &str) -> Option<Self> {
        let url = service_url(POSTGRES_URL_VAR, test)?;
        let schema = unique_name("es");
        let prefix = format!("{schema}.es");
        let store = EventStore::builder("conformance")
            .url(&url)
            .table_prefix(&prefix)
            .page_size(PAGE_SIZE)
            .max_connections(8)
            .open()
            .await
            .unwrap();
        Some(Self {
            store,
            url: url.clone(),
            prefix,
            cleanup: Cleanup::Schema(url, schema),
        })
    }

    pub(crate) async fn teardown(self) {
        drop(self.store);
        match self.cleanup {
            Cleanup::None => {}
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Schema(url, schema) => {
                let pool = sqlx::PgPool::connect(&url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        }
    }
}
