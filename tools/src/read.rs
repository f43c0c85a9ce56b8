//! `mailledger read`: records as JSON lines, of one stream or of the whole
//! log; email events opened, unless `--raw`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use mailledger_audit::access::{AccessLog, AccessRecord, MAX_LISTED, OPERATOR};
use mailledger_core::email::{EmailLedger, message_stream};
use mailledger_core::{Direction, EventLog, Record, TenantFilter, hex};

use crate::open::{self, Needs};
use crate::{Cli, STDOUT};

/// `mailledger read`'s flags.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// Read this stream only, in version order.
    #[arg(long)]
    stream: Option<String>,
    /// Read one message's events (its stream), by message id.
    #[arg(long, conflicts_with = "stream")]
    message: Option<String>,
    /// The tenant to read.
    #[arg(long, default_value = "default", conflicts_with = "all_tenants")]
    tenant: String,
    /// Read every tenant's records (whole-log reads only).
    #[arg(long, conflicts_with = "stream")]
    all_tenants: bool,
    /// The first position (whole log) or version (stream) to print.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Read the whole log from `--from` towards position 0.
    #[arg(long, conflicts_with = "stream")]
    backward: bool,
    /// Print at most this many records.
    #[arg(long)]
    limit: Option<u64>,
    /// Print raw records (sealed fields as ciphertext), as stored and hashed.
    #[arg(long)]
    raw: bool,
}

/// Runs `mailledger read`.
pub fn run(cli: &Cli, args: &ReadArgs) -> Result<ExitCode> {
    let needs = Needs {
        keys: !args.raw,
        ..Needs::LOG
    };
    open::log(cli, needs, async |o| {
        let email = if args.raw {
            None
        } else {
            Some(o.email()?.as_ref())
        };
        let stream = args
            .stream
            .clone()
            .or(args.message.as_deref().map(message_stream));
        let mut out = BufWriter::new(std::io::stdout().lock());
        let mut opened = Accessed::default();
        match stream {
            Some(stream) => {
                read_stream(&o.log, email, args, &stream, &mut opened, &mut out).await?;
            }
            None => read_all(&o.log, email, args, &mut opened, &mut out).await?,
        }
        out.flush().context(STDOUT)?;
        opened.record(&o.log, "mailledger read").await;
        Ok(ExitCode::SUCCESS)
    })
}

/// How many records to ask for when `left` are still to print.
fn page(left: u64) -> usize {
    usize::try_from(left.min(1000)).unwrap_or(1000)
}

/// Prints `stream` of `--tenant` from version `--from`.
async fn read_stream(
    log: &Arc<dyn EventLog>,
    email: Option<&EmailLedger>,
    args: &ReadArgs,
    stream: &str,
    opened: &mut Accessed,
    out: &mut impl Write,
) -> Result<()> {
    let mut left = args.limit.unwrap_or(u64::MAX);
    let mut version = args.from;
    while left > 0 {
        let records = log
            .read_stream(&args.tenant, stream, version, page(left))
            .await?;
        let Some(last) = records.last() else { break };
        version = last.stream_version + 1;
        for r in &records {
            writeln!(out, "{}", shown(email, r, opened)?).context(STDOUT)?;
        }
        left -= records.len() as u64;
    }
    Ok(())
}

/// Prints the whole log (of `--tenant`, or every tenant's) from position
/// `--from`, forward or backward.
async fn read_all(
    log: &Arc<dyn EventLog>,
    email: Option<&EmailLedger>,
    args: &ReadArgs,
    opened: &mut Accessed,
    out: &mut impl Write,
) -> Result<()> {
    let filter = if args.all_tenants {
        TenantFilter::All
    } else {
        TenantFilter::Only(args.tenant.clone())
    };
    let direction = if args.backward {
        Direction::Backward
    } else {
        Direction::Forward
    };
    let mut left = args.limit.unwrap_or(u64::MAX);
    let mut next = Some(args.from);
    let head = log.head();
    while let (Some(pos), true) = (next, left > 0) {
        if direction == Direction::Forward && pos >= head {
            break;
        }
        let batch = log.read_all(&filter, pos, direction, page(left)).await?;
        for r in &batch.records {
            writeln!(out, "{}", shown(email, r, opened)?).context(STDOUT)?;
        }
        left -= batch.records.len() as u64;
        next = batch.next;
    }
    Ok(())
}

/// A record as `read` prints it: an email event opened (and noted in
/// `opened`), else the raw record.
fn shown(
    email: Option<&EmailLedger>,
    r: &Record,
    opened: &mut Accessed,
) -> Result<serde_json::Value> {
    if let Some(email) = email
        && let Some(e) = email.open(r)?
    {
        let read = opened.0.entry(r.tenant.clone()).or_default();
        if read.0.len() < MAX_LISTED {
            read.0.insert(e.event.envelope.contact.to_string());
        }
        if let Some(m) = &e.event.envelope.message_id
            && read.1.len() < MAX_LISTED
        {
            read.1.insert(m.clone());
        }
        read.2 += 1;
        return Ok(e.to_json());
    }
    Ok(record_json(r))
}

/// What a command opened, by tenant: contacts, messages, events.
#[derive(Debug, Default)]
pub struct Accessed(BTreeMap<String, (BTreeSet<String>, BTreeSet<String>, u64)>);

impl Accessed {
    /// Leaves an access record per tenant (as `operator`) of what was
    /// opened; a failure is a warning (the output is already written).
    pub async fn record(self, log: &Arc<dyn EventLog>, command: &str) {
        if self.0.is_empty() {
            return;
        }
        let access = AccessLog::start(Arc::clone(log));
        for (tenant, (contacts, messages, count)) in self.0 {
            access.record(
                &tenant,
                AccessRecord::now(OPERATOR, command, contacts, messages, count),
            );
        }
        access.flush().await;
    }

    /// Notes that `count` events of `tenant` were opened, of `contacts`
    /// and `messages`.
    pub fn add(&mut self, tenant: &str, contacts: Vec<String>, messages: Vec<String>, count: u64) {
        let read = self.0.entry(tenant.to_owned()).or_default();
        read.0.extend(contacts);
        read.1.extend(messages);
        read.2 += count;
    }
}

fn record_json(r: &Record) -> serde_json::Value {
    serde_json::json!({
        "position": r.position,
        "tenant": r.tenant,
        "stream": r.stream,
        "version": r.stream_version,
        "id": r.event_id,
        "type": r.event_type,
        "recorded_at_micros": r.recorded_at_micros,
        "jurisdiction": r.jurisdiction,
        "payload": opaque(&r.payload),
        "metadata": if r.metadata.is_empty() { serde_json::Value::Null } else { opaque(&r.metadata) },
        "prev_hash": hex(&r.prev_hash),
        "hash": hex(&r.hash),
    })
}

/// Bytes as JSON when they are JSON, else as `{"hex": …}`.
fn opaque(bytes: &[u8]) -> serde_json::Value {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(v) => v,
        Err(_) => serde_json::json!({ "hex": hex(bytes) }),
    }
}
