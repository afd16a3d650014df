//! Metric handles, resolved once when the layer is built.

use metrics::{Counter, counter, describe_counter};

use crate::event::RetryReason;

pub(crate) const REQUESTS: &str = "palisade_retry_requests_total";
pub(crate) const ATTEMPTS: &str = "palisade_retry_attempts_total";
pub(crate) const RETRIES: &str = "palisade_retry_retries_total";
pub(crate) const BUDGET_EXHAUSTED: &str = "palisade_retry_budget_exhausted_total";
pub(crate) const CALLS: &str = "palisade_retry_calls_total";

#[derive(Clone, Debug)]
pub(crate) struct Metrics {
    pub(crate) requests: Counter,
    pub(crate) attempts: Counter,
    retries_error: Counter,
    retries_timeout: Counter,
    retries_response: Counter,
    pub(crate) budget_exhausted: Counter,
    pub(crate) success_without_retry: Counter,
    success_with_retry: Counter,
    failed_without_retry: Counter,
    failed_with_retry: Counter,
}

impl Metrics {
    pub(crate) fn new(name: &str) -> Self {
        describe_counter!(REQUESTS, "Calls made through the retry layer");
        describe_counter!(
            ATTEMPTS,
            "Attempts sent to the inner service, first ones included"
        );
        describe_counter!(
            RETRIES,
            "Retries made, by the reason the previous attempt failed"
        );
        describe_counter!(
            BUDGET_EXHAUSTED,
            "Failed calls not retried because the retry budget was spent"
        );
        describe_counter!(
            CALLS,
            "Completed calls by outcome, as Resilience4j counts them"
        );
        let name = name.to_owned();
        let retries = |reason: RetryReason| counter!(RETRIES, "name" => name.clone(), "reason" => reason.as_str());
        let calls =
            |outcome: &'static str| counter!(CALLS, "name" => name.clone(), "outcome" => outcome);
        Self {
            requests: counter!(REQUESTS, "name" => name.clone()),
            attempts: counter!(ATTEMPTS, "name" => name.clone()),
            retries_error: retries(RetryReason::Error),
            retries_timeout: retries(RetryReason::Timeout),
            retries_response: retries(RetryReason::Response),
            budget_exhausted: counter!(BUDGET_EXHAUSTED, "name" => name.clone()),
            success_without_retry: calls("success_without_retry"),
            success_with_retry: calls("success_with_retry"),
            failed_without_retry: calls("failed_without_retry"),
            failed_with_retry: calls("failed_with_retry"),
        }
    }

    pub(crate) fn retry(&self, reason: RetryReason) {
        match reason {
            RetryReason::Error => &self.retries_error,
            RetryReason::Timeout => &self.retries_timeout,
            RetryReason::Response => &self.retries_response,
        }
        .increment(1);
    }

    /// Counts a completed call: `success` if its last outcome was not a
    /// failure, `retried` if more than one attempt was made.
    pub(crate) fn outcome(&self, success: bool, retried: bool) {
        match (success, retried) {
            (true, false) => &self.success_without_retry,
            (true, true) => &self.success_with_retry,
            (false, false) => &self.failed_without_retry,
            (false, true) => &self.failed_with_retry,
        }
        .increment(1);
    }
}
