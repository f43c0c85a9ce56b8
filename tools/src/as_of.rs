//! `mailledger replay --as-of TIME`: a message's or a contact's state at a
//! moment, rebuilt from the log alone (`mailledger_audit::as_of`).

use std::process::ExitCode;

use anyhow::Result;
use mailledger_audit::as_of::{cut_at, message_as_of, suppression_as_of};
use mailledger_core::email::rfc3339;
use mailledger_core::pseudonym::Pseudonym;
use serde_json::json;

use crate::open::Opened;

/// Prints the state of `message` or `contact` in `tenant` at `moment` (one
/// JSON object), leaving an access record when it opened a timeline.
pub async fn run(
    o: &Opened,
    tenant: &str,
    moment: i64,
    message: Option<&str>,
    contact: Option<Pseudonym>,
) -> Result<ExitCode> {
    let email = o.email()?;
    let cut = cut_at(o.log.as_ref(), moment).await?;
    let mut answer = json!({ "as_of": rfc3339(moment), "position": cut });
    if let Some(id) = message {
        let view = message_as_of(email, tenant, id, cut).await?;
        if let Some(v) = &view {
            let mut opened = crate::read::Accessed::default();
            opened.add(
                tenant,
                v.timeline
                    .iter()
                    .map(|e| e.event.envelope.contact.to_string())
                    .collect(),
                vec![id.to_owned()],
                v.timeline.len() as u64,
            );
            opened.record(&o.log, "mailledger replay --as-of").await;
        }
        answer["message_id"] = json!(id);
        answer["message"] = view.map_or(serde_json::Value::Null, |v| v.to_json());
    } else if let Some(c) = contact {
        let entries = suppression_as_of(email, tenant, &c, cut).await?;
        answer["contact"] = json!(c.to_string());
        answer["suppressed"] = json!(entries.iter().any(|e| e.active_at(moment)));
        answer["entries"] = entries
            .iter()
            .map(|e| mailledger_projections::entry_json(e, moment))
            .collect();
    }
    out!("{answer}");
    Ok(ExitCode::SUCCESS)
}
