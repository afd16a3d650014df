//! One suite, every backend: each test of `suite` runs against the memory
//! backend, a SQLite file and (when `PALISADE_TEST_POSTGRES_URL` is set)
//! PostgreSQL, each in its own store (file, schema) made and removed here.

mod fixture;
mod suite;

macro_rules! conformance {
    ($backend:ident: $($test:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(fixture) = crate::fixture::Fixture::$backend(stringify!($test)).await else {
                        return;
                    };
                    crate::suite::$test(&fixture).await;
                    fixture.teardown().await;
                }
            )*
        }
    };
}

macro_rules! every_backend {
    ($($test:ident),* $(,)?) => {
        conformance!(memory: $($test),*);
        conformance!(sqlite: $($test),*);
        conformance!(postgres: $($test),*);
    };
}

every_backend!(
    append_and_read_envelope,
    expected_version_conflicts_write_nothing,
    empty_batch_checks_the_version,
    invalid_input_is_refused,
    retried_append_is_a_no_op,
    mixed_or_foreign_ids_are_refused,
    read_backward_gives_the_last_n,
    read_all_follows_global_order,
    contention_one_winner_per_version,
    concurrent_streams_agree_with_global_order,
    subscription_catches_up_while_appends_continue,
    subscription_follows_live_appends,
    snapshots_are_never_trusted_over_events,
    cancelled_append_is_all_or_nothing,
    stream_subscription_catches_up_then_follows,
);
