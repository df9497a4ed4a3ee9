//! Meilisearch's task filters (`uids`, `types`, `statuses`, dates, …), parsed once with
//! its errors, and applied twice: as the control plane's list request, and to the views
//! the control plane cannot decide (tasks not yet recorded).

use crate::api::auth::Caller;
use crate::api::error::{MeiliError, positive_integer};
use miroir_proto::keys::indexes_allow;
use miroir_proto::pb;
use serde_json::Value;
use std::collections::HashMap;

/// Meilisearch 1.50's task types, in its order.
pub(crate) const TYPES: &[&str] = &[
    "documentAdditionOrUpdate",
    "documentEdition",
    "documentDeletion",
    "settingsUpdate",
    "indexCreation",
    "indexDeletion",
    "indexUpdate",
    "indexSwap",
    "taskCancelation",
    "taskDeletion",
    "dumpCreation",
    "snapshotCreation",
    "export",
    "upgradeDatabase",
    "indexCompaction",
    "networkTopologyChange",
    "dsrUpdate",
    "dsrClear",
];

/// Meilisearch's task statuses.
pub(crate) const STATUSES: &[&str] = &["enqueued", "processing", "succeeded", "failed", "canceled"];

/// The filters every task route takes.
pub(crate) const FILTERS: &[&str] = &[
    "uids",
    "batchUids",
    "canceledBy",
    "types",
    "statuses",
    "indexUids",
    "afterEnqueuedAt",
    "beforeEnqueuedAt",
    "afterStartedAt",
    "beforeStartedAt",
    "afterFinishedAt",
    "beforeFinishedAt",
];

/// The paging parameters of `GET /tasks`.
pub(crate) const PAGING: &[&str] = &["limit", "from", "reverse"];

/// How many tasks a cancelation or deletion considers at most.
pub(crate) const MAX_MATCHED: usize = 10_000;

/// A time window: strictly after `.0`, strictly before `.1` (ms since the epoch).
pub(crate) type Window = (Option<u64>, Option<u64>);

/// Meilisearch's task filters, parsed.
#[derive(Debug, Default)]
pub(crate) struct TaskQuery {
    pub(crate) uids: Vec<u32>,
    pub(crate) batch_uids: Vec<u32>,
    pub(crate) canceled_by: Vec<u32>,
    pub(crate) types: Vec<String>,
    pub(crate) statuses: Vec<String>,
    pub(crate) index_uids: Vec<String>,
    pub(crate) enqueued: Window,
    pub(crate) started: Window,
    pub(crate) finished: Window,
    /// Whether any filter was given (cancelation and deletion need one).
    pub(crate) filtered: bool,
    /// The caller's key sees none of the asked indexes: nothing matches.
    pub(crate) nothing: bool,
}

impl TaskQuery {
    /// Parses the filters; `paging` also accepts `limit`, `from` and `reverse`.
    pub(crate) fn parse(
        params: &HashMap<String, String>,
        paging: bool,
    ) -> Result<Self, MeiliError> {
        let allowed: Vec<&str> = if paging {
            PAGING.iter().chain(FILTERS).copied().collect()
        } else {
            FILTERS.to_vec()
        };
        if let Some(unknown) = params.keys().find(|k| !allowed.contains(&k.as_str())) {
            let expected: Vec<String> = allowed.iter().map(|k| format!("`{k}`")).collect();
            return Err(MeiliError::invalid(
                "bad_request",
                format!(
                    "Unknown parameter `{unknown}`: expected one of {}",
                    expected.join(", ")
                ),
            ));
        }
        // `*` (alone or in a list) means no filter, as in Meilisearch.
        let list = |name: &str| -> Vec<String> {
            let items: Vec<String> = params
                .get(name)
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            if items.iter().any(|s| s == "*") {
                Vec::new()
            } else {
                items
            }
        };
        let numbers = |name: &str, code: &'static str| -> Result<Vec<u32>, MeiliError> {
            list(name)
                .iter()
                .map(|v| positive_integer(name, v, code))
                .collect()
        };
        let date = |name: &str,
                    code: &'static str,
                    after: bool|
         -> Result<Option<u64>, MeiliError> {
            match params.get(name).map(|v| v.trim()) {
                None | Some("*") => Ok(None),
                Some(value) => parse_task_date(value, after).map(Some).ok_or_else(|| {
                    MeiliError::invalid(
                        code,
                        format!("Invalid value in parameter `{name}`: `{value}` is an invalid date-time. It should follow the YYYY-MM-DD or RFC 3339 date-time format."),
                    )
                }),
            }
        };
        let types = list("types");
        if let Some(bad) = types.iter().find(|t| !TYPES.contains(&t.as_str())) {
            let available: Vec<String> = TYPES.iter().map(|t| format!("`{t}`")).collect();
            return Err(MeiliError::invalid(
                "invalid_task_types",
                format!(
                    "Invalid value in parameter `types`: `{bad}` is not a valid task type. Available types are {}.",
                    available.join(", ")
                ),
            ));
        }
        let statuses = list("statuses");
        if let Some(bad) = statuses.iter().find(|s| !STATUSES.contains(&s.as_str())) {
            return Err(MeiliError::invalid(
                "invalid_task_statuses",
                format!(
                    "Invalid value in parameter `statuses`: `{bad}` is not a valid task status. Available statuses are `enqueued`, `processing`, `succeeded`, `failed`, `canceled`."
                ),
            ));
        }
        let index_uids = list("indexUids");
        if let Some(error) = index_uids
            .iter()
            .find_map(|u| miroir_proto::IndexUid::check(u).err())
        {
            return Err(MeiliError::invalid(
                "invalid_index_uid",
                format!("Invalid value in parameter `indexUids`: {error}"),
            ));
        }
        Ok(Self {
            uids: numbers("uids", "invalid_task_uids")?,
            batch_uids: numbers("batchUids", "invalid_batch_uids")?,
            canceled_by: numbers("canceledBy", "invalid_task_canceled_by")?,
            types,
            statuses,
            index_uids,
            enqueued: (
                date("afterEnqueuedAt", "invalid_task_after_enqueued_at", true)?,
                date("beforeEnqueuedAt", "invalid_task_before_enqueued_at", false)?,
            ),
            started: (
                date("afterStartedAt", "invalid_task_after_started_at", true)?,
                date("beforeStartedAt", "invalid_task_before_started_at", false)?,
            ),
            finished: (
                date("afterFinishedAt", "invalid_task_after_finished_at", true)?,
                date("beforeFinishedAt", "invalid_task_before_finished_at", false)?,
            ),
            filtered: params.keys().any(|k| FILTERS.contains(&k.as_str())),
            nothing: false,
        }
        .with_batches_as_uids())
    }

    /// A started task's batch uid is its own uid: `batchUids` narrows the uids the control
    /// plane lists (the view's `batchUid` is still checked, for tasks not started).
    pub(crate) fn with_batches_as_uids(mut self) -> Self {
        if !self.batch_uids.is_empty() {
            if self.uids.is_empty() {
                self.uids = self.batch_uids.clone();
            } else {
                self.uids.retain(|uid| self.batch_uids.contains(uid));
                self.nothing = self.uids.is_empty();
            }
        }
        self
    }

    /// Limits the query to the tasks of indexes the caller's key covers, as Meilisearch
    /// does: the served indexes its patterns match, and its exact names (so tasks of a
    /// deleted index stay visible). Tasks of no index need a key for every index.
    pub(crate) fn restrict_to(&mut self, caller: &Caller, topology: &pb::Topology) {
        let Some(patterns) = caller.index_patterns() else {
            return;
        };
        let mut allowed: Vec<String> = topology
            .indexes
            .iter()
            .filter(|i| indexes_allow(patterns, &i.uid))
            .map(|i| i.uid.clone())
            .chain(patterns.iter().filter(|p| !p.ends_with('*')).cloned())
            .collect();
        allowed.sort();
        allowed.dedup();
        if !self.index_uids.is_empty() {
            allowed.retain(|uid| self.index_uids.contains(uid));
        }
        self.nothing |= allowed.is_empty();
        self.index_uids = allowed;
    }

    /// The part of the filter the control plane applies to its records.
    pub(crate) fn store_request(&self) -> pb::ListTasksRequest {
        pb::ListTasksRequest {
            index_uids: self.index_uids.clone(),
            task_types: self.types.clone(),
            uids: self.uids.clone(),
            canceled_by: self.canceled_by.clone(),
            after_enqueued_at_ms: self.enqueued.0,
            before_enqueued_at_ms: self.enqueued.1,
            // Finished tasks are filtered on their recorded status and times there; the
            // others come back and are checked here.
            statuses: self.statuses.clone(),
            after_started_at_ms: self.started.0,
            before_started_at_ms: self.started.1,
            after_finished_at_ms: self.finished.0,
            before_finished_at_ms: self.finished.1,
            ..Default::default()
        }
    }

    /// Whether the filters on aggregated fields are all ones the control plane applies
    /// to recorded outcomes (`statuses`, start and finish dates): only tasks it cannot
    /// decide are then left to check here.
    pub(crate) fn filters_outcomes_only(&self) -> bool {
        self.filters_outcomes() && !self.filters_views_beyond_outcomes()
    }

    pub(crate) fn filters_outcomes(&self) -> bool {
        !self.statuses.is_empty()
            || !self.canceled_by.is_empty()
            || self.started != (None, None)
            || self.finished != (None, None)
    }

    /// Whether some filters need the aggregated task (status, batch, start and finish).
    pub(crate) fn filters_views(&self) -> bool {
        self.filters_outcomes() || self.filters_views_beyond_outcomes()
    }

    /// Whether filters the control plane cannot apply to outcomes need the aggregated task
    /// (`batchUids`, narrowed to those uids there: few tasks).
    pub(crate) fn filters_views_beyond_outcomes(&self) -> bool {
        !self.batch_uids.is_empty()
    }

    /// Whether an aggregated task passes the filters the control plane cannot apply.
    pub(crate) fn matches(&self, view: &Value) -> bool {
        let status = view["status"].as_str().unwrap_or_default();
        let in_window = |key: &str, (after, before): Window| {
            if (after, before) == (None, None) {
                return true;
            }
            let Some(at) = view[key].as_str().and_then(|t| parse_task_date(t, false)) else {
                return false;
            };
            after.is_none_or(|a| at > a) && before.is_none_or(|b| at < b)
        };
        (self.statuses.is_empty() || self.statuses.iter().any(|s| s == status))
            && (self.batch_uids.is_empty()
                || view["batchUid"]
                    .as_u64()
                    .is_some_and(|b| self.batch_uids.contains(&(b as u32))))
            && (self.canceled_by.is_empty() || status == "canceled")
            && in_window("startedAt", self.started)
            && in_window("finishedAt", self.finished)
    }
}

/// A task date filter value in ms since the epoch: RFC 3339 (`Z` or `±HH:MM`) or
/// `YYYY-MM-DD`, which means the start of that day, or its end for `after*` filters.
pub fn parse_task_date(value: &str, after: bool) -> Option<u64> {
    if value.len() == 10 {
        let start = miroir_proto::time::parse_rfc3339_ms(&format!("{value}T00:00:00Z"))?;
        return Some(if after { start + 86_400_000 } else { start });
    }
    miroir_proto::time::parse_rfc3339_ms(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_uids_narrow_the_uids_the_control_plane_lists() {
        let parse = |query: &str| {
            let params: HashMap<String, String> = query
                .split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            TaskQuery::parse(&params, true).unwrap()
        };
        let batches = parse("batchUids=4,7");
        assert_eq!(
            (batches.store_request().uids, batches.nothing),
            (vec![4, 7], false)
        );
        let both = parse("batchUids=4,7&uids=7,9");
        assert_eq!((both.store_request().uids, both.nothing), (vec![7], false));
        assert!(parse("batchUids=4&uids=9").nothing);
        assert_eq!(parse("uids=9").store_request().uids, vec![9]);
    }

    #[test]
    fn task_dates_follow_meilisearch() {
        let day = parse_task_date("2026-11-23", false).unwrap();
        assert_eq!(parse_task_date("2026-11-23", true), Some(day + 86_400_000));
        assert_eq!(parse_task_date("2026-11-23T00:00:00Z", false), Some(day));
        assert_eq!(
            parse_task_date("2026-11-23T02:00:00+02:00", false),
            Some(day)
        );
        assert_eq!(
            parse_task_date("2026-11-22T23:00:00.000-01:00", false),
            Some(day)
        );
        assert_eq!(
            parse_task_date("2026-11-23T00:00:00.250Z", false),
            Some(day + 250)
        );
        assert_eq!(parse_task_date("yesterday", false), None);
    }

    #[test]
    fn filters_are_checked_like_meilisearch() {
        let params = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let error = TaskQuery::parse(&params(&[("types", "doggo")]), true).unwrap_err();
        assert_eq!(error.body()["code"], "invalid_task_types");
        let error = TaskQuery::parse(&params(&[("limit", "1")]), false).unwrap_err();
        assert_eq!(error.body()["code"], "bad_request");
        let error = TaskQuery::parse(&params(&[("afterEnqueuedAt", "soon")]), true).unwrap_err();
        assert_eq!(error.body()["code"], "invalid_task_after_enqueued_at");
        let query = TaskQuery::parse(&params(&[("statuses", "*")]), false).unwrap();
        assert!(query.filtered && query.statuses.is_empty());
        assert!(
            !TaskQuery::parse(&params(&[("limit", "1")]), true)
                .unwrap()
                .filtered
        );
    }
}
