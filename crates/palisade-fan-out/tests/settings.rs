//! `FanOutSettings` and `BranchSettings`: the one source of every plain-data
//! setting of a fan-out and its branches. Setters and `.settings(s)` build
//! the same fan-out, the handle reports them, and with the `serde` feature
//! they read from TOML and the snapshot writes JSON.

mod support;

use std::time::Duration;

use palisade_core::Registry;
use palisade_fan_out::{Branch, BranchSettings, FanOut, FanOutHandle, FanOutSettings};
use palisade_test_util::{MetricsCapture, assert_send_sync_clone};
use serde_json::json;
use support::{Backend, ms};
use tower::ServiceExt;

fn branch(name: &'static str) -> Branch<Backend, u64, u64> {
    Branch::new(name, Backend::json(name, 1, json!(1)), |id: &u64| *id)
}

#[test]
fn settings_and_setters_build_the_same_fan_out() {
    let by_setters = FanOut::builder("d")
        .deadline(ms(300))
        .max_in_flight(2)
        .branch(branch("a").required().timeout(ms(100)))
        .branch(branch("b"))
        .build()
        .unwrap();
    let by_settings = FanOut::builder("d")
        .settings(FanOutSettings {
            deadline: Some(ms(300)),
            max_in_flight: Some(2),
        })
        .branch(branch("a").settings(BranchSettings {
            required: true,
            timeout: Some(ms(100)),
        }))
        .branch(branch("b").settings(BranchSettings::default()))
        .build()
        .unwrap();
    let (one, two) = (
        by_setters.handle().snapshot(),
        by_settings.handle().snapshot(),
    );
    assert_eq!(one, two);
    assert_eq!(
        (by_settings.deadline(), by_settings.max_in_flight()),
        (Some(ms(300)), Some(2))
    );
    let a = by_settings.branches().next().unwrap();
    assert!(a.is_required());
    assert_eq!(a.get_timeout(), Some(ms(100)));
    assert_eq!(
        a.get_settings(),
        BranchSettings {
            required: true,
            timeout: Some(ms(100))
        }
    );
    // A setter after `.settings(s)` changes that one field.
    let b = branch("b")
        .settings(BranchSettings {
            required: true,
            timeout: None,
        })
        .optional();
    assert!(!b.is_required());
}

#[test]
fn bad_settings_are_refused_by_build_with_the_field_of_validate() {
    let zero = FanOutSettings {
        deadline: Some(Duration::ZERO),
        ..FanOutSettings::default()
    };
    assert_eq!(zero.validate().unwrap_err().field(), "deadline");
    let err = FanOut::builder("d")
        .settings(zero)
        .branch(branch("a"))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "deadline");
    let err = FanOut::builder("d")
        .branch(branch("a").settings(BranchSettings {
            required: false,
            timeout: Some(Duration::ZERO),
        }))
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `timeout`: timeout of branch `a` must be more than zero"
    );
}

#[test]
fn validate_registers_nothing() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    assert!(FanOutSettings::default().validate().is_ok());
    assert!(
        BranchSettings {
            required: true,
            timeout: Some(Duration::ZERO)
        }
        .validate()
        .is_err()
    );
    assert!(capture.names().is_empty(), "{:?}", capture.names());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_handle_names_the_fan_out_and_its_branches() {
    assert_send_sync_clone::<FanOutHandle>();
    let fan_out = FanOut::builder("dashboard")
        .deadline(ms(500))
        .branch(branch("user").required())
        .branch(branch("review").timeout(ms(100)).fallback(json!([])))
        .build()
        .unwrap();
    let handle = fan_out.handle();
    assert!(handle.same_as(&fan_out.clone().handle()));
    let other = FanOut::builder("dashboard")
        .branch(branch("user"))
        .build()
        .unwrap();
    assert!(!handle.same_as(&other.handle()));
    assert_eq!(handle.name(), "dashboard");
    assert_eq!(handle.settings().deadline, Some(ms(500)));
    let snapshot = handle.snapshot();
    let branches: Vec<_> = snapshot
        .branches
        .iter()
        .map(|b| {
            (
                &*b.name,
                b.settings.required,
                b.settings.timeout,
                b.fallback,
            )
        })
        .collect();
    assert_eq!(
        branches,
        [
            ("user", true, None, false),
            ("review", false, Some(ms(100)), true)
        ]
    );
    // A registry lists fan-outs over any services.
    let registry = Registry::<FanOutHandle>::new();
    registry.register(handle);
    assert_eq!(registry.names(), ["dashboard"]);
    assert_eq!(registry.snapshots(), [snapshot]);
    // The fan-out still answers as before.
    assert_eq!(
        fan_out.oneshot(7).await.unwrap(),
        json!({"user": 1, "review": 1})
    );
}

#[cfg(feature = "serde")]
mod serde {
    use super::*;

    #[test]
    fn settings_read_from_toml_with_duration_strings() {
        let settings: FanOutSettings =
            toml::from_str("deadline = \"300ms\"\nmax_in_flight = 4").unwrap();
        assert_eq!(
            settings,
            FanOutSettings {
                deadline: Some(ms(300)),
                max_in_flight: Some(4)
            }
        );
        assert_eq!(
            toml::from_str::<FanOutSettings>("").unwrap(),
            FanOutSettings::default()
        );
        let branch: BranchSettings =
            toml::from_str("required = true\ntimeout = \"1s 500ms\"").unwrap();
        assert_eq!(
            branch,
            BranchSettings {
                required: true,
                timeout: Some(ms(1500))
            }
        );
        for (text, needle) in [
            ("deadline_ms = 300", "deadline_ms"),
            ("deadline = 300", "expected a duration"),
            ("deadline = \"soon\"", "soon"),
        ] {
            let err = toml::from_str::<FanOutSettings>(text).unwrap_err();
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
        let err = toml::from_str::<BranchSettings>("optional = true").unwrap_err();
        assert!(err.to_string().contains("optional"), "{err}");
    }

    #[test]
    fn settings_round_trip_and_the_snapshot_serializes() {
        let settings = FanOutSettings {
            deadline: Some(ms(250)),
            max_in_flight: None,
        };
        let text = toml::to_string(&settings).unwrap();
        assert_eq!(text.trim(), "deadline = \"250ms\"");
        assert_eq!(toml::from_str::<FanOutSettings>(&text).unwrap(), settings);

        let fan_out = FanOut::builder("dashboard")
            .settings(settings)
            .branch(branch("user").required().timeout(ms(100)))
            .build()
            .unwrap();
        let json = serde_json::to_value(fan_out.handle().snapshot()).unwrap();
        assert_eq!(
            json,
            json!({
                "name": "dashboard",
                "settings": { "deadline": "250ms" },
                "branches": [{
                    "name": "user",
                    "settings": { "required": true, "timeout": "100ms" },
                    "fallback": false
                }]
            })
        );
    }
}
