//! `berth events`: the event log of a running `berth up`, oldest first.
//!
//! An event is one line the controller writes as it works (a handoff
//! claimed, a snapshot taken, a task launched), numbered by an increasing
//! sequence number; `--after N` starts past event N, and `--follow` keeps
//! polling for new ones like `tail -f`.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use berth_core::{ClaimName, EventRecord};

use super::admin::{self, AdminArgs, Client};
use crate::output::{print_json, Table};

/// How often `--follow` asks for new events.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    admin: AdminArgs,
    /// Only the events of this claim.
    #[arg(long)]
    claim: Option<ClaimName>,
    /// Only the events after this sequence number.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    after: u64,
    /// At most this many events (with --follow: per poll).
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
    /// Keep printing new events as they come (polling every 500 ms) until Ctrl-C;
    /// with --json, one JSON object per line.
    #[arg(long, short)]
    follow: bool,
}

pub fn run(args: Args) -> Result<()> {
    let client = Client::connect(&args.admin)?;
    let fetch = |after: u64| -> Result<Vec<EventRecord>> {
        client.get(&format!("/v1/events?{}", query(after, args.claim.as_ref(), args.limit)))
    };
    if args.follow {
        return follow(&args, fetch);
    }
    let events = match args.limit {
        Some(_) => fetch(args.after)?,
        None => all_after(args.after, fetch)?,
    };
    if args.admin.json {
        return print_json(&events);
    }
    let mut table = Table::new(["TIME", "SEQ", "CLAIM", "KIND", "MESSAGE"]);
    for e in &events {
        let [time, seq, claim, kind, message] = cells(e);
        table.row([time, seq, claim, kind, message]);
    }
    table.print();
    Ok(())
}

/// Every event after `after`, page by page (the server may cap a page).
fn all_after(mut after: u64, fetch: impl Fn(u64) -> Result<Vec<EventRecord>>) -> Result<Vec<EventRecord>> {
    let mut all = Vec::new();
    loop {
        let page = fetch(after)?;
        match page.last() {
            // A page that does not advance ends it, whatever the server does.
            Some(last) if last.seq > after => after = last.seq,
            _ => return Ok(all),
        }
        all.extend(page);
    }
}

/// Prints events as they come, in fixed-width columns (a table cannot be
/// aligned before its last row arrives).
fn follow(args: &Args, fetch: impl Fn(u64) -> Result<Vec<EventRecord>>) -> Result<()> {
    let mut after = args.after;
    let mut out = std::io::stdout();
    if !args.admin.json {
        writeln!(out, "{}", line(["TIME", "SEQ", "CLAIM", "KIND", "MESSAGE"].map(String::from)))?;
    }
    loop {
        for e in fetch(after)? {
            after = after.max(e.seq);
            if args.admin.json {
                writeln!(out, "{}", serde_json::to_string(&e)?)?;
            } else {
                writeln!(out, "{}", line(cells(&e)))?;
            }
        }
        out.flush()?;
        std::thread::sleep(POLL);
    }
}

fn cells(e: &EventRecord) -> [String; 5] {
    [admin::time(e.time), e.seq.to_string(), admin::or_dash(e.claim.as_ref()), e.kind.clone(), e.message.clone()]
}

fn line([time, seq, claim, kind, message]: [String; 5]) -> String {
    format!("{time:<20}  {seq:<6}  {claim:<12}  {kind:<20}  {message}").trim_end().to_owned()
}

/// The query string of `GET /v1/events`.
fn query(after: u64, claim: Option<&ClaimName>, limit: Option<u32>) -> String {
    let mut q = format!("after={after}");
    if let Some(c) = claim {
        q.push_str(&format!("&claim={}", admin::encode(c.as_str())));
    }
    if let Some(n) = limit {
        q.push_str(&format!("&limit={n}"));
    }
    q
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    fn event(seq: u64) -> EventRecord {
        let mut e = EventRecord::new("2024-05-01T12:00:00Z".parse().unwrap(), None, "task-launched", "started");
        e.seq = seq;
        e
    }

    #[test]
    fn query_strings() {
        assert_eq!(query(0, None, None), "after=0");
        let web = ClaimName::parse("web-0").unwrap();
        assert_eq!(query(7, Some(&web), Some(50)), "after=7&claim=web-0&limit=50");
    }

    #[test]
    fn paging_stops_at_an_empty_or_stuck_page() {
        let asked = RefCell::new(Vec::new());
        let all = all_after(3, |after| {
            asked.borrow_mut().push(after);
            Ok(match after {
                3 => vec![event(4), event(5)],
                5 => vec![event(6)],
                _ => vec![],
            })
        })
        .unwrap();
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5, 6]);
        assert_eq!(*asked.borrow(), [3, 5, 6]);

        // A server that ignores `after` does not loop forever.
        let all = all_after(0, |_| Ok(vec![event(1)])).unwrap();
        assert_eq!(all.len(), 1);
    }

    #[test]
    fn follow_lines_are_aligned() {
        assert_eq!(
            line(cells(&event(12))),
            "2024-05-01T12:00:00Z  12      -             task-launched         started"
        );
    }
}
