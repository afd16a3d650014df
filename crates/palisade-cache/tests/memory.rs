//! The process tier's memory bound, in bytes, under a flood of distinct keys.

mod support;

use palisade_cache::{CacheLayer, ENTRY_OVERHEAD};
use support::Backend;
use tower::{Layer, ServiceExt};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_byte_bound_holds_under_a_flood_of_distinct_keys() {
    const MAX: u64 = 64 * 1024;
    // Each value is 1 KiB and a bit: at most ~55 entries fit.
    let backend = Backend::new(&"x".repeat(1024));
    let layer = CacheLayer::builder("flood")
        .key(|n: &u32| Some(*n))
        .weigher(|_: &u32, v: &String| v.len())
        .max_bytes(MAX)
        .max_entry_bytes(4 * 1024)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend.clone());

    let mut peak_unflushed = 0;
    for n in 0..20_000u32 {
        let value = svc.clone().oneshot(n).await.unwrap();
        assert_eq!(value.len(), 1024 + n.to_string().len());
        peak_unflushed = peak_unflushed.max(handle.snapshot_unflushed_bytes());
        if n % 500 == 0 {
            let snapshot = handle.snapshot();
            assert!(
                snapshot.bytes <= MAX,
                "{} bytes held after {n} keys",
                snapshot.bytes
            );
        }
    }
    let snapshot = handle.snapshot();
    assert!(snapshot.bytes <= MAX, "{} bytes", snapshot.bytes);
    assert!(
        snapshot.bytes > MAX / 2,
        "the cache is in use: {} bytes",
        snapshot.bytes
    );
    let per_entry = 1024 + 5 + ENTRY_OVERHEAD as u64;
    assert!(
        snapshot.entries <= MAX / 1024,
        "{} entries",
        snapshot.entries
    );
    assert_eq!(
        snapshot.bytes / per_entry,
        snapshot.entries,
        "bytes count what is held"
    );
    // At every moment, not only after a flush: at most the entry just
    // stored beyond the bound.
    let one_entry = 4 * 1024 + ENTRY_OVERHEAD as u64;
    assert!(
        peak_unflushed <= MAX + one_entry,
        "peak {peak_unflushed} bytes"
    );
    assert_eq!(backend.calls(), 20_000);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_entry_larger_than_max_entry_bytes_is_answered_not_stored() {
    let backend = Backend::new(&"x".repeat(2048));
    let layer = CacheLayer::builder("large")
        .key(|n: &u32| Some(*n))
        .weigher(|_: &u32, v: &String| v.len())
        .max_entry_bytes(1024)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend.clone());
    assert_eq!(svc.clone().oneshot(1).await.unwrap().len(), 2049);
    assert_eq!(svc.clone().oneshot(1).await.unwrap().len(), 2049);
    assert_eq!(backend.calls(), 2);
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.entries, 0);
    assert_eq!(snapshot.not_stored, vec![("too_large", 2)]);
}
