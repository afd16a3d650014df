//! A span per gather with a child span per branch carrying its latency and
//! outcome. (Its own test binary: tracing caches callsite interest per
//! process, so a test without a subscriber running alongside would hide the
//! spans.)

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use palisade_fan_out::{Branch, FanOut};
use serde_json::json;
use support::{Backend, ms};
use tower::ServiceExt;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

fn branch(backend: Backend) -> Branch<Backend, u64, u64> {
    Branch::new(backend.name, backend, |id: &u64| *id)
}

// ===== spans =====

#[derive(Clone, Debug, Default)]
struct SpanLog(Arc<Mutex<Spans>>);

type FieldMap = HashMap<String, String>;

/// Open spans: name, parent id, fields. Closed: name, parent's name, fields.
#[derive(Debug, Default)]
struct Spans {
    open: HashMap<u64, (String, Option<u64>, FieldMap)>,
    closed: Vec<(String, Option<String>, FieldMap)>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
}

impl<S> Layer<S> for SpanLog
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        let parent = ctx
            .span(id)
            .and_then(|s| s.parent())
            .map(|p| p.id().into_u64());
        self.0.lock().unwrap().open.insert(
            id.into_u64(),
            (attrs.metadata().name().to_owned(), parent, fields),
        );
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut log = self.0.lock().unwrap();
        if let Some((_, _, fields)) = log.open.get_mut(&id.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }

    fn on_close(&self, id: Id, _: Context<'_, S>) {
        let mut log = self.0.lock().unwrap();
        if let Some((name, parent, fields)) = log.open.remove(&id.into_u64()) {
            let parent_name = parent.and_then(|p| log.open.get(&p).map(|(n, _, _)| n.clone()));
            log.closed.push((name, parent_name, fields));
        }
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_span_per_gather_and_per_branch_with_latency_and_outcome() {
    let log = SpanLog::default();
    let subscriber = tracing_subscriber::registry().with(log.clone());
    let _default = tracing::subscriber::set_default(subscriber);

    let fan_out = FanOut::builder("dash")
        .branch(branch(Backend::json("user", 80, json!(1))).required())
        .branch(branch(Backend::json("review", 500, json!(2))).timeout(ms(100)))
        .build()
        .unwrap();
    fan_out.oneshot(1).await.unwrap();

    let spans = std::mem::take(&mut log.0.lock().unwrap().closed);
    let find = |name: &str, branch: Option<&str>| {
        spans
            .iter()
            .find(|(n, _, f)| {
                n == name && branch.is_none_or(|b| f.get("branch").map(String::as_str) == Some(b))
            })
            .unwrap_or_else(|| panic!("span {name} {branch:?} in {spans:?}"))
            .clone()
    };
    let (_, _, gather) = find("fan_out", None);
    assert_eq!(gather["name"], "dash");
    assert_eq!(gather["result"], "partial");
    let (_, parent, user) = find("branch", Some("user"));
    assert_eq!(
        parent.as_deref(),
        Some("fan_out"),
        "a child of the gather's span"
    );
    assert_eq!(user["outcome"], "success");
    assert_eq!(user["latency_ms"], "80");
    let (_, _, review) = find("branch", Some("review"));
    assert_eq!(review["outcome"], "timeout");
    assert_eq!(review["latency_ms"], "100");
}
