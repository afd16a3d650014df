//! Bad settings are refused with the setting's name.

use std::time::Duration;

use palisade_cache::{CacheLayer, CacheSettings};

type Build = Box<dyn Fn() -> Result<(), palisade_core::ConfigError>>;

#[test]
fn build_refuses_bad_settings_by_name() {
    let cases: Vec<(&str, Build)> = vec![
        (
            "ttl",
            Box::new(|| {
                CacheLayer::builder("c")
                    .key(|n: &u32| Some(*n))
                    .ttl(Duration::ZERO)
                    .build()
                    .map(|_: CacheLayer<palisade_cache::KeyFn<_, u32, u32>>| ())
            }),
        ),
        (
            "max_bytes",
            Box::new(|| {
                CacheLayer::builder("c")
                    .key(|n: &u32| Some(*n))
                    .max_bytes(1)
                    .build()
                    .map(|_: CacheLayer<palisade_cache::KeyFn<_, u32, u32>>| ())
            }),
        ),
        (
            "max_entry_bytes",
            Box::new(|| {
                CacheLayer::builder("c")
                    .key(|n: &u32| Some(*n))
                    .max_bytes(4096)
                    .max_entry_bytes(8192)
                    .build()
                    .map(|_: CacheLayer<palisade_cache::KeyFn<_, u32, u32>>| ())
            }),
        ),
        (
            "coalesce_timeout",
            Box::new(|| {
                CacheLayer::builder("c")
                    .key(|n: &u32| Some(*n))
                    .coalesce_timeout(Duration::ZERO)
                    .build()
                    .map(|_: CacheLayer<palisade_cache::KeyFn<_, u32, u32>>| ())
            }),
        ),
        (
            "refresh_timeout",
            Box::new(|| {
                CacheLayer::builder("c")
                    .key(|n: &u32| Some(*n))
                    .refresh_timeout(Duration::ZERO)
                    .build()
                    .map(|_: CacheLayer<palisade_cache::KeyFn<_, u32, u32>>| ())
            }),
        ),
        (
            "negative_ttl",
            Box::new(|| {
                CacheLayer::builder("c")
                    .key(|n: &u32| Some(*n))
                    .negative_ttl(Duration::ZERO)
                    .build()
                    .map(|_: CacheLayer<palisade_cache::KeyFn<_, u32, u32>>| ())
            }),
        ),
        (
            "stale_if_error",
            Box::new(|| {
                CacheLayer::builder("c")
                    .key(|n: &u32| Some(*n))
                    .stale_if_error(Duration::from_secs(400 * 86_400))
                    .build()
                    .map(|_: CacheLayer<palisade_cache::KeyFn<_, u32, u32>>| ())
            }),
        ),
    ];
    for (field, build) in cases {
        let err = build().expect_err(field);
        assert_eq!(err.field(), field, "{err}");
    }
}

#[test]
fn settings_apply_as_a_whole() {
    let settings = CacheSettings {
        ttl: Duration::from_secs(5),
        ..CacheSettings::default()
    };
    let layer = CacheLayer::builder("c")
        .key(|n: &u32| Some(*n))
        .settings(settings.clone())
        .build()
        .unwrap();
    let _: &CacheLayer<palisade_cache::KeyFn<_, u32, u32>> = &layer;
    assert_eq!(layer.handle().snapshot().settings, settings);
}

#[tokio::test]
async fn a_coarse_clock_serves_hits() {
    use tower::{Layer, ServiceExt};
    let layer = CacheLayer::builder("coarse")
        .key(|n: &u32| Some(*n))
        .clock(palisade_cache::ClockSource::Coarse)
        .build()
        .unwrap();
    let handle = layer.handle();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&calls);
    let svc = layer.layer(tower::service_fn(move |n: u32| {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::future::ready(Ok::<_, std::convert::Infallible>(n * 2))
    }));
    for _ in 0..3 {
        assert_eq!(svc.clone().oneshot(7).await.unwrap(), 14);
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);
    let snapshot = handle.snapshot();
    assert_eq!((snapshot.hits, snapshot.misses), (2, 1));
    assert_eq!(snapshot.settings.clock, palisade_cache::ClockSource::Coarse);
}
