//! Analytics: sent and delivered counts, bounce, complaint, open and click
//! rates over time, machine opens and bot clicks apart; hourly or daily;
//! totals or by tag, campaign or domain. Every chart has its table. Runs
//! the handler of `GET /v1/analytics`.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, Time};

use crate::auth::scope;
use crate::console::layout::page;
use crate::console::session::Session;
use crate::console::{PageResult, bad_input};
use crate::json::ApiJson;
use crate::routes::analytics::{self, AnalyticsParams};
use crate::state::AppState;

use super::chart::{Series, Unit, line_chart};
use super::{auth, st};

/// The most groups charted (the table lists them all).
const MAX_CHARTED: usize = 6;

/// The page's choices.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    /// The first day (YYYY-MM-DD, UTC) or an RFC 3339 time.
    from: Option<String>,
    /// The day after the last (YYYY-MM-DD, UTC) or an RFC 3339 time.
    to: Option<String>,
    granularity: Option<String>,
    group_by: Option<String>,
}

/// A day (`YYYY-MM-DD`) as its UTC midnight in RFC 3339; other text as is.
fn day(v: &str) -> String {
    if v.len() == 10 {
        format!("{v}T00:00:00Z")
    } else {
        v.to_owned()
    }
}

/// The default range: by day, the 30 days up to the end of today (UTC);
/// by hour, the 48 hours up to the end of this hour.
fn default_range(hourly: bool) -> (String, String) {
    let now = OffsetDateTime::now_utc();
    let (end, start) = if hourly {
        let end = now.replace_time(Time::MIDNIGHT) + Duration::hours(i64::from(now.hour()) + 1);
        (end, end - Duration::hours(48))
    } else {
        let end = now.replace_time(Time::MIDNIGHT) + Duration::days(1);
        (end, end - Duration::days(30))
    };
    let f = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    (f(start), f(end))
}

/// A bucket's value at `path` (`counts.sent`, `rates.open`).
fn at(b: &Value, group: &str, key: &str) -> Option<f64> {
    b[group][key].as_f64()
}

/// The bounces of a bucket, every class.
fn bounces(b: &Value) -> u64 {
    [
        "bounced_hard",
        "bounced_soft",
        "bounced_block",
        "bounced_undetermined",
    ]
    .iter()
    .filter_map(|k| b["counts"][*k].as_u64())
    .sum()
}

/// A rate as a percentage, or a dash.
fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{:.1}%", v * 100.0))
}

/// A count.
fn n(b: &Value, key: &str) -> u64 {
    b["counts"][key].as_u64().unwrap_or(0)
}

/// The charts and tables of one group's buckets.
fn group_charts(
    label: &str,
    buckets: &[&Value],
    from: i128,
    to: i128,
    first: &str,
    last: &str,
) -> Markup {
    let span = (to - from).max(1) as f64;
    let xs: Vec<f64> = buckets
        .iter()
        .map(|b| {
            let t = b["start"]
                .as_str()
                .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok());
            t.map_or(0.0, |t| (t.unix_timestamp_nanos() - from) as f64 / span)
        })
        .collect();
    let series = |names: &[(&'static str, &'static str, &'static str)]| -> Vec<Series<'static>> {
        names
            .iter()
            .map(|&(name, group, key)| Series {
                name,
                values: buckets.iter().map(|b| at(b, group, key)).collect(),
            })
            .collect()
    };
    let volume = series(&[
        ("sent", "counts", "sent"),
        ("delivered", "counts", "delivered"),
    ]);
    let rates = series(&[
        ("bounce rate", "rates", "bounce"),
        ("complaint rate", "rates", "complaint"),
        ("open rate", "rates", "open"),
        ("click rate", "rates", "click"),
    ]);
    let robots = series(&[
        ("human opens", "counts", "opened"),
        ("machine opens", "counts", "machine_opened"),
        ("human clicks", "counts", "clicked"),
        ("bot clicks", "counts", "bot_clicked"),
    ]);
    let when = |b: &Value| b["start"].as_str().unwrap_or_default().to_owned();
    html! {
        section {
            h2 { (label) }
            (line_chart(&format!("{label}: sent and delivered"), &xs, first, last, &volume, Unit::Count))
            (line_chart(&format!("{label}: rates"), &xs, first, last, &rates, Unit::Percent))
            (line_chart(&format!("{label}: machine opens and bot clicks, apart"), &xs, first, last, &robots, Unit::Count))
            details open {
                summary { "Table of these charts" }
                div.scroll { table.data data-chart="buckets" {
                    thead { tr {
                        th scope="col" { "Bucket (UTC)" } th.num { "Sent" } th.num { "Delivered" } th.num { "Bounced" } th.num { "Complaints" }
                        th.num { "Bounce" } th.num { "Complaint" } th.num { "Open" } th.num { "Click" }
                        th.num { "Human opens" } th.num { "Machine opens" } th.num { "Human clicks" } th.num { "Bot clicks" }
                    } }
                    tbody { @for b in buckets { tr {
                        td { (when(b)) } td.num { (n(b, "sent")) } td.num { (n(b, "delivered")) } td.num { (bounces(b)) } td.num { (n(b, "complained")) }
                        td.num { (pct(at(b, "rates", "bounce"))) } td.num { (pct(at(b, "rates", "complaint"))) }
                        td.num { (pct(at(b, "rates", "open"))) } td.num { (pct(at(b, "rates", "click"))) }
                        td.num { (n(b, "opened")) } td.num { (n(b, "machine_opened")) } td.num { (n(b, "clicked")) } td.num { (n(b, "bot_clicked")) }
                    } } }
                } }
            }
        }
    }
}

/// `GET /console/analytics`.
pub async fn analytics(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<Choice>, QueryRejection>,
) -> PageResult {
    let Query(c) = q.map_err(|_| bad_input("a parameter of the page is not one it knows"))?;
    let hourly = c.granularity.as_deref() == Some("hour");
    let (dfrom, dto) = default_range(hourly);
    let from = c
        .from
        .as_deref()
        .filter(|v| !v.is_empty())
        .map_or(dfrom, day);
    let to = c.to.as_deref().filter(|v| !v.is_empty()).map_or(dto, day);
    let granularity = c.granularity.filter(|g| !g.is_empty());
    let group_by = c.group_by.filter(|g| !g.is_empty());
    let auth = auth::<scope::Read>(&state, &s)?;
    let ApiJson(result) = analytics::analytics(
        st(&state),
        auth,
        Ok(Query(AnalyticsParams {
            from: Some(from.clone()),
            to: Some(to.clone()),
            granularity: granularity.clone(),
            group_by: group_by.clone(),
        })),
    )
    .await?;
    let parse = |t: &str| {
        OffsetDateTime::parse(t, &Rfc3339)
            .map(|t| t.unix_timestamp_nanos())
            .unwrap_or(0)
    };
    let (f0, t0) = (parse(&from), parse(&to));
    let mut groups: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    let empty = Vec::new();
    for b in result["buckets"].as_array().unwrap_or(&empty) {
        let g = b["group"].as_str().unwrap_or("All messages").to_owned();
        groups.entry(g).or_default().push(b);
    }
    let sent = |bs: &[&Value]| bs.iter().map(|b| n(b, "sent")).sum::<u64>();
    let mut order: Vec<(&String, &Vec<&Value>)> = groups.iter().collect();
    order.sort_by_key(|(_, bs)| std::cmp::Reverse(sent(bs)));
    let total = &result["total"];
    let day_of = |t: &str| t.get(..10).unwrap_or(t).to_owned();
    let gran = granularity.as_deref().unwrap_or("day");
    let by = group_by.as_deref().unwrap_or("");
    let body = html! {
        form.filters method="get" action="/console/analytics" {
            label { "From (UTC)" input type="date" name="from" value=(day_of(&from)); }
            label { "To (UTC, exclusive)" input type="date" name="to" value=(day_of(&to)); }
            label { "Granularity" select name="granularity" {
                option value="day" selected[gran == "day"] { "day" }
                option value="hour" selected[gran == "hour"] { "hour" }
            } }
            label { "Group by" select name="group_by" {
                option value="" selected[by.is_empty()] { "nothing (totals)" }
                @for g in ["tag", "campaign", "sending_domain", "recipient_domain"] {
                    option value=(g) selected[by == g] { (g.replace('_', " ")) }
                }
            } }
            button type="submit" { "Show" }
        }
        h2 { "Totals of the range" }
        div.scroll {
        table.data data-chart="totals" {
            thead { tr { th scope="col" { "Sent" } th.num { "Delivered" } th.num { "Bounced" } th.num { "Complaints" } th.num { "Delivery" } th.num { "Bounce" } th.num { "Complaint" } th.num { "Open" } th.num { "Click" } th.num { "Machine opens" } th.num { "Bot clicks" } } }
            tbody { tr {
                td.num { (n(total, "sent")) } td.num { (n(total, "delivered")) } td.num { (bounces(total)) } td.num { (n(total, "complained")) }
                td.num { (pct(at(total, "rates", "delivery"))) } td.num { (pct(at(total, "rates", "bounce"))) } td.num { (pct(at(total, "rates", "complaint"))) }
                td.num { (pct(at(total, "rates", "open"))) } td.num { (pct(at(total, "rates", "click"))) }
                td.num { (n(total, "machine_opened")) } td.num { (n(total, "bot_clicked")) }
            } }
        }
        }
        @if order.is_empty() {
            p { "No events in this range." }
        }
        @if order.len() > MAX_CHARTED {
            p { "Charts of the " (MAX_CHARTED) " groups with the most messages sent; every group's totals are in the tables." }
        }
        @for (g, bs) in order.iter().take(MAX_CHARTED) {
            (group_charts(g, bs, f0, t0, &day_of(&from), &day_of(&to)))
        }
    };
    Ok(page(&s, "/console/analytics", "Analytics", &body))
}
