//! The gateway's configuration parser, `Config::parse`, on any text.
//!
//! Properties: it never panics; an error names the file it was given and a
//! location in the text (a line that exists, a column in it), or is the
//! "sets nothing" error for a text of blank lines and comments only; and a
//! configuration it accepts builds: `AppState::from_config` (every layer
//! built from the settings) succeeds, given the demo backends it names.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use palisade_chaos::ChaosLayer;
use palisade_gateway::config::DEMO_SERVICES;
use palisade_gateway::state::BackendInfo;
use palisade_gateway::{AppState, Config};

const NAME: &str = "fuzz.toml";

thread_local! {
    /// The runtime the state is built in (never run: nothing is awaited).
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Config::parse(NAME, &text) {
        Err(err) => {
            let shown = err.to_string();
            assert_eq!(err.file(), NAME, "{shown}");
            assert!(!err.message().is_empty(), "{shown}");
            assert!(shown.starts_with(NAME), "{shown}");
            if err.line() == 0 {
                assert!(
                    sets_nothing(&text),
                    "no location for a text that sets something: {shown}"
                );
            } else {
                let lines: Vec<&str> = text.split('\n').collect();
                assert!(err.line() <= lines.len(), "line past the end: {shown}");
                let line = lines[err.line() - 1].trim_end_matches('\r');
                assert!(err.column() >= 1, "{shown}");
                assert!(
                    err.column() <= line.chars().count() + 1,
                    "column past the end of line {}: {shown}",
                    err.line()
                );
            }
        }
        Ok(config) => {
            assert!(!sets_nothing(&text), "accepted a text that sets nothing");
            // Every service, and every backend the config names (a sharded
            // service runs on several: `user-0`, `user-1`, ...).
            let names: Vec<String> = DEMO_SERVICES
                .iter()
                .map(|s| (*s).to_owned())
                .chain(config.demo.iter().flat_map(|d| d.backends.keys().cloned()))
                .collect();
            let backends: BTreeMap<String, BackendInfo> = names
                .iter()
                .map(|name| {
                    let chaos = ChaosLayer::builder(name.as_str())
                        .build()
                        .expect("the default chaos layer builds")
                        .handle();
                    let addr = "127.0.0.1:9".parse().expect("an address");
                    (name.clone(), BackendInfo { addr, chaos })
                })
                .collect();
            // A cache's Redis tier connects lazily, from a tokio runtime.
            let runtime = RUNTIME.with(|rt| rt.handle().clone());
            let _entered = runtime.enter();
            if let Err(err) = AppState::from_config(&config, backends, Some("t".to_owned())) {
                panic!("a configuration that parsed does not build: {err}");
            }
        }
    }
});

/// Blank lines and comments only.
fn sets_nothing(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
        line.is_empty() || line.starts_with('#')
    })
}
