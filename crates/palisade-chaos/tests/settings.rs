//! `ChaosSettings` as the one source of every setting, the handle's
//! snapshot, and the registry.

use std::time::Duration;

use palisade_chaos::{ChaosHandle, ChaosLayer, ChaosSettings, InjectedCounts, Registry};
use palisade_core::{BoxError, Handle};
use tower::{Layer, ServiceExt};

const MS: Duration = Duration::from_millis(1);

#[test]
fn the_setters_and_the_settings_struct_build_the_same_layer() {
    let settings = ChaosSettings {
        enabled: true,
        outage: false,
        latency_rate: 0.5,
        latency_min: MS * 10,
        latency_max: MS * 30,
        error_rate: 0.25,
        abort_rate: 0.125,
    };
    let by_setters = ChaosLayer::builder("a")
        .latency_min(MS * 10)
        .latency_max(MS * 30)
        .latency_rate(0.5)
        .error_rate(0.25)
        .abort_rate(0.125)
        .build()
        .unwrap();
    let by_struct = ChaosLayer::builder("a").settings(settings).build().unwrap();
    assert_eq!(by_setters.handle().settings(), settings);
    assert_eq!(by_struct.handle().settings(), settings);
    assert_eq!(by_struct.handle().initial_settings(), settings);
    let err = ChaosLayer::builder("a")
        .latency_min(MS * 40)
        .latency_max(MS * 30)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "latency");
    assert_eq!(ChaosLayer::builder("").build().unwrap_err().field(), "name");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_snapshot_carries_what_is_injected_and_the_counts() {
    let layer = ChaosLayer::builder("orders")
        .seed(3)
        .error_rate(1.0)
        .build()
        .unwrap();
    let svc = layer.clone().layer(tower::service_fn(
        |n: u32| async move { Ok::<_, BoxError>(n) },
    ));
    for _ in 0..3 {
        assert!(svc.clone().oneshot(1).await.is_err());
    }
    let handle = layer.handle();
    handle.set_outage(true);
    let snapshot = handle.snapshot();
    assert_eq!(&*snapshot.name, "orders");
    assert_eq!(snapshot.seed, 3);
    assert!(snapshot.settings.outage);
    assert_eq!(snapshot.settings.error_rate, 1.0);
    assert_eq!(
        snapshot.injected,
        InjectedCounts {
            error: 3,
            ..InjectedCounts::default()
        }
    );
    assert_eq!(Handle::snapshot(&handle), snapshot);
    assert_eq!(Handle::name(&handle), "orders");
    assert!(Handle::same_as(&handle, &svc.handle()));
    let other = ChaosLayer::builder("orders").build().unwrap();
    assert!(!handle.same_as(&other.handle()));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_registry_gives_one_state_per_name() {
    let registry = Registry::<ChaosHandle>::new();
    let first = ChaosLayer::builder("users")
        .seed(1)
        .error_rate(1.0)
        .registry(&registry)
        .build()
        .unwrap();
    // A later build is checked all the same, then shares the registered
    // state: settings, seed, sequence and counts.
    let err = ChaosLayer::builder("users")
        .abort_rate(2.0)
        .registry(&registry)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "abort_rate");
    let second = ChaosLayer::builder("users")
        .seed(99)
        .registry(&registry)
        .build()
        .unwrap();
    assert!(first.handle().same_as(&second.handle()));
    assert_eq!(second.handle().seed(), 1);
    let svc = second.layer(tower::service_fn(
        |n: u32| async move { Ok::<_, BoxError>(n) },
    ));
    assert!(svc.oneshot(1).await.is_err(), "the registered error rate");
    assert_eq!(registry.snapshots()[0].injected.error, 1);
    registry.get("users").unwrap().reset();
    assert_eq!(first.handle().settings().error_rate, 1.0);
    registry
        .get("users")
        .unwrap()
        .apply(ChaosSettings::default())
        .unwrap();
    assert_eq!(first.handle().settings(), ChaosSettings::default());
}

#[cfg(feature = "serde")]
mod serde_form {
    use super::*;

    #[test]
    fn settings_read_from_toml_with_durations_as_strings() {
        let text = r#"
            latency_rate = 0.5
            latency_min = "100ms"
            latency_max = "1s"
            error_rate = 0.1
        "#;
        let settings: ChaosSettings = toml::from_str(text).unwrap();
        assert_eq!(
            settings,
            ChaosSettings {
                latency_rate: 0.5,
                latency_min: MS * 100,
                latency_max: Duration::from_secs(1),
                error_rate: 0.1,
                ..ChaosSettings::default()
            }
        );
        assert_eq!(
            toml::from_str::<ChaosSettings>("").unwrap(),
            ChaosSettings::default()
        );
        for bad in ["latency = \"1s\"", "latency_min = 100", "outage = \"yes\""] {
            assert!(toml::from_str::<ChaosSettings>(bad).is_err(), "{bad}");
        }
        let json = serde_json::to_value(settings).unwrap();
        assert_eq!(json["latency_min"], "100ms");
        let back: ChaosSettings = serde_json::from_value(json).unwrap();
        assert_eq!(back, settings);
    }

    #[test]
    fn the_snapshot_serializes() {
        let layer = ChaosLayer::builder("orders")
            .seed(5)
            .latency(MS * 250)
            .latency_rate(0.5)
            .build()
            .unwrap();
        let json = serde_json::to_value(layer.handle().snapshot()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "name": "orders",
                "seed": 5,
                "settings": {
                    "enabled": true,
                    "outage": false,
                    "latency_rate": 0.5,
                    "latency_min": "250ms",
                    "latency_max": "250ms",
                    "error_rate": 0.0,
                    "abort_rate": 0.0,
                },
                "injected": { "latency": 0, "error": 0, "abort": 0, "outage": 0 },
            })
        );
    }
}
